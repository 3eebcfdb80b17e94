//! One error type for the engine. Each variant says which step failed and on
//! what; the CLI prints it once, at the boundary.

use std::fmt;
use std::io;

#[derive(Debug)]
pub enum Error {
    /// The bundle's configuration cannot be run as it is.
    Config(String),
    /// A container ID that runc would refuse.
    InvalidId(String),
    /// No container of that ID (callers match "does not exist").
    NotExist(String),
    /// A container of that ID already exists.
    Exists(String),
    /// The container is not in a state that allows the operation.
    State(String),
    /// The container's init is gone (ESRCH on its pidfd, or no live init):
    /// callers match runc's "container not running".
    NotRunning,
    /// An OCI hook could not run, or exited unsuccessfully.
    Hook { kind: String, path: String, why: String },
    /// A system call or file operation failed.
    Io { what: String, source: io::Error },
    /// A cgroup operation failed.
    Cgroup(berth_cgroups::Error),
    /// The container's init reported an error while setting up.
    Init(String),
    /// Something did not finish within its deadline.
    Timeout(String),
    /// Bad command-line usage.
    Usage(String),
}

impl Error {
    pub fn io(what: impl Into<String>, source: io::Error) -> Error {
        Error::Io { what: what.into(), source }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Config(m) | Error::State(m) | Error::Init(m) | Error::Timeout(m) | Error::Usage(m) => f.write_str(m),
            Error::InvalidId(m) => write!(f, "invalid container id: {m}"),
            Error::NotExist(id) => write!(f, "container {id} does not exist"),
            Error::Exists(id) => write!(f, "container with id {id} already exists"),
            Error::NotRunning => f.write_str("container not running"),
            Error::Hook { kind, path, why } => write!(f, "{kind} hook {path} {why}"),
            Error::Io { what, source } => write!(f, "{what}: {source}"),
            Error::Cgroup(e) => write!(f, "cgroup: {e}"),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Io { source, .. } => Some(source),
            Error::Cgroup(e) => Some(e),
            _ => None,
        }
    }
}

impl From<berth_cgroups::Error> for Error {
    fn from(e: berth_cgroups::Error) -> Error {
        Error::Cgroup(e)
    }
}

pub type Result<T> = std::result::Result<T, Error>;

/// Adds "what" context to an `io::Result`.
pub trait Context<T> {
    fn ctx(self, what: impl FnOnce() -> String) -> Result<T>;
}

impl<T> Context<T> for io::Result<T> {
    fn ctx(self, what: impl FnOnce() -> String) -> Result<T> {
        self.map_err(|e| Error::io(what(), e))
    }
}
