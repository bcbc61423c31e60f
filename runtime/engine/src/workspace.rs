//! The workspace: the files a pipeline's `inputs` globs choose from.
//!
//! The workspace is walked once per run, honouring the `.gitignore` and
//! `.ignore` files inside it (but not the user's global git settings, which
//! differ between machines and would make a stage see different files on a
//! laptop and in CI). `.git/` and cairn's own `cairn-out/` are never inputs.
//! Each file comes with its [`Stamp`], so a file whose stamp has not changed
//! since it was last hashed is not read again.

use std::path::{Path, PathBuf};

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError, RwLock};

use std::borrow::Cow;
use std::mem::MaybeUninit;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use globset::{Glob, GlobBuilder};
use ignore::Match;
use ignore::gitignore::Gitignore;
use rayon::iter::{IntoParallelIterator, IntoParallelRefIterator, ParallelIterator};
use rustix::fs::{AtFlags, FileType, Mode, OFlags, RawDir, StatxFlags};
use serde::{Deserialize, Serialize};

pub use cairn_core::stamp::{RACY_WINDOW, Stamp, racy_after};

/// The folder cairn publishes stage outputs to, inside the workspace.
pub const OUTPUT_FOLDER: &str = "cairn-out";

/// A failure to read the workspace.
#[derive(Debug, thiserror::Error)]
pub enum WorkspaceError {
    /// The walk hit an unreadable entry.
    #[error("cannot read the workspace at `{path}`: {message}")]
    Walk {
        /// Where.
        path: PathBuf,
        /// What went wrong.
        message: String,
    },
    /// An input file cannot be read (hashed, or copied into the store).
    #[error("cannot read the input `{path}` in the workspace: {message}")]
    Read {
        /// The file, relative to the workspace root.
        path: String,
        /// What went wrong.
        message: String,
    },
    /// A glob does not parse (the pipeline checker reports these first).
    #[error("`{glob}` is not a valid glob: {message}")]
    Glob {
        /// The glob.
        glob: String,
        /// What is wrong with it.
        message: String,
    },
}

/// One workspace file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WorkspaceFile {
    /// `/`-separated path relative to the workspace root.
    pub path: String,
    /// Its state when the workspace was walked.
    pub stamp: Stamp,
}

/// A folder's entries as a walk read them, with the folder's stamp then:
/// while the folder's stamp is unchanged (no entry was added, removed or
/// renamed), so are its entries, and the next walk need not list it again.
/// Reading a folder costs the kernel far more than a `stat` (ext4 sorts
/// every folder's entries by hash on each read).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Listing<'a> {
    /// The folder, relative to the workspace root (`` for the root).
    #[serde(borrow)]
    pub path: Cow<'a, str>,
    /// The folder's stamp when listed.
    pub stamp: Stamp,
    /// The entries' names, each ended by `\0` (which no name holds), a
    /// folder's with `/` before it: one string to keep and to read back
    /// rather than one per entry.
    #[serde(borrow)]
    pub entries: Cow<'a, str>,
}

impl Listing<'_> {
    /// Each entry's name and whether it is a folder.
    pub fn entries(&self) -> impl Iterator<Item = (&str, bool)> {
        self.entries
            .split_terminator('\0')
            .map(|entry| match entry.strip_suffix('/') {
                Some(folder) => (folder, true),
                None => (entry, false),
            })
    }
}

/// What a walk listed afresh and which remembered listings it reused:
/// together, what the next walk should remember.
#[derive(Debug, Default)]
pub struct Listed {
    /// Folders read from disk this time (those not modified too recently to
    /// trust their stamp), in no order.
    pub fresh: Vec<Listing<'static>>,
    /// Indices of the remembered listings that were still right.
    pub reused: Vec<usize>,
}

impl Listed {
    /// Whether the listings to remember differ from `remembered`.
    pub fn changed(&self, remembered: &[Listing<'_>]) -> bool {
        !self.fresh.is_empty() || self.reused.len() != remembered.len()
    }

    /// The listings to remember for the next walk, sorted by folder.
    pub fn merge<'a>(&'a self, remembered: &'a [Listing<'a>]) -> Vec<&'a Listing<'a>> {
        let mut all: Vec<&Listing<'_>> = self.reused.iter().map(|&index| &remembered[index]).collect();
        all.extend(self.fresh.iter());
        all.sort_unstable_by(|left, right| left.path.cmp(&right.path));
        all
    }
}

/// The files of a workspace, sorted by path.
#[derive(Debug)]
pub struct Workspace {
    root: PathBuf,
    /// The root, open: every file is opened beneath it.
    root_fd: OwnedFd,
    files: Vec<WorkspaceFile>,
    /// FIFOs, sockets and devices the walk met, sorted: never inputs.
    special: Vec<String>,
    /// The indices of the files that are symbolic links.
    links: Vec<usize>,
    /// Read by every stage at once, written when a glob is first matched.
    memo: RwLock<HashMap<String, Arc<Vec<usize>>>>,
}

impl Workspace {
    /// Walks `root` for the files `globs` can select, stating each once
    /// (relative to the open root, so the kernel does not resolve the
    /// whole path each time), folders in parallel. A folder no glob can
    /// reach is not listed at all, since a glob only selects files under
    /// its literal prefix (`docs/**` never needs `target/`); `**` reaches
    /// everything. `.gitignore` and `.ignore` files apply as git applies
    /// them, including those of the folders above `root` up to the
    /// repository's top, which every checkout of the repository has too.
    /// Once walked, the workspace matches each of `globs`, on all cores, so
    /// that a thousand stages looking theirs up find the answer ready.
    pub fn scan(root: &Path, globs: &[&str]) -> Result<Self, WorkspaceError> {
        Self::scan_remembering(root, globs, &[]).map(|(workspace, _)| workspace)
    }

    /// [`scan`](Self::scan), trusting `remembered` listings (sorted by
    /// folder) of folders whose stamp is unchanged instead of reading them,
    /// and saying what to remember for the next walk.
    pub fn scan_remembering(
        root: &Path,
        globs: &[&str],
        remembered: &[Listing<'_>],
    ) -> Result<(Self, Listed), WorkspaceError> {
        // Ignore files match absolute paths, so walk the absolute root.
        let root = &root.canonicalize().map_err(|error| WorkspaceError::Walk {
            path: root.to_owned(),
            message: error.to_string(),
        })?;
        let ignores = parent_ignores(root);
        let root_fd = open_folder(root).map_err(|error| WorkspaceError::Walk {
            path: root.to_owned(),
            message: error.to_string(),
        })?;
        let reach = Reach::new(globs);
        // One slot per thread of the pool, and one for the calling thread.
        let found: Vec<Mutex<Found>> = (0..=rayon::current_num_threads()).map(|_| Mutex::default()).collect();
        let failure = Mutex::new(None);
        let walk = Walk {
            root,
            root_fd: root_fd.as_fd(),
            reach: &reach,
            remembered,
            racy_after: racy_after(),
            found: &found,
            failure: &failure,
        };
        let inside = reach.inside("");
        walk_folder(walk, String::new(), inside, ignores);
        if let Some(error) = failure.into_inner().unwrap_or_else(PoisonError::into_inner) {
            return Err(error);
        }
        let mut folders = Vec::new();
        let mut special = Vec::new();
        let mut listed = Listed::default();
        for found in found {
            let found = found.into_inner().unwrap_or_else(PoisonError::into_inner);
            folders.extend(found.folders);
            special.extend(found.special);
            listed.fresh.extend(found.listed.fresh);
            listed.reused.extend(found.listed.reused);
        }
        // Each folder's files are sorted: in folder order they are sorted
        // runs (wholly sorted unless a folder has files after a sub-folder's
        // name), which a run-adaptive sort merges in about one pass.
        folders.sort_unstable_by(|left: &(String, Vec<WorkspaceFile>), right| left.0.cmp(&right.0));
        let mut files = Vec::with_capacity(folders.iter().map(|(_, files)| files.len()).sum());
        for (_, found) in folders {
            files.extend(found);
        }
        files.sort_by(|left: &WorkspaceFile, right| left.path.cmp(&right.path));
        special.sort();
        let links = files
            .iter()
            .enumerate()
            .filter(|(_, file)| file.stamp.is_symlink())
            .map(|(index, _)| index)
            .collect();
        let workspace = Self {
            root: root.to_owned(),
            root_fd,
            files,
            special,
            links,
            memo: RwLock::new(HashMap::new()),
        };
        // Each stage looks its globs up as it is selected and as it runs.
        workspace.match_all(globs);
        Ok((workspace, listed))
    }

    /// The workspace root.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Every file, sorted by path.
    pub fn files(&self) -> &[WorkspaceFile] {
        &self.files
    }

    /// The FIFOs, sockets and devices among the paths `glob` matches: they
    /// are never inputs (reading a FIFO waits for a writer forever), and a
    /// run says so.
    pub fn special_matches(&self, glob: &str) -> Result<Vec<&str>, WorkspaceError> {
        if self.special.is_empty() {
            return Ok(Vec::new());
        }
        let matcher = compile(glob)?.compile_matcher();
        Ok(self
            .special
            .iter()
            .filter(|path| matcher.is_match(path.as_str()))
            .map(String::as_str)
            .collect())
    }

    /// The symbolic links among the files `glob` selects: what a run checks
    /// for links leading out of the workspace. Nothing to do, and no
    /// selection copied, in the usual workspace without links.
    pub fn links_matching(&self, glob: &str) -> Result<Vec<&WorkspaceFile>, WorkspaceError> {
        if self.links.is_empty() {
            return Ok(Vec::new());
        }
        let selected = self.matching(glob)?;
        Ok(self
            .links
            .iter()
            .filter(|index| selected.binary_search(index).is_ok())
            .map(|&index| &self.files[index])
            .collect())
    }

    /// Opens the workspace file at `relative` for reading, by construction
    /// never outside the workspace: resolved beneath the open root with no
    /// symbolic link followed on the way (`openat2` with `RESOLVE_BENEATH`
    /// and `RESOLVE_NO_SYMLINKS`, or one folder at a time where the kernel
    /// lacks it), without waiting on a FIFO, and only if it is a regular
    /// file. A folder swapped for a link after the walk cannot redirect it.
    pub fn open_input(&self, relative: &str) -> std::io::Result<std::fs::File> {
        let flags = OFlags::RDONLY | OFlags::NONBLOCK | OFlags::NOFOLLOW | OFlags::CLOEXEC;
        let file = std::fs::File::from(self.open_beneath(relative, flags)?);
        if file.metadata()?.is_file() {
            Ok(file)
        } else {
            Err(std::io::Error::other("not a regular file"))
        }
    }

    /// Where the symbolic link `file` points, as written.
    /// Read from its folder, opened beneath the root as [`open_input`]
    /// opens files, so a folder swapped for a link cannot make it read a
    /// link elsewhere.
    ///
    /// [`open_input`]: Self::open_input
    pub fn link_target(&self, file: &WorkspaceFile) -> std::io::Result<String> {
        let (folder, name) = match file.path.rsplit_once('/') {
            Some((folder, name)) => (
                Some(self.open_beneath(folder, DIRECTORY_FLAGS | OFlags::NOFOLLOW)?),
                name,
            ),
            None => (None, file.path.as_str()),
        };
        let at = folder.as_ref().map_or(self.root_fd.as_fd(), |folder| folder.as_fd());
        let target = rustix::fs::readlinkat(at, name, Vec::new())?;
        target
            .into_string()
            .map_err(|_| std::io::Error::other("the link's target is not UTF-8"))
    }

    /// `relative` opened with `flags` beneath the root, no link followed
    /// on the way: `openat2` where the kernel has it, one folder at a time
    /// where it does not.
    fn open_beneath(&self, relative: &str, flags: OFlags) -> std::io::Result<OwnedFd> {
        let resolve = rustix::fs::ResolveFlags::BENEATH | rustix::fs::ResolveFlags::NO_SYMLINKS;
        match rustix::fs::openat2(&self.root_fd, relative, flags, Mode::empty(), resolve) {
            Err(rustix::io::Errno::NOSYS) => open_one_folder_at_a_time(self.root_fd.as_fd(), relative, flags),
            other => Ok(other?),
        }
    }

    /// The files `globs` select, sorted. `*` stays within a folder and `**`
    /// crosses folders, as in `.gitignore`: `*.toml` is the top level only,
    /// `**/*.toml` is everywhere.
    pub fn select(&self, globs: &[&str]) -> Result<Vec<&WorkspaceFile>, WorkspaceError> {
        Ok(self
            .select_indices(globs)?
            .into_iter()
            .map(|index| &self.files[index])
            .collect())
    }

    /// [`select`](Self::select), as indices into [`files`](Self::files).
    pub fn select_indices(&self, globs: &[&str]) -> Result<Vec<usize>, WorkspaceError> {
        if let [glob] = globs {
            return Ok(self.matching(glob)?.to_vec());
        }
        let mut selected: Vec<usize> = Vec::new();
        for glob in globs {
            selected.extend(self.matching(glob)?.iter().copied());
        }
        selected.sort_unstable();
        selected.dedup();
        Ok(selected)
    }

    /// Whether `glob` selects at least one file.
    pub fn matches_anything(&self, glob: &str) -> Result<bool, WorkspaceError> {
        Ok(!self.matching(glob)?.is_empty())
    }

    /// The indices of the files `glob` selects, computed once per glob per
    /// run (matrix entries and many stages share globs). Only the files under
    /// the glob's literal prefix are looked at, and the common shapes (an
    /// exact path, `folder/**`) need no pattern matching at all, so a
    /// thousand stages with narrow globs cost little more than one.
    fn matching(&self, glob: &str) -> Result<Arc<Vec<usize>>, WorkspaceError> {
        if let Some(found) = self.memo.read().unwrap_or_else(PoisonError::into_inner).get(glob) {
            return Ok(Arc::clone(found));
        }
        let found = Arc::new(self.find(glob)?);
        self.memo
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(glob.to_owned(), Arc::clone(&found));
        Ok(found)
    }

    /// Matches every glob of `globs` not matched yet, on all cores, so that
    /// later lookups of them find the answer at once. A glob that does not
    /// parse is left for those lookups to report.
    fn match_all(&self, globs: &[&str]) {
        let missing: Vec<&str> = {
            let memo = self.memo.read().unwrap_or_else(PoisonError::into_inner);
            globs
                .iter()
                .filter(|glob| !memo.contains_key(**glob))
                .copied()
                .collect()
        };
        let found: Vec<(String, Arc<Vec<usize>>)> = missing
            .par_iter()
            .filter_map(|glob| Some(((*glob).to_owned(), Arc::new(self.find(glob).ok()?))))
            .collect();
        self.memo.write().unwrap_or_else(PoisonError::into_inner).extend(found);
    }

    /// The indices of the files `glob` selects, looked for.
    fn find(&self, glob: &str) -> Result<Vec<usize>, WorkspaceError> {
        let prefix = literal_prefix(glob);
        let range = self.range_under(prefix);
        Ok(if prefix == glob {
            range.filter(|&index| self.files[index].path == glob).collect()
        } else if glob
            .strip_suffix("**")
            .is_some_and(|rest| rest == prefix && rest.ends_with('/'))
        {
            range.collect()
        } else {
            let matcher = compile(glob)?.compile_matcher();
            range
                .filter(|&index| matcher.is_match(&self.files[index].path))
                .collect()
        })
    }

    /// The indices of the files whose path starts with `prefix`.
    fn range_under(&self, prefix: &str) -> std::ops::Range<usize> {
        let start = self.files.partition_point(|file| file.path.as_str() < prefix);
        let end = start + self.files[start..].partition_point(|file| file.path.starts_with(prefix));
        start..end
    }
}

/// The ignore files in force in a folder, innermost last.
type Ignores = Arc<Vec<Gitignore>>;

/// How folders are opened: to read them or to resolve paths from them.
const DIRECTORY_FLAGS: OFlags = OFlags::RDONLY.union(OFlags::DIRECTORY).union(OFlags::CLOEXEC);

/// Opens the folder at `path`, to read it or to resolve paths from it.
pub fn open_folder(path: &Path) -> std::io::Result<OwnedFd> {
    Ok(rustix::fs::open(path, DIRECTORY_FLAGS, Mode::empty())?)
}

/// `relative` opened from `root` one `/`-separated name at a time, none of
/// them followed if it is a link: what `openat2`'s `RESOLVE_BENEATH` and
/// `RESOLVE_NO_SYMLINKS` do, for kernels without it.
fn open_one_folder_at_a_time(root: BorrowedFd<'_>, relative: &str, flags: OFlags) -> std::io::Result<OwnedFd> {
    let mut names = relative.split('/').peekable();
    let mut folder: Option<OwnedFd> = None;
    while let Some(name) = names.next() {
        if name.is_empty() || name == "." || name == ".." {
            return Err(std::io::Error::other("not a path beneath the workspace"));
        }
        let at = folder.as_ref().map_or(root, |folder| folder.as_fd());
        if names.peek().is_none() {
            return Ok(rustix::fs::openat(at, name, flags, Mode::empty())?);
        }
        folder = Some(rustix::fs::openat(
            at,
            name,
            DIRECTORY_FLAGS | OFlags::NOFOLLOW,
            Mode::empty(),
        )?);
    }
    Err(std::io::Error::other("an empty path"))
}

/// The stamp of `relative` to the open folder `folder` (the folder itself
/// when empty), not following a final link.
pub fn stamp_at(folder: BorrowedFd<'_>, relative: &str) -> std::io::Result<Stamp> {
    let flags = if relative.is_empty() {
        AtFlags::EMPTY_PATH
    } else {
        AtFlags::SYMLINK_NOFOLLOW
    };
    let status = rustix::fs::statx(folder, relative, flags, StatxFlags::BASIC_STATS)?;
    Ok(Stamp::of_statx(&status))
}

/// What every folder of one walk shares.
#[derive(Clone, Copy)]
struct Walk<'scope> {
    root: &'scope Path,
    /// The root, open.
    root_fd: BorrowedFd<'scope>,
    reach: &'scope Reach,
    /// Listings from the last walk, sorted by folder.
    remembered: &'scope [Listing<'scope>],
    /// A folder stamped after this (nanoseconds since the epoch) may change
    /// again within the same clock tick: its listing is not remembered.
    racy_after: i64,
    /// What each walking thread found, by thread: never contended.
    found: &'scope [Mutex<Found>],
    failure: &'scope Mutex<Option<WorkspaceError>>,
}

/// What one thread of a walk found.
#[derive(Default)]
struct Found {
    /// Each folder's files, sorted, by folder.
    folders: Vec<(String, Vec<WorkspaceFile>)>,
    /// FIFOs, sockets and devices some glob reached: never inputs.
    special: Vec<String>,
    listed: Listed,
}

impl Walk<'_> {
    /// This thread's findings.
    fn found(&self) -> std::sync::MutexGuard<'_, Found> {
        let last = self.found.len().saturating_sub(1);
        let slot = rayon::current_thread_index().map_or(last, |index| index.min(last));
        self.found[slot].lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Lists one folder: files within reach are stated and kept, sub-folders
/// within reach walked in parallel (split among the pool's threads as they
/// come free, not one task each), ignored entries skipped. `inside` says
/// the folder is under some glob's literal prefix (so all of it is in reach).
/// Entries are read straight from the kernel's buffer and stated relative to
/// the open root: no allocation or path lookup for what is not kept.
fn walk_folder(walk: Walk<'_>, relative: String, inside: bool, mut ignores: Ignores) {
    let folder = walk.root.join(&relative);
    let fail = |error: std::io::Error, path: &Path| {
        walk.failure
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get_or_insert(WorkspaceError::Walk {
                path: path.to_owned(),
                message: error.to_string(),
            });
    };
    // Paths are resolved from the open root, which the kernel has already
    // resolved; the folder itself is opened only when it must be read.
    let stamp = match stamp_at(walk.root_fd, &relative) {
        Ok(stamp) => stamp,
        Err(error) => return fail(error, &folder),
    };
    let remembered = walk
        .remembered
        .binary_search_by(|listing| listing.path.as_ref().cmp(relative.as_str()))
        .ok()
        .filter(|&index| walk.remembered[index].stamp == stamp);
    let fresh = match remembered {
        Some(_) => None,
        None => {
            let read = if relative.is_empty() {
                read_listing(walk.root_fd, &relative, stamp)
            } else {
                rustix::fs::openat(walk.root_fd, relative.as_str(), DIRECTORY_FLAGS, Mode::empty())
                    .map_err(std::io::Error::from)
                    .and_then(|directory| read_listing(directory.as_fd(), &relative, stamp))
            };
            match read {
                Ok(listing) => Some(listing),
                Err(error) => return fail(error, &folder),
            }
        }
    };
    let listing = match (&fresh, remembered) {
        (Some(fresh), _) => fresh,
        (None, Some(index)) => &walk.remembered[index],
        (None, None) => return,
    };
    for (name, _) in listing.entries() {
        if name == ".gitignore" || name == ".ignore" {
            let ignore = Gitignore::new(folder.join(name)).0;
            if !ignore.is_empty() {
                let mut all = (*ignores).clone();
                all.push(ignore);
                ignores = Arc::new(all);
            }
        }
    }
    let mut files = Vec::new();
    let mut special = Vec::new();
    let mut subfolders = Vec::new();
    for (name, is_dir) in listing.entries() {
        if name == ".git" || (relative.is_empty() && name == OUTPUT_FOLDER) {
            continue;
        }
        let mut path = String::with_capacity(relative.len() + name.len() + 2);
        if !relative.is_empty() {
            path.push_str(&relative);
            path.push('/');
        }
        path.push_str(name);
        let within = if is_dir {
            path.push('/');
            let within = inside || walk.reach.inside(&path);
            if !within && !walk.reach.leads_into(&path) {
                continue;
            }
            path.pop();
            within
        } else {
            if !inside && !walk.reach.names(&path) {
                continue;
            }
            true
        };
        if !ignores.is_empty() && ignored(&ignores, &folder.join(name), is_dir) {
            continue;
        }
        if is_dir {
            subfolders.push((path, within));
            continue;
        }
        match stamp_at(walk.root_fd, &path) {
            // Symbolic links are inputs as links (data, never followed);
            // FIFOs, sockets and devices are not inputs at all: opening a
            // FIFO would wait for a writer forever.
            Ok(stamp) if stamp.is_regular() || stamp.is_symlink() => files.push(WorkspaceFile { path, stamp }),
            Ok(_) => special.push(path),
            Err(error) => fail(error, &folder.join(name)),
        }
    }
    files.sort_unstable_by(|left: &WorkspaceFile, right| left.path.cmp(&right.path));
    {
        let mut found = walk.found();
        match (remembered, fresh) {
            (Some(index), _) => found.listed.reused.push(index),
            (None, Some(listing)) if stamp.settled(walk.racy_after) => found.listed.fresh.push(listing),
            _ => {}
        }
        if !files.is_empty() {
            found.folders.push((relative, files));
        }
        found.special.append(&mut special);
    }
    subfolders
        .into_par_iter()
        .for_each(|(path, within)| walk_folder(walk, path, within, Arc::clone(&ignores)));
}

/// The listing of `directory` (`relative` to the root, with `stamp`), read
/// straight from the kernel's buffer, `.` and `..` left out; so are names
/// that are not UTF-8, since no glob can match them and no tree can name
/// them (they are invisible to every stage).
fn read_listing(directory: BorrowedFd<'_>, relative: &str, stamp: Stamp) -> std::io::Result<Listing<'static>> {
    let mut buffer = [MaybeUninit::<u8>::uninit(); 16 * 1024];
    let mut reader = RawDir::new(directory, &mut buffer);
    let mut entries = String::new();
    while let Some(entry) = reader.next() {
        let entry = entry?;
        let name = entry.file_name().to_bytes();
        if matches!(name, b"." | b"..") {
            continue;
        }
        let Ok(name) = std::str::from_utf8(name) else { continue };
        let mut kind = entry.file_type();
        if kind == FileType::Unknown {
            // Some file systems do not say in the listing.
            let status = rustix::fs::statx(directory, name, AtFlags::SYMLINK_NOFOLLOW, StatxFlags::TYPE)?;
            kind = FileType::from_raw_mode(status.stx_mode.into());
        }
        entries.push_str(name);
        if kind == FileType::Directory {
            entries.push('/');
        }
        entries.push('\0');
    }
    Ok(Listing {
        path: Cow::Owned(relative.to_owned()),
        stamp,
        entries: Cow::Owned(entries),
    })
}

/// Which paths some glob can select: every glob selects only files under its
/// literal prefix (or, without a wildcard, the one path it names).
struct Reach {
    /// Folder prefixes (`docs/`, or `` for everything), sorted.
    folders: Vec<String>,
    /// Exact paths, sorted.
    paths: Vec<String>,
}

impl Reach {
    fn new(globs: &[&str]) -> Self {
        let (mut folders, mut paths) = (Vec::new(), Vec::new());
        for glob in globs {
            let prefix = literal_prefix(glob);
            if prefix == *glob {
                paths.push(prefix.to_owned());
            } else {
                folders.push(prefix.to_owned());
            }
        }
        for list in [&mut folders, &mut paths] {
            list.sort_unstable();
            list.dedup();
        }
        Self { folders, paths }
    }

    /// Whether everything under `folder` (`a/b/`, or `` for the root) is in
    /// reach: the folder or one of its parents is a glob's prefix.
    fn inside(&self, folder: &str) -> bool {
        let ancestors = std::iter::once(0).chain(folder.match_indices('/').map(|(at, _)| at + 1));
        ancestors.map(|end| &folder[..end]).any(|ancestor| {
            self.folders
                .binary_search_by(|prefix| prefix.as_str().cmp(ancestor))
                .is_ok()
        })
    }

    /// Whether some prefix or exact path lies under `folder` (`a/b/`).
    fn leads_into(&self, folder: &str) -> bool {
        [&self.folders, &self.paths].into_iter().any(|list| {
            let at = list.partition_point(|prefix| prefix.as_str() < folder);
            list.get(at).is_some_and(|prefix| prefix.starts_with(folder))
        })
    }

    /// Whether a glob names `path` exactly.
    fn names(&self, path: &str) -> bool {
        self.paths.binary_search_by(|exact| exact.as_str().cmp(path)).is_ok()
    }
}

/// Whether the innermost ignore file with an opinion ignores `path`.
fn ignored(ignores: &[Gitignore], path: &Path, is_dir: bool) -> bool {
    for ignore in ignores.iter().rev() {
        match ignore.matched(path, is_dir) {
            Match::Ignore(_) => return true,
            Match::Whitelist(_) => return false,
            Match::None => {}
        }
    }
    false
}

/// The ignore files of the folders above `root`, up to the one holding `.git`.
fn parent_ignores(root: &Path) -> Ignores {
    let mut ignores = Vec::new();
    if root.join(".git").exists() {
        return Arc::new(ignores);
    }
    for folder in root.ancestors().skip(1) {
        for name in [".gitignore", ".ignore"] {
            let path = folder.join(name);
            if path.is_file() {
                ignores.push(Gitignore::new(&path).0);
            }
        }
        if folder.join(".git").exists() {
            ignores.reverse();
            return Arc::new(ignores);
        }
    }
    // Not in a repository: only the workspace's own ignore files count.
    Arc::new(Vec::new())
}

/// The part of a glob before its first wildcard, cut back to a whole folder
/// (`docs/api/*.md` → `docs/api/`, `*.md` → ``).
fn literal_prefix(glob: &str) -> &str {
    let wild = glob.find(['*', '?', '[', '{', '\\']).unwrap_or(glob.len());
    if wild == glob.len() {
        return glob;
    }
    match glob[..wild].rfind('/') {
        Some(slash) => &glob[..=slash],
        None => "",
    }
}

fn compile(glob: &str) -> Result<Glob, WorkspaceError> {
    GlobBuilder::new(glob)
        .literal_separator(true)
        .build()
        .map_err(|error| WorkspaceError::Glob {
            glob: glob.to_owned(),
            message: error.kind().to_string(),
        })
}

#[cfg(test)]
mod tests {
    use std::fs;
    use std::time::{Duration, SystemTime};

    use super::*;

    fn workspace(files: &[&str]) -> tempfile::TempDir {
        let dir = tempfile::tempdir().expect("tempdir");
        for file in files {
            let path = dir.path().join(file);
            fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
            fs::write(path, file).expect("write");
        }
        dir
    }

    fn paths<'a>(files: &[&'a WorkspaceFile]) -> Vec<&'a str> {
        files.iter().map(|file| file.path.as_str()).collect()
    }

    #[test]
    fn globs_select_like_gitignore_and_ignored_files_are_invisible() {
        let dir = workspace(&[
            "Cargo.toml",
            "crates/a/Cargo.toml",
            "src/main.rs",
            ".gitignore",
            "target/debug/junk.toml",
            "cairn-out/lint/report.toml",
            ".git/config.toml",
            ".github/ci.toml",
        ]);
        fs::write(dir.path().join(".gitignore"), "target/\n").expect("write");
        let workspace = Workspace::scan(dir.path(), &["**"]).expect("scan");
        assert_eq!(paths(&workspace.select(&["*.toml"]).expect("valid")), ["Cargo.toml"]);
        assert_eq!(
            paths(&workspace.select(&["**/*.toml"]).expect("valid")),
            [".github/ci.toml", "Cargo.toml", "crates/a/Cargo.toml"]
        );
        assert_eq!(
            paths(&workspace.select(&["crates/**", "src/main.rs"]).expect("valid")),
            ["crates/a/Cargo.toml", "src/main.rs"]
        );
        assert!(workspace.matches_anything("src/**").expect("valid"));
        assert!(!workspace.matches_anything("docs/**").expect("valid"));
    }

    #[test]
    fn files_come_out_sorted_by_path_whatever_folder_they_were_found_in() {
        // `a/b/x.txt` sorts before `a/c.txt` though `a/b/` is walked apart
        // from `a/`, and `a.txt` before both.
        let dir = workspace(&["a/c.txt", "a/b/x.txt", "a/b/y/z.txt", "a.txt", "a-b.txt", "b/a.txt"]);
        let workspace = Workspace::scan(dir.path(), &["**"]).expect("scan");
        let found: Vec<&str> = workspace.files().iter().map(|file| file.path.as_str()).collect();
        assert_eq!(
            found,
            ["a-b.txt", "a.txt", "a/b/x.txt", "a/b/y/z.txt", "a/c.txt", "b/a.txt"]
        );
    }

    #[test]
    fn globs_matched_ahead_agree_with_globs_matched_on_demand() {
        let dir = workspace(&["src/a.rs", "src/b/c.rs", "docs/x.md"]);
        let globs = ["src/**", "**/*.rs", "docs/x.md", "nothing/**", "[", "*.md"];
        let ahead = Workspace::scan(dir.path(), &globs).expect("scan");
        let on_demand = Workspace::scan(dir.path(), &["**"]).expect("scan");
        for glob in globs {
            match (ahead.select(&[glob]), on_demand.select(&[glob])) {
                (Ok(ahead), Ok(on_demand)) => assert_eq!(paths(&ahead), paths(&on_demand), "{glob}"),
                (Err(_), Err(_)) => {}
                (ahead, on_demand) => panic!("{glob}: {ahead:?} against {on_demand:?}"),
            }
        }
        assert!(
            ahead.select(&["["]).is_err(),
            "a glob that does not parse is still reported"
        );
    }

    #[test]
    fn only_folders_some_glob_can_reach_are_walked() {
        let dir = workspace(&[
            "Cargo.toml",
            "README.md",
            "src/lib.rs",
            "src/deep/mod.rs",
            "docs/guide/intro.md",
            "docs/other.md",
            "target/debug/junk",
        ]);
        let workspace = Workspace::scan(dir.path(), &["src/**", "Cargo.toml", "docs/guide/*.md"]).expect("scan");
        let all: Vec<&str> = workspace.files().iter().map(|file| file.path.as_str()).collect();
        assert_eq!(
            all,
            ["Cargo.toml", "docs/guide/intro.md", "src/deep/mod.rs", "src/lib.rs"],
            "`target/` is never listed, `docs/other.md` and `README.md` never stated"
        );
        let everything = Workspace::scan(dir.path(), &["**/*.md"]).expect("scan");
        assert_eq!(
            everything.files().len(),
            7,
            "a glob without a literal prefix reaches everything"
        );
        let nothing = Workspace::scan(dir.path(), &[]).expect("scan");
        assert!(nothing.files().is_empty());
    }

    #[test]
    fn a_remembered_listing_is_trusted_only_while_its_folder_is_unchanged() {
        let dir = workspace(&["src/a.rs", "src/b.rs"]);
        let old = SystemTime::now() - Duration::from_secs(60);
        for folder in ["", "src"] {
            let folder = fs::File::open(dir.path().join(folder)).expect("open");
            folder.set_modified(old).expect("touch");
        }
        std::thread::sleep(Duration::from_millis(2_100));
        let (first, listed) = Workspace::scan_remembering(dir.path(), &["src/**"], &[]).expect("scan");
        assert_eq!(first.files().len(), 2);
        let remembered: Vec<Listing<'_>> = listed.merge(&[]).into_iter().cloned().collect();
        assert_eq!(
            remembered
                .iter()
                .map(|listing| listing.path.as_ref())
                .collect::<Vec<_>>(),
            ["", "src"],
            "old enough folders are remembered"
        );

        // Unchanged folders are not read again: prove it with a remembered
        // listing that leaves `b.rs` out.
        let mut doctored = remembered.clone();
        doctored[1].entries = doctored[1].entries.replace("b.rs\0", "").into();
        let (second, listed) = Workspace::scan_remembering(dir.path(), &["src/**"], &doctored).expect("scan");
        assert_eq!(
            second.files().iter().map(|file| file.path.as_str()).collect::<Vec<_>>(),
            ["src/a.rs"]
        );
        assert!(!listed.changed(&doctored), "{listed:?}");

        // A new entry changes the folder's stamp: it is read again.
        fs::write(dir.path().join("src/c.rs"), "c").expect("write");
        let (third, listed) = Workspace::scan_remembering(dir.path(), &["src/**"], &doctored).expect("scan");
        assert_eq!(
            third.files().iter().map(|file| file.path.as_str()).collect::<Vec<_>>(),
            ["src/a.rs", "src/b.rs", "src/c.rs"]
        );
        assert_eq!(listed.reused, [0], "the root is still trusted");
        assert!(
            listed.fresh.is_empty(),
            "a folder changed this recently is not remembered"
        );
        assert!(listed.changed(&doctored));
    }

    #[test]
    fn literal_prefixes_stop_at_the_folder_of_the_first_wildcard() {
        assert_eq!(literal_prefix("docs/api/*.md"), "docs/api/");
        assert_eq!(literal_prefix("docs/a*/x.md"), "docs/");
        assert_eq!(literal_prefix("*.md"), "");
        assert_eq!(literal_prefix("**/x"), "");
        assert_eq!(literal_prefix("exact/file.txt"), "exact/file.txt");
        assert_eq!(literal_prefix("src/{a,b}.rs"), "src/");
    }

    #[test]
    fn stamps_change_when_contents_change() {
        let dir = workspace(&["a.txt"]);
        let before = Workspace::scan(dir.path(), &["**"]).expect("scan").files()[0].stamp;
        std::thread::sleep(Duration::from_millis(10));
        fs::write(dir.path().join("a.txt"), "new contents").expect("write");
        let after = Workspace::scan(dir.path(), &["**"]).expect("scan").files()[0].stamp;
        assert_ne!(before, after);
        assert!(!after.executable());
    }

    #[test]
    fn inputs_open_only_beneath_the_root_and_never_through_a_link() {
        let dir = workspace(&["real.txt", "docs/a.md"]);
        let outside = tempfile::tempdir().expect("tempdir");
        fs::write(outside.path().join("secret.txt"), "secret").expect("write");
        std::os::unix::fs::symlink(outside.path(), dir.path().join("away")).expect("link");
        std::os::unix::fs::symlink("real.txt", dir.path().join("alias.txt")).expect("link");
        let made = std::process::Command::new("mkfifo")
            .arg(dir.path().join("pipe"))
            .status()
            .expect("mkfifo");
        assert!(made.success());
        let scanned = Workspace::scan(dir.path(), &["**"]).expect("scanned");
        let root = scanned.root_fd.as_fd();
        let flags = OFlags::RDONLY | OFlags::NONBLOCK | OFlags::NOFOLLOW | OFlags::CLOEXEC;
        for relative in ["real.txt", "docs/a.md"] {
            assert!(scanned.open_input(relative).is_ok(), "{relative}");
            assert!(open_one_folder_at_a_time(root, relative, flags).is_ok(), "{relative}");
        }
        for relative in ["away/secret.txt", "alias.txt", "../x", "docs/../../x", "/etc/passwd"] {
            assert!(scanned.open_input(relative).is_err(), "{relative} is refused");
            assert!(
                open_one_folder_at_a_time(root, relative, flags).is_err(),
                "{relative} is refused"
            );
        }
        // A FIFO is refused at once rather than waited on.
        assert!(scanned.open_input("pipe").is_err());
    }
}
