//! The berth container engine. `#![forbid(unsafe_code)]`: every system call
//! that needs `unsafe` lives in `berth-sys`.
//!
//! - [`config`]: load and validate the bundle's config.json
//! - [`state`]: container state on disk, IDs, locks, status
//! - [`process`]: a process as pidfd + start time
//! - [`init`]: the container's side of `create` (namespaces, rootfs, exec)
//! - [`rootfs`]: mounts, /dev, console, pivot_root, masked/read-only paths
//! - [`security`]: capabilities, rlimits, user switch
//! - [`hooks`]: OCI hooks
//! - [`teardown`]: the one way a container ends
//! - [`lifecycle`]: the verbs
#![forbid(unsafe_code)]

pub mod config;
mod error;
pub mod features;
pub mod hooks;
pub mod init;
pub mod lifecycle;
pub mod log;
pub mod process;
pub mod rootfs;
pub mod seccomp;
pub mod security;
pub mod state;
pub mod teardown;

pub use error::{Error, Result};
