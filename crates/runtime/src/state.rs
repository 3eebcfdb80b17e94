//! Container state under `--root/ID/`: `state.json` (written to a temp file
//! and renamed, so a crash never tears it), the exec fifo of a created
//! container, and one `flock` per container held by every command that
//! changes it. Status is derived from the live process, never stored.

use crate::error::Context;
use crate::process::{self, Process};
use crate::{Result, RuntimeError};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fs;
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};

pub const STATE_FILE: &str = "state.json";
pub const FIFO: &str = "exec.fifo";

/// Why a container ID was refused.
#[derive(Debug, thiserror::Error)]
pub enum IdError {
    #[error("the container id is empty")]
    Empty,
    #[error("{0:?} is not allowed")]
    Dots(String),
    #[error("{0} characters is longer than a directory name may be")]
    TooLong(usize),
    #[error("{id:?} contains {c:?}: only letters, digits and _ + - . are allowed")]
    BadChar { id: String, c: char },
}

/// Why a container cannot do what was asked in the state it is in, or why
/// its record cannot be read or written.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("cannot {verb} a container that is {}", status.as_str())]
    Cannot { verb: &'static str, status: Status },
    #[error("cannot exec in a paused container (pause it no more, or pass --ignore-paused)")]
    ExecPaused,
    #[error("cannot start a container that has no process (config.json has none)")]
    NoProcess,
    #[error("the container process failed to start")]
    StartFailed,
    #[error("the container process exited before it was started")]
    ExitedBeforeStart,
    #[error("cannot delete container {id} that is not stopped: {}", status.as_str())]
    NotStopped { id: String, status: Status },
    #[error("cannot update container {id}: it is stopped")]
    UpdateStopped { id: String },
    #[error("container {id} is not running")]
    NotRunning { id: String },
    #[error("container {id} is not paused")]
    NotPaused { id: String },
    #[error("{} is corrupt: {source}", path.display())]
    Corrupt { path: PathBuf, source: serde_json::Error },
    #[error("encode state: {0}")]
    Encode(#[source] serde_json::Error),
    #[error("merge resources: {0}")]
    MergeResources(#[source] serde_json::Error),
}

/// Checks a container ID the way runc does: letters, digits and `_ + - .`,
/// not `.` or `..`, and short enough to be a directory name.
pub fn validate_id(id: &str) -> Result<()> {
    if id.is_empty() {
        return Err(IdError::Empty.into());
    }
    if id == "." || id == ".." {
        return Err(IdError::Dots(id.into()).into());
    }
    if id.len() > 255 {
        return Err(IdError::TooLong(id.len()).into());
    }
    if let Some(c) = id.chars().find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '+' | '-' | '.'))) {
        return Err(IdError::BadChar { id: id.into(), c }.into());
    }
    Ok(())
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Creating,
    Created,
    Running,
    Stopped,
    Paused,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Creating => "creating",
            Status::Created => "created",
            Status::Running => "running",
            Status::Stopped => "stopped",
            Status::Paused => "paused",
        }
    }
}

/// What berth records of a container (its own file, not the OCI state).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Record {
    pub id: String,
    pub bundle: PathBuf,
    pub rootfs: PathBuf,
    /// Host PID of the container's init and its start time (0 while creating).
    pub pid: i32,
    pub start_time: u64,
    pub created: String,
    pub owner: String,
    #[serde(default)]
    pub annotations: BTreeMap<String, String>,
    pub cgroup: berth_cgroups::Cgroup,
    /// Whether the container has its own PID namespace (if not, killing it
    /// means killing every process of its cgroup).
    #[serde(default)]
    pub own_pidns: bool,
    /// The config as it was at create (hooks, for poststop).
    #[serde(default)]
    pub config: Option<crate::config::Spec>,
    /// Set once `start` released the init; `creating` until init reported ready.
    #[serde(default)]
    pub phase: Phase,
    /// The unique mount ID of the container's root mount (Linux 6.8+; 0 if
    /// unknown): mounts of the rootfs or bundle with a smaller ID existed
    /// before the container (the caller's own, such as its rootfs mount),
    /// larger ones in other namespaces are copies made since: leaks.
    #[serde(default)]
    pub mount_watermark: u64,
    /// What identifies the container's mounts and their copies elsewhere.
    #[serde(default)]
    pub mounts: crate::reclaim::ContainerMounts,
    /// The ephemeral writable layer (volatile overlay), if asked for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub layer: Option<crate::layer::Layer>,
    /// No mount namespace of its own: the ID of the mount the rootfs was on
    /// before create; what berth stacks on it is detached at teardown.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host_mount_base: Option<u64>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Phase {
    #[default]
    Creating,
    Created,
    Started,
}

/// The OCI state (what `state` prints and hooks read on stdin).
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct OciState<'a> {
    pub oci_version: &'static str,
    pub id: &'a str,
    pub pid: i32,
    pub status: &'static str,
    pub bundle: &'a Path,
    pub rootfs: &'a Path,
    pub created: &'a str,
    pub owner: &'a str,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: &'a BTreeMap<String, String>,
}

/// A container directory under the state root.
#[derive(Debug)]
pub struct Container {
    pub dir: PathBuf,
    pub id: String,
    /// The lock on the directory, held while this value lives.
    _lock: Option<OwnedFd>,
}

impl Container {
    fn path(root: &Path, id: &str) -> Result<PathBuf> {
        validate_id(id)?;
        Ok(root.join(id))
    }

    /// Creates the container's directory, failing if it exists, and locks it.
    pub fn create(root: &Path, id: &str) -> Result<Container> {
        let dir = Container::path(root, id)?;
        // Private: a state file holds the whole config, environment included.
        use std::os::unix::fs::DirBuilderExt;
        if !root.is_dir() {
            fs::DirBuilder::new().recursive(true).mode(0o700).create(root).ctx_at("create state root", root)?;
        }
        match fs::DirBuilder::new().mode(0o700).create(&dir) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => return Err(RuntimeError::Exists { id: id.into() }),
            Err(e) => return Err(RuntimeError::io_at("create", &dir, e)),
        }
        let lock = lock_dir(&dir)?;
        Ok(Container { dir, id: id.into(), _lock: Some(lock) })
    }

    /// Opens an existing container and takes its lock (blocking until any
    /// other berth command on it has finished).
    pub fn open_locked(root: &Path, id: &str) -> Result<Container> {
        let dir = Container::path(root, id)?;
        let lock = match lock_dir(&dir) {
            Ok(l) => l,
            Err(RuntimeError::Io { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => {
                return Err(RuntimeError::NotExist { id: id.into() })
            }
            Err(e) => return Err(e),
        };
        // A concurrent delete may have removed it while we waited.
        if !dir.exists() {
            return Err(RuntimeError::NotExist { id: id.into() });
        }
        Ok(Container { dir, id: id.into(), _lock: Some(lock) })
    }

    /// Opens without locking (for read-only commands).
    pub fn open(root: &Path, id: &str) -> Result<Container> {
        let dir = Container::path(root, id)?;
        if !dir.is_dir() {
            return Err(RuntimeError::NotExist { id: id.into() });
        }
        Ok(Container { dir, id: id.into(), _lock: None })
    }

    /// Lets other berth commands act on the container (a foreground `run`
    /// must not keep `kill` or `delete` waiting for the container's life).
    pub fn unlock(&mut self) {
        self._lock = None;
    }

    /// Takes the lock again; `false` when the container was deleted meanwhile.
    pub fn relock(&mut self) -> Result<bool> {
        match lock_dir(&self.dir) {
            Ok(l) => {
                self._lock = Some(l);
                Ok(self.dir.exists())
            }
            Err(RuntimeError::Io { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(e),
        }
    }

    pub fn load(&self) -> Result<Option<Record>> {
        let p = self.dir.join(STATE_FILE);
        match fs::read(&p) {
            Ok(b) => serde_json::from_slice(&b).map(Some).map_err(|source| StateError::Corrupt { path: p.clone(), source }.into()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(RuntimeError::io_at("read", &p, e)),
        }
    }

    /// Writes the record: temp file, then rename. No fsync: the state root
    /// is volatile by design, and a sync costs tens of ms under I/O load.
    pub fn save(&self, r: &Record) -> Result<()> {
        let data = serde_json::to_vec(r).map_err(StateError::Encode)?;
        write_atomic(&self.dir.join(STATE_FILE), &data)
    }

    pub fn fifo(&self) -> PathBuf {
        self.dir.join(FIFO)
    }

    /// Removes the directory (the lock fd stays valid until dropped).
    pub fn remove(&self) -> Result<()> {
        match fs::remove_dir_all(&self.dir) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(RuntimeError::io_at("remove", &self.dir, e)),
        }
    }
}

fn lock_dir(dir: &Path) -> Result<OwnedFd> {
    let fd = berth_sys::openat(None, dir, libc::O_RDONLY | libc::O_DIRECTORY, 0).ctx_at("open", dir)?;
    berth_sys::flock(fd.as_fd(), libc::LOCK_EX).ctx_at("lock", dir)?;
    Ok(fd)
}

impl Record {
    /// The init process, if it is still the one berth started.
    pub fn init(&self) -> Option<Process> {
        Process::open(self.pid, self.start_time)
    }

    /// The status, from the live process: gone or a zombie = stopped;
    /// exec fifo still there = created; frozen = paused; else running.
    pub fn status(&self, c: &Container) -> Status {
        // (Process::open already calls a zombie gone.)
        let alive = self.pid > 0 && self.init().is_some();
        derive_status(self.phase, alive, || c.fifo().exists(), || self.cgroup.is_frozen())
    }

    pub fn oci<'a>(&'a self, status: Status) -> OciState<'a> {
        let pid = if matches!(status, Status::Stopped) { 0 } else { self.pid };
        OciState {
            oci_version: "1.2.0",
            id: &self.id,
            pid,
            status: status.as_str(),
            bundle: &self.bundle,
            rootfs: &self.rootfs,
            created: &self.created,
            owner: &self.owner,
            annotations: &self.annotations,
        }
    }
}

/// Describes a process for "what is stuck" diagnostics.
pub fn describe_pid(pid: i32) -> String {
    process::describe(pid)
}

/// Writes `data` to `path` so that a reader, or a process that dies midway,
/// sees the old file or the new one, never a torn one: a temp file beside
/// it (named for this process), then rename. No fsync: berth's files are
/// crash-safe against the death of a process, not against power loss (and a
/// sync costs tens of ms under I/O load).
pub fn write_atomic(path: &Path, data: &[u8]) -> Result<()> {
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let tmp = path.with_file_name(format!(".{name}.{}.tmp", std::process::id()));
    fs::write(&tmp, data).ctx_at("write", &tmp)?;
    // Over an existing file, the two are swapped and the old one unlinked:
    // ext4 starts the writeback of a file renamed over another
    // (auto_da_alloc), about 0.1 ms here idle and much more under I/O, and
    // an exchange does not. (A crash between leaves the old one at the
    // temporary name, which nothing reads.)
    match berth_sys::rename_exchange(&tmp, path) {
        Ok(()) => {
            let _ = fs::remove_file(&tmp);
            return Ok(());
        }
        Err(e) if matches!(e.raw_os_error(), Some(libc::ENOENT | libc::EINVAL | libc::ENOSYS | libc::EOPNOTSUPP)) => {}
        Err(e) => {
            let _ = fs::remove_file(&tmp);
            return Err(RuntimeError::io_at("write", path, e));
        }
    }
    fs::rename(&tmp, path).map_err(|e| {
        let _ = fs::remove_file(&tmp);
        RuntimeError::Io { step: "rename", on: crate::Subject::Pair { from: tmp.clone(), joint: "to", to: path.to_path_buf() }, source: e }
    })
}

/// The status from what is observed: the phase the record reached, whether
/// the init berth started is alive, and (asked only when they matter)
/// whether the exec fifo is still there and whether the cgroup is frozen.
pub fn derive_status(phase: Phase, alive: bool, fifo: impl FnOnce() -> bool, frozen: impl FnOnce() -> bool) -> Status {
    match (phase, alive) {
        // Init never reported ready: a create in flight, or one that crashed.
        (Phase::Creating, true) => Status::Creating,
        (_, false) => Status::Stopped,
        (Phase::Created, true) if fifo() => Status::Created,
        _ if frozen() => Status::Paused,
        _ => Status::Running,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_follows_the_phase_and_what_is_alive() {
        use Phase::*;
        let cases = [
            // phase, alive, fifo, frozen => status
            (Creating, true, true, false, Status::Creating),
            (Creating, false, true, false, Status::Stopped),
            (Creating, true, false, true, Status::Creating), // a frozen in-flight create is still creating
            (Created, true, true, false, Status::Created),
            (Created, true, true, true, Status::Created), // waiting on the fifo, whatever the freezer says
            (Created, true, false, false, Status::Running), // started by another berth just now
            (Created, false, true, false, Status::Stopped),
            (Started, true, true, false, Status::Running), // a fifo left by a crash does not make it created
            (Started, true, false, true, Status::Paused),
            (Started, false, false, true, Status::Stopped), // dead and frozen: stopped
        ];
        for (phase, alive, fifo, frozen, want) in cases {
            assert_eq!(derive_status(phase, alive, || fifo, || frozen), want, "{phase:?} alive={alive} fifo={fifo} frozen={frozen}");
        }
    }

    #[test]
    fn status_asks_only_what_it_needs() {
        let ask = |what: &'static str| move || -> bool { panic!("{what} asked for a stopped container") };
        assert_eq!(derive_status(Phase::Started, false, ask("fifo"), ask("freezer")), Status::Stopped);
        assert_eq!(derive_status(Phase::Started, true, ask("fifo"), || false), Status::Running);
    }

    #[test]
    fn ids_like_runc() {
        for ok in ["a", "web-1", "x_y.z+1", "0123"] {
            validate_id(ok).unwrap();
        }
        for bad in ["", ".", "..", "../x", "/", "a/b", "a b", "ä"] {
            assert!(validate_id(bad).is_err(), "{bad}");
        }
        assert!(validate_id(&"a".repeat(256)).is_err());
        validate_id(&"a".repeat(255)).unwrap();
    }
}
