use crate::common::*;
use serde_json::json;

fn status_field(out: &str, key: &str) -> String {
    out.lines().find(|l| l.starts_with(key)).map(|l| l[key.len()..].trim().to_string()).unwrap_or_default()
}

#[test]
#[ignore = "needs root"]
fn capabilities_are_exactly_the_configured_sets() {
    let mut w = World::new("caps");
    w.config(&["cat", "/proc/self/status"], |c| {
        c["process"]["capabilities"] = json!({
            "bounding": ["CAP_CHOWN", "CAP_KILL", "CAP_NET_RAW"],
            "effective": ["CAP_CHOWN", "CAP_KILL"],
            "permitted": ["CAP_CHOWN", "CAP_KILL"],
            "inheritable": ["CAP_KILL"],
            "ambient": ["CAP_KILL"]
        });
    });
    let out = w.run_ok();
    // CAP_CHOWN = 0, CAP_KILL = 5, CAP_NET_RAW = 13
    assert_eq!(status_field(&out, "CapBnd:"), format!("{:016x}", 1u64 | 1 << 5 | 1 << 13));
    assert_eq!(status_field(&out, "CapEff:"), format!("{:016x}", 1u64 | 1 << 5));
    assert_eq!(status_field(&out, "CapPrm:"), format!("{:016x}", 1u64 | 1 << 5));
    assert_eq!(status_field(&out, "CapInh:"), format!("{:016x}", 1u64 << 5));
    assert_eq!(status_field(&out, "CapAmb:"), format!("{:016x}", 1u64 << 5));
    w.finish();
}

#[test]
#[ignore = "needs root"]
fn user_groups_umask_and_cwd_are_applied() {
    let mut w = World::new("user");
    w.config(&["sh", "-c", "id -u; id -g; id -G; umask; pwd"], |c| {
        c["process"]["user"] = json!({"uid": 1000, "gid": 1001, "additionalGids": [2000, 2001], "umask": 63});
        c["process"]["cwd"] = json!("/work/dir");
    });
    let out = w.run_ok();
    let l: Vec<&str> = out.lines().collect();
    assert_eq!(l[0], "1000");
    assert_eq!(l[1], "1001");
    let mut groups: Vec<&str> = l[2].split_whitespace().collect();
    groups.sort();
    assert_eq!(groups, vec!["1001", "2000", "2001"]);
    assert_eq!(l[3], "0077");
    assert_eq!(l[4], "/work/dir");
    w.finish();
}

#[test]
#[ignore = "needs root"]
fn rlimits_no_new_privs_and_oom_score_adj() {
    let mut w = World::new("rlimits");
    w.config(&["sh", "-c", "ulimit -n; ulimit -Hn; grep NoNewPrivs /proc/self/status; cat /proc/self/oom_score_adj"], |c| {
        c["process"]["rlimits"] = json!([{"type": "RLIMIT_NOFILE", "soft": 512, "hard": 768}]);
        c["process"]["noNewPrivileges"] = json!(true);
        c["process"]["oomScoreAdj"] = json!(123);
    });
    let out = w.run_ok();
    let l: Vec<&str> = out.lines().collect();
    assert_eq!(l[0], "512");
    assert_eq!(l[1], "768");
    assert!(l[2].ends_with('1'), "{}", l[2]);
    assert_eq!(l[3], "123");
    w.finish();
}

#[test]
#[ignore = "needs root"]
fn environment_and_args_reach_the_process() {
    let mut w = World::new("env");
    w.config(&["sh", "-c", "echo \"$FOO|$1\"", "argv0", "arg one"], |c| {
        c["process"]["env"] = json!(["PATH=/bin", "FOO=bar baz"]);
    });
    assert_eq!(w.run_ok(), "bar baz|arg one\n");
    w.finish();
}

#[test]
#[ignore = "needs root"]
fn host_dev_null_stdio_is_never_chowned() {
    use std::os::unix::fs::MetadataExt;
    let before = std::fs::metadata("/dev/null").unwrap();
    let mut w = World::new("devnull");
    w.config(&["id", "-u"], |c| {
        c["process"]["user"] = json!({"uid": 1000, "gid": 1000});
    });
    let id = w.id();
    let bundle = w.bundle.to_string_lossy().into_owned();
    let st = w
        .cmd()
        .args(["run", "--bundle", &bundle, &id])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .unwrap();
    assert!(st.success());
    let after = std::fs::metadata("/dev/null").unwrap();
    assert_eq!((before.uid(), before.gid(), before.mode()), (after.uid(), after.gid(), after.mode()));
    w.finish();
}

#[test]
#[ignore = "needs root"]
fn seccomp_errno_rule_filters_the_first_exec_onwards() {
    let mut w = World::new("seccomp");
    w.config(&["sh", "-c", "mkdir /tmp/x && echo made || echo refused"], |c| {
        c["mounts"].as_array_mut().unwrap().push(json!({"destination": "/tmp", "type": "tmpfs", "source": "tmpfs"}));
        c["linux"]["seccomp"] = json!({
            "defaultAction": "SCMP_ACT_ALLOW",
            "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86"],
            "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1}]
        });
    });
    assert_eq!(w.run_ok(), "refused\n");
    w.finish();
}

/// Field `n` (1-based, as in proc(5)) of a /proc/PID/stat line.
fn stat_field(stat: &str, n: usize) -> String {
    let rest = &stat[stat.rfind(')').unwrap() + 2..];
    rest.split_whitespace().nth(n - 3).unwrap().to_string()
}

#[test]
#[ignore = "needs root"]
fn scheduler_and_io_priority_apply_to_the_process_and_to_exec() {
    let mut w = World::new("sched");
    let show = "cat /proc/self/stat; ionice; cat /proc/$$/stat";
    w.config(&["sh", "-c", show], |c| {
        c["process"]["scheduler"] = json!({"policy": "SCHED_BATCH", "nice": 7});
        c["process"]["ioPriority"] = json!({"class": "IOPRIO_CLASS_BE", "priority": 6});
    });
    let out = w.run_ok();
    let l: Vec<&str> = out.lines().collect();
    assert_eq!(stat_field(l[0], 19), "7", "nice: {out}");
    assert_eq!(stat_field(l[0], 41), "3", "policy SCHED_BATCH: {out}");
    assert_eq!(l[1].trim(), "best-effort: prio 6", "{out}");

    // exec --process with other choices. (A real-time policy needs realtime
    // runtime in the container's cpu cgroup on kernels with RT group
    // scheduling; that is the cgroup's business, not tested here.)
    w.config(&["sleep", "1000"], |_| {});
    let id = w.create();
    w.ok(&["start", &id]);
    let mut p = w.default_config(&["sh", "-c", show])["process"].clone();
    p["scheduler"] = json!({"policy": "SCHED_IDLE", "flags": ["SCHED_FLAG_RESET_ON_FORK"]});
    p["ioPriority"] = json!({"class": "IOPRIO_CLASS_IDLE"});
    let pf = w.dir.join("process.json");
    std::fs::write(&pf, p.to_string()).unwrap();
    let out = w.ok(&["exec", "--process", pf.to_str().unwrap(), &id]);
    let l: Vec<&str> = out.lines().collect();
    // (Reset-on-fork only resets real-time policies: `cat` keeps SCHED_IDLE.)
    assert_eq!(stat_field(l[0], 41), "5", "policy SCHED_IDLE: {out}");
    assert_eq!(l[1].trim(), "idle", "{out}");
    assert_eq!(stat_field(l[2], 41), "5", "policy SCHED_IDLE: {out}");
    w.ok(&["delete", "--force", &id]);
    w.finish();
}

#[test]
#[ignore = "needs root"]
fn invalid_scheduler_or_io_priority_is_a_clear_error() {
    let mut w = World::new("badsched");
    for (key, val, needle) in [
        ("scheduler", json!({"policy": "SCHED_NOPE"}), "SCHED_NOPE"),
        ("scheduler", json!({"policy": "SCHED_FIFO", "priority": 0}), "priority"),
        ("ioPriority", json!({"class": "IOPRIO_CLASS_XX", "priority": 1}), "IOPRIO_CLASS_XX"),
        ("ioPriority", json!({"class": "IOPRIO_CLASS_BE", "priority": 9}), "priority"),
    ] {
        w.config(&["true"], |c| c["process"][key] = val.clone());
        let (code, _, err) = w.run();
        assert_ne!(code, 0);
        says(&err, needle);
    }
    w.finish();
}

#[test]
#[ignore = "needs root"]
fn seccomp_notify_hands_the_listener_its_fd_metadata_and_state() {
    use std::os::fd::AsFd;
    let mut w = World::new("seccompnotify");
    let sock = w.dir.join("agent.sock");
    let listener = std::os::unix::net::UnixListener::bind(&sock).unwrap();
    w.config(&["sh", "-c", "mkdir /tmp/x 2>/dev/null && echo made || echo refused; mkdir /tmp/y && echo made"], |c| {
        c["mounts"].as_array_mut().unwrap().push(json!({"destination": "/tmp", "type": "tmpfs", "source": "tmpfs"}));
        c["linux"]["seccomp"] = json!({
            "defaultAction": "SCMP_ACT_ALLOW",
            "listenerPath": sock.to_str().unwrap(),
            "listenerMetadata": "agent-metadata",
            "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_NOTIFY"}]
        });
    });
    let id = w.id();
    let bundle = w.bundle.to_string_lossy().into_owned();
    let child = w.cmd().args(["run", "--bundle", &bundle, &id]).stdout(std::process::Stdio::piped()).spawn().unwrap();
    let ready = berth_sys::poll_in(&[listener.as_fd()], 10_000).unwrap();
    assert_ne!(ready[0], 0, "berth never connected to listenerPath");
    let conn = accept_within(&listener, 20);
    let mut buf = vec![0u8; 65536];
    let (n, fd) = berth_sys::recv_fd(conn.as_fd(), &mut buf).unwrap();
    let notify = fd.expect("the seccomp notify fd");
    let msg: serde_json::Value = serde_json::from_slice(&buf[..n]).unwrap();
    assert_eq!(msg["fds"], json!(["seccompFd"]), "{msg}");
    assert_eq!(msg["metadata"], "agent-metadata");
    assert_eq!(msg["state"]["id"], id.as_str());
    assert!(msg["pid"].as_i64().unwrap_or(0) > 0, "{msg}");
    // The agent refuses the first mkdir and lets the second one through.
    for errno in [1 /* EPERM */, 0] {
        let r = berth_sys::poll_in(&[notify.as_fd()], 10_000).unwrap();
        assert_ne!(r[0], 0, "no notification arrived");
        let (_, nr) = berth_sys::seccomp::notify_answer(notify.as_fd(), errno).unwrap();
        assert!(nr == 83 || nr == 258, "notified of syscall {nr}, not mkdir/mkdirat");
    }
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    assert_eq!(String::from_utf8_lossy(&out.stdout), "refused\nmade\n");
    w.finish();
}

#[test]
#[ignore = "needs root"]
fn personality_linux32_is_applied() {
    let mut w = World::new("personality");
    w.config(&["uname", "-m"], |c| c["linux"]["personality"] = json!({"domain": "LINUX32"}));
    let out = w.run_ok();
    if std::env::consts::ARCH == "x86_64" {
        assert_eq!(out.trim(), "i686");
    }
    w.config(&["uname", "-m"], |c| c["linux"]["personality"] = json!({"domain": "LINUX"}));
    assert_eq!(w.run_ok().trim(), std::env::consts::ARCH);
    w.finish();
}

#[test]
#[ignore = "needs root"]
fn seccomp_argument_comparisons_kill_actions_and_flags() {
    let mut w = World::new("seccompargs");
    // chmod to 0700 is refused (EPERM), other modes pass; sync(2) kills
    // the calling process, a subshell (SIGSYS: $? is 128+31).
    let script = "mkdir /tmp/a; chmod 700 /tmp/a 2>/dev/null && echo 700-allowed || echo 700-refused; \
                  chmod 755 /tmp/a && echo 755-allowed; (sync); echo sync=$?";
    w.config(&["sh", "-c", script], |c| {
        c["mounts"].as_array_mut().unwrap().push(json!({"destination": "/tmp", "type": "tmpfs", "source": "tmpfs"}));
        c["linux"]["seccomp"] = json!({
            "defaultAction": "SCMP_ACT_ALLOW",
            "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"],
            "flags": ["SECCOMP_FILTER_FLAG_LOG"],
            "syscalls": [
                {"names": ["chmod"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1, "args": [{"index": 1, "value": 448, "op": "SCMP_CMP_EQ"}]},
                {"names": ["fchmodat"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1, "args": [{"index": 2, "value": 448, "op": "SCMP_CMP_EQ"}]},
                {"names": ["sync"], "action": "SCMP_ACT_KILL_PROCESS"}
            ]
        });
    });
    assert_eq!(w.run_ok(), "700-refused\n755-allowed\nsync=159\n");
    // An unknown action or flag is a clear error.
    w.config(&["true"], |c| c["linux"]["seccomp"] = json!({"defaultAction": "SCMP_ACT_NOPE"}));
    let (code, _, err) = w.run();
    assert_ne!(code, 0);
    says(&err, "SCMP_ACT_NOPE");
    w.finish();
}

#[test]
#[ignore = "needs root"]
fn seccomp_trap_kill_thread_trace_and_log_actions() {
    let mut w = World::new("seccompacts");
    let script = "(sync); echo trap=$?; (nproc >/dev/null); echo killthread=$?; ionice >/dev/null 2>&1; echo trace=$?; \
                  mkdir /tmp/l && echo log-allowed";
    w.config(&["sh", "-c", script], |c| {
        c["mounts"].as_array_mut().unwrap().push(json!({"destination": "/tmp", "type": "tmpfs", "source": "tmpfs"}));
        c["linux"]["seccomp"] = json!({
            "defaultAction": "SCMP_ACT_ALLOW",
            "syscalls": [
                {"names": ["sync"], "action": "SCMP_ACT_TRAP"},
                {"names": ["sched_getaffinity"], "action": "SCMP_ACT_KILL_THREAD"},
                {"names": ["ioprio_get"], "action": "SCMP_ACT_TRACE"},
                {"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_LOG"}
            ]
        });
    });
    // TRAP and KILL_THREAD end a single-threaded process with SIGSYS
    // (128+31); TRACE without a tracer fails the call (ENOSYS); LOG allows.
    assert_eq!(w.run_ok(), "trap=159\nkillthread=159\ntrace=1\nlog-allowed\n");
    w.finish();
}
