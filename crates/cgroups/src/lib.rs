//! cgroups for berth: v1, v2 and hybrid hosts behind one type.
//!
//! A [`Layout`] is what the host mounts (read from a mountinfo text, so tests
//! can feed a fixture). A [`Cgroup`] is one container's set of directories, one
//! per hierarchy, plus which of them is v2. Limits are written as plain files,
//! each controller where it is mounted (v1 or v2): on a hybrid host such as one
//! with memory on v1 and hugetlb on v2, each goes to its own place and the
//! process is placed in every hierarchy.
#![forbid(unsafe_code)]

mod devices;
mod resources;
pub mod systemd;

pub use devices::program as device_program;

pub use resources::{
    apply, default_device_rules, BlockIo, Cpu, DeviceRule, Hugepage, Memory, Pids, Resources, ThrottleDevice, WeightDevice,
};

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// What failed in a cgroup operation, and on which file or directory.
#[derive(Debug, thiserror::Error)]
pub enum CgroupError {
    #[error("create cgroup {}: {source}", path.display())]
    Create { path: PathBuf, source: io::Error },
    #[error("write {}: {source}", path.display())]
    Write { path: PathBuf, source: io::Error },
    #[error("read cgroup {}: {source}", path.display())]
    Read { path: PathBuf, source: io::Error },
    #[error("remove cgroup {}: {source}", path.display())]
    Remove { path: PathBuf, source: io::Error },
    #[error("open cgroup {}: {source}", path.display())]
    Open { path: PathBuf, source: io::Error },
    #[error("attach the device eBPF program to {}: {source}", path.display())]
    DeviceProgram { path: PathBuf, source: io::Error },
    /// The v1 freezer stayed FREEZING: a task could not be frozen. The
    /// cgroup was thawed again.
    #[error("freeze {}: still FREEZING after {} ms: a task could not be frozen", path.display(), waited.as_millis())]
    NotFrozen { path: PathBuf, waited: Duration },
    /// The container has no freezer (v1) and no v2 directory.
    #[error("freeze: no freezer for this container")]
    NoFreezer,
    /// A resource this host's cgroups have no file for.
    #[error("{setting} is not supported by this host's cgroups")]
    Unsupported { setting: String },
    /// `linux.resources.unified` for a container that is not on cgroup v2
    /// alone (runc's words: callers match "invalid configuration").
    #[error("invalid configuration: linux.resources.unified: cannot use unified on cgroup v1")]
    UnifiedOnV1,
    /// A `linux.resources.unified` key with no file (its controller is off).
    #[error("linux.resources.unified: {key} does not exist (is its controller enabled?)")]
    NoUnifiedFile { key: String },
    /// An `exec --cgroup` value that names no sub-cgroup of the container.
    #[error("exec --cgroup {spec:?}: {why}")]
    BadSub { spec: String, why: SubRefusal },
    /// The systemd driver's unit could not be made, changed or stopped.
    #[error(transparent)]
    Systemd(#[from] systemd::SystemdError),
}

/// Why a resolved cgroup path cannot be a container's own.
#[derive(Debug, thiserror::Error)]
pub enum Refusal {
    #[error("{} is not a cgroup directory", .0.display())]
    NotADirectory(PathBuf),
    #[error("{} is the root of the {hierarchy} cgroup hierarchy", path.display())]
    HierarchyRoot { path: PathBuf, hierarchy: String },
    #[error("{} is the caller's own cgroup or one of its ancestors ({})", path.display(), caller.display())]
    CallersOwn { path: PathBuf, caller: PathBuf },
    /// runc's words.
    #[error("container's cgroup unexpectedly frozen: {}", path.display())]
    Frozen { path: PathBuf },
    /// runc's words (since 1.2).
    #[error("container's cgroup is not empty: {processes} process(es) found in {}", path.display())]
    NotEmpty { path: PathBuf, processes: usize },
}

/// Why an `exec --cgroup` value was refused (in runc's words).
#[derive(Debug, thiserror::Error)]
pub enum SubRefusal {
    /// The path leaves the container's cgroup.
    #[error("{0} is not a sub cgroup path")]
    Leaves(String),
    #[error("adding pid to {}/cgroup.procs: no such file or directory", .0.display())]
    Missing(PathBuf),
    /// No hierarchy of the container has the named controllers.
    #[error("unknown controller {0:?}")]
    NoHierarchy(String),
}

impl CgroupError {
    /// The errno underneath, when a system call failed.
    pub fn os_error(&self) -> Option<&io::Error> {
        match self {
            CgroupError::Create { source, .. }
            | CgroupError::Write { source, .. }
            | CgroupError::Read { source, .. }
            | CgroupError::Remove { source, .. }
            | CgroupError::Open { source, .. }
            | CgroupError::DeviceProgram { source, .. } => Some(source),
            _ => None,
        }
    }
}

pub type Result<T> = std::result::Result<T, CgroupError>;

/// How long a v1 freeze may stay FREEZING before pause gives up.
const FREEZE_WAIT: Duration = Duration::from_millis(500);

/// One mounted cgroup hierarchy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hierarchy {
    /// Where it is mounted.
    pub mount: PathBuf,
    /// The path inside the hierarchy that the mount shows at `mount`.
    pub root: String,
    /// v1 controllers (and `name=` options); empty for v2.
    pub controllers: Vec<String>,
    pub v2: bool,
}

/// Every cgroup hierarchy the host mounts.
#[derive(Debug, Clone, Default)]
pub struct Layout {
    pub hierarchies: Vec<Hierarchy>,
}

impl Layout {
    /// Reads this process's view (`/proc/self/mountinfo`).
    pub fn host() -> io::Result<Layout> {
        Ok(Layout::parse(&fs::read_to_string("/proc/self/mountinfo")?))
    }

    /// Parses a mountinfo text.
    pub fn parse(mountinfo: &str) -> Layout {
        let mut hierarchies = Vec::new();
        for m in berth_sys::mountinfo::parse(mountinfo) {
            let (mount, root) = (m.mount_point, m.root);
            match m.fs_type.as_str() {
                // Mounted more than once (a bind, or a container's view in
                // this namespace): the first mount, the host's, counts.
                "cgroup2" if !hierarchies.iter().any(|h: &Hierarchy| h.v2) => {
                    hierarchies.push(Hierarchy { mount, root, controllers: vec![], v2: true });
                }
                "cgroup" => {
                    let controllers: Vec<String> = m
                        .super_options
                        .split(',')
                        .filter(|o| {
                            !matches!(*o, "rw" | "ro" | "relatime" | "noatime" | "nosuid" | "nodev" | "noexec" | "clone_children")
                                && !o.starts_with("release_agent=")
                        })
                        .map(str::to_string)
                        .collect();
                    // A hierarchy mounted twice (bind mounts) counts once.
                    if !hierarchies.iter().any(|h: &Hierarchy| !h.v2 && h.controllers == controllers) {
                        hierarchies.push(Hierarchy { mount, root, controllers, v2: false });
                    }
                }
                _ => {}
            }
        }
        Layout { hierarchies }
    }

    /// The v2 hierarchy, if mounted.
    pub fn v2(&self) -> Option<&Hierarchy> {
        self.hierarchies.iter().find(|h| h.v2)
    }

    /// True when only cgroup v2 is mounted.
    pub fn pure_v2(&self) -> bool {
        self.hierarchies.iter().all(|h| h.v2) && self.v2().is_some()
    }
}

/// Which cgroup a process is in, per hierarchy, from a `/proc/PID/cgroup` text.
pub fn parse_proc_cgroup(text: &str) -> Vec<(String, String)> {
    text.lines()
        .filter_map(|l| {
            let mut it = l.splitn(3, ':');
            let _id = it.next()?;
            let ctrls = it.next()?;
            let path = it.next()?;
            Some((ctrls.to_string(), path.to_string()))
        })
        .collect()
}

/// One directory of a container's cgroup.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Dir {
    pub path: PathBuf,
    #[serde(default)]
    pub v2: bool,
    /// v1 controllers of this hierarchy (empty for v2).
    #[serde(default)]
    pub controllers: Vec<String>,
    /// Whether berth created it (only those are removed).
    #[serde(default)]
    pub created: bool,
    /// The highest ancestor berth created for it (removed too when empty).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub top: Option<PathBuf>,
}

/// A container's cgroup: one directory per hierarchy.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Cgroup {
    pub dirs: Vec<Dir>,
    /// With the systemd driver: the unit whose cgroup this is (systemd
    /// makes and removes the directory; teardown stops the unit).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub systemd: Option<systemd::Unit>,
}

/// The cgroup `own` (a `/proc/PID/cgroup`) names in hierarchy `h`.
fn own_path(h: &Hierarchy, own: &[(String, String)]) -> String {
    let key_matches = |k: &str| {
        if h.v2 {
            k.is_empty()
        } else {
            let ks: Vec<&str> = k.split(',').collect();
            h.controllers.iter().all(|c| ks.contains(&c.as_str()))
        }
    };
    own.iter().find(|(k, _)| key_matches(k)).map(|(_, p)| p.clone()).unwrap_or_default()
}

fn join_rel(base: &Path, rel: &str) -> PathBuf {
    let mut p = base.to_path_buf();
    for c in rel.split('/').filter(|c| !c.is_empty() && *c != ".") {
        p.push(c);
    }
    p
}

impl Cgroup {
    /// Resolves `path` (the OCI `cgroupsPath`) in every hierarchy of `layout`.
    /// An absolute path is relative to each hierarchy's root; a relative one
    /// to the cgroup `own` (this process's `/proc/self/cgroup`) is in on v1,
    /// and to its parent on v2.
    pub fn resolve(layout: &Layout, path: &str, own: &[(String, String)]) -> Cgroup {
        let mut dirs = Vec::new();
        for h in &layout.hierarchies {
            let base_rel = if path.starts_with('/') {
                String::new()
            } else {
                let mine = own_path(h, own);
                if h.v2 {
                    // v2 forbids processes in a cgroup whose children have
                    // controllers: ours has us in it, so containers become
                    // siblings of our cgroup (as runc does), not children.
                    Path::new(&mine).parent().map(|p| p.to_string_lossy().into_owned()).unwrap_or(mine)
                } else {
                    mine
                }
            };
            // The mount shows the hierarchy from `root`; strip it from paths.
            let mut inner = join_rel(Path::new("/"), &base_rel);
            inner = join_rel(&inner, path);
            let shown = Path::new(&h.root);
            let rel = inner.strip_prefix(shown).map(Path::to_path_buf).unwrap_or_else(|_| inner.strip_prefix("/").unwrap().to_path_buf());
            dirs.push(Dir { path: h.mount.join(rel), v2: h.v2, controllers: h.controllers.clone(), created: false, top: None });
        }
        Cgroup { dirs, systemd: None }
    }

    /// The cgroup of a systemd unit: its directory in the unified
    /// hierarchy, which systemd makes when the unit starts. Only a pure
    /// cgroup v2 host has one hierarchy for systemd to delegate.
    pub fn for_unit(layout: &Layout, unit: systemd::Unit) -> Result<Cgroup> {
        let h = layout.v2().filter(|_| layout.pure_v2()).ok_or(systemd::SystemdError::NeedsV2)?;
        let inner = join_rel(Path::new("/"), &unit.cgroup);
        let rel =
            inner.strip_prefix(&h.root).map(Path::to_path_buf).unwrap_or_else(|_| inner.strip_prefix("/").unwrap_or(&inner).to_path_buf());
        // created: the directory is the container's (teardown removes it if
        // systemd has not); top: never a slice above it.
        let dir = Dir { path: h.mount.join(rel), v2: true, controllers: vec![], created: true, top: None };
        Ok(Cgroup { dirs: vec![dir], systemd: Some(unit) })
    }

    /// Why this cgroup (just resolved, not yet created) cannot be a
    /// container's own, if it cannot: it is the root of a hierarchy, the
    /// cgroup `own` names (the caller's) or one of its ancestors, or it
    /// already holds processes. Teardown kills, freezes and thaws whatever
    /// is in the container's cgroup, so none of those may ever be one.
    pub fn refusal(&self, layout: &Layout, own: &[(String, String)]) -> Option<Refusal> {
        for (d, h) in self.dirs.iter().zip(&layout.hierarchies) {
            if d.path.exists() && !d.path.is_dir() {
                return Some(Refusal::NotADirectory(d.path.clone()));
            }
            if d.path == h.mount {
                let hierarchy = if h.v2 { "unified".to_string() } else { h.controllers.join(",") };
                return Some(Refusal::HierarchyRoot { path: d.path.clone(), hierarchy });
            }
            let inner = join_rel(Path::new("/"), &own_path(h, own));
            let caller = h.mount.join(inner.strip_prefix(&h.root).unwrap_or_else(|_| inner.strip_prefix("/").unwrap_or(&inner)));
            if caller.starts_with(&d.path) {
                return Some(Refusal::CallersOwn { path: d.path.clone(), caller });
            }
            // A frozen cgroup would freeze the container's init before it
            // runs (and its create would wait for it forever).
            let frozen = |f: &str, on: &[&str]| fs::read_to_string(d.path.join(f)).is_ok_and(|s| on.contains(&s.trim()));
            if frozen("freezer.state", &["FROZEN", "FREEZING"]) || frozen("cgroup.freeze", &["1"]) {
                return Some(Refusal::Frozen { path: d.path.clone() });
            }
            let mut pids = Vec::new();
            collect_pids(&d.path, &mut pids);
            if !pids.is_empty() {
                return Some(Refusal::NotEmpty { path: d.path.clone(), processes: pids.len() });
            }
        }
        None
    }

    pub fn v2_dir(&self) -> Option<&Dir> {
        self.dirs.iter().find(|d| d.v2)
    }

    /// The v1 directory of `controller`, if mounted.
    pub fn v1_dir(&self, controller: &str) -> Option<&Dir> {
        self.dirs.iter().find(|d| !d.v2 && d.controllers.iter().any(|c| c == controller))
    }

    /// With the systemd driver: every controller of the hierarchy enabled
    /// down to the unit, as runc's driver does. systemd delegates only the
    /// controllers it manages (cpu, cpuset, io, memory, pids): hugetlb,
    /// rdma and misc would be missing from the container's cgroup, so their
    /// limits could not be set nor their stats read. Only "+controller" is
    /// ever written, into the unit's ancestors' cgroup.subtree_control (a
    /// controller the kernel refuses somewhere is left off there).
    pub fn enable_controllers_to_unit(&self) {
        let Some(d) = self.v2_dir().filter(|_| self.systemd.is_some()) else { return };
        let mut chain: Vec<&Path> = d.path.ancestors().skip(1).take_while(|p| p.join("cgroup.subtree_control").exists()).collect();
        let (Some(top), Ok(own)) = (chain.last(), fs::read_to_string(d.path.join("cgroup.controllers"))) else { return };
        let all = fs::read_to_string(top.join("cgroup.controllers")).unwrap_or_default();
        if all.split_whitespace().all(|c| own.split_whitespace().any(|o| o == c)) {
            return; // everything there already: nothing written
        }
        chain.reverse();
        for dir in chain {
            let _ = enable_v2_controllers(dir);
        }
    }

    /// Records which directories (and ancestors) do not exist yet, so that a
    /// crash after this is saved still lets teardown remove exactly those.
    /// A systemd unit's directory is systemd's to make: nothing is planned.
    pub fn plan(&mut self) {
        if self.systemd.is_some() {
            return;
        }
        for d in &mut self.dirs {
            let mut top = None;
            let mut p = Some(d.path.as_path());
            while let Some(x) = p.filter(|x| !x.exists()) {
                top = Some(x.to_path_buf());
                p = x.parent();
            }
            d.created = top.is_some();
            d.top = top;
        }
    }

    /// Creates every directory (and parents). cpuset directories get the
    /// parent's cpus and mems, as v1 leaves them empty. On v2, the
    /// controllers available at the hierarchy root are enabled down to the
    /// container's parent, so that its limits can be written.
    pub fn create(&mut self) -> Result<()> {
        for d in &mut self.dirs {
            // An empty parent may be removed under us by the teardown of a
            // container that made it (it removes the parents it created):
            // then the path is made again, a few times at most.
            let mut tries = 0;
            loop {
                match create_one(d) {
                    Err(e) if e.os_error().is_some_and(|e| e.kind() == io::ErrorKind::NotFound) && tries < 3 => tries += 1,
                    r => break r?,
                }
            }
        }
        Ok(())
    }

    /// Moves `pid` into the v1 directories, the v2 one, or both.
    ///
    /// Each move of another process takes the kernel's global threadgroup
    /// lock, whose first taker waits for an RCU grace period (several ms).
    /// [`Cgroup::join_self_v1`] avoids that where it can.
    pub fn add_pid(&self, pid: i32, v1: bool, v2: bool) -> Result<()> {
        for d in self.dirs.iter().filter(|d| if d.v2 { v2 } else { v1 }) {
            write(&d.path.join("cgroup.procs"), &pid.to_string())?;
        }
        Ok(())
    }

    /// Moves the calling (single-threaded) process into every v1 directory
    /// by writing "0" to `tasks`: moving oneself, one thread, skips the global
    /// lock and its RCU grace period.
    /// The existing sub-cgroups named by runc's `exec --cgroup` values:
    /// `path` for every hierarchy, or `ctrl[,ctrl]:path` for the v1
    /// hierarchies of those controllers (on v2 only a plain path). The path
    /// is relative to the container's cgroup and may not leave it.
    pub fn sub(&self, specs: &[String]) -> Result<Cgroup> {
        let mut out = self.clone();
        for spec in specs {
            let (ctrls, path): (Vec<&str>, &str) = match spec.split_once(':') {
                Some((c, p)) if !c.is_empty() => (c.split(',').collect(), p),
                Some((_, p)) => (vec![], p),
                None => (vec![], spec.as_str()),
            };
            let bad = |why| CgroupError::BadSub { spec: spec.clone(), why };
            if path.split('/').any(|c| c == "..") {
                return Err(bad(SubRefusal::Leaves(path.to_string())));
            }
            let mut matched = false;
            for (orig, d) in self.dirs.iter().zip(out.dirs.iter_mut()) {
                let applies =
                    if ctrls.is_empty() { true } else { !orig.v2 && orig.controllers.iter().any(|c| ctrls.contains(&c.as_str())) };
                if !applies {
                    continue;
                }
                matched = true;
                let p = join_rel(&orig.path, path);
                if !p.is_dir() {
                    return Err(bad(SubRefusal::Missing(p)));
                }
                d.path = p;
                d.created = false;
                d.top = None;
            }
            if !matched {
                return Err(bad(SubRefusal::NoHierarchy(ctrls.join(","))));
            }
        }
        Ok(out)
    }

    pub fn join_self_v1(&self) -> Result<()> {
        for d in self.dirs.iter().filter(|d| !d.v2) {
            write(&d.path.join("tasks"), "0")?;
        }
        Ok(())
    }

    /// Every PID in the container's cgroup and its sub-cgroups, in any of
    /// its hierarchies.
    pub fn pids(&self) -> Vec<i32> {
        // Every hierarchy, not one: a process moving itself in (or dying)
        // is in some hierarchies before or after the others, and any
        // hierarchy with a process in it refuses rmdir.
        let mut out = Vec::new();
        for d in &self.dirs {
            collect_pids(&d.path, &mut out);
        }
        out.sort_unstable();
        out.dedup();
        out
    }

    /// True when no process is left in the cgroup (or it is gone).
    pub fn is_empty(&self) -> bool {
        self.pids().is_empty()
    }

    /// Kills every process in the cgroup, including those forking while
    /// being killed: `cgroup.kill` on v2; on v1 freeze, SIGKILL each task,
    /// thaw. `kill` signals the listed PIDs (the caller knows processes by
    /// pidfd); on v1 it runs while the cgroup is frozen.
    pub fn kill_all(&self, kill: &mut dyn FnMut(&[i32])) -> Result<()> {
        if let Some(d) = self.v2_dir().filter(|d| d.path.join("cgroup.kill").exists() && !self.dirs.iter().any(|x| !x.v2)) {
            // Gone meanwhile (systemd removes an emptied unit's cgroup at
            // once): nothing left to kill.
            return match write(&d.path.join("cgroup.kill"), "1") {
                Err(e) if e.os_error().is_some_and(|e| e.kind() == io::ErrorKind::NotFound) => Ok(()),
                r => r,
            };
        }
        let freezer = self.v1_dir("freezer").filter(|d| d.path.is_dir());
        if let Some(f) = freezer {
            let _ = self.freeze_v1(&f.path);
        }
        kill(&self.pids());
        if let Some(f) = freezer {
            // Sub-cgroups the container froze itself stay frozen when the
            // parent thaws (v1 keeps "self-frozen"): thaw them all, or their
            // killed processes could never exit.
            thaw_tree(&f.path)?;
        }
        if let Some(d) = self.v2_dir().filter(|d| d.path.join("cgroup.kill").exists()) {
            // Hybrid: the v2 hierarchy sees the same processes.
            let _ = write(&d.path.join("cgroup.kill"), "1");
        }
        Ok(())
    }

    /// Thaws the v1 freezer directory and every sub-cgroup of it (a no-op
    /// elsewhere: v2's freezer lets SIGKILL through).
    pub fn thaw_all(&self) -> Result<()> {
        match self.v1_dir("freezer").filter(|d| d.path.is_dir()) {
            Some(f) => thaw_tree(&f.path),
            None => Ok(()),
        }
    }

    fn freeze_v1(&self, dir: &Path) -> Result<()> {
        write(&dir.join("freezer.state"), "FROZEN")?;
        // FREEZING means some task is still on its way; a bounded wait.
        let deadline = Instant::now() + FREEZE_WAIT;
        loop {
            let s = fs::read_to_string(dir.join("freezer.state")).unwrap_or_default();
            if s.trim() == "FROZEN" {
                return Ok(());
            }
            if Instant::now() > deadline {
                // Half frozen is no state to leave a container in: thawed
                // again, and the caller told (a pause must not say it worked).
                let _ = write(&dir.join("freezer.state"), "THAWED");
                return Err(CgroupError::NotFrozen { path: dir.to_path_buf(), waited: FREEZE_WAIT });
            }
            std::thread::sleep(Duration::from_micros(200));
            write(&dir.join("freezer.state"), "FROZEN")?;
        }
    }

    /// Freezes (pause) or thaws (resume) the container.
    pub fn set_frozen(&self, frozen: bool) -> Result<()> {
        if let Some(d) = self.v1_dir("freezer") {
            if frozen {
                return self.freeze_v1(&d.path);
            }
            return write(&d.path.join("freezer.state"), "THAWED");
        }
        if let Some(d) = self.v2_dir() {
            return write(&d.path.join("cgroup.freeze"), if frozen { "1" } else { "0" });
        }
        Err(CgroupError::NoFreezer)
    }

    /// True when the freezer says the container is frozen.
    pub fn is_frozen(&self) -> bool {
        if let Some(d) = self.v1_dir("freezer") {
            return fs::read_to_string(d.path.join("freezer.state")).map(|s| s.trim() == "FROZEN").unwrap_or(false);
        }
        if let Some(d) = self.v2_dir() {
            return fs::read_to_string(d.path.join("cgroup.freeze")).map(|s| s.trim() == "1").unwrap_or(false);
        }
        false
    }

    /// Files whose change tells that the cgroup may have become empty: v2
    /// `cgroup.events` (the kernel notifies `populated 0`).
    /// `cgroup.events` of the container's v2 directory, also on a hybrid
    /// host (the unified hierarchy tracks processes without controllers).
    pub fn v2_events_file(&self) -> Option<PathBuf> {
        self.v2_dir().map(|d| d.path.join("cgroup.events")).filter(|p| p.exists())
    }

    /// Whether the v2 directory (and its subtree) has a process, from
    /// `cgroup.events`; None without one.
    pub fn v2_populated(&self) -> Option<bool> {
        let text = fs::read_to_string(self.v2_dir()?.path.join("cgroup.events")).ok()?;
        text.lines().find_map(|l| l.strip_prefix("populated ")).map(|v| v.trim() != "0")
    }

    pub fn events_file(&self) -> Option<PathBuf> {
        if self.dirs.iter().any(|d| !d.v2) {
            return None;
        }
        self.v2_dir().map(|d| d.path.join("cgroup.events")).filter(|p| p.exists())
    }

    /// Removes the directories berth created, sub-cgroups first. Directories
    /// already gone count as removed. Fails (EBUSY) while processes remain.
    /// Removes the cgroup's directories if the kernel accepts that at once:
    /// true when every one is gone, which also proves no process is left in
    /// any of them (rmdir of a populated cgroup fails with EBUSY). false (and
    /// nothing is waited for) when one still has a process or a sub-cgroup;
    /// `remove` then does the whole job. Parents are left to `remove`.
    pub fn try_remove_leaves(&self) -> Result<bool> {
        for d in self.dirs.iter().filter(|d| d.created) {
            match fs::remove_dir(&d.path) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) if matches!(e.raw_os_error(), Some(libc::EBUSY) | Some(libc::ENOTEMPTY)) => return Ok(false),
                Err(source) => return Err(CgroupError::Remove { path: d.path.clone(), source }),
            }
        }
        Ok(true)
    }

    pub fn remove(&self) -> Result<()> {
        for d in self.dirs.iter().filter(|d| d.created) {
            remove_tree(&d.path)?;
            // Parents berth made for it go too, unless another container
            // still uses them (then rmdir fails and they stay).
            if let Some(top) = &d.top {
                let mut p = d.path.parent();
                while let Some(dir) = p {
                    if !dir.starts_with(top) || fs::remove_dir(dir).is_err() {
                        break;
                    }
                    p = dir.parent();
                }
            }
        }
        Ok(())
    }
}

/// Makes one directory of a cgroup and the parents it lacks (recording the
/// highest one made), with v2 controllers enabled and v1 cpusets filled.
fn create_one(d: &mut Dir) -> Result<()> {
    let cpuset = !d.v2 && d.controllers.iter().any(|c| c == "cpuset");
    if d.path.is_dir() {
        // There already (the caller's, or made by a retry).
        return if cpuset { fill_cpusets(&d.path) } else { Ok(()) };
    }
    let mut missing = Vec::new();
    let mut p = d.path.as_path();
    while !p.exists() {
        missing.push(p.to_path_buf());
        p = match p.parent() {
            Some(pp) => pp,
            None => break,
        };
    }
    if d.top.is_none() {
        d.top = missing.last().cloned();
    }
    for m in missing.iter().rev() {
        if d.v2 {
            if let Some(parent) = m.parent() {
                enable_v2_controllers(parent)?;
            }
        }
        match fs::create_dir(m) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
            Err(source) => return Err(CgroupError::Create { path: m.clone(), source }),
        }
    }
    d.created = true;
    if cpuset {
        fill_cpusets(&d.path)?;
    }
    Ok(())
}

/// v1 leaves a new cpuset cgroup's cpus and mems empty, and no task can
/// join a cgroup under an empty one (ENOSPC). From the highest ancestor
/// down to `dir`, every empty one gets its parent's, as runc does: another
/// create (or the caller) may have just made an ancestor and not filled it
/// yet. A cpuset with an empty list holds no task, so nothing running is
/// changed by filling it.
fn fill_cpusets(dir: &Path) -> Result<()> {
    let mut chain: Vec<&Path> = Vec::new();
    let mut p = Some(dir);
    while let Some(x) = p.filter(|x| x.join("cpuset.cpus").exists()) {
        chain.push(x);
        p = x.parent();
    }
    for pair in chain.windows(2).rev() {
        let (child, parent) = (pair[0], pair[1]);
        for f in ["cpuset.cpus", "cpuset.mems"] {
            let own = fs::read_to_string(child.join(f)).unwrap_or_default();
            if own.trim().is_empty() {
                let v = fs::read_to_string(parent.join(f)).unwrap_or_default();
                if !v.trim().is_empty() {
                    write(&child.join(f), v.trim())?;
                }
            }
        }
    }
    Ok(())
}

fn thaw_tree(dir: &Path) -> Result<()> {
    if let Ok(rd) = fs::read_dir(dir) {
        for e in rd.flatten() {
            if e.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                thaw_tree(&e.path())?;
            }
        }
    }
    match fs::write(dir.join("freezer.state"), "THAWED") {
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        r => r.map_err(|source| CgroupError::Write { path: dir.join("freezer.state"), source }),
    }
}

fn collect_pids(dir: &Path, out: &mut Vec<i32>) {
    if let Ok(s) = fs::read_to_string(dir.join("cgroup.procs")) {
        out.extend(s.lines().filter_map(|l| l.trim().parse::<i32>().ok()));
    }
    if let Ok(rd) = fs::read_dir(dir) {
        for e in rd.flatten() {
            if e.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                collect_pids(&e.path(), out);
            }
        }
    }
}

fn remove_tree(dir: &Path) -> Result<()> {
    // Most cgroups have no sub-cgroup: one rmdir, no listing.
    match fs::remove_dir(dir) {
        Ok(()) => return Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(_) => {}
    }
    let rd = match fs::read_dir(dir) {
        Ok(rd) => rd,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(source) => return Err(CgroupError::Read { path: dir.to_path_buf(), source }),
    };
    for e in rd.flatten() {
        if e.file_type().map(|t| t.is_dir()).unwrap_or(false) {
            remove_tree(&e.path())?;
        }
    }
    match fs::remove_dir(dir) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(source) => Err(CgroupError::Remove { path: dir.to_path_buf(), source }),
    }
}

/// Enables in `dir`'s `cgroup.subtree_control` every controller it has.
fn enable_v2_controllers(dir: &Path) -> Result<()> {
    let avail = fs::read_to_string(dir.join("cgroup.controllers")).unwrap_or_default();
    let enabled = fs::read_to_string(dir.join("cgroup.subtree_control")).unwrap_or_default();
    let want: Vec<String> =
        avail.split_whitespace().filter(|c| !enabled.split_whitespace().any(|e| e == *c)).map(|c| format!("+{c}")).collect();
    if want.is_empty() {
        return Ok(());
    }
    // Enable one at a time: a controller the kernel refuses here (cpu with
    // realtime tasks, say) must not keep the others off.
    for w in want {
        let _ = fs::write(dir.join("cgroup.subtree_control"), &w);
    }
    Ok(())
}

/// Writes `value` to a cgroup file.
pub fn write(path: &Path, value: &str) -> Result<()> {
    fs::write(path, value).map_err(|source| CgroupError::Write { path: path.to_path_buf(), source })
}

#[cfg(test)]
mod tests {
    use super::*;

    const HYBRID: &str = "31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
37 31 0:34 / /sys/fs/cgroup/freezer rw,relatime - cgroup cgroup rw,freezer
40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,name=systemd
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
";

    #[test]
    fn parses_hybrid_layout() {
        let l = Layout::parse(HYBRID);
        assert_eq!(l.hierarchies.len(), 5);
        assert!(!l.pure_v2());
        assert_eq!(l.v2().unwrap().mount, PathBuf::from("/sys/fs/cgroup/unified"));
        assert_eq!(l.hierarchies[0].controllers, vec!["cpu"]);
        assert_eq!(l.hierarchies[3].controllers, vec!["name=systemd"]);
    }

    #[test]
    fn a_second_cgroup2_mount_is_not_a_second_hierarchy() {
        // A container without a mount namespace of its own mounts its
        // cgroup2 view in the host's namespace, under its rootfs.
        let mi = "30 1 0:26 / /sys/fs/cgroup rw,nosuid - cgroup2 cgroup2 rw\n\
                  99 98 0:26 /berth/c1 /b/rootfs/sys/fs/cgroup rw - cgroup2 cgroup2 rw\n";
        let l = Layout::parse(mi);
        assert_eq!(l.hierarchies.len(), 1);
        assert_eq!(l.v2().unwrap().mount, PathBuf::from("/sys/fs/cgroup"));
    }

    #[test]
    fn relative_path_is_under_own_cgroup_per_hierarchy() {
        let l = Layout::parse(HYBRID);
        let own = parse_proc_cgroup("4:memory:/outer/inner\n1:cpu:/\n0::/\n6:freezer:/\n9:name=systemd:/\n");
        let cg = Cgroup::resolve(&l, "berth/c1", &own);
        assert_eq!(cg.v1_dir("memory").unwrap().path, PathBuf::from("/sys/fs/cgroup/memory/outer/inner/berth/c1"));
        assert_eq!(cg.v1_dir("cpu").unwrap().path, PathBuf::from("/sys/fs/cgroup/cpu/berth/c1"));
        assert_eq!(cg.v2_dir().unwrap().path, PathBuf::from("/sys/fs/cgroup/unified/berth/c1"));
        let abs = Cgroup::resolve(&l, "/a/b", &own);
        assert_eq!(abs.v1_dir("memory").unwrap().path, PathBuf::from("/sys/fs/cgroup/memory/a/b"));
    }

    #[test]
    fn mount_root_is_stripped() {
        let l = Layout::parse("1 1 0:1 /ctr /sys/fs/cgroup rw - cgroup2 cgroup2 rw\n");
        let cg = Cgroup::resolve(&l, "x", &parse_proc_cgroup("0::/ctr/sub/me\n"));
        assert_eq!(cg.v2_dir().unwrap().path, PathBuf::from("/sys/fs/cgroup/sub/x"));
    }

    #[test]
    fn fixture_tree_create_pids_remove() {
        let base = std::env::temp_dir().join(format!("berth-cg-{}", std::process::id()));
        let _ = fs::remove_dir_all(&base);
        fs::create_dir_all(&base).unwrap();
        let mi = format!("1 1 0:1 / {} rw - cgroup2 cgroup2 rw\n", base.display());
        let l = Layout::parse(&mi);
        let mut cg = Cgroup::resolve(&l, "/a/b", &[]);
        cg.create().unwrap();
        assert!(base.join("a/b").is_dir());
        fs::write(base.join("a/b/cgroup.procs"), "12\n34\n").unwrap();
        fs::create_dir(base.join("a/b/sub")).unwrap();
        fs::write(base.join("a/b/sub/cgroup.procs"), "56\n").unwrap();
        let mut p = cg.pids();
        p.sort();
        assert_eq!(p, vec![12, 34, 56]);
        // A plain tmpfs cannot rmdir non-empty dirs: clean the fixture files first.
        fs::remove_file(base.join("a/b/sub/cgroup.procs")).unwrap();
        fs::remove_file(base.join("a/b/cgroup.procs")).unwrap();
        cg.remove().unwrap();
        assert!(!base.join("a/b").exists());
        fs::remove_dir_all(&base).unwrap();
    }
}
