//! What a stage leaves in `/out`, checked without trusting it.
//!
//! The host reads a stage's outputs after the stage ran, so everything there
//! is hostile until checked: a symbolic link must never be followed (it could
//! point at `/etc/passwd` on the host), only relative links that stay inside
//! `/out` are kept, and the total size is held to the output bound both while
//! the stage runs and after.

use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::secret_mask::SecretMask;
use cairn_core::limits::BoundExceeded;
use cairn_core::units::ByteSize;

/// Outputs the host refuses to keep.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OutputError {
    /// A symbolic link whose target leaves `/out` (or is absolute).
    #[error(
        "left `/out/{link}`, a symbolic link to `{target}`, which points outside /out; only relative links within /out are kept"
    )]
    SymlinkEscapes {
        /// The link, relative to `/out`.
        link: String,
        /// Where it points.
        target: String,
    },
    /// A FIFO, socket or device node.
    #[error("left `/out/{path}`, which is neither a file, a directory nor a symbolic link")]
    SpecialFile {
        /// The entry, relative to `/out`.
        path: String,
    },
    /// A file (or a link's target) holds a granted secret's value.
    #[error(
        "left the value of the secret `{secret}` in `/out/{path}`; outputs are kept, cached and published, \
         so a secret's value must never be in one"
    )]
    SecretInOutput {
        /// The secret's name (never its value).
        secret: String,
        /// The entry, relative to `/out`.
        path: String,
    },
    /// What `run` returned is larger than an outcome may be.
    #[error(
        "returned an outcome of {size} ({largest}), more than the {} an outcome may hold: outputs go into \
         every event, the cache and each `${{{{ }}}}` reference, so large results belong in files under /out",
        ByteSize(MAX_OUTCOME)
    )]
    OutcomeTooLarge {
        /// The summary, keys and values together.
        size: ByteSize,
        /// Which part is largest, in words.
        largest: String,
    },
    /// The host could not read an entry.
    #[error("its output `/out/{path}` cannot be read: {message}")]
    Unreadable {
        /// The entry, relative to `/out`.
        path: String,
        /// What the operating system said.
        message: String,
    },
}

/// Counts of a checked output tree.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct OutputTotals {
    /// Regular files.
    pub files: u64,
    /// Their total size.
    pub bytes: u64,
    /// Entries of any kind: files, folders, links.
    pub entries: u64,
}

/// The most bytes a stage's outcome (summary, output names and values) may
/// hold: it is copied into events, the action cache and references.
pub const MAX_OUTCOME: u64 = 1024 * 1024;

/// Refuses an outcome larger than [`MAX_OUTCOME`], naming its largest part.
pub(crate) fn check_outcome(outcome: &cairn_core::Outcome) -> Result<(), OutputError> {
    let summary = (
        "the summary".to_owned(),
        outcome.summary.as_ref().map_or(0, String::len),
    );
    let outputs = outcome
        .outputs
        .iter()
        .map(|(key, value)| (format!("the output `{key}`"), key.len() + value.len()));
    let parts: Vec<(String, usize)> = outputs.chain([summary]).collect();
    let size: usize = parts.iter().map(|(_, size)| size).sum();
    if size as u64 <= MAX_OUTCOME {
        return Ok(());
    }
    let (part, part_size) = parts.into_iter().max_by_key(|(_, size)| *size).unwrap_or_default();
    Err(OutputError::OutcomeTooLarge {
        size: ByteSize(size as u64),
        largest: format!("{part} is {}", ByteSize(part_size as u64)),
    })
}

/// Checks every entry under `root` (never following links) and totals it;
/// every file and link target is searched for the values `mask` holds.
pub(crate) fn check(root: &Path, mask: &SecretMask) -> Result<OutputTotals, OutputError> {
    let mut totals = OutputTotals::default();
    let mut pending = vec![PathBuf::new()];
    while let Some(relative) = pending.pop() {
        let unreadable = |error: std::io::Error| OutputError::Unreadable {
            path: display(&relative),
            message: error.to_string(),
        };
        for entry in fs::read_dir(root.join(&relative)).map_err(unreadable)? {
            let entry = entry.map_err(unreadable)?;
            totals.entries += 1;
            let path = relative.join(entry.file_name());
            if let Some(secret) = mask.found_in(entry.file_name().as_encoded_bytes()) {
                return Err(OutputError::SecretInOutput {
                    secret: secret.to_owned(),
                    path: mask.mask(&display(&path)),
                });
            }
            let kind = entry.file_type().map_err(unreadable)?;
            if kind.is_dir() {
                pending.push(path);
            } else if kind.is_file() {
                totals.files += 1;
                totals.bytes += entry.metadata().map_err(unreadable)?.len();
                if !mask.is_empty() {
                    let file = fs::File::open(entry.path()).map_err(unreadable)?;
                    if let Some(secret) = mask.found_in_reader(file).map_err(unreadable)? {
                        return Err(OutputError::SecretInOutput {
                            secret: secret.to_owned(),
                            path: mask.mask(&display(&path)),
                        });
                    }
                }
            } else if kind.is_symlink() {
                let target = fs::read_link(entry.path()).map_err(unreadable)?;
                if let Some(secret) = mask.found_in(target.as_os_str().as_encoded_bytes()) {
                    return Err(OutputError::SecretInOutput {
                        secret: secret.to_owned(),
                        path: display(&path),
                    });
                }
                if !cairn_core::files::link_stays_inside(&path, &target) {
                    return Err(OutputError::SymlinkEscapes {
                        link: display(&path),
                        target: display(&target),
                    });
                }
            } else {
                return Err(OutputError::SpecialFile { path: display(&path) });
            }
        }
    }
    Ok(totals)
}

fn display(path: &Path) -> String {
    path.to_string_lossy().into_owned()
}

/// Bytes of regular files under `root`, and its entries of any kind;
/// unreadable parts count as nothing. Cheap enough to call while the stage
/// runs.
fn disk_usage(root: &Path) -> (u64, u64) {
    let (files, entries) = cairn_core::files::usage(root);
    (files.iter().map(|(_, size)| size).sum(), entries)
}

/// Shortest pause between two measurements while a stage runs.
const WATCH_INTERVAL: Duration = Duration::from_millis(100);

/// Measures `/out` and `/tmp` while a stage runs and resolves once either
/// holds more than `limit`; never resolves otherwise. The pause between
/// measurements grows with their cost, so a stage with many files is not
/// slowed by its own watcher.
pub(crate) async fn watch(out: PathBuf, tmp: PathBuf, limit: ByteSize, max_entries: u64) -> BoundExceeded {
    let mut interval = WATCH_INTERVAL;
    loop {
        tokio::time::sleep(interval).await;
        let (out, tmp) = (out.clone(), tmp.clone());
        let measured = tokio::task::spawn_blocking(move || {
            let started = Instant::now();
            (disk_usage(&out), disk_usage(&tmp), started.elapsed())
        })
        .await;
        let Ok(((out_bytes, out_entries), (tmp_bytes, tmp_entries), cost)) = measured else {
            continue;
        };
        for (folder, created) in [("/out", out_entries), ("/tmp", tmp_entries)] {
            if created > max_entries {
                return BoundExceeded::Entries {
                    limit: max_entries,
                    folder,
                    created,
                };
            }
        }
        if out_bytes > limit.0 {
            return BoundExceeded::Output {
                limit,
                written: ByteSize(out_bytes),
            };
        }
        if tmp_bytes > limit.0 {
            return BoundExceeded::Scratch {
                limit,
                written: ByteSize(tmp_bytes),
            };
        }
        interval = WATCH_INTERVAL.max(cost * 10);
    }
}
