//! The berth binary as the container can see it (the CVE-2019-5736 class).
//!
//! A process that berth starts in a container runs berth's code until it
//! execs the container's program, and that program may be `/proc/self/exe`
//! itself (a symlink to it, or a script whose interpreter it is): then a
//! berth binary runs inside the container, and any process there may open
//! its `/proc/PID/exe`, wait for it to exit, and write through that fd onto
//! the host's berth, which the next berth command runs as root.
//!
//! So the commands that start processes in a container (create, run, exec)
//! never run from the host's file: they re-execute themselves from a
//! detached, read-only bind mount of their own binary (open_tree with
//! OPEN_TREE_CLONE, then MOUNT_ATTR_RDONLY: no one can reach or remount it),
//! or, where the mount API is missing, from a sealed memfd copy. Whatever a
//! container then opens through an exe link refuses writes (EROFS or the
//! seals), however it got there. The check on entry is what the kernel says
//! of /proc/self/exe, not a marker a caller could set.

use crate::Result;
use berth_sys as sys;
use std::ffi::CString;
use std::os::fd::AsFd;
use std::path::Path;

/// Set for the re-executed process, only so that a protection that did not
/// take fails instead of re-executing forever.
const REEXEC_ENV: &str = "_BERTH_EXE_PROTECTED";

/// Why the running binary is safe to expose to a container, if it is.
pub fn protection() -> Option<&'static str> {
    // O_PATH first: a binary may be executable and not readable.
    let path = sys::openat(None, Path::new("/proc/self/exe"), libc::O_PATH, 0).ok()?;
    if sys::fstatvfs_flags(path.as_fd()).is_ok_and(|f| f & libc::ST_RDONLY != 0) {
        return Some("read-only mount");
    }
    let fd = sys::openat(None, Path::new("/proc/self/exe"), libc::O_RDONLY, 0).ok()?;
    let want = libc::F_SEAL_WRITE | libc::F_SEAL_SEAL;
    if sys::file_seals(fd.as_fd()).is_ok_and(|s| s & want == want) {
        return Some("sealed memfd");
    }
    None
}

/// Why berth could not run from a protected copy of its binary.
#[derive(Debug, thiserror::Error)]
pub enum ExeError {
    #[error("open /proc/self/exe: {0}")]
    Open(#[source] std::io::Error),
    /// Neither a read-only clone (`clone`: why not) nor a sealed copy.
    #[error("protect the berth binary (read-only clone: {clone}; sealed copy): {source}")]
    Seal { clone: std::io::Error, source: std::io::Error },
    #[error("re-execute berth from its protected copy (read-only clone: {clone}): {source}")]
    Reexec { clone: std::io::Error, source: std::io::Error },
    #[error("the berth binary could not be protected from the container (it still runs from a writable file after re-executing)")]
    StillUnprotected,
}

/// Re-executes this process from a protected copy of its binary unless it
/// already runs from one. Call before anything else is done: the process
/// starts over with the same arguments and environment.
pub fn ensure_protected() -> Result<()> {
    let again = std::env::var_os(REEXEC_ENV).is_some();
    std::env::remove_var(REEXEC_ENV);
    if let Some(how) = protection() {
        if again {
            crate::log::debug(&format!("berth re-executed from a {how} copy of its binary"));
        }
        return Ok(());
    }
    if again {
        return Err(ExeError::StillUnprotected.into());
    }
    let argv: Vec<CString> =
        std::env::args_os().filter_map(|a| CString::new(std::os::unix::ffi::OsStrExt::as_bytes(a.as_os_str())).ok()).collect();
    let mut envp: Vec<CString> = std::env::vars_os()
        .filter_map(|(k, v)| {
            let mut kv = std::os::unix::ffi::OsStrExt::as_bytes(k.as_os_str()).to_vec();
            kv.push(b'=');
            kv.extend_from_slice(std::os::unix::ffi::OsStrExt::as_bytes(v.as_os_str()));
            CString::new(kv).ok()
        })
        .collect();
    envp.push(CString::new(format!("{REEXEC_ENV}=1")).expect("no NUL"));
    // A detached read-only bind mount of the binary: cheap (no copy), and
    // it goes away with the last process running from it.
    let clone_err = match sys::open_tree_clone(Path::new("/proc/self/exe"), false) {
        Ok(tree) => {
            let attr = sys::MountAttr { attr_set: sys::MOUNT_ATTR_RDONLY, ..Default::default() };
            match sys::mount_setattr(tree.as_fd(), false, &attr) {
                Ok(()) => sys::execveat_fd(tree.as_fd(), &argv, &envp),
                Err(e) => e,
            }
        }
        Err(e) => e,
    };
    // Without the mount API (or the privilege for it): a sealed copy.
    let src = sys::openat(None, Path::new("/proc/self/exe"), libc::O_RDONLY, 0).map_err(ExeError::Open)?;
    let copy = match sys::sealed_memfd_copy(src.as_fd(), c"berth") {
        Ok(copy) => copy,
        Err(source) => return Err(ExeError::Seal { clone: clone_err, source }.into()),
    };
    let e = sys::execveat_fd(copy.as_fd(), &argv, &envp);
    Err(ExeError::Reexec { clone: clone_err, source: e }.into())
}
