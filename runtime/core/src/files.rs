//! Walking folders without following links, for the places that need every
//! regular file under a folder and nothing more (measuring, maintenance).

use std::fs;
use std::path::{Component, Path, PathBuf};

/// Every regular file under `root` with its size. Links are not followed and
/// unreadable folders are skipped: callers use this to measure or clean up,
/// where a partial answer beats none.
pub fn regular_files(root: &Path) -> Vec<(PathBuf, u64)> {
    usage(root).0
}

/// The regular files under `root` with their sizes (as [`regular_files`]),
/// and how many entries of any kind (files, folders, links, others) it
/// holds below it; unreadable parts count as nothing.
pub fn usage(root: &Path) -> (Vec<(PathBuf, u64)>, u64) {
    let mut entries_seen = 0;
    let mut files = Vec::new();
    let mut pending = vec![root.to_path_buf()];
    while let Some(dir) = pending.pop() {
        let Ok(entries) = fs::read_dir(&dir) else { continue };
        for entry in entries.flatten() {
            entries_seen += 1;
            match entry.file_type() {
                Ok(kind) if kind.is_dir() => pending.push(entry.path()),
                Ok(kind) if kind.is_file() => {
                    let size = entry.metadata().map_or(0, |metadata| metadata.len());
                    files.push((entry.path(), size));
                }
                _ => {}
            }
        }
    }
    (files, entries_seen)
}

/// Whether a symbolic link at `link` (relative to a root: `/out`, the
/// workspace) pointing at `target` resolves inside the root, judged on the
/// text alone, so the host never has to follow it to know.
///
/// `..` is accepted only at the start of the target: after a name, it would
/// climb out of whatever that name resolves to, and if the name is itself a
/// link (checked separately, but pointing elsewhere) the text no longer says
/// where the path ends up.
pub fn link_stays_inside(link: &Path, target: &Path) -> bool {
    let mut depth: usize = link.parent().map_or(0, |parent| parent.components().count());
    let mut descended = false;
    for component in target.components() {
        match component {
            Component::Normal(_) => {
                depth += 1;
                descended = true;
            }
            Component::CurDir => {}
            Component::ParentDir if descended => return false,
            Component::ParentDir => match depth.checked_sub(1) {
                Some(up) => depth = up,
                None => return false,
            },
            Component::RootDir | Component::Prefix(_) => return false,
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn links_are_judged_by_where_they_resolve() {
        assert!(link_stays_inside(Path::new("a"), Path::new("b")));
        assert!(link_stays_inside(Path::new("dir/a"), Path::new("../b")));
        assert!(link_stays_inside(Path::new("dir/deeper/a"), Path::new("../../b/c")));
        // `sub` could be a link to `..`: a climb after a name is refused.
        assert!(!link_stays_inside(Path::new("dir/a"), Path::new("sub/../b")));
        assert!(!link_stays_inside(Path::new("a"), Path::new("../etc/passwd")));
        assert!(!link_stays_inside(Path::new("dir/a"), Path::new("../../x")));
        assert!(!link_stays_inside(Path::new("a"), Path::new("/etc/passwd")));
        assert!(!link_stays_inside(Path::new("a"), Path::new("/out/b")));
    }
}
