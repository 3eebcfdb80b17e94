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
//! - `RESOLVE_NO_MAGICLINKS`: a procfs magic link (`/proc/PID/fd/N`, `exe`,
//!   `cwd`, `root`, `ns/*`...) is ELOOP. procfs's ordinary symlinks (`self`,
//!   `thread-self`, `mounts`, `net`) are all at its root; every symlink below
//!   it is a magic one. (Without the flag, a magic link's text is resolved
//!   like any other target, inside the root: never followed as magic.)
//! - `RESOLVE_NO_XDEV`: a component on another mount than the starting
//!   directory is EXDEV.
//!
//! The last component is opened with the caller's flags plus `O_NOFOLLOW`,
//! from the directory already reached: if it was swapped for a symlink
//! since it was looked at, the open fails instead of following it.

use crate::{fstat, fstatfs_type, is_mount_root, mount_id_fd, openat, readlink_fd};
use crate::{RESOLVE_BENEATH, RESOLVE_IN_ROOT, RESOLVE_NO_MAGICLINKS, RESOLVE_NO_SYMLINKS, RESOLVE_NO_XDEV};
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

/// `PROC_SUPER_MAGIC`.
const PROC: i64 = 0x9fa0;

/// Whether the symlink `link`, found in the directory `parent`, is a procfs
/// magic link: on procfs, and not in procfs's root directory. Where the
/// kernel cannot say whether `parent` is a mount's root (before 5.8), only
/// the root's ordinary names are taken for ordinary.
fn magic(link: BorrowedFd<'_>, parent: BorrowedFd<'_>, name: &OsStr) -> io::Result<bool> {
    if fstatfs_type(link)? != PROC {
        return Ok(false);
    }
    Ok(match is_mount_root(parent) {
        Ok(root) => !root,
        Err(_) => !matches!(name.as_bytes(), b"self" | b"thread-self" | b"mounts" | b"net"),
    })
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
    if bytes.is_empty() {
        return Err(err(libc::ENOENT)); // as openat2 without AT_EMPTY_PATH
    }
    // A trailing slash asks for a directory, through a last symlink too.
    let must_dir = bytes.ends_with(b"/");
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
            if last && flags & libc::O_NOFOLLOW != 0 && !must_dir {
                // The link itself (O_PATH), or ELOOP, as the kernel says:
                // not following it is allowed under every resolve flag.
                return openat(Some(top), Path::new(&name), flags, mode);
            }
            if resolve & RESOLVE_NO_SYMLINKS != 0 || resolve & RESOLVE_NO_MAGICLINKS != 0 && magic(fd.as_fd(), top, &name)? {
                return Err(err(libc::ELOOP));
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
            if must_dir && st.st_mode & libc::S_IFMT != libc::S_IFDIR {
                return Err(err(libc::ENOTDIR));
            }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{openat2_syscall, RESOLVE_NO_MAGICLINKS};
    use std::os::fd::AsRawFd;
    use std::path::PathBuf;

    /// A tree in a fresh temp dir, removed when dropped.
    struct Tree(PathBuf);
    impl Tree {
        fn new(name: &str) -> Tree {
            static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
            let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let d = std::env::temp_dir().join(format!("berth-walk-{name}-{}-{n}", std::process::id()));
            let _ = std::fs::remove_dir_all(&d);
            for sub in ["etc", "a/b/c", "dir"] {
                std::fs::create_dir_all(d.join(sub)).unwrap();
            }
            std::fs::write(d.join("etc/passwd"), "inside").unwrap();
            std::fs::write(d.join("a/b/c/file"), "deep").unwrap();
            Tree(d)
        }
        fn link(&self, at: &str, to: &str) {
            std::os::unix::fs::symlink(to, self.0.join(at)).unwrap();
        }
        fn root(&self) -> OwnedFd {
            openat(None, &self.0, libc::O_PATH | libc::O_DIRECTORY, 0).unwrap()
        }
    }
    impl Drop for Tree {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    /// What an fd refers to, as (device, inode).
    fn id(fd: &OwnedFd) -> (u64, u64) {
        let st = fstat(fd.as_fd()).unwrap();
        (st.st_dev, st.st_ino)
    }

    /// Where an fd is, as the kernel names it (its /proc/self/fd link).
    fn place(fd: &OwnedFd) -> PathBuf {
        std::fs::read_link(format!("/proc/self/fd/{}", fd.as_raw_fd())).unwrap()
    }

    fn hostile() -> Tree {
        let t = Tree::new("hostile");
        t.link("abs", "/etc");
        t.link("up", "../../../../../../etc");
        t.link("a/b/c/out", "../../../../..");
        t.link("chain1", "chain2");
        t.link("chain2", "/abs/passwd");
        t.link("dangling", "/nowhere");
        t.link("loop", "loop");
        t.link("ping", "pong");
        t.link("pong", "ping");
        t.link("magic", "/proc/self/root");
        t.link("dir/self", ".");
        t.link("hostfile", "/etc/hostname");
        t
    }

    const PATHS: &[&str] = &[
        "etc/passwd",
        "abs/passwd",
        "up/passwd",
        "../../etc/passwd",
        "/etc/passwd",
        "a/b/c/out/etc/passwd",
        "a/b/c/../../../../../etc",
        "chain1",
        "dangling",
        "dangling/x",
        "loop",
        "ping/x",
        "magic/etc",
        "dir/self/self/self",
        "hostfile",
        "",
        ".",
        "a/b/c/file/x",
        "etc/passwd/",
    ];

    #[test]
    fn in_root_emulation_opens_what_the_kernel_opens() {
        let _fds = crate::tests::FDS.lock();
        let t = hostile();
        let root = t.root();
        let how = RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS;
        let mut compared = 0;
        for p in PATHS {
            let emulated = openat2_emulated(root.as_fd(), Path::new(p), libc::O_PATH, 0, how);
            match openat2_syscall(root.as_fd(), Path::new(p), libc::O_PATH, 0, how) {
                Err(e) if e.raw_os_error() == Some(libc::ENOSYS) => {
                    eprintln!("skipped: no openat2 here, the emulation is checked alone");
                }
                Ok(k) => {
                    let e = emulated.unwrap_or_else(|e| panic!("{p:?}: the kernel opened {:?}, the walk failed: {e}", place(&k)));
                    assert_eq!(id(&e), id(&k), "{p:?}: walk {:?}, kernel {:?}", place(&e), place(&k));
                    compared += 1;
                }
                Err(k) => {
                    let e = emulated.map(|fd| place(&fd)).expect_err(&format!("{p:?}: the kernel refused ({k}), the walk opened it"));
                    // The same refusal, or both refusing for the same reason class.
                    let same = e.raw_os_error() == k.raw_os_error();
                    let both_loop_or_missing = matches!(e.raw_os_error(), Some(libc::ELOOP | libc::ENOENT | libc::EXDEV))
                        && matches!(k.raw_os_error(), Some(libc::ELOOP | libc::ENOENT | libc::EXDEV));
                    assert!(same || both_loop_or_missing, "{p:?}: walk {e}, kernel {k}");
                }
            }
        }
        eprintln!("{compared} paths opened alike");
    }

    #[test]
    fn the_walk_never_leaves_the_root() {
        let _fds = crate::tests::FDS.lock();
        let t = hostile();
        let root = t.root();
        for p in PATHS {
            for how in [RESOLVE_IN_ROOT, RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS, RESOLVE_BENEATH] {
                if let Ok(fd) = openat2_emulated(root.as_fd(), Path::new(p), libc::O_PATH, 0, how) {
                    let at = place(&fd);
                    assert!(at.starts_with(&t.0), "{p:?} ({how:#x}) reached {at:?}, outside {:?}", t.0);
                }
            }
        }
    }

    #[test]
    fn beneath_refuses_to_climb_and_no_symlinks_refuses_links() {
        let _fds = crate::tests::FDS.lock();
        let t = hostile();
        let root = t.root();
        let code = |p: &str, how| openat2_emulated(root.as_fd(), Path::new(p), libc::O_PATH, 0, how).unwrap_err().raw_os_error();
        assert_eq!(code("../etc", RESOLVE_BENEATH), Some(libc::EXDEV));
        assert_eq!(code("/etc", RESOLVE_BENEATH), Some(libc::EXDEV));
        assert_eq!(code("abs/passwd", RESOLVE_BENEATH), Some(libc::EXDEV));
        assert_eq!(code("abs/passwd", RESOLVE_NO_SYMLINKS | RESOLVE_BENEATH), Some(libc::ELOOP));
        assert_eq!(code("loop", RESOLVE_IN_ROOT), Some(libc::ELOOP));
        // Without links or climbing, BENEATH opens as usual.
        let fd = openat2_emulated(root.as_fd(), Path::new("a/b/c/file"), libc::O_RDONLY, 0, RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS).unwrap();
        assert_eq!(std::fs::read_to_string(place(&fd)).unwrap(), "deep");
    }

    #[test]
    fn the_last_component_is_not_followed_with_o_nofollow() {
        let _fds = crate::tests::FDS.lock();
        let t = hostile();
        let root = t.root();
        let fd = openat2_emulated(root.as_fd(), Path::new("abs"), libc::O_PATH | libc::O_NOFOLLOW, 0, RESOLVE_IN_ROOT).unwrap();
        assert_eq!(fstat(fd.as_fd()).unwrap().st_mode & libc::S_IFMT, libc::S_IFLNK);
        let e = openat2_emulated(root.as_fd(), Path::new("abs"), libc::O_RDONLY | libc::O_NOFOLLOW, 0, RESOLVE_IN_ROOT).unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::ELOOP));
    }
}
