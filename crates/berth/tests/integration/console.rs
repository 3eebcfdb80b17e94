use crate::common::*;
use std::io::Read;
use std::os::fd::AsFd;

#[test]
#[ignore = "needs root"]
fn console_socket_receives_the_pty_master() {
    let mut w = World::new("console");
    w.config(&["sh", "-c", "tty; stty size; echo done"], |c| {
        c["process"]["terminal"] = serde_json::json!(true);
        c["process"]["consoleSize"] = serde_json::json!({"height": 40, "width": 120});
    });
    let sock_path = w.dir.join("console.sock");
    let listener = std::os::unix::net::UnixListener::bind(&sock_path).unwrap();
    let id = w.id();
    let bundle = w.bundle.to_string_lossy().into_owned();
    w.ok(&["create", "--bundle", &bundle, "--console-socket", sock_path.to_str().unwrap(), &id]);
    let conn = accept_within(&listener, 20);
    let mut buf = [0u8; 256];
    let (n, fd) = berth_sys::recv_fd(conn.as_fd(), &mut buf).unwrap();
    let name = String::from_utf8_lossy(&buf[..n]).into_owned();
    says(&name, "/dev/pts/");
    let master = fd.expect("a pty master fd");
    w.ok(&["start", &id]);
    let mut f = std::fs::File::from(master);
    let mut out = String::new();
    let mut chunk = [0u8; 1024];
    // Read until the process is done (EIO once the slave side is closed).
    while !out.contains("done") {
        match f.read(&mut chunk) {
            Ok(0) | Err(_) => break,
            Ok(n) => out.push_str(&String::from_utf8_lossy(&chunk[..n])),
        }
    }
    assert!(out.contains("/dev/console") || out.contains("/dev/pts/"), "{out}");
    assert!(out.contains("40 120"), "{out}");
    assert!(eventually(|| w.status(&id) == "stopped"));
    w.ok(&["delete", &id]);
    w.finish();
}

#[test]
#[ignore = "needs root"]
fn terminal_without_console_socket_is_an_error() {
    let mut w = World::new("noconsole");
    w.config(&["true"], |c| {
        c["process"]["terminal"] = serde_json::json!(true);
    });
    let id = w.id();
    let bundle = w.bundle.to_string_lossy().into_owned();
    let e = w.fails(&["create", "--bundle", &bundle, &id]);
    says(&e, "console");
    w.finish();
}

#[test]
#[ignore = "needs root"]
fn pidfd_socket_receives_a_pidfd_of_the_init() {
    let mut w = World::new("pidfdsock");
    w.config(&["sleep", "1000"], |_| {});
    let sock_path = w.dir.join("pidfd.sock");
    let listener = std::os::unix::net::UnixListener::bind(&sock_path).unwrap();
    let id = w.id();
    let bundle = w.bundle.to_string_lossy().into_owned();
    w.ok(&["create", "--bundle", &bundle, "--pidfd-socket", sock_path.to_str().unwrap(), &id]);
    let conn = accept_within(&listener, 20);
    let mut buf = [0u8; 64];
    let (_, fd) = berth_sys::recv_fd(conn.as_fd(), &mut buf).unwrap();
    let pidfd = fd.expect("a pidfd");
    // Signal 0 through it checks that it is a live process's pidfd.
    berth_sys::pidfd_send_signal(pidfd.as_fd(), 0).unwrap();
    let fdinfo = std::fs::read_to_string(format!("/proc/self/fdinfo/{}", std::os::fd::AsRawFd::as_raw_fd(&pidfd))).unwrap();
    let pid = w.state(&id)["pid"].to_string();
    assert!(fdinfo.lines().any(|l| l.starts_with("Pid:") && l.split_whitespace().nth(1) == Some(pid.as_str())), "{fdinfo}");
    w.finish();
}
