//! `openat2(2)`'s resolve flags done in user space, for kernels before 5.6
//! and for seccomp profiles that refuse openat2 (ENOSYS): the path is
//! walked one component at a time with `O_PATH | O_NOFOLLOW`, every
//! symlink read and spliced into the rest of the path by hand, and `..`
//! taken from the stack of directories already opened, never from the
//! filesystem. So nothing the tree holds, and no rename racing the walk,
//! can lead above the starting directory:
//!
//! - `RESOLVE_IN_ROOT`: an absolute target, or `..` at the top, stays at
//!   the starting directory (it is the root);
//! - `RESOLVE_BENEATH`: either is EXDEV;
//! - `RESOLVE_NO_SYMLINKS`: any symlink is ELOOP;
//! - `RESOLVE_NO_MAGICLINKS`: a procfs magic link is never followed as
//!   one: its text is resolved like any other target, inside the root;
//! - `RESOLVE_NO_XDEV`: a component on another mount than the starting
//!   directory is EXDEV.
//!
//! The last component is opened with the caller's flags plus `O_NOFOLLOW`,
//! from the directory already reached: if it was swapped for a symlink
//! since it was looked at, the open fails instead of following it.

use crate::{fstat, mount_id_fd, openat, readlink_fd};
use crate::{RESOLVE_BENEATH, RESOLVE_IN_ROOT, RESOLVE_NO_SYMLINKS, RESOLVE_NO_XDEV};
use std::collections::VecDeque;
use std::ffi::{OsStr, OsString};
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

/// The kernel's limit on symlinks in one lookup.
const MAX_LINKS: usize = 40;

fn err(code: i32) -> io::Error {
    io::Error::from_raw_os_error(code)
}

/// Which mount `fd` is on: its mount ID, or its device where statx has no
/// mount ID (before 5.8).
fn mount_key(fd: BorrowedFd<'_>) -> io::Result<u64> {
    match mount_id_fd(fd) {
        Err(e) if e.raw_os_error() == Some(libc::ENOSYS) => Ok(fstat(fd)?.st_dev),
        r => r,
    }
}

fn components(p: &[u8]) -> impl Iterator<Item = OsString> + '_ {
    p.split(|b| *b == b'/').filter(|c| !c.is_empty() && *c != b".").map(|c| OsStr::from_bytes(c).to_os_string())
}

/// What `openat2(dirfd, path, flags | O_CLOEXEC, mode, resolve)` opens,
/// found without openat2.
pub fn openat2_emulated(dirfd: BorrowedFd<'_>, path: &Path, flags: i32, mode: u32, resolve: u64) -> io::Result<OwnedFd> {
    let in_root = resolve & RESOLVE_IN_ROOT != 0;
    let beneath = resolve & RESOLVE_BENEATH != 0 && !in_root;
    let root_mount = if resolve & RESOLVE_NO_XDEV != 0 { Some(mount_key(dirfd)?) } else { None };
    let bytes = path.as_os_str().as_bytes();
    if bytes.starts_with(b"/") && beneath {
        return Err(err(libc::EXDEV));
    }
    // The directories walked through, the starting one at the bottom.
    let mut stack: Vec<OwnedFd> = vec![openat(Some(dirfd), Path::new("."), libc::O_PATH | libc::O_DIRECTORY, 0)?];
    let mut todo: VecDeque<OsString> = components(bytes).collect();
    let mut links = 0;
    while let Some(name) = todo.pop_front() {
        let top = stack.last().map(AsFd::as_fd).ok_or_else(|| err(libc::EINVAL))?;
        if name == ".." {
            match stack.len() {
                1 if beneath => return Err(err(libc::EXDEV)),
                1 => {} // `..` of the root is the root
                _ => drop(stack.pop()),
            }
            continue;
        }
        let last = todo.is_empty();
        let fd = match openat(Some(top), Path::new(&name), libc::O_PATH | libc::O_NOFOLLOW, 0) {
            Ok(fd) => fd,
            // A file to create: only as the last component, in the
            // directory reached, never through a link.
            Err(e) if last && e.raw_os_error() == Some(libc::ENOENT) && flags & libc::O_CREAT != 0 => {
                return openat(Some(top), Path::new(&name), flags | libc::O_NOFOLLOW, mode);
            }
            Err(e) => return Err(e),
        };
        let st = fstat(fd.as_fd())?;
        if st.st_mode & libc::S_IFMT == libc::S_IFLNK {
            if resolve & RESOLVE_NO_SYMLINKS != 0 {
                return Err(err(libc::ELOOP));
            }
            if last && flags & libc::O_NOFOLLOW != 0 {
                // The link itself (O_PATH), or ELOOP, as the kernel says.
                return openat(Some(top), Path::new(&name), flags, mode);
            }
            links += 1;
            if links > MAX_LINKS {
                return Err(err(libc::ELOOP));
            }
            let target = readlink_fd(fd.as_fd())?;
            let target = target.as_os_str().as_bytes();
            if target.starts_with(b"/") {
                if beneath {
                    return Err(err(libc::EXDEV));
                }
                stack.truncate(1);
            }
            let mut next: VecDeque<OsString> = components(target).collect();
            next.extend(todo);
            todo = next;
            continue;
        }
        if let Some(root) = root_mount {
            if mount_key(fd.as_fd())? != root {
                return Err(err(libc::EXDEV));
            }
        }
        if last {
            return openat(Some(top), Path::new(&name), flags | libc::O_NOFOLLOW, mode);
        }
        if st.st_mode & libc::S_IFMT != libc::S_IFDIR {
            return Err(err(libc::ENOTDIR));
        }
        stack.push(fd);
    }
    // The path named a directory already reached ("", ".", "a/..").
    let top = stack.last().map(AsFd::as_fd).ok_or_else(|| err(libc::EINVAL))?;
    openat(Some(top), Path::new("."), flags, mode)
}
