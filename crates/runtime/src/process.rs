//! A process is known by a pidfd plus its start time, never by a bare PID:
//! the kernel may hand a PID to someone else as soon as its owner is reaped.

use crate::{Result, RuntimeError};
use std::os::fd::{AsFd, OwnedFd};

/// Field 22 of /proc/PID/stat (start time in clock ticks since boot) and the
/// state letter (field 3). `None` when the process does not exist.
pub fn stat(pid: i32) -> Option<(u64, char)> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) is in parentheses and may contain anything.
    let rest = &s[s.rfind(')')? + 2..];
    let mut f = rest.split(' ');
    let state = f.next()?.chars().next()?;
    let start = f.nth(18)?.parse().ok()?;
    Some((start, state))
}

/// A live process whose identity was confirmed.
#[derive(Debug)]
pub struct Process {
    pub pid: i32,
    pub start_time: u64,
    pub pidfd: OwnedFd,
}

impl Process {
    /// Opens a pidfd for `pid` and confirms that it is the process that
    /// started at `start_time`. The pidfd is opened first, then the start
    /// time read: if they match, the pidfd refers to that very process.
    /// `None` when it is gone (or the PID now belongs to another process).
    pub fn open(pid: i32, start_time: u64) -> Option<Process> {
        if pid <= 0 {
            return None;
        }
        let pidfd = berth_sys::pidfd_open(pid).ok()?;
        let (st, state) = stat(pid)?;
        if st != start_time || state == 'Z' || state == 'X' {
            return None;
        }
        Some(Process { pid, start_time, pidfd })
    }

    /// Sends `sig` through the pidfd.
    pub fn signal(&self, sig: i32) -> Result<()> {
        berth_sys::pidfd_send_signal(self.pidfd.as_fd(), sig).map_err(|e| {
            if e.raw_os_error() == Some(libc::ESRCH) {
                RuntimeError::NotRunning
            } else {
                RuntimeError::Io { step: "signal", on: crate::Subject::Signal { sig, pid: self.pid }, source: e }
            }
        })
    }

    /// True once the process has exited (pidfd readable).
    pub fn exited(&self) -> bool {
        berth_sys::poll_in(&[self.pidfd.as_fd()], 0).map(|r| r[0] != 0).unwrap_or(true)
    }

    /// The state letter now (R, S, D, T, Z...).
    pub fn state(&self) -> Option<char> {
        stat(self.pid).filter(|(st, _)| *st == self.start_time).map(|(_, s)| s)
    }
}

/// The command name and kernel wait channel of `pid`, for "what is stuck" messages.
pub fn describe(pid: i32) -> String {
    let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
    let wchan = std::fs::read_to_string(format!("/proc/{pid}/wchan")).unwrap_or_default();
    let state = stat(pid).map(|(_, s)| s).unwrap_or('?');
    format!("pid {pid} ({}) state {state} wchan {}", comm.trim(), if wchan.is_empty() || wchan == "0" { "-" } else { wchan.trim() })
}

/// Waits for a child known by `pidfd`, forwarding the signals a terminal or
/// supervisor sends to this process (as runc does); returns its exit code,
/// 128 + the signal if a signal ended it. Used by foreground `run` and `exec`.
pub fn wait_forwarding(pidfd: &OwnedFd) -> Result<i32> {
    let sfd = berth_sys::signalfd(&FORWARDED).map_err(|e| RuntimeError::io("signalfd", e))?;
    loop {
        let r = berth_sys::poll_in(&[pidfd.as_fd(), sfd.as_fd()], -1).map_err(|e| RuntimeError::io("wait for the process", e))?;
        if r[1] != 0 {
            if let Ok(s) = berth_sys::read_signal(sfd.as_fd()) {
                let _ = berth_sys::pidfd_send_signal(pidfd.as_fd(), s);
            }
        }
        if r[0] != 0 {
            break;
        }
    }
    exit_code(pidfd)
}

/// The signals a foreground `run` or `exec` passes on to its process (as
/// runc does); SIGWINCH resizes the terminal instead when berth is one.
pub const FORWARDED: [i32; 9] =
    [libc::SIGHUP, libc::SIGINT, libc::SIGQUIT, libc::SIGTERM, libc::SIGUSR1, libc::SIGUSR2, libc::SIGWINCH, libc::SIGCONT, libc::SIGTSTP];

/// Fails unless this kernel (and any seccomp filter berth runs under) has
/// pidfd_open (Linux 5.3): berth has no way to know a process without it.
pub fn check_pidfd() -> Result<()> {
    match berth_sys::pidfd_open(berth_sys::getpid()) {
        Err(source) if source.raw_os_error() == Some(libc::ENOSYS) => Err(RuntimeError::Kernel { needs: "pidfd_open (Linux 5.3)", source }),
        _ => Ok(()),
    }
}

/// Reaps the exited child `pidfd` refers to: its exit code, 128 + the
/// signal if a signal ended it.
pub fn exit_code(pidfd: &OwnedFd) -> Result<i32> {
    match berth_sys::waitid_pidfd(pidfd.as_fd(), false).map_err(|e| RuntimeError::io("wait for the process", e))? {
        Some(st) => Ok(st.code()),
        None => Err(RuntimeError::ExitStatusLost),
    }
}
