//! The berth container engine. `#![forbid(unsafe_code)]`: every system call
//! that needs `unsafe` lives in `berth-sys`.
//!
//! - [`config`]: load and validate the bundle's config.json
//! - [`state`]: container state on disk, IDs, locks, status
//! - [`process`]: a process as pidfd + start time
//! - [`spawn`]: how a container's processes come to be, the parent's side:
//!   namespaces for children, clone3 into the cgroup, the handshake
//! - [`init`]: the container's side of `create` (namespaces, rootfs, exec)
//! - [`rootfs`]: mounts, /dev, console, pivot_root, masked/read-only paths
//! - [`security`]: capabilities, rlimits, user switch
//! - [`hooks`]: OCI hooks
//! - [`teardown`]: the one way a container ends
//! - [`layer`], [`reaper`]: ephemeral writable layers, background cleanup
//! - [`lifecycle`]: the verbs
#![forbid(unsafe_code)]

pub mod busy;
pub mod config;
pub mod error;
pub mod events;
pub mod exe;
pub mod exec;
pub mod features;
pub mod hooks;
pub mod init;
pub mod layer;
pub mod lifecycle;
pub mod log;
pub mod process;
pub mod reaper;
pub mod reclaim;
pub mod rootfs;
pub mod seccomp;
pub mod security;
pub mod spawn;
pub mod state;
pub mod teardown;
pub mod tty;

pub use error::{Result, RuntimeError, Subject};

/// Every fault-injection point, in the order a container's life meets them.
pub const FAULT_POINTS: &[&str] = &[
    "create:state-saved",
    "create:cgroup-created",
    "create:cloned",
    "create:pid-saved",
    "create:ready",
    "start:released",
    "kill:signaled",
    "delete:signaled",
    "delete:exited",
    "delete:cgroup-empty",
    "delete:cgroup-removed",
    "delete:handed-to-reaper",
];

/// Fault injection for crash-safety tests: when BERTH_FAULT_INJECT names
/// `point`, berth dies here at once (SIGKILL), as a crash would. Only in
/// builds with the `fault-injection` feature (the tests'); the shipped
/// binary ignores the variable.
#[cfg(feature = "fault-injection")]
pub fn fault(point: &str) {
    if std::env::var_os("BERTH_FAULT_INJECT").is_some_and(|v| v == point) {
        let _ = berth_sys::pidfd_open(berth_sys::getpid())
            .and_then(|fd| berth_sys::pidfd_send_signal(std::os::fd::AsFd::as_fd(&fd), libc::SIGKILL));
    }
}

/// Without the `fault-injection` feature: nothing.
#[cfg(not(feature = "fault-injection"))]
#[inline(always)]
pub fn fault(_point: &str) {}
