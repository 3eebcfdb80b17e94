//! The engine's errors. Each kind of failure a caller may want to tell
//! apart is a variant of its own, carrying what it failed on (a path, a
//! pid, a container ID) and the error underneath as its source; the CLI
//! prints the chain once, at the boundary. The texts that callers of runc
//! parse ("does not exist", "container not running", ...) are runc's.
//!
//! The module enums ([`ConfigError`](crate::config::ConfigError),
//! [`IdError`](crate::state::IdError), [`StateError`](crate::state::StateError),
//! [`InitError`](crate::spawn::InitError), [`HookError`](crate::hooks::HookError),
//! [`TeardownError`](crate::teardown::TeardownError)) say which step failed.

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};

use crate::config::ConfigError;
use crate::hooks::HookError;
use crate::spawn::InitError;
use crate::state::{IdError, StateError};
use crate::teardown::TeardownError;
use berth_cgroups::CgroupError;

#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    /// The bundle's configuration cannot be run as it is.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// A container ID that runc would refuse.
    #[error("invalid container id: {0}")]
    InvalidId(#[from] IdError),
    /// No container of that ID (callers match "does not exist").
    #[error("container {id} does not exist")]
    NotExist { id: String },
    /// A container of that ID already exists.
    #[error("container with id {id} already exists")]
    Exists { id: String },
    /// The container is not in a state that allows the operation, or its
    /// record cannot be read or written.
    #[error(transparent)]
    State(#[from] StateError),
    /// The container's init is gone (ESRCH on its pidfd, or no live init):
    /// callers match runc's "container not running".
    #[error("container not running")]
    NotRunning,
    /// An OCI hook could not run, failed, or timed out.
    #[error(transparent)]
    Hook(#[from] HookError),
    /// A system call or file operation failed: which step, on what.
    #[error("{step}{on}: {source}")]
    Io { step: &'static str, on: Subject, source: io::Error },
    /// A linux.seccomp profile that cannot be loaded.
    #[error(transparent)]
    Seccomp(#[from] crate::seccomp::SeccompError),
    /// A filesystem step of the container's root.
    #[error(transparent)]
    Rootfs(#[from] crate::rootfs::RootfsError),
    /// A child was reaped, but its exit status could not be read.
    #[error("the process' exit status was lost")]
    ExitStatusLost,
    /// A cgroup operation failed.
    #[error("cgroup: {0}")]
    Cgroup(#[from] CgroupError),
    /// The container's setup (its init, or an exec'd process before its
    /// exec) failed, or the two sides of the setup lost each other.
    #[error(transparent)]
    Init(#[from] InitError),
    /// Teardown could not finish what it must (processes, mounts).
    #[error(transparent)]
    Teardown(#[from] TeardownError),
    /// berth could not run from a protected copy of its own binary.
    #[error(transparent)]
    Exe(#[from] crate::exe::ExeError),
    /// Background cleanup jobs that could not be finished.
    #[error(transparent)]
    Reaper(#[from] crate::reaper::ReaperError),
    /// This kernel lacks what berth cannot do without.
    #[error("this kernel lacks {needs}, which berth needs: {source}")]
    Kernel { needs: &'static str, source: io::Error },
    /// Bad command-line usage, in the words of runc's flag parser.
    #[error("{0}")]
    Usage(String),
}

/// The systemd driver's errors are cgroup errors.
impl From<berth_cgroups::systemd::SystemdError> for RuntimeError {
    fn from(e: berth_cgroups::systemd::SystemdError) -> Self {
        RuntimeError::Cgroup(e.into())
    }
}

impl RuntimeError {
    /// An I/O failure of `step` on nothing in particular.
    pub fn io(step: &'static str, source: io::Error) -> RuntimeError {
        RuntimeError::Io { step, on: Subject::None, source }
    }

    /// An I/O failure of `step` on `path`.
    pub fn io_at(step: &'static str, path: impl AsRef<Path>, source: io::Error) -> RuntimeError {
        RuntimeError::Io { step, on: Subject::Path(path.as_ref().to_path_buf()), source }
    }

    /// The errno underneath, when a system call failed.
    pub fn os_error(&self) -> Option<i32> {
        match self {
            RuntimeError::Io { source, .. } => source.raw_os_error(),
            RuntimeError::Cgroup(e) => e.os_error().and_then(io::Error::raw_os_error),
            _ => None,
        }
    }
}

/// What an I/O step acted on.
#[derive(Debug)]
pub enum Subject {
    None,
    Path(PathBuf),
    Pid(i32),
    Fd(i32),
    /// A named thing that is neither a path nor a process: a namespace
    /// kind, a signal, a hostname, a user.
    Name(String),
    /// A signal sent to a process.
    Signal {
        sig: i32,
        pid: i32,
    },
    /// A process's supplementary groups.
    Groups(Vec<u32>),
    /// Two paths: a bind's source and target, a rename's old and new name.
    Pair {
        from: PathBuf,
        joint: &'static str,
        to: PathBuf,
    },
}

impl fmt::Display for Subject {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Subject::None => Ok(()),
            Subject::Path(p) => write!(f, " {}", p.display()),
            Subject::Pid(p) => write!(f, " (pid {p})"),
            Subject::Fd(fd) => write!(f, " {fd}"),
            Subject::Name(n) => write!(f, " {n}"),
            Subject::Signal { sig, pid } => write!(f, " {sig} to pid {pid}"),
            Subject::Groups(g) => write!(f, " {g:?}"),
            Subject::Pair { from, joint, to } => write!(f, " {} {joint} {}", from.display(), to.display()),
        }
    }
}

pub type Result<T> = std::result::Result<T, RuntimeError>;

/// Names the step (and what it acted on) of a failed `io::Result`.
pub trait Context<T> {
    fn ctx(self, step: &'static str) -> Result<T>;
    fn ctx_at(self, step: &'static str, path: impl AsRef<Path>) -> Result<T>;
    fn ctx_pid(self, step: &'static str, pid: i32) -> Result<T>;
    fn ctx_fd(self, step: &'static str, fd: i32) -> Result<T>;
    fn ctx_of(self, step: &'static str, name: impl fmt::Display) -> Result<T>;
    /// `step from on to` (a bind, a move).
    fn ctx_onto(self, step: &'static str, from: impl AsRef<Path>, to: impl AsRef<Path>) -> Result<T>;
}

impl<T> Context<T> for io::Result<T> {
    fn ctx(self, step: &'static str) -> Result<T> {
        self.map_err(|source| RuntimeError::Io { step, on: Subject::None, source })
    }
    fn ctx_at(self, step: &'static str, path: impl AsRef<Path>) -> Result<T> {
        self.map_err(|source| RuntimeError::io_at(step, path, source))
    }
    fn ctx_pid(self, step: &'static str, pid: i32) -> Result<T> {
        self.map_err(|source| RuntimeError::Io { step, on: Subject::Pid(pid), source })
    }
    fn ctx_fd(self, step: &'static str, fd: i32) -> Result<T> {
        self.map_err(|source| RuntimeError::Io { step, on: Subject::Fd(fd), source })
    }
    fn ctx_of(self, step: &'static str, name: impl fmt::Display) -> Result<T> {
        self.map_err(|source| RuntimeError::Io { step, on: Subject::Name(name.to_string()), source })
    }
    fn ctx_onto(self, step: &'static str, from: impl AsRef<Path>, to: impl AsRef<Path>) -> Result<T> {
        self.map_err(|source| RuntimeError::Io {
            step,
            on: Subject::Pair { from: from.as_ref().to_path_buf(), joint: "on", to: to.as_ref().to_path_buf() },
            source,
        })
    }
}
