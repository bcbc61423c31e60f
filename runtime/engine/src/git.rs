//! The little cairn reads from git: the checked-out branch, for `if`
//! conditions and environments' branch rules, and the commit, for the
//! deployment history. Read from `.git` directly, without running git.

use std::path::Path;

/// The branch checked out in the repository containing `dir`, or `None` when
/// there is no repository or HEAD is detached.
pub fn current_branch(dir: &Path) -> Option<String> {
    let head = std::fs::read_to_string(git_dir(dir)?.join("HEAD")).ok()?;
    head.trim().strip_prefix("ref: refs/heads/").map(str::to_owned)
}

/// The commit checked out in the repository containing `dir`: HEAD's
/// target, through a loose or packed ref.
pub fn current_commit(dir: &Path) -> Option<String> {
    let git_dir = git_dir(dir)?;
    let head = std::fs::read_to_string(git_dir.join("HEAD")).ok()?;
    let Some(reference) = head.trim().strip_prefix("ref: ") else {
        return Some(head.trim().to_owned());
    };
    if let Ok(commit) = std::fs::read_to_string(git_dir.join(reference)) {
        return Some(commit.trim().to_owned());
    }
    // A worktree keeps its refs in the common folder, as does `pack-refs`.
    let common = std::fs::read_to_string(git_dir.join("commondir"))
        .map(|common| git_dir.join(common.trim()))
        .unwrap_or(git_dir);
    if let Ok(commit) = std::fs::read_to_string(common.join(reference)) {
        return Some(commit.trim().to_owned());
    }
    let packed = std::fs::read_to_string(common.join("packed-refs")).ok()?;
    packed.lines().find_map(|line| {
        let (commit, name) = line.split_once(' ')?;
        (name == reference).then(|| commit.to_owned())
    })
}

/// Where `dir` is in its repository, as a prefix for repository paths:
/// `""` at the top (or outside any repository), `"services/api/"` below it.
pub fn repository_prefix(dir: &Path) -> String {
    let Ok(dir) = dir.canonicalize() else {
        return String::new();
    };
    let Some(top) = dir.ancestors().find(|folder| folder.join(".git").exists()) else {
        return String::new();
    };
    match dir.strip_prefix(top) {
        Ok(relative) if !relative.as_os_str().is_empty() => format!("{}/", relative.display()),
        _ => String::new(),
    }
}

/// The `.git` folder of the repository containing `dir`.
fn git_dir(dir: &Path) -> Option<std::path::PathBuf> {
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
        return Some(git_dir);
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
        std::fs::create_dir_all(dir.path().join(".git/refs/heads/release")).expect("mkdir");
        std::fs::write(dir.path().join(".git/refs/heads/release/1.2"), "abc123\n").expect("write");
        assert_eq!(current_commit(dir.path()).as_deref(), Some("abc123"));
        std::fs::remove_file(dir.path().join(".git/refs/heads/release/1.2")).expect("rm");
        std::fs::write(
            dir.path().join(".git/packed-refs"),
            "# pack-refs\ndef456 refs/heads/release/1.2\n",
        )
        .expect("write");
        assert_eq!(current_commit(dir.path()).as_deref(), Some("def456"), "packed");
        std::fs::write(dir.path().join(".git/HEAD"), "0123456789abcdef\n").expect("write");
        assert_eq!(current_branch(dir.path()), None, "detached");
        assert_eq!(current_commit(dir.path()).as_deref(), Some("0123456789abcdef"));
    }
}
