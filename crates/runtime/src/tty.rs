//! The foreground terminal: `run` (and `exec -t`) of a process with
//! `terminal: true` and no `--console-socket`, as runc does it. The
//! container's setup opens the pty and sends its master over a socket pair
//! of berth's own (the same message it sends to a console socket); berth
//! then relays its stdin to the master and the master to its stdout, with
//! the caller's terminal in raw mode (if stdin is one) and the window size
//! passed on, at the start and at every SIGWINCH. Other signals go to the
//! process, as without a terminal. The caller's terminal is put back as it
//! was whatever happens.

use crate::{Result, RuntimeError};
use berth_sys as sys;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

/// Receives the pty master that the container's setup sent over `sock`.
pub fn receive_master(sock: &OwnedFd) -> Result<OwnedFd> {
    let mut buf = [0u8; 4096];
    let (_, fd) = sys::recv_fd(sock.as_fd(), &mut buf).map_err(|e| RuntimeError::io("receive the pty master", e))?;
    fd.ok_or(RuntimeError::Init(crate::spawn::InitError::NoPtyMaster))
}

/// The caller's terminal in raw mode while this lives.
struct Raw<'a> {
    fd: BorrowedFd<'a>,
    saved: sys::Termios,
}

impl Drop for Raw<'_> {
    fn drop(&mut self) {
        let _ = sys::tty_restore(self.fd, &self.saved);
    }
}

fn copy_winsize(from: BorrowedFd<'_>, to: BorrowedFd<'_>) {
    if let Ok((rows, cols)) = sys::get_winsize(from) {
        let _ = sys::set_winsize(to, rows, cols);
    }
}

/// Relays between this process' stdio and `master` until the process
/// `pidfd` refers to exits, then returns its exit code (128 + the signal
/// that ended it).
pub fn relay(master: &OwnedFd, pidfd: &OwnedFd) -> Result<i32> {
    // This process's stdio, if open (a caller may have closed them).
    let (si, so) = (std::io::stdin(), std::io::stdout());
    let stdin = Some(si.as_fd()).filter(|f| sys::fstat(*f).is_ok());
    let stdout = Some(so.as_fd()).filter(|f| sys::fstat(*f).is_ok());
    let tty_in = stdin.filter(|f| sys::is_tty(*f));
    if let Some(t) = tty_in {
        copy_winsize(t, master.as_fd());
    }
    let _raw = match tty_in {
        Some(t) => Some(Raw { fd: t, saved: sys::tty_raw(t).map_err(|e| RuntimeError::io("put the terminal in raw mode", e))? }),
        None => None,
    };
    let sfd = sys::signalfd(&crate::process::FORWARDED).map_err(|e| RuntimeError::io("signalfd", e))?;
    let mut buf = vec![0u8; 16 * 1024];
    let mut reading_stdin = stdin.is_some();
    let mut master_open = true;
    let to_stdout = |data: &[u8]| {
        if let Some(o) = stdout {
            let _ = sys::write_all(o, data);
        }
    };
    loop {
        // pidfd, signals, then the master and stdin while they are open.
        let mut fds = vec![pidfd.as_fd(), sfd.as_fd()];
        let at_master = master_open.then(|| {
            fds.push(master.as_fd());
            fds.len() - 1
        });
        let at_stdin = match (reading_stdin, stdin) {
            (true, Some(i)) => {
                fds.push(i);
                Some(fds.len() - 1)
            }
            _ => None,
        };
        let r = sys::poll_in(&fds, -1).map_err(|e| RuntimeError::io("wait for the terminal", e))?;
        if let Some(m) = at_master.filter(|m| r[*m] != 0) {
            match sys::read(fds[m], &mut buf) {
                Ok(0) | Err(_) => master_open = false, // EIO: no process holds the pty any more
                Ok(n) => to_stdout(&buf[..n]),
            }
        }
        if let Some(i) = at_stdin.filter(|i| r[*i] != 0) {
            match sys::read(fds[i], &mut buf) {
                Ok(0) | Err(_) => reading_stdin = false,
                Ok(n) => {
                    let _ = sys::write_all(master.as_fd(), &buf[..n]);
                }
            }
        }
        if r[1] != 0 {
            if let Ok(s) = sys::read_signal(sfd.as_fd()) {
                match (s, tty_in) {
                    (libc::SIGWINCH, Some(t)) => copy_winsize(t, master.as_fd()),
                    _ => {
                        let _ = sys::pidfd_send_signal(pidfd.as_fd(), s);
                    }
                }
            }
        }
        if r[0] != 0 {
            break;
        }
    }
    // What the process wrote just before it ended.
    while master_open && sys::poll_in(&[master.as_fd()], 0).is_ok_and(|r| r[0] != 0) {
        match sys::read(master.as_fd(), &mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => to_stdout(&buf[..n]),
        }
    }
    crate::process::exit_code(pidfd)
}
