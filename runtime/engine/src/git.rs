//! The little cairn reads from git: the checked-out branch, for `if`
//! conditions. Read from `.git/HEAD` directly, without running git.

use std::path::Path;

/// The branch checked out in the repository containing `dir`, or `None` when
/// there is no repository or HEAD is detached.
pub fn current_branch(dir: &Path) -> Option<String> {
    let dir = dir.canonicalize().ok()?;
    for folder in dir.ancestors() {
        let dot_git = folder.join(".git");
        let git_dir = if dot_git.is_dir() {
            dot_git
        } else if dot_git.is_file() {
            // A worktree or submodule: `.git` is a file pointing at the real one.
            let pointer = std::fs::read_to_string(&dot_git).ok()?;
            let target = pointer.trim().strip_prefix("gitdir:")?.trim();
            folder.join(target)
        } else {
            continue;
        };
        let head = std::fs::read_to_string(git_dir.join("HEAD")).ok()?;
        return head.trim().strip_prefix("ref: refs/heads/").map(str::to_owned);
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_branch_is_read_from_head() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir_all(dir.path().join(".git")).expect("mkdir");
        std::fs::create_dir_all(dir.path().join("sub/dir")).expect("mkdir");
        std::fs::write(dir.path().join(".git/HEAD"), "ref: refs/heads/release/1.2\n").expect("write");
        assert_eq!(
            current_branch(&dir.path().join("sub/dir")).as_deref(),
            Some("release/1.2")
        );
        std::fs::write(dir.path().join(".git/HEAD"), "0123456789abcdef\n").expect("write");
        assert_eq!(current_branch(dir.path()), None, "detached");
    }
}
