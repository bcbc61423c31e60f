//! What tells a file changed without reading it: its stamp, and how recent
//! a change must be for the stamp not to be trusted yet.
//!
//! The workspace walk remembers input digests by stamp, and the compiled
//! cache remembers that an entry was checked by stamp: both rest on the same
//! rule, so it lives here.

use std::os::unix::fs::MetadataExt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rustix::fs::{Statx, StatxTimestamp};
use serde::{Deserialize, Serialize};

/// What identifies a file's state without reading it: if none of these
/// changed, neither did its contents (the rule git's index uses). The change
/// time is included because tools can set the modification time back.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Stamp {
    /// Size in bytes.
    pub size: u64,
    /// Modification time, in nanoseconds since the epoch.
    pub modified: i64,
    /// Status change time, in nanoseconds since the epoch.
    pub changed: i64,
    /// Inode number.
    pub inode: u64,
    /// Permission bits and file type.
    pub mode: u32,
}

impl Stamp {
    /// The stamp of `metadata`.
    pub fn of(metadata: &std::fs::Metadata) -> Self {
        Self {
            size: metadata.len(),
            modified: metadata.mtime() * 1_000_000_000 + metadata.mtime_nsec(),
            changed: metadata.ctime() * 1_000_000_000 + metadata.ctime_nsec(),
            inode: metadata.ino(),
            mode: metadata.mode(),
        }
    }

    /// The stamp of what `statx` said (asked for at least the basic stats):
    /// the same as [`Stamp::of`] for the same file.
    pub fn of_statx(status: &Statx) -> Self {
        let nanoseconds = |time: &StatxTimestamp| time.tv_sec * 1_000_000_000 + i64::from(time.tv_nsec);
        Self {
            size: status.stx_size,
            modified: nanoseconds(&status.stx_mtime),
            changed: nanoseconds(&status.stx_ctime),
            inode: status.stx_ino,
            mode: u32::from(status.stx_mode),
        }
    }

    /// Whether the thing was last changed before `racy_after` (see
    /// [`racy_after`]), so that any later change shows in its stamp.
    pub fn settled(&self, racy_after: i64) -> bool {
        self.modified < racy_after && self.changed < racy_after
    }

    /// Whether the executable bit is set.
    pub fn executable(&self) -> bool {
        self.mode & 0o111 != 0
    }

    /// Whether it is a symbolic link (stamps never follow links).
    pub fn is_symlink(&self) -> bool {
        self.mode & 0o170_000 == 0o120_000
    }

    /// Whether it is a regular file.
    pub fn is_regular(&self) -> bool {
        self.mode & 0o170_000 == 0o100_000
    }
}

/// A file or folder changed this recently may change again within the same
/// clock tick without its stamp changing ("racily clean", in git's words):
/// what is known of it is used, but not remembered by its stamp.
pub const RACY_WINDOW: Duration = Duration::from_secs(2);

/// The time before which a stamp can be trusted, in nanoseconds since the
/// epoch: [`RACY_WINDOW`] ago.
pub fn racy_after() -> i64 {
    SystemTime::now()
        .checked_sub(RACY_WINDOW)
        .and_then(|time| time.duration_since(UNIX_EPOCH).ok())
        .map_or(i64::MAX, |since| i64::try_from(since.as_nanos()).unwrap_or(i64::MAX))
}
