use crate::common::*;
use std::io::Read;
use std::os::fd::AsFd;

fn ns(pid: &str, n: &str) -> String {
    std::fs::read_link(format!("/proc/{pid}/ns/{n}")).unwrap().to_string_lossy().into_owned()
}

#[test]
#[ignore = "needs root"]
fn exec_runs_in_the_containers_namespaces_and_cgroup() {
    let mut w = World::new("execns");
    w.config(&["sleep", "1000"], |_| {});
    let id = w.create();
    w.ok(&["start", &id]);
    let init = w.state(&id)["pid"].to_string();
    let pf = w.dir.join("exec.pid");
    w.ok(&["exec", "--detach", "--pid-file", pf.to_str().unwrap(), &id, "sleep", "1000"]);
    let pid = std::fs::read_to_string(&pf).unwrap().trim().to_string();
    for n in ["pid", "mnt", "net", "ipc", "uts", "cgroup"] {
        assert_eq!(ns(&init, n), ns(&pid, n), "{n} namespace not joined");
    }
    let procs = w.cgroup_file(&id, "pids", "cgroup.procs", "cgroup.procs");
    assert!(procs.lines().any(|l| l == pid), "exec'd process not in the container's cgroup: {procs}");
    // delete --force takes the exec'd process too.
    w.ok(&["delete", "--force", &id]);
    assert!(
        !std::path::Path::new(&format!("/proc/{pid}")).exists()
            || std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default().contains(") Z")
    );
    w.finish();
}

#[test]
#[ignore = "needs root"]
fn exec_returns_the_exit_code_and_applies_user_env_cwd() {
    let mut w = World::new("execflags");
    w.config(&["sleep", "1000"], |_| {});
    let id = w.create();
    w.ok(&["start", &id]);
    let o = w.berth(&["exec", &id, "sh", "-c", "echo $$; exit 7"]);
    assert_eq!(o.status.code(), Some(7));
    let pid1: i64 = String::from_utf8_lossy(&o.stdout).trim().parse().unwrap();
    assert!(pid1 > 1, "exec'd process must not be the container's PID 1");
    let out = w.ok(&["exec", "--user", "1000:1001", "--env", "FOO=bar", "--cwd", "/bin", &id, "sh", "-c", "id -u; id -g; echo $FOO; pwd"]);
    assert_eq!(out, "1000\n1001\nbar\n/bin\n");
    let e = w.fails(&["exec", &id, "no-such-binary"]);
    says(&e, "no-such-binary");
    w.ok(&["kill", &id, "KILL"]);
    assert!(eventually(|| w.status(&id) == "stopped"));
    let e = w.fails(&["exec", &id, "true"]);
    says(&e, "stopped");
    w.finish();
}

#[test]
#[ignore = "needs root"]
fn exec_with_a_tty_through_the_console_socket() {
    let mut w = World::new("exectty");
    w.config(&["sleep", "1000"], |_| {});
    let id = w.create();
    w.ok(&["start", &id]);
    let sock_path = w.dir.join("exec-console.sock");
    let listener = std::os::unix::net::UnixListener::bind(&sock_path).unwrap();
    let mut child = w
        .cmd()
        .args(["exec", "--tty", "--console-socket", sock_path.to_str().unwrap(), &id, "sh", "-c", "tty; echo done"])
        .spawn()
        .unwrap();
    let conn = accept_within(&listener, 20);
    let mut buf = [0u8; 64];
    let (_, fd) = berth_sys::recv_fd(conn.as_fd(), &mut buf).unwrap();
    let mut f = std::fs::File::from(fd.expect("pty master"));
    let mut out = String::new();
    let mut chunk = [0u8; 256];
    while !out.contains("done") {
        match f.read(&mut chunk) {
            Ok(0) | Err(_) => break,
            Ok(n) => out.push_str(&String::from_utf8_lossy(&chunk[..n])),
        }
    }
    assert!(out.contains("/dev/pts/"), "{out}");
    assert!(child.wait().unwrap().success());
    w.finish();
}

#[test]
#[ignore = "needs root"]
fn ps_lists_the_containers_processes() {
    let mut w = World::new("ps");
    w.config(&["sh", "-c", "sleep 1000 & sleep 1000 & wait"], |_| {});
    let id = w.create();
    w.ok(&["start", &id]);
    let init = w.state(&id)["pid"].as_i64().unwrap();
    assert!(eventually(|| serde_json::from_str::<Vec<i64>>(&w.ok(&["ps", "--format", "json", &id])).unwrap().len() == 3));
    let pids: Vec<i64> = serde_json::from_str(&w.ok(&["ps", "--format", "json", &id])).unwrap();
    assert!(pids.contains(&init), "{pids:?}");
    let table = w.ok(&["ps", &id]);
    assert!(table.lines().next().unwrap().contains("PID"));
    assert_eq!(table.lines().filter(|l| l.ends_with("sleep 1000")).count(), 2, "{table}");
    w.finish();
}

#[test]
#[ignore = "needs root"]
fn exec_pidfd_socket_gets_the_exec_process_and_cgroup_picks_a_sub_cgroup() {
    let mut w = World::new("execsub");
    w.config(&["sleep", "1000"], |_| {});
    let id = w.create();
    w.ok(&["start", &id]);
    // A sub-cgroup in every hierarchy of the container, as a caller would make.
    let dirs = w.cgroup_dirs(&id);
    for d in &dirs {
        std::fs::create_dir(d.path.join("sub")).unwrap();
        if !d.v2 && d.controllers.iter().any(|c| c == "cpuset") {
            for f in ["cpuset.cpus", "cpuset.mems"] {
                std::fs::write(d.path.join("sub").join(f), std::fs::read(d.path.join(f)).unwrap()).unwrap();
            }
        }
    }
    let sock_path = w.dir.join("exec-pidfd.sock");
    let listener = std::os::unix::net::UnixListener::bind(&sock_path).unwrap();
    let pf = w.dir.join("exec-sub.pid");
    w.ok(&[
        "exec",
        "--detach",
        "--cgroup",
        "sub",
        "--pid-file",
        pf.to_str().unwrap(),
        "--pidfd-socket",
        sock_path.to_str().unwrap(),
        &id,
        "sleep",
        "1000",
    ]);
    let conn = accept_within(&listener, 20);
    let mut buf = [0u8; 64];
    let (_, fd) = berth_sys::recv_fd(std::os::fd::AsFd::as_fd(&conn), &mut buf).unwrap();
    let pidfd = fd.expect("a pidfd");
    let pid = std::fs::read_to_string(&pf).unwrap();
    let fdinfo = std::fs::read_to_string(format!("/proc/self/fdinfo/{}", std::os::fd::AsRawFd::as_raw_fd(&pidfd))).unwrap();
    assert!(fdinfo.lines().any(|l| l.starts_with("Pid:") && l.split_whitespace().nth(1) == Some(pid.trim())), "{fdinfo}");
    for d in &dirs {
        let procs = std::fs::read_to_string(d.path.join("sub/cgroup.procs")).unwrap();
        assert!(procs.lines().any(|l| l == pid.trim()), "exec'd process not in {}/sub: {procs}", d.path.display());
    }
    // Nonexistent or escaping sub-cgroups are refused.
    let e = w.fails(&["exec", "--cgroup", "nosuch", &id, "true"]);
    says(&e, "nosuch/cgroup.procs: no such file");
    let e = w.fails(&["exec", "--cgroup", "../..", &id, "true"]);
    says(&e, ".. is not a sub cgroup path");
    // delete --force kills the process in the sub-cgroup and removes it.
    w.ok(&["delete", "--force", &id]);
    // It has exited (a zombie until its reaper, the host's, collects it).
    let r = berth_sys::poll_in(&[std::os::fd::AsFd::as_fd(&pidfd)], 0).unwrap();
    assert_ne!(r[0], 0, "the exec'd process is still alive after delete --force");
    w.finish();
}

#[test]
#[ignore = "needs root"]
fn exec_groups_caps_no_new_privs_preserve_fds_and_ignore_paused() {
    let mut w = World::new("execmore");
    w.config(&["sleep", "1000"], |c| {
        // Bounding set wide enough for --cap to add CAP_NET_ADMIN.
        c["process"]["capabilities"]["bounding"].as_array_mut().unwrap().push(serde_json::json!("CAP_NET_ADMIN"));
        c["process"]["noNewPrivileges"] = serde_json::json!(false);
    });
    let id = w.create();
    w.ok(&["start", &id]);
    let out = w.ok(&["exec", "--user", "1000:1000", "--additional-gids", "44", "--additional-gids", "55", &id, "id", "-G"]);
    let groups: Vec<&str> = out.split_whitespace().collect();
    assert!(groups.contains(&"44") && groups.contains(&"55"), "{out}");
    // CAP_NET_ADMIN is bit 12.
    let caps = w.ok(&["exec", "--cap", "CAP_NET_ADMIN", &id, "grep", "CapEff", "/proc/self/status"]);
    let eff = u64::from_str_radix(caps.split_whitespace().nth(1).unwrap(), 16).unwrap();
    assert!(eff & (1 << 12) != 0, "{caps}");
    let nnp = w.ok(&["exec", "--no-new-privs", &id, "grep", "NoNewPrivs", "/proc/self/status"]);
    assert!(nnp.trim().ends_with('1'), "{nnp}");
    // --preserve-fds 1: fd 3 of berth reaches the process.
    let f = w.dir.join("exec-fd3.out");
    let cmd = format!(
        "exec 3>{} ; exec {} --root {} exec --preserve-fds 1 {id} sh -c 'echo via-fd3 >&3'",
        f.display(),
        runtime(),
        w.root.display()
    );
    assert!(std::process::Command::new("sh").arg("-c").arg(cmd).status().unwrap().success());
    assert_eq!(std::fs::read_to_string(&f).unwrap(), "via-fd3\n");
    // A paused container refuses exec unless --ignore-paused; then the
    // process runs once the container is resumed.
    w.ok(&["pause", &id]);
    w.fails(&["exec", &id, "true"]);
    let child =
        w.cmd().args(["exec", "--ignore-paused", &id, "sh", "-c", "echo ran"]).stdout(std::process::Stdio::piped()).spawn().unwrap();
    std::thread::sleep(std::time::Duration::from_millis(200));
    w.ok(&["resume", &id]);
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    assert_eq!(String::from_utf8_lossy(&out.stdout), "ran\n");
    w.ok(&["delete", "--force", &id]);
    w.finish();
}
