use crate::common::*;
use serde_json::json;

fn status_field(out: &str, key: &str) -> String {
    out.lines().find(|l| l.starts_with(key)).map(|l| l[key.len()..].trim().to_string()).unwrap_or_default()
}

#[test]
fn capabilities_are_exactly_the_configured_sets() {
    if not_root() {
        return;
    }
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
fn user_groups_umask_and_cwd_are_applied() {
    if not_root() {
        return;
    }
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
fn rlimits_no_new_privs_and_oom_score_adj() {
    if not_root() {
        return;
    }
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
fn environment_and_args_reach_the_process() {
    if not_root() {
        return;
    }
    let mut w = World::new("env");
    w.config(&["sh", "-c", "echo \"$FOO|$1\"", "argv0", "arg one"], |c| {
        c["process"]["env"] = json!(["PATH=/bin", "FOO=bar baz"]);
    });
    assert_eq!(w.run_ok(), "bar baz|arg one\n");
    w.finish();
}

#[test]
fn host_dev_null_stdio_is_never_chowned() {
    if not_root() {
        return;
    }
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
fn seccomp_errno_rule_filters_the_first_exec_onwards() {
    if not_root() {
        return;
    }
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
