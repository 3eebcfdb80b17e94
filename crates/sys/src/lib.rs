//! The only `unsafe` of berth: small, typed wrappers over the Linux calls the
//! runtime needs. Each function names the C call it wraps; errors are the
//! `errno` as `io::Error`. Everything above this crate is `forbid(unsafe_code)`.
//!
//! berth is single-threaded, which is what makes `clone3` without `exec`
//! (see [`clone3`]) sound: the child starts with a copy of one thread's state.

use std::ffi::{CStr, CString};
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::path::Path;

pub use libc;

bitflags::bitflags! {
    /// Kinds of namespace, as clone3, unshare and setns take them (CLONE_NEW*).
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
    pub struct Namespaces: i32 {
        const MOUNT = libc::CLONE_NEWNS;
        const UTS = libc::CLONE_NEWUTS;
        const IPC = libc::CLONE_NEWIPC;
        const USER = libc::CLONE_NEWUSER;
        const PID = libc::CLONE_NEWPID;
        const NET = libc::CLONE_NEWNET;
        const CGROUP = libc::CLONE_NEWCGROUP;
        /// Linux 5.6.
        const TIME = libc::CLONE_NEWTIME;
    }
}

impl Namespaces {
    /// As clone3's 64-bit flags.
    fn clone_flags(self) -> u64 {
        u64::from(self.bits().unsigned_abs())
    }
}

pub mod mountinfo;
pub mod seccomp;
mod walk;

pub use walk::openat2_emulated;

fn cstr(p: &Path) -> io::Result<CString> {
    use std::os::unix::ffi::OsStrExt;
    CString::new(p.as_os_str().as_bytes()).map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))
}

fn opt_cstr(s: Option<&str>) -> io::Result<Option<CString>> {
    s.map(|s| CString::new(s).map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))).transpose()
}

fn check(r: libc::c_int) -> io::Result<libc::c_int> {
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r)
    }
}

fn check_l(r: libc::c_long) -> io::Result<libc::c_long> {
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r)
    }
}

/// A `syscall(2)` result that the kernel defines as an int (an fd, a pid).
fn int(r: libc::c_long) -> io::Result<libc::c_int> {
    libc::c_int::try_from(check_l(r)?).map_err(|_| io::Error::from_raw_os_error(libc::EOVERFLOW))
}

/// A byte count returned by read/write/sendfile (never negative once checked).
fn count(r: libc::ssize_t) -> io::Result<usize> {
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r.unsigned_abs())
    }
}

/// An fd as the u32 that bpf and clone attributes hold.
fn fd_u32(fd: BorrowedFd<'_>) -> u32 {
    fd.as_raw_fd().unsigned_abs() // a valid fd is never negative
}

/// The two fds a socketpair(2) or pipe2(2) just returned, owned.
fn pair(fds: [RawFd; 2]) -> (OwnedFd, OwnedFd) {
    // SAFETY: the kernel just returned both and nothing else owns them.
    let a = unsafe { OwnedFd::from_raw_fd(fds[0]) };
    // SAFETY: as above.
    let b = unsafe { OwnedFd::from_raw_fd(fds[1]) };
    (a, b)
}

/// Turns a freshly returned file descriptor into an `OwnedFd`.
fn owned(fd: libc::c_int) -> io::Result<OwnedFd> {
    let fd = check(fd)?;
    // SAFETY: the kernel just returned `fd` to us and nothing else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Which side of a [`clone3`] we are on.
#[derive(Debug)]
pub enum Forked {
    /// In the parent: the child's PID (in our PID namespace) and a pidfd for it.
    Parent { pid: i32, pidfd: OwnedFd },
    /// In the child.
    Child,
}

/// Fails with EINVAL unless this process has a single thread: the kernel
/// refuses `unshare(CLONE_VM)` when any other task shares our memory, and
/// does nothing otherwise. A child made by [`clone3`] or [`fork`] starts with
/// a copy of the calling thread only; with other threads alive, a lock one
/// of them held (the allocator's) would stay locked forever in the child.
fn single_threaded() -> io::Result<()> {
    // SAFETY: unshare(CLONE_VM) changes nothing for a single-threaded
    // process and fails (EINVAL) for any other.
    check(unsafe { libc::unshare(libc::CLONE_VM) })
        .map(drop)
        .map_err(|e| io::Error::new(e.kind(), "a child can only be made by a single-threaded process"))
}

/// `clone3(2)` with `CLONE_PIDFD` plus `flags` (namespace flags), exit signal
/// SIGCHLD, optionally `CLONE_INTO_CGROUP` with `cgroup_fd`.
///
/// The child continues with a copy of the calling thread, as after
/// `fork(2)`; that is sound only in a single-threaded process, which is
/// checked first (EINVAL otherwise).
pub fn clone3(namespaces: Namespaces, cgroup_fd: Option<BorrowedFd<'_>>) -> io::Result<Forked> {
    single_threaded()?;
    let mut pidfd: libc::c_int = -1;
    // SAFETY: clone_args is plain integers; all-zero is its "not set".
    let mut args: libc::clone_args = unsafe { std::mem::zeroed() };
    // libc types CLONE_INTO_CGROUP as an i32, which it does not fit.
    const CLONE_INTO_CGROUP: u64 = 0x2_0000_0000;
    args.flags = namespaces.clone_flags() | u64::from(libc::CLONE_PIDFD.unsigned_abs());
    args.pidfd = std::ptr::addr_of_mut!(pidfd) as u64;
    args.exit_signal = u64::from(libc::SIGCHLD.unsigned_abs());
    if let Some(fd) = cgroup_fd {
        args.flags |= CLONE_INTO_CGROUP;
        args.cgroup = u64::from(fd_u32(fd));
    }
    // SAFETY: `args` is a valid clone_args of the size we pass; with no stack
    // given the child runs on a copy of our stack, like fork(), and we are
    // single-threaded (checked above).
    let r = unsafe { libc::syscall(libc::SYS_clone3, std::ptr::addr_of_mut!(args), std::mem::size_of::<libc::clone_args>()) };
    let r = match check_l(r) {
        // Before 5.3, or refused by a seccomp filter: the classic clone(2),
        // which has CLONE_PIDFD too (5.2) but cannot start in a cgroup (the
        // caller asks again without one, and moves the child itself).
        Err(e) if e.raw_os_error() == Some(libc::ENOSYS) && cgroup_fd.is_none() => clone_classic(args.flags, &mut pidfd)?,
        r => r?,
    };
    if r == 0 {
        Ok(Forked::Child)
    } else {
        // SAFETY: with CLONE_PIDFD the kernel stored a new pidfd in `pidfd`.
        let pidfd = unsafe { OwnedFd::from_raw_fd(pidfd) };
        Ok(Forked::Parent { pid: int(r)?, pidfd })
    }
}

/// The classic `clone(2)` with `flags` (CLONE_PIDFD among them) and no new
/// stack; the pidfd is stored in `pidfd`. Every architecture berth builds
/// for takes the parent_tid pointer, where CLONE_PIDFD writes, third.
fn clone_classic(flags: u64, pidfd: &mut libc::c_int) -> io::Result<libc::c_long> {
    let flags = flags | u64::from(libc::SIGCHLD.unsigned_abs());
    // SAFETY: no stack (the child continues on a copy of ours, as after
    // fork), a valid pointer for the pidfd, no tid or TLS; the caller has
    // checked that we are single-threaded.
    check_l(unsafe { libc::syscall(libc::SYS_clone, flags, 0usize, std::ptr::from_mut(pidfd), 0usize, 0usize) })
}

/// `fork(2)`; `None` in the child. Single-threaded only, as [`clone3`].
pub fn fork() -> io::Result<Option<i32>> {
    single_threaded()?;
    // SAFETY: we are single-threaded (checked above).
    let r = check(unsafe { libc::fork() })?;
    Ok(if r == 0 { None } else { Some(r) })
}

/// `_exit(2)`: leave the process without running destructors or atexit.
pub fn exit_now(code: i32) -> ! {
    // SAFETY: always safe; never returns.
    unsafe { libc::_exit(code) }
}

/// `pidfd_open(2)`.
pub fn pidfd_open(pid: i32) -> io::Result<OwnedFd> {
    // SAFETY: plain syscall with integer arguments.
    let r = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    owned(int(r)?)
}

/// `pidfd_send_signal(2)`.
pub fn pidfd_send_signal(pidfd: BorrowedFd<'_>, sig: i32) -> io::Result<()> {
    // SAFETY: plain syscall; a null siginfo is allowed.
    let r = unsafe { libc::syscall(libc::SYS_pidfd_send_signal, pidfd.as_raw_fd(), sig, std::ptr::null::<libc::siginfo_t>(), 0) };
    check_l(r).map(drop)
}

/// How a child ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitStatus {
    Exited(i32),
    Signaled(i32),
}

impl ExitStatus {
    /// The shell convention: the exit code, or 128 + the signal number.
    pub fn code(self) -> i32 {
        match self {
            ExitStatus::Exited(c) => c,
            ExitStatus::Signaled(s) => 128 + s,
        }
    }
}

/// `waitid(P_PIDFD, fd, WEXITED [| WNOHANG])`: reap our child by pidfd.
/// Returns `None` with `nohang` when it has not exited yet.
pub fn waitid_pidfd(pidfd: BorrowedFd<'_>, nohang: bool) -> io::Result<Option<ExitStatus>> {
    // SAFETY: zeroed siginfo_t is a valid out-buffer.
    let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
    let mut opts = libc::WEXITED;
    if nohang {
        opts |= libc::WNOHANG;
    }
    loop {
        // SAFETY: `info` is a valid out pointer.
        let r = unsafe { libc::waitid(libc::P_PIDFD, fd_u32(pidfd), &mut info, opts) };
        if r < 0 {
            let e = io::Error::last_os_error();
            if e.raw_os_error() == Some(libc::EINTR) {
                continue;
            }
            return Err(e);
        }
        break;
    }
    // SAFETY: waitid filled `info` (or left si_pid 0 with WNOHANG).
    let pid = unsafe { info.si_pid() };
    // SAFETY: as above.
    let status = unsafe { info.si_status() };
    if pid == 0 {
        return Ok(None);
    }
    Ok(Some(if info.si_code == libc::CLD_EXITED { ExitStatus::Exited(status) } else { ExitStatus::Signaled(status) }))
}

/// `waitpid(pid, WNOHANG?)` for children we know only by pid (hooks).
pub fn waitpid(pid: i32) -> io::Result<ExitStatus> {
    let mut st = 0;
    loop {
        // SAFETY: valid out pointer.
        let r = unsafe { libc::waitpid(pid, &mut st, 0) };
        if r < 0 {
            let e = io::Error::last_os_error();
            if e.raw_os_error() == Some(libc::EINTR) {
                continue;
            }
            return Err(e);
        }
        break;
    }
    Ok(if libc::WIFEXITED(st) { ExitStatus::Exited(libc::WEXITSTATUS(st)) } else { ExitStatus::Signaled(libc::WTERMSIG(st)) })
}

/// `poll(2)` on a set of fds for POLLIN; returns the `revents` of each.
/// `timeout_ms` < 0 waits forever. EINTR is retried.
pub fn poll_in(fds: &[BorrowedFd<'_>], timeout_ms: i32) -> io::Result<Vec<i16>> {
    poll_for(fds, libc::POLLIN, timeout_ms)
}

/// `poll(2)` for `events` on every fd; the revents of each.
pub fn poll_for(fds: &[BorrowedFd<'_>], events: i16, timeout_ms: i32) -> io::Result<Vec<i16>> {
    let mut p: Vec<libc::pollfd> = fds.iter().map(|f| libc::pollfd { fd: f.as_raw_fd(), events, revents: 0 }).collect();
    loop {
        // SAFETY: `p` is a valid array of `p.len()` pollfds.
        let r = unsafe { libc::poll(p.as_mut_ptr(), p.len() as libc::nfds_t, timeout_ms) };
        if r < 0 {
            let e = io::Error::last_os_error();
            if e.raw_os_error() == Some(libc::EINTR) {
                continue;
            }
            return Err(e);
        }
        return Ok(p.iter().map(|x| x.revents).collect());
    }
}

/// A poll(2) timeout for `d`: milliseconds, saturated at `i32::MAX`.
pub fn poll_ms(d: std::time::Duration) -> i32 {
    i32::try_from(d.as_millis()).unwrap_or(i32::MAX)
}

/// The fds `3..3 + n` that `--preserve-fds n` hands on; None when `n` is
/// past any fd number.
pub fn preserved_fds(n: u32) -> Option<std::ops::Range<RawFd>> {
    Some(3..RawFd::try_from(n).ok()?.checked_add(3)?)
}

/// `setns(2)`: joins the namespaces of `fd` (an nsfs fd: one kind; a pidfd:
/// every kind in `kinds`).
pub fn setns(fd: BorrowedFd<'_>, kinds: Namespaces) -> io::Result<()> {
    // SAFETY: plain syscall.
    check(unsafe { libc::setns(fd.as_raw_fd(), kinds.bits()) }).map(drop)
}

/// `unshare(2)` of new namespaces.
pub fn unshare(kinds: Namespaces) -> io::Result<()> {
    // SAFETY: plain syscall.
    check(unsafe { libc::unshare(kinds.bits()) }).map(drop)
}

/// `mount(2)`. `source`/`fstype`/`data` may be absent.
pub fn mount(source: Option<&Path>, target: &Path, fstype: Option<&str>, flags: libc::c_ulong, data: Option<&str>) -> io::Result<()> {
    let src = source.map(cstr).transpose()?;
    let tgt = cstr(target)?;
    let fs = opt_cstr(fstype)?;
    let dat = opt_cstr(data)?;
    // SAFETY: every pointer is a valid NUL-terminated string or null.
    check(unsafe {
        libc::mount(
            src.as_ref().map_or(std::ptr::null(), |s| s.as_ptr()),
            tgt.as_ptr(),
            fs.as_ref().map_or(std::ptr::null(), |s| s.as_ptr()),
            flags,
            dat.as_ref().map_or(std::ptr::null(), |s| s.as_ptr().cast::<libc::c_void>()),
        )
    })
    .map(drop)
}

/// `umount2(2)`.
pub fn umount2(target: &Path, flags: i32) -> io::Result<()> {
    let t = cstr(target)?;
    // SAFETY: valid string.
    check(unsafe { libc::umount2(t.as_ptr(), flags) }).map(drop)
}

/// `renameat2(from, to, RENAME_EXCHANGE)`: swaps two existing files
/// atomically.
pub fn rename_exchange(from: &Path, to: &Path) -> io::Result<()> {
    let (f, t) = (cstr(from)?, cstr(to)?);
    // SAFETY: valid C strings.
    check(unsafe { libc::renameat2(libc::AT_FDCWD, f.as_ptr(), libc::AT_FDCWD, t.as_ptr(), libc::RENAME_EXCHANGE) }).map(drop)
}

/// `pivot_root(2)`.
pub fn pivot_root(new_root: &Path, put_old: &Path) -> io::Result<()> {
    let n = cstr(new_root)?;
    let o = cstr(put_old)?;
    // SAFETY: valid strings.
    check_l(unsafe { libc::syscall(libc::SYS_pivot_root, n.as_ptr(), o.as_ptr()) }).map(drop)
}

/// `chroot(2)`.
pub fn chroot(p: &Path) -> io::Result<()> {
    let c = cstr(p)?;
    // SAFETY: valid string.
    check(unsafe { libc::chroot(c.as_ptr()) }).map(drop)
}

/// `fchdir(2)`.
pub fn fchdir(fd: BorrowedFd<'_>) -> io::Result<()> {
    // SAFETY: plain syscall.
    check(unsafe { libc::fchdir(fd.as_raw_fd()) }).map(drop)
}

pub const RESOLVE_NO_XDEV: u64 = 0x01;
pub const RESOLVE_NO_MAGICLINKS: u64 = 0x02;
pub const RESOLVE_NO_SYMLINKS: u64 = 0x04;
pub const RESOLVE_BENEATH: u64 = 0x08;
pub const RESOLVE_IN_ROOT: u64 = 0x10;

/// Set once openat2 said ENOSYS: the kernel (before 5.6) or a seccomp
/// filter lacks it, and every later call goes straight to the walk.
static NO_OPENAT2: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// `openat2(2)` with `resolve` flags (e.g. [`RESOLVE_IN_ROOT`]); where the
/// call is missing (ENOSYS), the same lookup done in user space
/// ([`openat2_emulated`]).
pub fn openat2(dirfd: BorrowedFd<'_>, path: &Path, flags: i32, mode: u32, resolve: u64) -> io::Result<OwnedFd> {
    use std::sync::atomic::Ordering;
    if NO_OPENAT2.load(Ordering::Relaxed) {
        return openat2_emulated(dirfd, path, flags | libc::O_CLOEXEC, mode, resolve);
    }
    match openat2_syscall(dirfd, path, flags, mode, resolve) {
        Err(e) if e.raw_os_error() == Some(libc::ENOSYS) => {
            NO_OPENAT2.store(true, Ordering::Relaxed);
            openat2_emulated(dirfd, path, flags | libc::O_CLOEXEC, mode, resolve)
        }
        r => r,
    }
}

/// The openat2 system call itself.
pub fn openat2_syscall(dirfd: BorrowedFd<'_>, path: &Path, flags: i32, mode: u32, resolve: u64) -> io::Result<OwnedFd> {
    let p = cstr(path)?;
    // SAFETY: open_how is plain integers; zeroed is a valid value to fill in.
    let mut how: libc::open_how = unsafe { std::mem::zeroed() };
    how.flags = u64::from((flags | libc::O_CLOEXEC).unsigned_abs()); // open flags are bits
    how.mode = u64::from(mode);
    how.resolve = resolve;
    loop {
        // SAFETY: `how` is a valid open_how of the size we pass; `p` is valid.
        let r = unsafe {
            libc::syscall(
                libc::SYS_openat2,
                dirfd.as_raw_fd(),
                p.as_ptr(),
                &how as *const libc::open_how,
                std::mem::size_of::<libc::open_how>(),
            )
        };
        if r < 0 && io::Error::last_os_error().raw_os_error() == Some(libc::EAGAIN) {
            continue; // the kernel asks to retry when a rename raced the lookup
        }
        return owned(int(r)?);
    }
}

/// `openat(2)` (always O_CLOEXEC).
pub fn openat(dirfd: Option<BorrowedFd<'_>>, path: &Path, flags: i32, mode: u32) -> io::Result<OwnedFd> {
    let p = cstr(path)?;
    let d = dirfd.map_or(libc::AT_FDCWD, |d| d.as_raw_fd());
    // SAFETY: valid string.
    owned(unsafe { libc::openat(d, p.as_ptr(), flags | libc::O_CLOEXEC, mode) })
}

/// `readlinkat(fd, "")`: the target of the symlink an `O_PATH | O_NOFOLLOW`
/// fd refers to.
pub fn readlink_fd(fd: BorrowedFd<'_>) -> io::Result<std::path::PathBuf> {
    use std::os::unix::ffi::OsStringExt;
    let mut buf = vec![0u8; 256];
    loop {
        // SAFETY: writes at most buf.len() bytes into buf.
        let n = count(unsafe { libc::readlinkat(fd.as_raw_fd(), c"".as_ptr(), buf.as_mut_ptr().cast(), buf.len()) })?;
        if n < buf.len() {
            buf.truncate(n);
            return Ok(std::path::PathBuf::from(std::ffi::OsString::from_vec(buf)));
        }
        if buf.len() >= 1 << 16 {
            return Err(io::Error::from_raw_os_error(libc::ENAMETOOLONG));
        }
        buf.resize(buf.len() * 2, 0);
    }
}

/// The mount ID (STATX_MNT_ID) of the mount `fd` is on.
pub fn mount_id_fd(fd: BorrowedFd<'_>) -> io::Result<u64> {
    statx_mount_id(fd, 0x1000)
}

/// The unique mount ID (STATX_MNT_ID_UNIQUE, Linux 6.8+) of the mount `fd`
/// is on.
pub fn mount_id_unique_fd(fd: BorrowedFd<'_>) -> io::Result<u64> {
    statx_mount_id(fd, 0x4000)
}

/// statx(AT_EMPTY_PATH) of `fd` for one of the mount ID masks.
fn statx_mount_id(fd: BorrowedFd<'_>, mask: u32) -> io::Result<u64> {
    // SAFETY: statx writes into a zeroed libc::statx we own.
    let mut st: libc::statx = unsafe { std::mem::zeroed() };
    // SAFETY: valid fd, empty C string and output struct.
    check(unsafe { libc::statx(fd.as_raw_fd(), c"".as_ptr(), libc::AT_EMPTY_PATH, mask, &mut st) })?;
    if st.stx_mask & mask == 0 {
        return Err(io::Error::from_raw_os_error(libc::ENOSYS));
    }
    Ok(st.stx_mnt_id)
}

/// `mkdirat(2)`.
pub fn mkdirat(dirfd: BorrowedFd<'_>, name: &Path, mode: u32) -> io::Result<()> {
    let p = cstr(name)?;
    // SAFETY: valid string.
    check(unsafe { libc::mkdirat(dirfd.as_raw_fd(), p.as_ptr(), mode) }).map(drop)
}

/// `mknodat(2)`.
pub fn mknodat(dirfd: BorrowedFd<'_>, name: &Path, mode: u32, dev: u64) -> io::Result<()> {
    let p = cstr(name)?;
    // SAFETY: valid string.
    check(unsafe { libc::mknodat(dirfd.as_raw_fd(), p.as_ptr(), mode, dev) }).map(drop)
}

/// `mkfifo(3)`.
pub fn mkfifo(path: &Path, mode: u32) -> io::Result<()> {
    let p = cstr(path)?;
    // SAFETY: valid string.
    check(unsafe { libc::mkfifo(p.as_ptr(), mode) }).map(drop)
}

/// `makedev(3)`; None when a number does not fit the kernel's 32 bits.
pub fn makedev(major: u64, minor: u64) -> Option<u64> {
    Some(libc::makedev(u32::try_from(major).ok()?, u32::try_from(minor).ok()?))
}

/// `fchownat(fd, "", uid, gid, AT_EMPTY_PATH)`.
pub fn fchown(fd: BorrowedFd<'_>, uid: u32, gid: u32) -> io::Result<()> {
    // SAFETY: plain syscall.
    check(unsafe { libc::fchown(fd.as_raw_fd(), uid, gid) }).map(drop)
}

/// `fstat(2)`.
pub fn fstat(fd: BorrowedFd<'_>) -> io::Result<libc::stat> {
    // SAFETY: zeroed stat is a valid out buffer.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: valid fd and out pointer.
    check(unsafe { libc::fstat(fd.as_raw_fd(), &mut st) })?;
    Ok(st)
}

/// `sethostname(2)`.
pub fn sethostname(name: &str) -> io::Result<()> {
    // SAFETY: pointer and length describe `name`.
    check(unsafe { libc::sethostname(name.as_ptr().cast::<libc::c_char>(), name.len()) }).map(drop)
}

/// `setdomainname(2)`.
pub fn setdomainname(name: &str) -> io::Result<()> {
    // SAFETY: pointer and length describe `name`.
    check(unsafe { libc::setdomainname(name.as_ptr().cast::<libc::c_char>(), name.len()) }).map(drop)
}

/// `setresuid(2)` (all threads: berth has one).
pub fn setresuid(uid: u32) -> io::Result<()> {
    // SAFETY: plain syscall.
    check(unsafe { libc::setresuid(uid, uid, uid) }).map(drop)
}

/// `setresgid(2)`.
pub fn setresgid(gid: u32) -> io::Result<()> {
    // SAFETY: plain syscall.
    check(unsafe { libc::setresgid(gid, gid, gid) }).map(drop)
}

/// `setgroups(2)`.
pub fn setgroups(gids: &[u32]) -> io::Result<()> {
    // SAFETY: pointer and length describe `gids`.
    check(unsafe { libc::setgroups(gids.len(), gids.as_ptr()) }).map(drop)
}

/// `umask(2)`.
pub fn umask(mask: u32) {
    // SAFETY: always succeeds.
    unsafe { libc::umask(mask) };
}

/// `prctl(2)` with integer arguments (the typed wrappers below are what the
/// runtime calls).
fn prctl(option: i32, a2: u64, a3: u64, a4: u64, a5: u64) -> io::Result<i32> {
    // SAFETY: every option berth uses takes integer arguments.
    check(unsafe { libc::prctl(option, a2, a3, a4, a5) })
}

/// Capability sets as 64-bit masks (bit N = capability N).
#[derive(Debug, Default, Clone, Copy)]
pub struct CapSets {
    pub effective: u64,
    pub permitted: u64,
    pub inheritable: u64,
}

/// `capset(2)` with `_LINUX_CAPABILITY_VERSION_3` for this process.
pub fn capset(c: CapSets) -> io::Result<()> {
    #[repr(C)]
    struct Header {
        version: u32,
        pid: i32,
    }
    #[repr(C)]
    #[derive(Clone, Copy)]
    struct Data {
        effective: u32,
        permitted: u32,
        inheritable: u32,
    }
    let hdr = Header { version: 0x20080522, pid: 0 };
    // The low and the high 32 bits of each set.
    let half = |m: u64, shift: u32| u32::try_from((m >> shift) & u64::from(u32::MAX)).unwrap_or(0);
    let data = [
        Data { effective: half(c.effective, 0), permitted: half(c.permitted, 0), inheritable: half(c.inheritable, 0) },
        Data { effective: half(c.effective, 32), permitted: half(c.permitted, 32), inheritable: half(c.inheritable, 32) },
    ];
    // SAFETY: header and the two-element data array have the v3 layout.
    check_l(unsafe { libc::syscall(libc::SYS_capset, &hdr as *const Header, data.as_ptr()) }).map(drop)
}

/// `prlimit(2)` on this process.
pub fn setrlimit(resource: i32, soft: u64, hard: u64) -> io::Result<()> {
    let l = libc::rlimit { rlim_cur: soft, rlim_max: hard };
    let resource = libc::__rlimit_resource_t::try_from(resource).map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))?;
    // SAFETY: valid pointer; null old-limit pointer allowed.
    check(unsafe { libc::prlimit(0, resource, &l, std::ptr::null_mut()) }).map(drop)
}

/// `execve(2)`. Returns only on failure.
pub fn execve(path: &CStr, argv: &[CString], envp: &[CString]) -> io::Error {
    let mut a: Vec<*const libc::c_char> = argv.iter().map(|s| s.as_ptr()).collect();
    a.push(std::ptr::null());
    let mut e: Vec<*const libc::c_char> = envp.iter().map(|s| s.as_ptr()).collect();
    e.push(std::ptr::null());
    // SAFETY: NULL-terminated arrays of valid strings that outlive the call.
    unsafe { libc::execve(path.as_ptr(), a.as_ptr(), e.as_ptr()) };
    io::Error::last_os_error()
}

/// `close_range(first, ~0, CLOSE_RANGE_CLOEXEC)`: mark every fd from `first`
/// on close-on-exec.
pub fn cloexec_from(first: u32) -> io::Result<()> {
    // SAFETY: plain syscall.
    check_l(unsafe { libc::syscall(libc::SYS_close_range, first, u32::MAX, libc::CLOSE_RANGE_CLOEXEC) }).map(drop)
}

/// `dup3(2)` onto a fixed fd number (used for stdio).
pub fn dup2(fd: BorrowedFd<'_>, to: RawFd) -> io::Result<()> {
    if fd.as_raw_fd() == to {
        // Keep it, but make sure it survives exec.
        // SAFETY: plain fcntl on a valid fd.
        let fl = check(unsafe { libc::fcntl(to, libc::F_GETFD) })?;
        // SAFETY: as above.
        return check(unsafe { libc::fcntl(to, libc::F_SETFD, fl & !libc::FD_CLOEXEC) }).map(drop);
    }
    // SAFETY: plain syscall; `to` is a number we own by convention (0..2).
    check(unsafe { libc::dup3(fd.as_raw_fd(), to, 0) }).map(drop)
}

/// Clears `FD_CLOEXEC` on `fd` (for fds handed to the container).
pub fn clear_cloexec(fd: RawFd) -> io::Result<()> {
    // SAFETY: plain fcntl; an invalid fd just fails.
    let fl = check(unsafe { libc::fcntl(fd, libc::F_GETFD) })?;
    // SAFETY: as above.
    check(unsafe { libc::fcntl(fd, libc::F_SETFD, fl & !libc::FD_CLOEXEC) }).map(drop)
}

/// `socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC)`.
pub fn seqpacket_pair() -> io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0; 2];
    // SAFETY: valid out array of two ints.
    check(unsafe { libc::socketpair(libc::AF_UNIX, libc::SOCK_SEQPACKET | libc::SOCK_CLOEXEC, 0, fds.as_mut_ptr()) })?;
    Ok(pair(fds))
}

/// `sendmsg(2)` of `data` with one fd attached as `SCM_RIGHTS`.
pub fn send_fd(sock: BorrowedFd<'_>, data: &[u8], fd: BorrowedFd<'_>) -> io::Result<()> {
    send_fds(sock, data, &[fd])
}

/// `sendmsg(2)` of `data` with `fds` attached in one `SCM_RIGHTS` message.
pub fn send_fds(sock: BorrowedFd<'_>, data: &[u8], fds: &[BorrowedFd<'_>]) -> io::Result<()> {
    let raw: Vec<RawFd> = fds.iter().map(|f| f.as_raw_fd()).collect();
    let bytes = u32::try_from(std::mem::size_of_val(raw.as_slice())).map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))?;
    let mut iov = libc::iovec { iov_base: data.as_ptr().cast_mut().cast::<libc::c_void>(), iov_len: data.len() };
    // SAFETY: CMSG_SPACE is a pure size computation.
    let space = unsafe { libc::CMSG_SPACE(bytes) } as usize;
    // SAFETY: as above.
    let len = unsafe { libc::CMSG_LEN(bytes) } as usize;
    let mut cbuf = vec![0u8; space];
    // SAFETY: zeroed msghdr is valid; we fill the fields we use.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = cbuf.as_mut_ptr().cast::<libc::c_void>();
    msg.msg_controllen = space;
    // SAFETY: msg_control points at `space` bytes, room for one header.
    let c = unsafe { libc::CMSG_FIRSTHDR(&msg) };
    let header = libc::cmsghdr { cmsg_len: len, cmsg_level: libc::SOL_SOCKET, cmsg_type: libc::SCM_RIGHTS };
    // SAFETY: `c` points at the first header's room in `cbuf` (aligned for
    // cmsghdr, since CMSG_FIRSTHDR returned it).
    unsafe { c.write(header) };
    // SAFETY: CMSG_DATA of a header in our buffer is computed from `c`.
    let payload = unsafe { libc::CMSG_DATA(c) }.cast::<RawFd>();
    // SAFETY: the payload has room for `raw.len()` fds (CMSG_SPACE above);
    // it may be unaligned, so it is written byte-wise.
    unsafe { std::ptr::copy_nonoverlapping(raw.as_ptr().cast::<u8>(), payload.cast::<u8>(), bytes as usize) };
    // SAFETY: `msg` describes valid buffers.
    let r = unsafe { libc::sendmsg(sock.as_raw_fd(), &msg, libc::MSG_NOSIGNAL) };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// `recvmsg(2)`: data into `buf` and at most one fd passed with it.
pub fn recv_fd(sock: BorrowedFd<'_>, buf: &mut [u8]) -> io::Result<(usize, Option<OwnedFd>)> {
    let mut iov = libc::iovec { iov_base: buf.as_mut_ptr().cast::<libc::c_void>(), iov_len: buf.len() };
    // SAFETY: pure size computation (room for four fds).
    let space = unsafe { libc::CMSG_SPACE(4 * 4) } as usize;
    let mut cbuf = vec![0u8; space];
    // SAFETY: zeroed msghdr is valid.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = cbuf.as_mut_ptr().cast::<libc::c_void>();
    msg.msg_controllen = space;
    // SAFETY: `msg` describes valid buffers.
    let n = count(unsafe { libc::recvmsg(sock.as_raw_fd(), &mut msg, libc::MSG_CMSG_CLOEXEC) })?;
    // Every fd the message carried is taken (and all but the first closed
    // when `fds` drops): none may stay open unowned in this process.
    let mut fds: Vec<OwnedFd> = Vec::new();
    // SAFETY: pure size computation.
    let header_len = unsafe { libc::CMSG_LEN(0) } as usize;
    // SAFETY: the first control message the kernel wrote into `cbuf`, or null.
    let mut c = unsafe { libc::CMSG_FIRSTHDR(&msg) };
    while !c.is_null() {
        // SAFETY: a non-null header from CMSG_FIRSTHDR/NXTHDR lies in `cbuf`.
        let h = unsafe { c.read_unaligned() };
        if h.cmsg_level == libc::SOL_SOCKET && h.cmsg_type == libc::SCM_RIGHTS {
            let n_fds = h.cmsg_len.saturating_sub(header_len) / std::mem::size_of::<RawFd>();
            // SAFETY: the payload of that header, in `cbuf`.
            let data = unsafe { libc::CMSG_DATA(c) }.cast::<RawFd>().cast_const();
            for i in 0..n_fds {
                // SAFETY: the kernel wrote `n_fds` ints there, maybe unaligned.
                let raw = unsafe { data.wrapping_add(i).read_unaligned() };
                // SAFETY: each is a new fd in this process, owned by nobody else.
                fds.push(unsafe { OwnedFd::from_raw_fd(raw) });
            }
        }
        // SAFETY: the next header after `c` in the buffer `msg` describes, or null.
        c = unsafe { libc::CMSG_NXTHDR(&msg, c) };
    }
    let fd = if fds.is_empty() { None } else { Some(fds.remove(0)) };
    Ok((n, fd))
}

/// Opens a new pseudo-terminal through `ptmx` (an fd of /dev/ptmx or
/// /dev/pts/ptmx): unlocks it and returns (master, slave).
pub fn open_pty(ptmx: OwnedFd) -> io::Result<(OwnedFd, OwnedFd)> {
    let unlock: libc::c_int = 0;
    // SAFETY: TIOCSPTLCK takes a pointer to int.
    check(unsafe { libc::ioctl(ptmx.as_raw_fd(), libc::TIOCSPTLCK, &unlock) })?;
    // SAFETY: TIOCGPTPEER takes open flags and returns a new fd.
    let slave = owned(unsafe { libc::ioctl(ptmx.as_raw_fd(), libc::TIOCGPTPEER, libc::O_RDWR | libc::O_NOCTTY | libc::O_CLOEXEC) })?;
    Ok((ptmx, slave))
}

/// Index of the pty whose master is `fd` (TIOCGPTN).
pub fn pty_number(fd: BorrowedFd<'_>) -> io::Result<u32> {
    let mut n: libc::c_uint = 0;
    // SAFETY: TIOCGPTN writes an unsigned int.
    check(unsafe { libc::ioctl(fd.as_raw_fd(), libc::TIOCGPTN, &mut n) })?;
    Ok(n)
}

/// Sets a terminal's window size (TIOCSWINSZ).
pub fn set_winsize(fd: BorrowedFd<'_>, rows: u16, cols: u16) -> io::Result<()> {
    let ws = libc::winsize { ws_row: rows, ws_col: cols, ws_xpixel: 0, ws_ypixel: 0 };
    // SAFETY: TIOCSWINSZ reads a winsize.
    check(unsafe { libc::ioctl(fd.as_raw_fd(), libc::TIOCSWINSZ, &ws) }).map(drop)
}

/// `setsid(2)` then make `fd` the controlling terminal (TIOCSCTTY).
pub fn setsid_ctty(fd: BorrowedFd<'_>) -> io::Result<()> {
    // SAFETY: plain syscall.
    check(unsafe { libc::setsid() })?;
    // SAFETY: TIOCSCTTY takes an int argument.
    check(unsafe { libc::ioctl(fd.as_raw_fd(), libc::TIOCSCTTY, 0) }).map(drop)
}

/// `flock(2)`.
pub fn flock(fd: BorrowedFd<'_>, op: i32) -> io::Result<()> {
    loop {
        // SAFETY: plain syscall.
        let r = unsafe { libc::flock(fd.as_raw_fd(), op) };
        if r < 0 {
            let e = io::Error::last_os_error();
            if e.raw_os_error() == Some(libc::EINTR) {
                continue;
            }
            return Err(e);
        }
        return Ok(());
    }
}

/// Blocks `sigs` and returns a signalfd that reads them.
pub fn signalfd(sigs: &[i32]) -> io::Result<OwnedFd> {
    let set = sigset(sigs);
    // SAFETY: blocks the signals of a valid set; no old set asked for.
    check(unsafe { libc::sigprocmask(libc::SIG_BLOCK, &set, std::ptr::null_mut()) })?;
    // SAFETY: a new signalfd for a valid set.
    owned(unsafe { libc::signalfd(-1, &set, libc::SFD_CLOEXEC) })
}

/// A signal set holding `sigs`.
fn sigset(sigs: &[i32]) -> libc::sigset_t {
    // SAFETY: a sigset_t is plain bits; sigemptyset below makes it empty.
    let mut set: libc::sigset_t = unsafe { std::mem::zeroed() };
    // SAFETY: a valid set of ours.
    unsafe { libc::sigemptyset(&mut set) };
    for s in sigs {
        // SAFETY: as above; an invalid number only fails.
        unsafe { libc::sigaddset(&mut set, *s) };
    }
    set
}

/// Reads one signal number from a signalfd.
pub fn read_signal(fd: BorrowedFd<'_>) -> io::Result<i32> {
    // SAFETY: zeroed siginfo is a valid buffer of the right size.
    let mut info: libc::signalfd_siginfo = unsafe { std::mem::zeroed() };
    let sz = std::mem::size_of::<libc::signalfd_siginfo>();
    // SAFETY: reading into `info`, `sz` bytes.
    let n = count(unsafe { libc::read(fd.as_raw_fd(), std::ptr::addr_of_mut!(info).cast::<libc::c_void>(), sz) })?;
    if n != sz {
        return Err(io::Error::from_raw_os_error(libc::EIO));
    }
    i32::try_from(info.ssi_signo).map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))
}

/// Restores the default disposition of every signal and unblocks all of
/// them (before exec'ing the container's process).
pub fn reset_signals() {
    for s in 1..=libc::SIGRTMAX() {
        if s != libc::SIGKILL && s != libc::SIGSTOP {
            // SAFETY: the default disposition is always a valid handler.
            unsafe { libc::signal(s, libc::SIG_DFL) };
        }
    }
    let set = sigset(&[]);
    // SAFETY: an empty valid set as the new mask.
    unsafe { libc::sigprocmask(libc::SIG_SETMASK, &set, std::ptr::null_mut()) };
}

/// Ignores SIGPIPE (writes to closed pipes return EPIPE instead).
pub fn ignore_sigpipe() {
    // SAFETY: setting a disposition.
    unsafe { libc::signal(libc::SIGPIPE, libc::SIG_IGN) };
}

/// Brings the loopback interface of the current network namespace up.
pub fn loopback_up() -> io::Result<()> {
    // SAFETY: socket() with constant arguments.
    let s = owned(unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) })?;
    // SAFETY: zeroed ifreq is valid.
    let mut ifr: libc::ifreq = unsafe { std::mem::zeroed() };
    for (slot, b) in ifr.ifr_name.iter_mut().zip(c"lo".to_bytes_with_nul()) {
        *slot = libc::c_char::from_ne_bytes([*b]);
    }
    // SAFETY: SIOCGIFFLAGS writes the flags into our ifreq.
    check(unsafe { libc::ioctl(s.as_raw_fd(), libc::SIOCGIFFLAGS, &mut ifr) })?;
    // SAFETY: SIOCGIFFLAGS filled the flags member of the union.
    let flags = unsafe { ifr.ifr_ifru.ifru_flags };
    ifr.ifr_ifru.ifru_flags = flags | i16::try_from(libc::IFF_UP).unwrap_or(1);
    // SAFETY: SIOCSIFFLAGS reads our ifreq.
    check(unsafe { libc::ioctl(s.as_raw_fd(), libc::SIOCSIFFLAGS, &ifr) }).map(drop)
}

/// `personality(2)`.
pub fn personality(p: u64) -> io::Result<()> {
    // SAFETY: plain syscall.
    check(unsafe { libc::personality(p) }).map(drop)
}

/// This process's PID.
pub fn getpid() -> i32 {
    // SAFETY: always succeeds.
    unsafe { libc::getpid() }
}

/// `getuid(2)`.
pub fn getuid() -> u32 {
    // SAFETY: always succeeds.
    unsafe { libc::getuid() }
}

/// Seconds since the epoch and nanoseconds (CLOCK_REALTIME).
pub fn now_realtime() -> (i64, u32) {
    let d = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    (i64::try_from(d.as_secs()).unwrap_or(i64::MAX), d.subsec_nanos())
}

/// `inotify_init1(IN_CLOEXEC | IN_NONBLOCK)` + one watch for `mask` on `path`.
pub fn inotify_watch(path: &Path, mask: u32) -> io::Result<OwnedFd> {
    // SAFETY: plain syscall.
    let fd = owned(unsafe { libc::inotify_init1(libc::IN_CLOEXEC | libc::IN_NONBLOCK) })?;
    let p = cstr(path)?;
    // SAFETY: valid fd and string.
    check(unsafe { libc::inotify_add_watch(fd.as_raw_fd(), p.as_ptr(), mask) })?;
    Ok(fd)
}

/// Drains pending events of a non-blocking fd (inotify), ignoring their content.
pub fn drain(fd: BorrowedFd<'_>) {
    let mut buf = [0u8; 4096];
    loop {
        // SAFETY: reading into a local buffer.
        let n = unsafe { libc::read(fd.as_raw_fd(), buf.as_mut_ptr().cast::<libc::c_void>(), buf.len()) };
        if n <= 0 {
            break;
        }
    }
}

/// `statvfs(3)` mount flags (ST_RDONLY, ST_NOSUID, ...) of the filesystem at `path`.
pub fn statvfs_flags(path: &Path) -> io::Result<u64> {
    let p = cstr(path)?;
    // SAFETY: zeroed statvfs is a valid out buffer.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: valid string and out pointer.
    check(unsafe { libc::statvfs(p.as_ptr(), &mut st) })?;
    Ok(st.f_flag)
}

/// `symlinkat(2)`.
pub fn symlinkat(target: &Path, dirfd: BorrowedFd<'_>, name: &Path) -> io::Result<()> {
    let t = cstr(target)?;
    let n = cstr(name)?;
    // SAFETY: valid strings.
    check(unsafe { libc::symlinkat(t.as_ptr(), dirfd.as_raw_fd(), n.as_ptr()) }).map(drop)
}

/// `/proc/self/fd/N` for an fd: the path that lets mount(2) act on what the
/// fd refers to, however it was reached.
pub fn fd_path(fd: BorrowedFd<'_>) -> std::path::PathBuf {
    std::path::PathBuf::from(format!("/proc/self/fd/{}", fd.as_raw_fd()))
}

/// `keyctl(KEYCTL_JOIN_SESSION_KEYRING, name)`: a new session keyring, so
/// the container does not share the caller's.
pub fn join_session_keyring(name: &str) -> io::Result<()> {
    let n = CString::new(name).map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))?;
    // SAFETY: KEYCTL_JOIN_SESSION_KEYRING (1) takes a string pointer.
    check_l(unsafe { libc::syscall(libc::SYS_keyctl, 1, n.as_ptr()) }).map(drop)
}

/// `connect(2)` a new SOCK_STREAM unix socket to `path` (console and pidfd sockets).
pub fn unix_connect(path: &Path) -> io::Result<OwnedFd> {
    let s = std::os::unix::net::UnixStream::connect(path)?;
    Ok(OwnedFd::from(s))
}

/// `send(2)` of one message (MSG_NOSIGNAL: a closed peer is EPIPE, not SIGPIPE).
pub fn send(sock: BorrowedFd<'_>, data: &[u8]) -> io::Result<()> {
    // SAFETY: pointer and length describe `data`.
    count(unsafe { libc::send(sock.as_raw_fd(), data.as_ptr().cast::<libc::c_void>(), data.len(), libc::MSG_NOSIGNAL) }).map(drop)
}

/// Closes every fd from `first` up, except those in `keep` (read from
/// /proc/self/fd, so it works on kernels without close_range too).
///
/// For a child of [`clone3`] or [`fork`] on its way to exec or `_exit`:
/// an `OwnedFd` made before the fork may be closed here, which is sound
/// only because the child never drops it: berth is built with
/// `panic = "abort"`, and the child's code ends in execve or [`exit_now`],
/// so the frames that hold such values are never unwound.
pub fn close_fds_from(first: RawFd, keep: &[RawFd]) {
    let Ok(rd) = std::fs::read_dir("/proc/self/fd") else { return };
    let fds: Vec<RawFd> = rd.flatten().filter_map(|e| e.file_name().to_str()?.parse().ok()).collect();
    for fd in fds {
        if fd >= first && !keep.contains(&fd) {
            // SAFETY: closing an fd this process owns and will not use again;
            // the directory fd used for listing is already closed.
            unsafe { libc::close(fd) };
        }
    }
}

/// One eBPF instruction (`struct bpf_insn`).
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BpfInsn {
    pub code: u8,
    /// dst register in the low nibble, src in the high one.
    pub regs: u8,
    pub off: i16,
    pub imm: i32,
}

/// The leading members of the kernel's `union bpf_attr` for the commands
/// berth uses (linux/bpf.h); the kernel takes a shorter attr as long as the
/// rest would be zero, and the union is padded here to 128 bytes.
mod bpf {
    pub const PROG_LOAD: libc::c_long = 5;
    pub const PROG_ATTACH: libc::c_long = 8;
    pub const PROG_DETACH: libc::c_long = 9;
    pub const PROG_GET_FD_BY_ID: libc::c_long = 13;
    pub const PROG_QUERY: libc::c_long = 16;
    pub const PROG_TYPE_CGROUP_DEVICE: u32 = 15;
    pub const CGROUP_DEVICE: u32 = 6;
    pub const F_ALLOW_MULTI: u32 = 2;

    /// BPF_PROG_LOAD.
    #[repr(C)]
    #[derive(Default)]
    pub struct ProgLoad {
        pub prog_type: u32,
        pub insn_cnt: u32,
        pub insns: u64,
        pub license: u64,
        pub log_level: u32,
        pub log_size: u32,
        pub log_buf: u64,
        pub pad: [u64; 11],
    }

    /// BPF_PROG_ATTACH / BPF_PROG_DETACH.
    #[repr(C)]
    #[derive(Default)]
    pub struct Attach {
        pub target_fd: u32,
        pub attach_bpf_fd: u32,
        pub attach_type: u32,
        pub attach_flags: u32,
        pub pad: [u64; 14],
    }

    /// BPF_PROG_QUERY.
    #[repr(C)]
    #[derive(Default)]
    pub struct Query {
        pub target_fd: u32,
        pub attach_type: u32,
        pub query_flags: u32,
        pub attach_flags: u32,
        pub prog_ids: u64,
        pub prog_cnt: u32,
        pub pad0: u32,
        pub pad: [u64; 12],
    }

    /// BPF_PROG_GET_FD_BY_ID.
    #[repr(C)]
    #[derive(Default)]
    pub struct GetFdById {
        pub prog_id: u32,
        pub next_id: u32,
        pub open_flags: u32,
        pub pad0: u32,
        pub pad: [u64; 14],
    }
}

/// `bpf(2)` with one of the attrs of [`bpf`].
fn bpf_call<T>(cmd: libc::c_long, attr: &mut T) -> io::Result<libc::c_long> {
    // SAFETY: `attr` is one of the repr(C) bpf_attr layouts above, for the
    // command it is passed with; any pointer in it outlives the call.
    check_l(unsafe { libc::syscall(libc::SYS_bpf, cmd, std::ptr::from_mut(attr), std::mem::size_of::<T>()) })
}

/// An fd that `bpf(2)` just returned, owned.
fn bpf_fd(r: libc::c_long) -> io::Result<OwnedFd> {
    owned(libc::c_int::try_from(r).map_err(|_| io::Error::from_raw_os_error(libc::EOVERFLOW))?)
}

/// Loads a BPF_PROG_TYPE_CGROUP_DEVICE program and attaches it to the cgroup
/// directory `cgroup` (BPF_CGROUP_DEVICE, BPF_F_ALLOW_MULTI), replacing
/// those attached there before. The program stays attached for the
/// cgroup's life; the fds are closed on return.
pub fn attach_device_program(cgroup: BorrowedFd<'_>, insns: &[BpfInsn]) -> io::Result<()> {
    let license = c"Apache-2.0";
    let too_long = || io::Error::from_raw_os_error(libc::E2BIG);
    let insn_cnt = u32::try_from(insns.len()).map_err(|_| too_long())?;
    let load = |log: &mut [u8]| -> io::Result<libc::c_long> {
        let mut attr = bpf::ProgLoad {
            prog_type: bpf::PROG_TYPE_CGROUP_DEVICE,
            insn_cnt,
            insns: insns.as_ptr() as u64,
            license: license.as_ptr() as u64,
            ..Default::default()
        };
        if !log.is_empty() {
            attr.log_level = 1;
            attr.log_size = u32::try_from(log.len()).map_err(|_| too_long())?;
            attr.log_buf = log.as_mut_ptr() as u64;
        }
        bpf_call(bpf::PROG_LOAD, &mut attr)
    };
    let prog = match load(&mut []) {
        Ok(fd) => bpf_fd(fd)?,
        Err(e) => {
            // Again with the verifier's log, to say why.
            let mut log = vec![0u8; 1 << 20];
            let _ = load(&mut log);
            let msg = String::from_utf8_lossy(&log[..log.iter().position(|b| *b == 0).unwrap_or(0)]);
            let last = msg.trim().lines().last().unwrap_or("").to_string();
            let why = if last.is_empty() { String::new() } else { format!(" (verifier: {last})") };
            return Err(io::Error::new(e.kind(), format!("{e}{why}")));
        }
    };
    // Programs attached before (an update replaces them): the new one is
    // attached first, so that no instant is left without device control
    // (while both are attached, both must allow), then they are detached.
    let old = device_programs(cgroup).unwrap_or_default();
    let attach = |prog: BorrowedFd<'_>, cmd| {
        let mut at = bpf::Attach {
            target_fd: fd_u32(cgroup),
            attach_bpf_fd: fd_u32(prog),
            attach_type: bpf::CGROUP_DEVICE,
            attach_flags: if cmd == bpf::PROG_ATTACH { bpf::F_ALLOW_MULTI } else { 0 },
            ..Default::default()
        };
        bpf_call(cmd, &mut at).map(drop)
    };
    attach(std::os::fd::AsFd::as_fd(&prog), bpf::PROG_ATTACH)?;
    for id in old {
        let mut g = bpf::GetFdById { prog_id: id, ..Default::default() };
        let old_prog = bpf_fd(bpf_call(bpf::PROG_GET_FD_BY_ID, &mut g)?)?;
        attach(std::os::fd::AsFd::as_fd(&old_prog), bpf::PROG_DETACH)?;
    }
    Ok(())
}

/// IDs of the device programs attached directly to the cgroup directory.
pub fn device_programs(cgroup: BorrowedFd<'_>) -> io::Result<Vec<u32>> {
    let mut ids = [0u32; 64];
    let mut q = bpf::Query {
        target_fd: fd_u32(cgroup),
        attach_type: bpf::CGROUP_DEVICE,
        prog_ids: ids.as_mut_ptr() as u64,
        prog_cnt: 64,
        ..Default::default()
    };
    bpf_call(bpf::PROG_QUERY, &mut q)?;
    let n = usize::try_from(q.prog_cnt).unwrap_or(0);
    Ok(ids[..n.min(ids.len())].to_vec())
}

/// One mount as statmount(2) reports it.
#[derive(Debug, Clone)]
pub struct MountEntry {
    /// The mount's unique ID (never reused; later mounts have larger ones).
    pub id: u64,
    pub fs_type: String,
    /// Where it is mounted, as seen from its namespace's root.
    pub mount_point: String,
    /// Peer group (shared) and master (slave) group ids, 0 when none.
    pub peer_group: u64,
    pub master: u64,
    /// The unique ID of the mount it is mounted on (itself for a root).
    pub parent: u64,
    /// Its filesystem instance: the superblock's device number, and the
    /// directory of that filesystem the mount shows at its mount point.
    pub dev: (u64, u64),
    pub root: String,
}

/// The ID of the mount namespace `fd` (an nsfs file) refers to (Linux
/// 6.12+: unique, never reused; a namespace made later has a larger one).
pub fn mnt_ns_id(fd: BorrowedFd<'_>) -> io::Result<u64> {
    mnt_ns_ioctl(fd, NS_MNT_GET_INFO).map(|(_, id)| id)
}

/// The mount namespace made next after `fd`'s (`later`), or the one made
/// last before it, with its ID; `None` at either end of the kernel's list
/// (Linux 6.12+). Only namespaces this process may see are listed.
pub fn mnt_ns_step(fd: BorrowedFd<'_>, later: bool) -> io::Result<Option<(OwnedFd, u64)>> {
    match mnt_ns_ioctl(fd, if later { NS_MNT_GET_NEXT } else { NS_MNT_GET_PREV }) {
        Ok((Some(next), id)) => Ok(Some((next, id))),
        Ok((None, _)) => Err(io::Error::from_raw_os_error(libc::EINVAL)),
        Err(e) if e.raw_os_error() == Some(libc::ENOENT) => Ok(None),
        Err(e) => Err(e),
    }
}

const NS_MNT_GET_INFO: libc::c_ulong = 0x8010_b70a;
const NS_MNT_GET_NEXT: libc::c_ulong = 0x8010_b70b;
const NS_MNT_GET_PREV: libc::c_ulong = 0x8010_b70c;

/// One of the NS_MNT_GET_* ioctls: the fd of the next/previous namespace
/// (none for GET_INFO) and the ID of the namespace the answer is about.
fn mnt_ns_ioctl(fd: BorrowedFd<'_>, req: libc::c_ulong) -> io::Result<(Option<OwnedFd>, u64)> {
    /// `struct mnt_ns_info` (linux/nsfs.h).
    #[repr(C)]
    struct MntNsInfo {
        size: u32,
        nr_mounts: u32,
        mnt_ns_id: u64,
    }
    let mut i = MntNsInfo { size: 16, nr_mounts: 0, mnt_ns_id: 0 };
    // SAFETY: these ioctls write a 16-byte mnt_ns_info into `i`.
    let r = check(unsafe { libc::ioctl(fd.as_raw_fd(), req, std::ptr::addr_of_mut!(i)) })?;
    let next = if req == NS_MNT_GET_INFO { None } else { Some(owned(r)?) };
    Ok((next, i.mnt_ns_id))
}

/// Every mount namespace on the system (Linux 6.12+): the kernel's list,
/// walked with NS_MNT_GET_NEXT from this process's own, as (namespace id,
/// inode). Namespaces without any process (kept by an nsfs bind mount or an
/// open fd) are in it too. Each fd of the walk is closed once the next one
/// is had: an fd pins its namespace, and a dying namespace must be free to
/// go. Fails (ENOTTY, EINVAL...) on older kernels.
pub fn mount_namespaces() -> io::Result<Vec<(u64, u64)>> {
    let ino = |fd: &OwnedFd| fstat(std::os::fd::AsFd::as_fd(fd)).map(|s| s.st_ino).unwrap_or(0);
    let first = openat(None, Path::new("/proc/self/ns/mnt"), libc::O_RDONLY, 0)?;
    mnt_ns_id(std::os::fd::AsFd::as_fd(&first))?;
    // Back to the start of the list, then forward through all of it.
    let mut start = first;
    while let Ok(Some((prev, _))) = mnt_ns_step(std::os::fd::AsFd::as_fd(&start), false) {
        start = prev;
    }
    let mut out = vec![(mnt_ns_id(std::os::fd::AsFd::as_fd(&start))?, ino(&start))];
    let mut cur = start;
    while let Ok(Some((next, id))) = mnt_ns_step(std::os::fd::AsFd::as_fd(&cur), true) {
        cur = next;
        out.push((id, ino(&cur)));
    }
    Ok(out)
}

/// Detaches (MNT_DETACH) exactly the mount whose root `fd` is open on, in
/// this process's mount namespace: through `/proc/self/fd/N` of `proc_fds`
/// (an open `/proc/self/fd` directory of a trusted procfs), a magic link
/// the kernel resolves to the open file itself, so no path is looked up
/// after the caller checked what `fd` is. Changes the working directory.
pub fn detach_mount_fd(proc_fds: BorrowedFd<'_>, fd: BorrowedFd<'_>) -> io::Result<()> {
    fchdir(proc_fds)?;
    umount2(Path::new(&fd.as_raw_fd().to_string()), libc::MNT_DETACH)
}

/// `struct mnt_id_req` (linux/mount.h), version 1.
#[repr(C)]
struct MntIdReq {
    size: u32,
    spare: u32,
    mnt_id: u64,
    param: u64,
    mnt_ns_id: u64,
}

/// The fixed part of `struct statmount` (linux/mount.h); the strings follow
/// it, each member named [str] an offset into them.
#[repr(C)]
#[derive(Clone, Copy)]
struct Statmount {
    size: u32,
    mnt_opts: u32,
    mask: u64,
    sb_dev_major: u32,
    sb_dev_minor: u32,
    sb_magic: u64,
    sb_flags: u32,
    fs_type: u32,
    mnt_id: u64,
    mnt_parent_id: u64,
    mnt_id_old: u32,
    mnt_parent_id_old: u32,
    mnt_attr: u64,
    mnt_propagation: u64,
    mnt_peer_group: u64,
    mnt_master: u64,
    propagate_from: u64,
    mnt_root: u32,
    mnt_point: u32,
    mnt_ns_id: u64,
    spare: [u64; 49],
}

/// The mounts of mount namespace `ns_id` (listmount(2) + statmount(2), Linux 6.11+).
pub fn list_mounts(ns_id: u64) -> io::Result<Vec<MountEntry>> {
    let mut buf = vec![0u64; 8 * 1024];
    // Skipped: unmounted meanwhile.
    Ok(mount_ids(ns_id)?.into_iter().filter_map(|id| stat_mount_in(ns_id, id, &mut buf).ok()).collect())
}

/// The unique ID and superblock device of each mount of namespace `ns_id`:
/// statmount's fixed part only, without the paths [`list_mounts`] has the
/// kernel build.
pub fn mount_devs(ns_id: u64) -> io::Result<Vec<(u64, (u64, u64))>> {
    const STATMOUNT_SB_BASIC: u64 = 0x1;
    let mut out = Vec::new();
    for id in mount_ids(ns_id)? {
        let r = MntIdReq { size: 32, spare: 0, mnt_id: id, param: STATMOUNT_SB_BASIC, mnt_ns_id: ns_id };
        // SAFETY: a zeroed statmount we own, of its own size.
        let mut sm: Statmount = unsafe { std::mem::zeroed() };
        // SAFETY: a valid request; `sm` is writable for its size.
        let n = unsafe {
            libc::syscall(SYS_STATMOUNT, std::ptr::from_ref(&r), std::ptr::addr_of_mut!(sm), std::mem::size_of::<Statmount>(), 0)
        };
        if n == 0 {
            out.push((id, (u64::from(sm.sb_dev_major), u64::from(sm.sb_dev_minor))));
        }
    }
    Ok(out)
}

/// The unique IDs of the mounts of namespace `ns_id` (listmount(2)).
pub fn mount_ids(ns_id: u64) -> io::Result<Vec<u64>> {
    const LSMT_ROOT: u64 = u64::MAX;
    let mut ids: Vec<u64> = Vec::new();
    let mut last = 0u64;
    loop {
        let mut buf = vec![0u64; 512];
        let r = MntIdReq { size: 32, spare: 0, mnt_id: LSMT_ROOT, param: last, mnt_ns_id: ns_id };
        // SAFETY: a valid mnt_id_req and an output array of `buf.len()` ids.
        let n = check_l(unsafe { libc::syscall(SYS_LISTMOUNT, std::ptr::from_ref(&r), buf.as_mut_ptr(), buf.len(), 0) })?;
        let n = usize::try_from(n).unwrap_or(0).min(buf.len());
        ids.extend_from_slice(&buf[..n]);
        match buf[..n].last() {
            Some(l) if n == buf.len() => last = *l,
            _ => break,
        }
    }
    Ok(ids)
}

/// The smallest unique mount ID in mount namespace `ns_id` (one listmount(2)
/// entry; Linux 6.8+ numbers mounts in the order they were made, and a
/// namespace's clone copies every mount it starts with, so a namespace
/// holding a mount older than X existed before X was made); None when empty.
pub fn first_mount_id(ns_id: u64) -> io::Result<Option<u64>> {
    const LSMT_ROOT: u64 = u64::MAX;
    let mut id = 0u64;
    let r = MntIdReq { size: 32, spare: 0, mnt_id: LSMT_ROOT, param: 0, mnt_ns_id: ns_id };
    // SAFETY: a valid mnt_id_req and an output array of one id.
    let n = check_l(unsafe { libc::syscall(SYS_LISTMOUNT, std::ptr::from_ref(&r), std::ptr::addr_of_mut!(id), 1usize, 0) })?;
    Ok((n > 0).then_some(id))
}

/// statmount(2) of the mount with unique ID `id` in this process's mount
/// namespace (Linux 6.8+).
pub fn stat_mount(id: u64) -> io::Result<MountEntry> {
    stat_mount_in(0, id, &mut vec![0u64; 8 * 1024])
}

// The same numbers on every architecture (the unified table); libc names
// them for some targets only.
const SYS_STATMOUNT: libc::c_long = 457;
const SYS_LISTMOUNT: libc::c_long = 458;

/// statmount(2) of mount `id` of namespace `ns_id` (0: this process's),
/// with `buf` (u64s, so that the fixed part at its start is aligned) for
/// the answer.
fn stat_mount_in(ns_id: u64, id: u64, buf: &mut [u64]) -> io::Result<MountEntry> {
    const STATMOUNT_SB_BASIC: u64 = 0x1;
    const STATMOUNT_MNT_BASIC: u64 = 0x2;
    const STATMOUNT_MNT_ROOT: u64 = 0x8;
    const STATMOUNT_MNT_POINT: u64 = 0x10;
    const STATMOUNT_FS_TYPE: u64 = 0x20;
    let header = std::mem::size_of::<Statmount>();
    let want = STATMOUNT_SB_BASIC | STATMOUNT_MNT_BASIC | STATMOUNT_MNT_ROOT | STATMOUNT_MNT_POINT | STATMOUNT_FS_TYPE;
    let r = MntIdReq { size: 32, spare: 0, mnt_id: id, param: want, mnt_ns_id: ns_id };
    let len = std::mem::size_of_val(buf);
    if len <= header {
        return Err(io::Error::from_raw_os_error(libc::EOVERFLOW));
    }
    // SAFETY: a valid request; `buf` is writable for `len` bytes.
    check_l(unsafe { libc::syscall(SYS_STATMOUNT, std::ptr::from_ref(&r), buf.as_mut_ptr(), len, 0) })?;
    // SAFETY: the kernel wrote a statmount at the (aligned) start of `buf`,
    // which is larger than one.
    let sm: Statmount = unsafe { buf.as_ptr().cast::<Statmount>().read() };
    // SAFETY: the same `len` initialised bytes, viewed as bytes.
    let bytes: &[u8] = unsafe { std::slice::from_raw_parts(buf.as_ptr().cast::<u8>(), len) };
    let s = |off: u32| {
        let start = header.saturating_add(usize::try_from(off).unwrap_or(usize::MAX)).min(bytes.len());
        let end = bytes[start..].iter().position(|b| *b == 0).map_or(bytes.len(), |e| start + e);
        String::from_utf8_lossy(&bytes[start..end]).into_owned()
    };
    Ok(MountEntry {
        id: sm.mnt_id,
        fs_type: s(sm.fs_type),
        mount_point: s(sm.mnt_point),
        peer_group: sm.mnt_peer_group,
        master: sm.mnt_master,
        parent: sm.mnt_parent_id,
        dev: (u64::from(sm.sb_dev_major), u64::from(sm.sb_dev_minor)),
        root: s(sm.mnt_root),
    })
}

/// The kernel's `struct sched_attr` (SCHED_ATTR_SIZE_VER1).
#[repr(C)]
#[derive(Debug, Default, Clone, Copy)]
pub struct SchedAttr {
    pub size: u32,
    pub policy: u32,
    pub flags: u64,
    pub nice: i32,
    pub priority: u32,
    pub runtime: u64,
    pub deadline: u64,
    pub period: u64,
    pub util_min: u32,
    pub util_max: u32,
}

/// sched_setattr(2) for this thread.
pub fn sched_setattr(attr: &SchedAttr) -> io::Result<()> {
    let mut a = *attr;
    a.size = 56; // SCHED_ATTR_SIZE_VER1: the size of SchedAttr
                 // SAFETY: `a` is a valid sched_attr of the size it declares.
    check_l(unsafe { libc::syscall(libc::SYS_sched_setattr, 0, &a as *const SchedAttr, 0) }).map(drop)
}

/// ioprio_set(IOPRIO_WHO_PROCESS, self, class << 13 | level).
pub fn ioprio_set(class: u32, level: u32) -> io::Result<()> {
    // SAFETY: plain syscall.
    check_l(unsafe { libc::syscall(libc::SYS_ioprio_set, 1, 0, libc::c_long::from((class << 13) | level)) }).map(drop)
}

/// `struct mount_attr` for mount_setattr(2).
#[repr(C)]
#[derive(Debug, Default, Clone, Copy)]
pub struct MountAttr {
    pub attr_set: u64,
    pub attr_clr: u64,
    pub propagation: u64,
    pub userns_fd: u64,
}

pub const MOUNT_ATTR_RDONLY: u64 = 0x1;
pub const MOUNT_ATTR_NOSUID: u64 = 0x2;
pub const MOUNT_ATTR_NODEV: u64 = 0x4;
pub const MOUNT_ATTR_NOEXEC: u64 = 0x8;
pub const MOUNT_ATTR_ATIME_MASK: u64 = 0x70;
pub const MOUNT_ATTR_RELATIME: u64 = 0x0;
pub const MOUNT_ATTR_NOATIME: u64 = 0x10;
pub const MOUNT_ATTR_STRICTATIME: u64 = 0x20;
pub const MOUNT_ATTR_NODIRATIME: u64 = 0x80;
pub const MOUNT_ATTR_IDMAP: u64 = 0x100000;
pub const MOUNT_ATTR_NOSYMFOLLOW: u64 = 0x200000;

/// mount_setattr(2) on the mount `fd` refers to (AT_EMPTY_PATH), over its
/// whole subtree when `recursive`.
pub fn mount_setattr(fd: BorrowedFd<'_>, recursive: bool, attr: &MountAttr) -> io::Result<()> {
    let flags = libc::AT_EMPTY_PATH | if recursive { libc::AT_RECURSIVE } else { 0 };
    // SAFETY: valid fd, empty C string, attr of the size passed.
    check_l(unsafe {
        libc::syscall(
            libc::SYS_mount_setattr,
            fd.as_raw_fd(),
            c"".as_ptr(),
            flags,
            attr as *const MountAttr,
            std::mem::size_of::<MountAttr>(),
        )
    })
    .map(drop)
}

/// open_tree(2) with OPEN_TREE_CLONE: a detached copy of the mount at
/// `path` (and of its submounts when `recursive`).
pub fn open_tree_clone(path: &Path, recursive: bool) -> io::Result<OwnedFd> {
    let c = cstr(path)?;
    let flags = 1 /* OPEN_TREE_CLONE */ | libc::O_CLOEXEC as u32 | if recursive { libc::AT_RECURSIVE as u32 } else { 0 };
    // SAFETY: valid C string; the returned fd is ours.
    owned(int(unsafe { libc::syscall(libc::SYS_open_tree, libc::AT_FDCWD, c.as_ptr(), flags) })?)
}

/// move_mount(2) of the detached mount `from` onto the place `to` refers to.
pub fn move_mount_fd(from: BorrowedFd<'_>, to: BorrowedFd<'_>) -> io::Result<()> {
    const F_EMPTY_PATH: u32 = 0x4;
    const T_EMPTY_PATH: u32 = 0x40;
    // SAFETY: valid fds and empty C strings.
    check_l(unsafe {
        libc::syscall(libc::SYS_move_mount, from.as_raw_fd(), c"".as_ptr(), to.as_raw_fd(), c"".as_ptr(), F_EMPTY_PATH | T_EMPTY_PATH)
    })
    .map(drop)
}

/// A user namespace with the given uid_map and gid_map contents (lines
/// "inside outside count"), held by the returned nsfs fd. A child is made
/// in it only for as long as the maps are written and the fd opened.
pub fn new_userns(uid_map: &str, gid_map: &str) -> io::Result<OwnedFd> {
    let mut fds = [0; 2];
    // SAFETY: fds is a valid array of two ints.
    check(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) })?;
    let (r, w) = pair(fds);
    let pidfd = match clone3(Namespaces::USER, None)? {
        Forked::Child => {
            drop(w);
            let mut b = [0u8; 1];
            // SAFETY: reads into a local buffer; returns at EOF (parent done).
            unsafe { libc::read(r.as_raw_fd(), b.as_mut_ptr().cast(), 1) };
            exit_now(0);
        }
        Forked::Parent { pidfd, pid } => (pidfd, pid),
    };
    drop(r);
    let (pidfd, pid) = pidfd;
    let res = (|| {
        std::fs::write(format!("/proc/{pid}/uid_map"), uid_map)?;
        std::fs::write(format!("/proc/{pid}/gid_map"), gid_map)?;
        openat(None, Path::new(&format!("/proc/{pid}/ns/user")), libc::O_RDONLY | libc::O_CLOEXEC, 0)
    })();
    drop(w);
    let _ = waitid_pidfd(std::os::fd::AsFd::as_fd(&pidfd), false);
    res
}

/// The unique ID (Linux 6.8+: never reused, increasing) of the mount `path`
/// is on, from statx(STATX_MNT_ID_UNIQUE).
pub fn mount_id_unique(path: &Path) -> io::Result<u64> {
    const STATX_MNT_ID_UNIQUE: u32 = 0x4000;
    let c = cstr(path)?;
    // SAFETY: statx writes into a zeroed libc::statx we own.
    let mut st: libc::statx = unsafe { std::mem::zeroed() };
    // SAFETY: valid C string and output struct.
    check(unsafe { libc::statx(libc::AT_FDCWD, c.as_ptr(), 0, STATX_MNT_ID_UNIQUE, &mut st) })?;
    if st.stx_mask & STATX_MNT_ID_UNIQUE == 0 {
        return Err(io::Error::from_raw_os_error(libc::ENOSYS));
    }
    Ok(st.stx_mnt_id)
}

/// The filesystem type (f_type, e.g. 0x01021994 for tmpfs) of `path`.
pub fn statfs_type(path: &Path) -> io::Result<i64> {
    let c = cstr(path)?;
    // SAFETY: statfs writes into a zeroed struct we own.
    let mut st: libc::statfs = unsafe { std::mem::zeroed() };
    // SAFETY: valid C string and output struct.
    check(unsafe { libc::statfs(c.as_ptr(), &mut st) })?;
    Ok(st.f_type as i64)
}

/// For a background child: a session of its own, stdio on /dev/null and
/// no other inherited fd (a caller reading berth's output sees EOF when
/// berth itself exits).
pub fn detach_stdio() {
    // SAFETY: plain syscall.
    unsafe { libc::setsid() };
    if let Ok(null) = openat(None, Path::new("/dev/null"), libc::O_RDWR, 0) {
        for fd in 0..3 {
            let _ = dup2(std::os::fd::AsFd::as_fd(&null), fd);
        }
    }
    close_fds_from(3, &[]);
}

/// The ID of the mount `path` is on: the unique one (6.8+) when the kernel
/// has it, else the classic (reusable) mount ID. (unique, id)
pub fn mount_id(path: &Path) -> io::Result<(bool, u64)> {
    if let Ok(id) = mount_id_unique(path) {
        return Ok((true, id));
    }
    const STATX_MNT_ID: u32 = 0x1000;
    let c = cstr(path)?;
    // SAFETY: statx writes into a zeroed libc::statx we own.
    let mut st: libc::statx = unsafe { std::mem::zeroed() };
    // SAFETY: valid C string and output struct.
    check(unsafe { libc::statx(libc::AT_FDCWD, c.as_ptr(), 0, STATX_MNT_ID, &mut st) })?;
    Ok((false, st.stx_mnt_id))
}

/// `execveat(fd, "", argv, envp, AT_EMPTY_PATH)`: runs the program `fd`
/// refers to. Returns only on failure.
pub fn execveat_fd(fd: BorrowedFd<'_>, argv: &[CString], envp: &[CString]) -> io::Error {
    let mut a: Vec<*const libc::c_char> = argv.iter().map(|s| s.as_ptr()).collect();
    a.push(std::ptr::null());
    let mut e: Vec<*const libc::c_char> = envp.iter().map(|s| s.as_ptr()).collect();
    e.push(std::ptr::null());
    // SAFETY: valid fd, empty C string, NULL-terminated arrays of valid
    // strings that outlive the call.
    unsafe { libc::syscall(libc::SYS_execveat, fd.as_raw_fd(), c"".as_ptr(), a.as_ptr(), e.as_ptr(), libc::AT_EMPTY_PATH) };
    io::Error::last_os_error()
}

/// `fstatvfs(2)`: the mount flags (ST_RDONLY, ...) of the mount `fd` is on.
pub fn fstatvfs_flags(fd: BorrowedFd<'_>) -> io::Result<u64> {
    // SAFETY: fstatvfs writes into a zeroed struct we own.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: valid fd and output struct.
    check(unsafe { libc::fstatvfs(fd.as_raw_fd(), &mut st) })?;
    Ok(st.f_flag)
}

/// `fstatfs(2)`: the filesystem type (f_type) of what `fd` refers to.
pub fn fstatfs_type(fd: BorrowedFd<'_>) -> io::Result<i64> {
    // SAFETY: fstatfs writes into a zeroed struct we own.
    let mut st: libc::statfs = unsafe { std::mem::zeroed() };
    // SAFETY: valid fd and output struct.
    check(unsafe { libc::fstatfs(fd.as_raw_fd(), &mut st) })?;
    Ok(st.f_type as i64)
}

/// `fcntl(F_GET_SEALS)`: the seals of a memfd (EINVAL for other files).
pub fn file_seals(fd: BorrowedFd<'_>) -> io::Result<i32> {
    // SAFETY: plain fcntl on a valid fd.
    check(unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_GET_SEALS) })
}

/// A sealed copy of the file `src` in a new memfd: nothing can write,
/// grow or shrink it, nor unseal it (F_SEAL_SEAL).
pub fn sealed_memfd_copy(src: BorrowedFd<'_>, name: &CStr) -> io::Result<OwnedFd> {
    // MFD_EXEC (0x10) asks for an executable memfd where vm.memfd_noexec
    // would otherwise refuse one; kernels before 6.3 reject the flag.
    // SAFETY: valid C string; the returned fd is ours.
    let mut r = unsafe { libc::memfd_create(name.as_ptr(), libc::MFD_CLOEXEC | libc::MFD_ALLOW_SEALING | 0x10) };
    if r < 0 && io::Error::last_os_error().raw_os_error() == Some(libc::EINVAL) {
        // SAFETY: as above.
        r = unsafe { libc::memfd_create(name.as_ptr(), libc::MFD_CLOEXEC | libc::MFD_ALLOW_SEALING) };
    }
    let m = owned(r)?;
    let size = fstat(src)?.st_size;
    let mut done: i64 = 0;
    while done < size {
        let left = usize::try_from(size - done).unwrap_or(usize::MAX);
        // SAFETY: valid fds; a null offset uses and advances src's offset.
        let n = count(unsafe { libc::sendfile(m.as_raw_fd(), src.as_raw_fd(), std::ptr::null_mut(), left) })?;
        if n == 0 {
            return Err(io::Error::from_raw_os_error(libc::EIO));
        }
        done = done.saturating_add(i64::try_from(n).unwrap_or(i64::MAX));
    }
    let seals = libc::F_SEAL_SEAL | libc::F_SEAL_SHRINK | libc::F_SEAL_GROW | libc::F_SEAL_WRITE;
    // SAFETY: plain fcntl on our memfd.
    check(unsafe { libc::fcntl(m.as_raw_fd(), libc::F_ADD_SEALS, seals) })?;
    Ok(m)
}

/// `prctl(PR_SET_CHILD_SUBREAPER)`: orphaned descendants are reparented to
/// this process instead of PID 1.
pub fn set_child_subreaper() -> io::Result<()> {
    prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0).map(drop)
}

/// `prctl(PR_CAPBSET_DROP, cap)`: drops a capability from the bounding set.
pub fn capbset_drop(cap: u32) -> io::Result<()> {
    prctl(libc::PR_CAPBSET_DROP, u64::from(cap), 0, 0, 0).map(drop)
}

/// `prctl(PR_SET_KEEPCAPS)`: keep the permitted set across a uid change.
pub fn set_keepcaps(on: bool) -> io::Result<()> {
    prctl(libc::PR_SET_KEEPCAPS, u64::from(on), 0, 0, 0).map(drop)
}

/// `prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_RAISE, cap)`.
pub fn cap_ambient_raise(cap: u32) -> io::Result<()> {
    prctl(libc::PR_CAP_AMBIENT, u64::from(libc::PR_CAP_AMBIENT_RAISE.unsigned_abs()), u64::from(cap), 0, 0).map(drop)
}

/// `prctl(PR_SET_NO_NEW_PRIVS, 1)`: for good, for this process and its children.
pub fn set_no_new_privs() -> io::Result<()> {
    prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0).map(drop)
}

/// `prctl(PR_SET_DUMPABLE)`: a process that is not dumpable has its
/// /proc/PID files owned by root and closed to ptrace-less processes
/// (exe, fd, cwd, root, environ, mem), until it execs.
pub fn set_dumpable(on: bool) -> io::Result<()> {
    prctl(libc::PR_SET_DUMPABLE, u64::from(on), 0, 0, 0).map(drop)
}

/// A new procfs instance, detached (fsopen, fsconfig CMD_CREATE, fsmount
/// with nosuid, nodev, noexec): its root fd, with nothing mounted over any
/// of its files. Needs Linux 5.2 and the right to mount proc here.
pub fn fresh_procfs() -> io::Result<OwnedFd> {
    const FSOPEN_CLOEXEC: u32 = 1;
    const FSCONFIG_CMD_CREATE: u32 = 6;
    const FSMOUNT_CLOEXEC: u32 = 1;
    // SAFETY: valid C string; the returned fd is ours.
    let fs = owned(int(unsafe { libc::syscall(libc::SYS_fsopen, c"proc".as_ptr(), FSOPEN_CLOEXEC) })?)?;
    // SAFETY: CMD_CREATE takes no key, value or aux.
    check_l(unsafe {
        libc::syscall(
            libc::SYS_fsconfig,
            fs.as_raw_fd(),
            FSCONFIG_CMD_CREATE,
            std::ptr::null::<libc::c_char>(),
            std::ptr::null::<libc::c_void>(),
            0,
        )
    })?;
    let attrs = MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV | MOUNT_ATTR_NOEXEC;
    // SAFETY: valid fs context fd; the returned mount fd is ours.
    owned(int(unsafe { libc::syscall(libc::SYS_fsmount, fs.as_raw_fd(), FSMOUNT_CLOEXEC, attrs) })?)
}

/// statx(AT_EMPTY_PATH) of `fd`: true when it is the root of a mount
/// (STATX_ATTR_MOUNT_ROOT, Linux 5.8).
pub fn is_mount_root(fd: BorrowedFd<'_>) -> io::Result<bool> {
    const STATX_ATTR_MOUNT_ROOT: u64 = 0x2000;
    // SAFETY: statx writes into a zeroed libc::statx we own.
    let mut st: libc::statx = unsafe { std::mem::zeroed() };
    // SAFETY: valid fd, empty C string and output struct.
    check(unsafe { libc::statx(fd.as_raw_fd(), c"".as_ptr(), libc::AT_EMPTY_PATH, 0, &mut st) })?;
    if st.stx_attributes_mask & STATX_ATTR_MOUNT_ROOT == 0 {
        return Err(io::Error::from_raw_os_error(libc::ENOSYS));
    }
    Ok(st.stx_attributes & STATX_ATTR_MOUNT_ROOT != 0)
}

/// `unlinkat(2)` of a non-directory `name` in `dirfd`.
pub fn unlinkat(dirfd: BorrowedFd<'_>, name: &Path) -> io::Result<()> {
    let c = cstr(name)?;
    // SAFETY: valid fd and C string.
    check(unsafe { libc::unlinkat(dirfd.as_raw_fd(), c.as_ptr(), 0) }).map(drop)
}

/// A terminal's window size (TIOCGWINSZ): (rows, cols).
pub fn get_winsize(fd: BorrowedFd<'_>) -> io::Result<(u16, u16)> {
    // SAFETY: TIOCGWINSZ writes a winsize we own (zeroed first).
    let mut ws: libc::winsize = unsafe { std::mem::zeroed() };
    // SAFETY: valid fd and output struct.
    check(unsafe { libc::ioctl(fd.as_raw_fd(), libc::TIOCGWINSZ, &mut ws) })?;
    Ok((ws.ws_row, ws.ws_col))
}

/// `isatty(3)`.
pub fn is_tty(fd: BorrowedFd<'_>) -> bool {
    // SAFETY: plain call on a valid fd.
    unsafe { libc::isatty(fd.as_raw_fd()) == 1 }
}

/// A terminal's settings, saved to be put back.
#[derive(Clone, Copy)]
pub struct Termios(libc::termios);

impl std::fmt::Debug for Termios {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Termios { .. }")
    }
}

/// Puts the terminal `fd` in raw mode (cfmakeraw); returns what it was.
pub fn tty_raw(fd: BorrowedFd<'_>) -> io::Result<Termios> {
    // SAFETY: tcgetattr fills a termios we own (zeroed first).
    let mut t: libc::termios = unsafe { std::mem::zeroed() };
    // SAFETY: valid fd and output struct.
    check(unsafe { libc::tcgetattr(fd.as_raw_fd(), &mut t) })?;
    let saved = Termios(t);
    // SAFETY: cfmakeraw only changes the struct we pass.
    unsafe { libc::cfmakeraw(&mut t) };
    // SAFETY: valid fd and struct.
    check(unsafe { libc::tcsetattr(fd.as_raw_fd(), libc::TCSANOW, &t) })?;
    Ok(saved)
}

/// Puts back settings saved by [`tty_raw`].
pub fn tty_restore(fd: BorrowedFd<'_>, t: &Termios) -> io::Result<()> {
    // SAFETY: valid fd and struct.
    check(unsafe { libc::tcsetattr(fd.as_raw_fd(), libc::TCSANOW, &t.0) }).map(drop)
}

/// `socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC)`.
pub fn stream_pair() -> io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0; 2];
    // SAFETY: valid out array of two ints.
    check(unsafe { libc::socketpair(libc::AF_UNIX, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0, fds.as_mut_ptr()) })?;
    Ok(pair(fds))
}

/// `read(2)` into `buf`; Ok(0) at end of file.
pub fn read(fd: BorrowedFd<'_>, buf: &mut [u8]) -> io::Result<usize> {
    // SAFETY: writes at most buf.len() bytes into buf.
    count(unsafe { libc::read(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) })
}

/// `write(2)` of all of `buf` (retrying short writes).
pub fn write_all(fd: BorrowedFd<'_>, mut buf: &[u8]) -> io::Result<()> {
    while !buf.is_empty() {
        // SAFETY: reads at most buf.len() bytes from buf.
        match count(unsafe { libc::write(fd.as_raw_fd(), buf.as_ptr().cast(), buf.len()) }) {
            Ok(n) => buf = buf.get(n..).unwrap_or_default(),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::os::fd::AsFd;

    /// Held by the one test that counts the process's open fds, and by
    /// every test while it opens some: tests run on parallel threads.
    pub(crate) static FDS: std::sync::Mutex<()> = std::sync::Mutex::new(());

    fn is_open(fd: RawFd) -> bool {
        // SAFETY: F_GETFD only asks whether the number is open.
        unsafe { libc::fcntl(fd, libc::F_GETFD) >= 0 }
    }

    #[test]
    fn recv_fd_closes_every_fd_past_the_first() {
        let _fds = FDS.lock();
        use std::os::fd::AsFd;
        let (a, b) = seqpacket_pair().unwrap();
        let (p, q) = stream_pair().unwrap();
        send_fds(a.as_fd(), b"x", &[p.as_fd(), q.as_fd(), p.as_fd()]).unwrap();
        let before: Vec<RawFd> = (0..1024).filter(|fd| is_open(*fd)).collect();
        let mut buf = [0u8; 8];
        let (n, first) = recv_fd(b.as_fd(), &mut buf).unwrap();
        assert_eq!(n, 1);
        let first = first.expect("the first fd");
        let after: Vec<RawFd> = (0..1024).filter(|fd| is_open(*fd)).collect();
        // Exactly one new fd stays open: the one returned.
        assert_eq!(after.len(), before.len() + 1, "received fds leaked: {before:?} -> {after:?}");
        assert!(after.contains(&first.as_raw_fd()));
    }

    #[test]
    fn a_child_is_refused_in_a_multithreaded_process() {
        let _fds = FDS.lock();
        // The test harness runs tests on threads of one process: exactly
        // the state in which a child would inherit held locks.
        let (tx, rx) = std::sync::mpsc::channel::<()>();
        let other = std::thread::spawn(move || rx.recv());
        let e = clone3(Namespaces::empty(), None).map(|_| ()).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::InvalidInput, "{e}");
        assert!(e.to_string().contains("single-threaded"), "{e}");
        assert_eq!(fork().map(|_| ()).unwrap_err().kind(), io::ErrorKind::InvalidInput);
        tx.send(()).unwrap();
        other.join().unwrap().unwrap();
    }

    #[test]
    fn openat2_in_root_or_its_emulation_stays_inside() {
        let _fds = FDS.lock();
        let d = std::env::temp_dir().join(format!("berth-sys-openat2-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(d.join("etc")).unwrap();
        std::os::unix::fs::symlink("/etc", d.join("abs")).unwrap();
        let root = openat(None, &d, libc::O_PATH | libc::O_DIRECTORY, 0).unwrap();
        match openat2_syscall(root.as_fd(), Path::new("abs"), libc::O_PATH, 0, RESOLVE_IN_ROOT) {
            Err(e) if e.raw_os_error() == Some(libc::ENOSYS) => eprintln!("skipped: no openat2 on this kernel"),
            r => {
                let fd = r.unwrap();
                let at = std::fs::read_link(format!("/proc/self/fd/{}", fd.as_raw_fd())).unwrap();
                assert_eq!(at, d.join("etc"));
            }
        }
        // The public entry point answers the same wherever openat2 is.
        let fd = openat2(root.as_fd(), Path::new("abs"), libc::O_PATH, 0, RESOLVE_IN_ROOT).unwrap();
        let at = std::fs::read_link(format!("/proc/self/fd/{}", fd.as_raw_fd())).unwrap();
        assert_eq!(at, d.join("etc"));
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn pidfd_send_signal_zero_checks_a_live_process() {
        let _fds = FDS.lock();
        let me = match pidfd_open(getpid()) {
            Err(e) if e.raw_os_error() == Some(libc::ENOSYS) => return eprintln!("skipped: no pidfd_open on this kernel"),
            r => r.unwrap(),
        };
        pidfd_send_signal(std::os::fd::AsFd::as_fd(&me), 0).unwrap();
    }

    #[test]
    fn poll_timeouts_saturate_and_preserved_fds_do_not_wrap() {
        assert_eq!(poll_ms(std::time::Duration::from_millis(1500)), 1500);
        assert_eq!(poll_ms(std::time::Duration::from_secs(u64::MAX)), i32::MAX);
        assert_eq!(preserved_fds(0), Some(3..3));
        assert_eq!(preserved_fds(2), Some(3..5));
        assert_eq!(preserved_fds(u32::MAX), None);
        assert_eq!(preserved_fds(i32::MAX.unsigned_abs()), None);
        assert_eq!(makedev(1, 3), Some(libc::makedev(1, 3)));
        assert_eq!(makedev(u64::from(u32::MAX) + 1, 0), None);
    }

    #[test]
    fn reset_signals_reaches_sigrtmax() {
        // SAFETY: dispositions of this test process; SIGRTMAX is not used by the harness.
        unsafe {
            libc::signal(libc::SIGRTMAX(), libc::SIG_IGN);
        }
        reset_signals();
        // SAFETY: reads the disposition into a zeroed sigaction.
        let mut old: libc::sigaction = unsafe { std::mem::zeroed() };
        // SAFETY: a null new action only reads the old one.
        unsafe { libc::sigaction(libc::SIGRTMAX(), std::ptr::null(), &mut old) };
        assert_eq!(old.sa_sigaction, libc::SIG_DFL);
    }
}
