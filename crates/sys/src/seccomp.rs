//! libseccomp (Debian's libseccomp-dev): the few calls berth needs to turn an
//! OCI seccomp profile into a loaded filter.

use std::ffi::CString;
use std::io;
use std::os::fd::{FromRawFd, OwnedFd};

#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct ArgCmp {
    pub arg: u32,
    pub op: u32,
    pub datum_a: u64,
    pub datum_b: u64,
}

#[link(name = "seccomp")]
extern "C" {
    fn seccomp_init(def_action: u32) -> *mut libc::c_void;
    fn seccomp_release(ctx: *mut libc::c_void);
    fn seccomp_arch_add(ctx: *mut libc::c_void, arch_token: u32) -> libc::c_int;
    fn seccomp_arch_resolve_name(name: *const libc::c_char) -> u32;
    fn seccomp_syscall_resolve_name(name: *const libc::c_char) -> libc::c_int;
    fn seccomp_rule_add_array(
        ctx: *mut libc::c_void,
        action: u32,
        syscall: libc::c_int,
        arg_cnt: libc::c_uint,
        args: *const ArgCmp,
    ) -> libc::c_int;
    fn seccomp_attr_set(ctx: *mut libc::c_void, attr: libc::c_int, value: u32) -> libc::c_int;
    fn seccomp_load(ctx: *const libc::c_void) -> libc::c_int;
    fn seccomp_notify_fd(ctx: *const libc::c_void) -> libc::c_int;
}

pub const ATTR_CTL_NNP: i32 = 3;
pub const ATTR_CTL_TSYNC: i32 = 4;
pub const ATTR_CTL_LOG: i32 = 6;
pub const ATTR_CTL_SSB: i32 = 7;

fn neg(r: libc::c_int) -> io::Result<()> {
    if r < 0 {
        Err(io::Error::from_raw_os_error(-r))
    } else {
        Ok(())
    }
}

/// A libseccomp filter context (`scmp_filter_ctx`), released on drop.
#[derive(Debug)]
pub struct Filter(*mut libc::c_void);

impl Filter {
    /// `seccomp_init(default_action)`.
    pub fn new(default_action: u32) -> io::Result<Filter> {
        // SAFETY: plain constructor; null means failure.
        let ctx = unsafe { seccomp_init(default_action) };
        if ctx.is_null() {
            return Err(io::Error::from_raw_os_error(libc::EINVAL));
        }
        Ok(Filter(ctx))
    }

    /// `seccomp_arch_add`; the native architecture is already there (EEXIST is fine).
    pub fn add_arch(&mut self, token: u32) -> io::Result<()> {
        // SAFETY: valid context.
        match neg(unsafe { seccomp_arch_add(self.0, token) }) {
            Err(e) if e.raw_os_error() == Some(libc::EEXIST) => Ok(()),
            r => r,
        }
    }

    /// `seccomp_rule_add_array`.
    pub fn add_rule(&mut self, action: u32, syscall: i32, args: &[ArgCmp]) -> io::Result<()> {
        let n = libc::c_uint::try_from(args.len()).map_err(|_| io::Error::from_raw_os_error(libc::E2BIG))?;
        // SAFETY: valid context; pointer and count describe `args`.
        neg(unsafe { seccomp_rule_add_array(self.0, action, syscall, n, args.as_ptr()) })
    }

    /// `seccomp_attr_set`.
    pub fn set_attr(&mut self, attr: i32, value: u32) -> io::Result<()> {
        // SAFETY: valid context.
        neg(unsafe { seccomp_attr_set(self.0, attr, value) })
    }

    /// `seccomp_load`: the filter applies to this process from now on.
    pub fn load(&self) -> io::Result<()> {
        // SAFETY: valid context.
        neg(unsafe { seccomp_load(self.0) })
    }

    /// `seccomp_notify_fd` after a load with SCMP_ACT_NOTIFY rules.
    pub fn notify_fd(&self) -> io::Result<OwnedFd> {
        // SAFETY: valid context.
        let fd = unsafe { seccomp_notify_fd(self.0) };
        if fd < 0 {
            return Err(io::Error::from_raw_os_error(-fd));
        }
        // libseccomp keeps and later closes its fd: own a duplicate.
        // SAFETY: F_DUPFD_CLOEXEC on a valid fd returns a new one.
        let dup = unsafe { libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, 3) };
        if dup < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `dup` is a new fd we own.
        Ok(unsafe { OwnedFd::from_raw_fd(dup) })
    }
}

impl Drop for Filter {
    fn drop(&mut self) {
        // SAFETY: the context came from seccomp_init and is released once.
        unsafe { seccomp_release(self.0) }
    }
}

/// `seccomp_arch_resolve_name` ("x86_64" -> token); `None` if unknown.
pub fn arch_token(name: &str) -> Option<u32> {
    let c = CString::new(name).ok()?;
    // SAFETY: valid string.
    let t = unsafe { seccomp_arch_resolve_name(c.as_ptr()) };
    (t != 0).then_some(t)
}

/// `seccomp_syscall_resolve_name`; `None` if this libseccomp does not know it.
pub fn syscall_number(name: &str) -> Option<i32> {
    let c = CString::new(name).ok()?;
    // SAFETY: valid string.
    let n = unsafe { seccomp_syscall_resolve_name(c.as_ptr()) };
    (n != -1).then_some(n)
}

/// Receives one user notification from a seccomp notify fd and answers it:
/// the syscall fails with `errno`, or, with `errno` 0, succeeds returning
/// 0. Returns (pid, syscall number) of the notification. What a seccomp
/// agent (listenerPath) does; berth's tests play that part.
pub fn notify_answer(fd: std::os::fd::BorrowedFd<'_>, errno: i32) -> io::Result<(u32, i32)> {
    use std::os::fd::AsRawFd;
    #[repr(C)]
    #[derive(Default)]
    struct Notif {
        id: u64,
        pid: u32,
        flags: u32,
        nr: i32,
        arch: u32,
        ip: u64,
        args: [u64; 6],
    }
    #[repr(C)]
    struct Resp {
        id: u64,
        val: i64,
        error: i32,
        flags: u32,
    }
    const RECV: libc::c_ulong = 0xc050_2100; // SECCOMP_IOCTL_NOTIF_RECV
    const SEND: libc::c_ulong = 0xc018_2101; // SECCOMP_IOCTL_NOTIF_SEND
    let mut n = Notif::default();
    // SAFETY: `n` is a zeroed seccomp_notif of the size the ioctl encodes.
    if unsafe { libc::ioctl(fd.as_raw_fd(), RECV, &mut n as *mut Notif) } < 0 {
        return Err(io::Error::last_os_error());
    }
    let r = Resp { id: n.id, val: 0, error: -errno, flags: 0 };
    // SAFETY: `r` is a seccomp_notif_resp of the size the ioctl encodes.
    if unsafe { libc::ioctl(fd.as_raw_fd(), SEND, &r as *const Resp) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok((n.pid, n.nr))
}
