//! Bounds for a tree of host processes: a cgroup where the host lets cairn
//! make one (v2, or v1's `pids` and `memory` hierarchies), resource limits
//! otherwise. A cgroup counts the whole tree, whatever it forks; an rlimit
//! is per process (`RLIMIT_AS`) or per user (`RLIMIT_NPROC`, which does not
//! bind root), so the log says which one held the stage.

use std::fs::{File, OpenOptions};
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use rustix::process::{Pid, Resource, Rlimit, Signal};

use cairn_core::units::ByteSize;

/// How one bound is enforced.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Mechanism {
    /// A cgroup of the given version counts the whole process tree.
    Cgroup(u8),
    /// A resource limit set on the sandbox's first process.
    Rlimit,
}

impl std::fmt::Display for Mechanism {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Mechanism::Cgroup(version) => write!(formatter, "cgroup v{version}"),
            Mechanism::Rlimit => formatter.write_str("rlimit"),
        }
    }
}

/// One cgroup folder made for a run, and its `cgroup.procs`.
struct Group {
    dir: PathBuf,
    procs: File,
    /// The file whose `max`/`oom_kill` counter says a bound was hit.
    events: PathBuf,
    counter: &'static str,
}

/// The bounds of one tool run. Dropping it kills whatever is left in its
/// cgroups and removes them.
pub(crate) struct ProcessBounds {
    memory: ByteSize,
    processes: u64,
    memory_by: Mechanism,
    processes_by: Mechanism,
    memory_group: Option<Group>,
    processes_group: Option<Group>,
}

impl ProcessBounds {
    /// Bounds of `memory` for the whole tree and at most `processes`
    /// processes, in fresh cgroups when the host allows it.
    pub(crate) fn new(memory: ByteSize, processes: u64) -> Self {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let parents = CgroupParents::of_this_process();
        let name = format!("cairn-{}-{}", std::process::id(), NEXT.fetch_add(1, Ordering::Relaxed));
        let (memory_group, processes_group) = match &parents.unified {
            Some(parent) => (
                make_group(
                    &parent.join(format!("{name}-memory")),
                    "memory.max",
                    memory.0,
                    "memory.events",
                    "oom_kill",
                ),
                make_group(
                    &parent.join(format!("{name}-pids")),
                    "pids.max",
                    processes,
                    "pids.events",
                    "max",
                ),
            ),
            None => (
                parents.memory.as_ref().and_then(|parent| {
                    make_group(
                        &parent.join(&name),
                        "memory.limit_in_bytes",
                        memory.0,
                        "memory.oom_control",
                        "oom_kill",
                    )
                }),
                parents
                    .pids
                    .as_ref()
                    .and_then(|parent| make_group(&parent.join(&name), "pids.max", processes, "pids.events", "max")),
            ),
        };
        let version = if parents.unified.is_some() { 2 } else { 1 };
        let by = |group: &Option<Group>| match group {
            Some(_) => Mechanism::Cgroup(version),
            None => Mechanism::Rlimit,
        };
        Self {
            memory,
            processes,
            memory_by: by(&memory_group),
            processes_by: by(&processes_group),
            memory_group,
            processes_group,
        }
    }

    /// How the memory bound is enforced.
    pub(crate) fn memory_by(&self) -> Mechanism {
        self.memory_by
    }

    /// How the process-count bound is enforced.
    pub(crate) fn processes_by(&self) -> Mechanism {
        self.processes_by
    }

    /// Puts the process `pid` under the bounds: into the cgroups, or under
    /// the rlimits standing in for them. Called for a sandbox's processes
    /// while it waits to start the tool, so that everything the tool forks
    /// inherits them.
    pub(crate) fn hold(&self, pid: u32) -> std::io::Result<()> {
        for group in [&self.memory_group, &self.processes_group].into_iter().flatten() {
            (&group.procs).write_all(pid.to_string().as_bytes())?;
        }
        let process = i32::try_from(pid)
            .ok()
            .and_then(Pid::from_raw)
            .ok_or_else(|| std::io::Error::other(format!("{pid} is not a process id")))?;
        if self.memory_by == Mechanism::Rlimit {
            set_rlimit(process, Resource::As, self.memory.0)?;
        }
        if self.processes_by == Mechanism::Rlimit {
            set_rlimit(process, Resource::Nproc, self.processes)?;
        }
        Ok(())
    }

    /// The bound the tree ran into, if a cgroup recorded one.
    pub(crate) fn exceeded(&self) -> Option<String> {
        if self.processes_group.as_ref().is_some_and(Group::was_hit) {
            return Some(format!(
                "the stage's processes reached the process limit ({}) and could not fork",
                self.processes
            ));
        }
        if self.memory_group.as_ref().is_some_and(Group::was_hit) {
            return Some(format!(
                "a process of the stage was killed for using more than the memory bound ({})",
                self.memory
            ));
        }
        None
    }
}

impl Drop for ProcessBounds {
    /// Removes the groups: at once when they are empty, as they are once
    /// the sandbox has been reaped, else after the last process has exited
    /// (a few tries, then a thread of its own, off the stage's path). One a
    /// process could not remove before it exited is swept by the next.
    fn drop(&mut self) {
        let mut left: Vec<Group> = [self.memory_group.take(), self.processes_group.take()]
            .into_iter()
            .flatten()
            .collect();
        for _ in 0..20 {
            left.retain(|group| !group.try_remove());
            if left.is_empty() {
                return;
            }
            std::thread::sleep(std::time::Duration::from_micros(250));
        }
        std::thread::spawn(move || {
            for group in left {
                group.remove();
            }
        });
    }
}

/// Removes the groups of cairn processes that are gone (`cairn-PID-N`
/// whose PID no longer runs), left when one exited before its last
/// sandbox was reaped.
fn sweep_stale_groups(parents: &CgroupParents) {
    let parents = [&parents.unified, &parents.memory, &parents.pids];
    for parent in parents.into_iter().flatten() {
        let Ok(entries) = std::fs::read_dir(parent) else {
            continue;
        };
        for entry in entries.flatten() {
            let name = entry.file_name();
            let owner = name
                .to_str()
                .and_then(|name| name.strip_prefix("cairn-"))
                .and_then(|rest| rest.split('-').next())
                .and_then(|pid| pid.parse::<u32>().ok());
            if let Some(pid) = owner
                && !Path::new(&format!("/proc/{pid}")).exists()
            {
                let _ = std::fs::remove_dir(entry.path());
            }
        }
    }
}

impl Group {
    fn was_hit(&self) -> bool {
        std::fs::read_to_string(&self.events).is_ok_and(|text| {
            text.lines().any(|line| {
                line.split_once(' ')
                    .is_some_and(|(key, count)| key == self.counter && count.trim() != "0")
            })
        })
    }

    /// Removes the group if it is empty.
    fn try_remove(&self) -> bool {
        match std::fs::remove_dir(&self.dir) {
            Ok(()) => true,
            Err(error) => error.kind() == std::io::ErrorKind::NotFound,
        }
    }

    /// Kills what is left in the group and removes it; the kernel refuses
    /// to remove a group until its last process is reaped, hence the retries.
    fn remove(&self) {
        for _ in 0..1000 {
            if let Ok(pids) = std::fs::read_to_string(self.dir.join("cgroup.procs")) {
                for pid in pids
                    .lines()
                    .filter_map(|line| line.trim().parse::<i32>().ok())
                    .filter_map(Pid::from_raw)
                {
                    let _ = rustix::process::kill_process(pid, Signal::KILL);
                }
            }
            if self.try_remove() {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
        tracing::warn!(group = %self.dir.display(), "could not remove a stage's cgroup");
    }
}

fn set_rlimit(process: Pid, resource: Resource, value: u64) -> std::io::Result<()> {
    let limit = Rlimit {
        current: Some(value),
        maximum: Some(value),
    };
    rustix::process::prlimit(Some(process), resource, limit)
        .map(drop)
        .map_err(std::io::Error::from)
}

/// A fresh group at `dir` with `limit_file` set to `limit`, or `None` when
/// the host does not let cairn make one (no permission, controller off).
fn make_group(dir: &Path, limit_file: &str, limit: u64, events: &str, counter: &'static str) -> Option<Group> {
    std::fs::create_dir(dir).ok()?;
    let made = (|| {
        OpenOptions::new()
            .write(true)
            .open(dir.join(limit_file))?
            .write_all(limit.to_string().as_bytes())?;
        let procs = OpenOptions::new().write(true).open(dir.join("cgroup.procs"))?;
        std::io::Result::Ok(procs)
    })();
    match made {
        Ok(procs) => Some(Group {
            dir: dir.to_owned(),
            procs,
            events: dir.join(events),
            counter,
        }),
        Err(_) => {
            let _ = std::fs::remove_dir(dir);
            None
        }
    }
}

/// The folders of cairn's own cgroups, where its tools' groups are made:
/// read once per process (a process does not move between cgroups on its
/// own), and the groups a gone cairn process left there swept then.
struct CgroupParents {
    /// On a unified (v2) host.
    unified: Option<PathBuf>,
    /// In v1's `memory` hierarchy.
    memory: Option<PathBuf>,
    /// In v1's `pids` hierarchy.
    pids: Option<PathBuf>,
}

impl CgroupParents {
    fn of_this_process() -> &'static Self {
        static PARENTS: std::sync::OnceLock<CgroupParents> = std::sync::OnceLock::new();
        PARENTS.get_or_init(|| {
            let parents = CgroupParents {
                unified: cgroup_v2_parent(),
                memory: cgroup_v1_parent("memory"),
                pids: cgroup_v1_parent("pids"),
            };
            sweep_stale_groups(&parents);
            parents
        })
    }
}

/// The folder of cairn's own cgroup on a unified (v2) host.
fn cgroup_v2_parent() -> Option<PathBuf> {
    let root = Path::new("/sys/fs/cgroup");
    if !root.join("cgroup.controllers").is_file() {
        return None;
    }
    let own = std::fs::read_to_string("/proc/self/cgroup").ok()?;
    let path = own.lines().find_map(|line| line.strip_prefix("0::"))?;
    Some(root.join(path.trim_start_matches('/')))
}

/// The folder of cairn's own cgroup in the v1 hierarchy of `controller`.
fn cgroup_v1_parent(controller: &str) -> Option<PathBuf> {
    let own = std::fs::read_to_string("/proc/self/cgroup").ok()?;
    let path = own.lines().find_map(|line| {
        let mut fields = line.splitn(3, ':');
        let (_, controllers, path) = (fields.next()?, fields.next()?, fields.next()?);
        controllers.split(',').any(|name| name == controller).then_some(path)
    })?;
    let dir = Path::new("/sys/fs/cgroup")
        .join(controller)
        .join(path.trim_start_matches('/'));
    dir.is_dir().then_some(dir)
}
