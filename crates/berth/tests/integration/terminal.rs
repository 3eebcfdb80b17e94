//! The foreground terminal: `run` and `exec -t` with `terminal: true` and
//! no console socket, through a pty the test makes (CI has no terminal).
use crate::common::*;
use berth_sys::libc;
use serde_json::json;
use std::os::fd::{AsFd, OwnedFd};
use std::path::Path;
use std::sync::{Arc, Mutex};

/// A pty of the test's own: (master, slave), the slave `rows` x `cols`.
fn pty(rows: u16, cols: u16) -> (OwnedFd, OwnedFd) {
    let ptmx = berth_sys::openat(None, Path::new("/dev/ptmx"), libc::O_RDWR | libc::O_NOCTTY, 0).unwrap();
    let (m, s) = berth_sys::open_pty(ptmx).unwrap();
    berth_sys::set_winsize(s.as_fd(), rows, cols).unwrap();
    (m, s)
}

/// The terminal's settings as `stty -g` prints them.
fn settings(slave: &OwnedFd) -> String {
    let o = std::process::Command::new("stty").arg("-g").stdin(slave.try_clone().unwrap()).output().unwrap();
    assert!(o.status.success());
    String::from_utf8_lossy(&o.stdout).trim().to_string()
}

/// Collects what the master reads, until every slave is closed.
fn reader(master: &OwnedFd) -> Arc<Mutex<String>> {
    let out = Arc::new(Mutex::new(String::new()));
    let (o, m) = (out.clone(), master.try_clone().unwrap());
    std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        while let Ok(n) = berth_sys::read(m.as_fd(), &mut buf) {
            if n == 0 {
                break;
            }
            o.lock().unwrap().push_str(&String::from_utf8_lossy(&buf[..n]));
        }
    });
    out
}

fn spawn_on(w: &World, slave: &OwnedFd, args: &[&str]) -> std::process::Child {
    w.cmd()
        .args(args)
        .stdin(slave.try_clone().unwrap())
        .stdout(slave.try_clone().unwrap())
        .stderr(slave.try_clone().unwrap())
        .spawn()
        .unwrap()
}

fn type_in(master: &OwnedFd, text: &str) {
    berth_sys::write_all(master.as_fd(), text.as_bytes()).unwrap();
}

#[test]
#[ignore = "needs root"]
fn run_in_the_foreground_is_an_interactive_terminal() {
    let mut w = World::new("ttyrun");
    w.config(&["sh"], |c| c["process"]["terminal"] = json!(true));
    let (master, slave) = pty(33, 111);
    let before = settings(&slave);
    let id = w.id();
    let b = w.bundle.to_string_lossy().into_owned();
    let mut child = spawn_on(&w, &slave, &["run", "--bundle", &b, &id]);
    let out = reader(&master);
    type_in(&master, "echo hi $((6*7)); stty size; exit 3\n");
    let st = wait_within(&mut child, 20).expect("run did not end");
    assert_eq!(st.code(), Some(3), "the container's exit code: {}", out.lock().unwrap());
    assert!(eventually(|| out.lock().unwrap().contains("33 111")), "{}", out.lock().unwrap());
    let text = out.lock().unwrap().clone();
    assert!(text.contains("hi 42"), "the shell did not answer: {text}");
    assert_eq!(settings(&slave), before, "the caller's terminal was not restored");
    w.finish();
}

#[test]
#[ignore = "needs root"]
fn exec_tty_in_the_foreground_follows_the_window_size() {
    let mut w = World::new("ttyexec");
    w.config(&["sleep", "1000"], |_| {});
    let id = w.id();
    let b = w.bundle.to_string_lossy().into_owned();
    w.ok(&["run", "-d", "--bundle", &b, &id]);
    let (master, slave) = pty(20, 70);
    let before = settings(&slave);
    let mut child = spawn_on(&w, &slave, &["exec", "-t", &id, "sh"]);
    let out = reader(&master);
    type_in(&master, "stty size\n");
    assert!(eventually(|| out.lock().unwrap().contains("20 70")), "{}", out.lock().unwrap());
    // The caller's window changes: SIGWINCH tells berth, which passes it on.
    berth_sys::set_winsize(slave.as_fd(), 44, 99).unwrap();
    let pidfd = berth_sys::pidfd_open(child.id().cast_signed()).unwrap();
    berth_sys::pidfd_send_signal(pidfd.as_fd(), libc::SIGWINCH).unwrap();
    std::thread::sleep(std::time::Duration::from_millis(200));
    type_in(&master, "stty size; exit 7\n");
    let st = wait_within(&mut child, 20).expect("exec did not end");
    assert_eq!(st.code(), Some(7), "{}", out.lock().unwrap());
    assert!(eventually(|| out.lock().unwrap().contains("44 99")), "the new size did not reach the container: {}", out.lock().unwrap());
    assert_eq!(settings(&slave), before, "the caller's terminal was not restored");
    w.finish();
}

#[test]
#[ignore = "needs root"]
fn a_terminal_without_a_console_socket_cannot_be_detached() {
    let mut w = World::new("ttydetach");
    w.config(&["sh"], |c| c["process"]["terminal"] = json!(true));
    let id = w.id();
    let b = w.bundle.to_string_lossy().into_owned();
    for cmd in [&["create", "--bundle", &b, &id][..], &["run", "-d", "--bundle", &b, &id][..]] {
        let e = w.fails(cmd);
        says(&e, "cannot allocate tty if runc will detach without setting console socket");
    }
    w.finish();
}
