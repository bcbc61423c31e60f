//! A stage's log: its stdout, its stderr and its `host.log` calls, split into
//! lines, masked, bounded, and handed to the observer as they arrive.
//!
//! The bound is what keeps a stage that prints gigabytes from taking the
//! host's memory with it: past `max_log` bytes, output is only counted, and
//! one notice says how much was dropped.

use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};

use bytes::Bytes;
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::p2::{OutputStream, Pollable, StreamResult};

use super::secret_mask::SecretMask;
use cairn_core::observer::{Level, LogLine, LogSource, StageObserver};
use cairn_core::units::ByteSize;

/// A single line longer than this is cut into pieces of this size, so a
/// stage writing without newlines cannot grow a buffer without bound.
const MAX_LINE: usize = 16 * 1024;

/// How much a guest may write to stdout or stderr in one call.
const WRITE_PERMIT: usize = 64 * 1024;

/// The log a stage produced, as kept.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CapturedLog {
    /// The lines kept, in order, masked.
    pub lines: Vec<LogLine>,
    /// Bytes of output beyond the log bound that were counted, not kept.
    pub dropped_bytes: u64,
}

/// Collects one stage's log. Shared by its stdout, its stderr and the host API.
pub(crate) struct LogCapture {
    observer: Arc<dyn StageObserver>,
    mask: Arc<SecretMask>,
    limit: ByteSize,
    state: Mutex<CaptureState>,
}

#[derive(Default)]
struct CaptureState {
    log: CapturedLog,
    kept_bytes: u64,
    /// The unfinished line of each source.
    stdout: Vec<u8>,
    stderr: Vec<u8>,
    host: Vec<u8>,
}

impl LogCapture {
    /// A capture that masks what `mask` names and keeps at most `limit`
    /// bytes of text.
    pub(crate) fn new(observer: Arc<dyn StageObserver>, mask: Arc<SecretMask>, limit: ByteSize) -> Self {
        Self {
            observer,
            mask,
            limit,
            state: Mutex::new(CaptureState::default()),
        }
    }

    /// A stream the guest's stdout or stderr writes into.
    pub(crate) fn stream(self: &Arc<Self>, source: LogSource) -> CapturedStream {
        CapturedStream {
            capture: Arc::clone(self),
            source,
        }
    }

    /// A `host.log` call; its text may span several lines.
    pub(crate) fn host_log(&self, level: Level, text: &str) {
        self.write(LogSource::Host, level, text.as_bytes());
        self.write(LogSource::Host, level, b"\n");
    }

    /// A note from the sandbox itself (a refused connection, say), logged as
    /// a host warning so it appears in place.
    pub(crate) fn sandbox_notice(&self, text: &str) {
        self.host_log(Level::Warn, text);
    }

    /// Guest bytes: cut into lines, each kept (or counted) at `level`.
    fn write(&self, source: LogSource, level: Level, mut bytes: &[u8]) {
        let mut state = self.lock();
        if state.kept_bytes >= self.limit.0 {
            // Past the bound: count, do not look at the bytes at all.
            state.log.dropped_bytes += bytes.len() as u64;
            return;
        }
        while !bytes.is_empty() {
            let pending = state.pending(source);
            let room = MAX_LINE - pending.len();
            match bytes.iter().take(room).position(|&byte| byte == b'\n') {
                Some(newline) => {
                    pending.extend_from_slice(&bytes[..newline]);
                    bytes = &bytes[newline + 1..];
                }
                None if bytes.len() < room => {
                    pending.extend_from_slice(bytes);
                    return;
                }
                None => {
                    pending.extend_from_slice(&bytes[..room]);
                    bytes = &bytes[room..];
                }
            }
            let line = std::mem::take(state.pending(source));
            let text = String::from_utf8_lossy(&line);
            self.keep(&mut state, source, level, text.trim_end_matches('\r'), false);
        }
    }

    /// Adds one complete line, or counts it once the bound is reached.
    fn keep(&self, state: &mut CaptureState, source: LogSource, level: Level, text: &str, unterminated: bool) {
        if state.kept_bytes >= self.limit.0 {
            state.log.dropped_bytes += text.len() as u64 + 1;
            return;
        }
        let masked = self.masked(text);
        state.kept_bytes += masked.len() as u64 + 1;
        let line = LogLine {
            source,
            level,
            text: masked,
            unterminated,
        };
        self.observer.log(&line);
        state.log.lines.push(line);
        if state.kept_bytes >= self.limit.0 {
            let notice = LogLine {
                source: LogSource::Host,
                level: Level::Warn,
                text: format!(
                    "the log reached its limit of {}; further output is counted and dropped (raise `max_log` to keep more)",
                    self.limit
                ),
                unterminated: false,
            };
            self.observer.log(&notice);
            state.log.lines.push(notice);
        }
    }

    /// `text` with every secret value masked.
    pub(crate) fn masked(&self, text: &str) -> String {
        self.mask.mask(text)
    }

    /// Flushes partial lines and returns the log.
    pub(crate) fn finish(&self) -> CapturedLog {
        let mut state = self.lock();
        for source in [LogSource::Stdout, LogSource::Stderr] {
            let level = stream_level(source);
            let rest = std::mem::take(state.pending(source));
            if !rest.is_empty() {
                let text = String::from_utf8_lossy(&rest).into_owned();
                self.keep(&mut state, source, level, &text, true);
            }
        }
        std::mem::take(&mut state.log)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, CaptureState> {
        // A panic while holding the lock cannot leave the log inconsistent
        // beyond a missing line, so keep going with what is there.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl CaptureState {
    fn pending(&mut self, source: LogSource) -> &mut Vec<u8> {
        match source {
            LogSource::Stdout => &mut self.stdout,
            LogSource::Stderr => &mut self.stderr,
            LogSource::Host => &mut self.host,
        }
    }
}

/// Stderr is shown as a warning, stdout as information.
fn stream_level(source: LogSource) -> Level {
    if source == LogSource::Stderr {
        Level::Warn
    } else {
        Level::Info
    }
}

/// The guest's stdout or stderr: every write goes to the [`LogCapture`].
#[derive(Clone)]
pub(crate) struct CapturedStream {
    capture: Arc<LogCapture>,
    source: LogSource,
}

impl IsTerminal for CapturedStream {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for CapturedStream {
    fn p2_stream(&self) -> Box<dyn OutputStream> {
        Box::new(self.clone())
    }

    fn async_stream(&self) -> Box<dyn tokio::io::AsyncWrite + Send + Sync> {
        Box::new(self.clone())
    }
}

impl OutputStream for CapturedStream {
    fn write(&mut self, bytes: Bytes) -> StreamResult<()> {
        self.capture.write(self.source, stream_level(self.source), &bytes);
        Ok(())
    }

    fn flush(&mut self) -> StreamResult<()> {
        Ok(())
    }

    fn check_write(&mut self) -> StreamResult<usize> {
        Ok(WRITE_PERMIT)
    }
}

#[async_trait::async_trait]
impl Pollable for CapturedStream {
    async fn ready(&mut self) {}
}

impl tokio::io::AsyncWrite for CapturedStream {
    fn poll_write(self: Pin<&mut Self>, _context: &mut Context<'_>, bytes: &[u8]) -> Poll<std::io::Result<usize>> {
        self.capture.write(self.source, stream_level(self.source), bytes);
        Poll::Ready(Ok(bytes.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _context: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _context: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cairn_core::observer::Silent;

    fn capture(limit: u64, secrets: &[&str]) -> Arc<LogCapture> {
        let secrets = secrets
            .iter()
            .enumerate()
            .map(|(index, value)| (format!("S{index}"), (*value).to_owned()))
            .collect();
        Arc::new(LogCapture::new(
            Arc::new(Silent),
            Arc::new(SecretMask::new(&secrets)),
            ByteSize(limit),
        ))
    }

    fn texts(log: &CapturedLog) -> Vec<&str> {
        log.lines.iter().map(|line| line.text.as_str()).collect()
    }

    #[test]
    fn writes_are_split_into_lines_across_calls() {
        let capture = capture(1 << 20, &[]);
        capture.write(LogSource::Stdout, Level::Info, b"one\ntw");
        capture.write(LogSource::Stdout, Level::Info, b"o\r\nthree");
        capture.write(LogSource::Stderr, Level::Warn, b"err\n");
        let log = capture.finish();
        assert_eq!(texts(&log), ["one", "two", "err", "three"]);
        assert_eq!(log.lines[2].source, LogSource::Stderr);
        assert_eq!(log.lines[2].level, Level::Warn);
    }

    #[test]
    fn secrets_are_masked_longest_first() {
        let capture = capture(1 << 20, &["hunter2", "hunter2-extended", ""]);
        capture.host_log(Level::Info, "token hunter2-extended and hunter2");
        assert_eq!(texts(&capture.finish()), ["token *** and ***"]);
    }

    #[test]
    fn output_past_the_bound_is_counted_not_kept() {
        let capture = capture(100, &[]);
        for _ in 0..1000 {
            capture.write(LogSource::Stdout, Level::Info, &[b'x'; 99]);
            capture.write(LogSource::Stdout, Level::Info, b"\n");
        }
        let log = capture.finish();
        assert_eq!(log.lines.len(), 2, "one line and the notice");
        assert!(log.lines[1].text.contains("limit of 100 B"));
        assert_eq!(log.dropped_bytes, 999 * 100);
    }

    #[test]
    fn lines_without_newlines_are_cut() {
        let capture = capture(1 << 20, &[]);
        capture.write(LogSource::Stdout, Level::Info, &vec![b'y'; MAX_LINE * 2 + 5]);
        let log = capture.finish();
        let lengths: Vec<usize> = log.lines.iter().map(|line| line.text.len()).collect();
        assert_eq!(lengths, [MAX_LINE, MAX_LINE, 5]);
    }
}
