use crate::common::*;
use serde_json::json;

#[test]
#[ignore = "needs root"]
fn run_returns_the_exit_code() {
    let mut w = World::new("exitcode");
    w.config(&["sh", "-c", "echo out; echo err >&2; exit 3"], |_| {});
    let (code, out, err) = w.run();
    assert_eq!(code, 3);
    assert_eq!(out, "out\n");
    says(&err, "err");
    w.finish();
}

#[test]
#[ignore = "needs root"]
fn run_reports_a_signal_as_128_plus_it() {
    let mut w = World::new("exitsig");
    // Not PID 1 of a PID namespace: the kernel ignores SIGKILL sent to that
    // from inside.
    w.config(&["sh", "-c", "kill -9 $$"], |c| {
        c["linux"]["namespaces"] = serde_json::json!([{"type": "mount"}]);
        c.as_object_mut().unwrap().remove("hostname");
    });
    let (code, _, _) = w.run();
    assert_eq!(code, 128 + 9);
    w.finish();
}

#[test]
#[ignore = "needs root"]
fn create_start_state_kill_delete() {
    let mut w = World::new("lifecycle");
    w.config(&["sleep", "1000"], |_| {});
    let id = w.create();
    let st = w.state(&id);
    assert_eq!(st["status"], "created");
    // The state holds the config (environment included): root only.
    use std::os::unix::fs::PermissionsExt;
    if !other_runtime() {
        assert_eq!(std::fs::metadata(w.root.join(&id)).unwrap().permissions().mode() & 0o077, 0);
    }
    assert_eq!(st["id"], id.as_str());
    assert_eq!(st["bundle"], w.bundle.to_str().unwrap());
    assert!(st["pid"].as_i64().unwrap() > 0);
    assert!(st["created"].as_str().unwrap().ends_with('Z'));
    says(st["owner"].as_str().unwrap_or(""), "root");
    // Created, the init waits before exec: it is still berth, not sleep.
    let pid = st["pid"].as_i64().unwrap();
    let cmdline = std::fs::read_to_string(format!("/proc/{pid}/cmdline")).unwrap();
    assert!(!cmdline.starts_with("sleep"), "{cmdline}");
    // Deleting a created container without --force is refused (runtime-spec).
    let e = w.fails(&["delete", &id]);
    says(&e, "not stopped");
    w.ok(&["start", &id]);
    assert_eq!(w.status(&id), "running");
    assert!(eventually(|| std::fs::read_to_string(format!("/proc/{pid}/cmdline")).unwrap_or_default().starts_with("sleep")));
    let e = w.fails(&["start", &id]);
    says(&e, "running");
    let e = w.fails(&["delete", &id]);
    says(&e, "not stopped");
    w.ok(&["kill", &id, "KILL"]);
    assert!(eventually(|| w.status(&id) == "stopped"));
    assert_eq!(w.state(&id)["pid"], 0);
    let e = w.fails(&["kill", &id, "TERM"]);
    assert!(e.contains("container not running"), "{e}");
    w.ok(&["delete", &id]);
    let e = w.fails(&["state", &id]);
    assert!(e.contains("does not exist"), "{e}");
    w.finish();
}

#[test]
#[ignore = "needs root"]
fn kill_accepts_names_with_and_without_sig_and_numbers() {
    let mut w = World::new("killsig");
    // The shell traps each signal and records it in a file on a tmpfs.
    w.config(&["sh", "-c", "trap 'echo USR1 >> /tmp/s' USR1; trap 'echo HUP >> /tmp/s' HUP; trap 'echo TERM >> /tmp/s; exit 0' TERM; echo ready > /tmp/r; while true; do sleep 0.05; done"], |c| {
        c["mounts"].as_array_mut().unwrap().push(serde_json::json!({"destination": "/tmp", "type": "tmpfs", "source": "tmpfs"}));
    });
    let id = w.create();
    w.ok(&["start", &id]);
    let pid = w.state(&id)["pid"].as_i64().unwrap();
    let file = |n: &str| std::fs::read_to_string(format!("/proc/{pid}/root/tmp/{n}")).unwrap_or_default();
    assert!(eventually(|| file("r") == "ready\n"));
    w.ok(&["kill", &id, "SIGUSR1"]);
    assert!(eventually(|| file("s").contains("USR1")));
    w.ok(&["kill", &id, "HUP"]);
    assert!(eventually(|| file("s").contains("HUP")));
    let e = w.fails(&["kill", &id, "NOSUCHSIG"]);
    says(&e, "invalid signal");
    w.ok(&["kill", &id, "15"]);
    assert!(eventually(|| w.status(&id) == "stopped"));
    w.ok(&["delete", &id]);
    w.finish();
}

#[test]
#[ignore = "needs root"]
fn kill_all_reaches_processes_in_the_host_pid_namespace() {
    let mut w = World::new("killall");
    // No PID namespace: killing the init alone would leave the children.
    w.config(&["sh", "-c", "sleep 1000 & sleep 1000 & wait"], |c| {
        c["linux"]["namespaces"] = serde_json::json!([{"type": "mount"}, {"type": "uts"}, {"type": "ipc"}]);
        c["mounts"].as_array_mut().unwrap().retain(|m| m["type"] != "sysfs");
    });
    let id = w.create();
    w.ok(&["start", &id]);
    let dirs = w.cgroup_dirs(&id);
    let procs = || {
        let d = dirs.iter().find(|d| d.controllers.iter().any(|c| c == "pids") || d.v2).unwrap();
        std::fs::read_to_string(d.path.join("cgroup.procs")).unwrap_or_default().lines().count()
    };
    assert!(eventually(|| procs() == 3), "expected sh + 2 sleeps");
    w.ok(&["kill", "--all", &id, "KILL"]);
    assert!(eventually(|| procs() == 0));
    w.ok(&["delete", &id]);
    w.finish();
}

#[test]
#[ignore = "needs root"]
fn delete_force_kills_a_running_container_and_everything_it_forked() {
    if berth_only() {
        return;
    }
    let mut w = World::new("delforce");
    w.config(&["sh", "-c", "sleep 1000 & sleep 1000 & wait"], |c| {
        c["linux"]["namespaces"] = serde_json::json!([{"type": "mount"}]);
        c.as_object_mut().unwrap().remove("hostname");
    });
    let id = w.create();
    w.ok(&["start", &id]);
    let o = w.cmd().args(["--debug", "delete", "--force", &id]).output().unwrap();
    assert!(o.status.success());
    let log = String::from_utf8_lossy(&o.stderr);
    for phase in ["signal=", "exit=", "cgroup_empty=", "state_removed=", "total="] {
        assert!(log.contains(phase), "timing {phase} missing: {log}");
    }
    // Removed now, or (deferred mode) handed to the reaper.
    assert!(log.contains("cgroup_removed=") || log.contains("handed_to_reaper="), "{log}");
    w.finish();
}

#[test]
#[ignore = "needs root"]
fn delete_of_an_unknown_id_says_does_not_exist_and_force_succeeds() {
    let w = World::new("delunknown");
    let e = w.fails(&["delete", "nosuchcontainer"]);
    assert!(e.contains("does not exist"), "{e}");
    w.ok(&["delete", "--force", "nosuchcontainer"]);
    w.finish();
}

#[test]
#[ignore = "needs root"]
fn delete_twice_at_once_serializes() {
    let mut w = World::new("deltwice");
    w.config(&["sleep", "1000"], |_| {});
    let id = w.create();
    w.ok(&["start", &id]);
    let a = w.cmd().args(["delete", "--force", &id]).spawn().unwrap();
    let b = w.cmd().args(["delete", "--force", &id]).spawn().unwrap();
    assert!(a.wait_with_output().unwrap().status.success());
    assert!(b.wait_with_output().unwrap().status.success());
    w.finish();
}

#[test]
#[ignore = "needs root"]
fn list_in_table_json_and_quiet() {
    let mut w = World::new("list");
    w.config(&["sleep", "1000"], |_| {});
    assert_eq!(w.ok(&["list", "--format", "json"]).trim(), "null");
    let a = w.create();
    let b = w.create();
    w.ok(&["start", &b]);
    let table = w.ok(&["list"]);
    let lines: Vec<&str> = table.lines().collect();
    assert!(lines[0].starts_with("ID") && lines[0].contains("PID") && lines[0].contains("STATUS") && lines[0].contains("OWNER"));
    assert_eq!(lines.len(), 3, "{table}");
    assert!(table.contains(&a) && table.contains("created") && table.contains("running"));
    let q = w.ok(&["list", "-q"]);
    let mut ids: Vec<&str> = q.lines().collect();
    ids.sort();
    let mut want = vec![a.as_str(), b.as_str()];
    want.sort();
    assert_eq!(ids, want);
    let j: serde_json::Value = serde_json::from_str(&w.ok(&["list", "--format=json"])).unwrap();
    assert_eq!(j.as_array().unwrap().len(), 2);
    assert!(j.as_array().unwrap().iter().any(|c| c["id"] == a.as_str() && c["status"] == "created"));
    w.finish();
}

#[test]
#[ignore = "needs root"]
fn pid_file_holds_the_init_pid() {
    let mut w = World::new("pidfile");
    w.config(&["sleep", "1000"], |_| {});
    let id = w.id();
    let pf = w.dir.join("pid");
    let bundle = w.bundle.to_string_lossy().into_owned();
    w.ok(&["create", "--bundle", &bundle, "--pid-file", pf.to_str().unwrap(), &id]);
    let pid: i64 = std::fs::read_to_string(&pf).unwrap().trim().parse().unwrap();
    assert_eq!(w.state(&id)["pid"], pid);
    w.finish();
}

#[test]
#[ignore = "needs root"]
fn run_detach_then_delete() {
    let mut w = World::new("detach");
    w.config(&["sleep", "1000"], |_| {});
    let id = w.id();
    let bundle = w.bundle.to_string_lossy().into_owned();
    w.ok(&["run", "-d", "--bundle", &bundle, &id]);
    assert_eq!(w.status(&id), "running");
    w.ok(&["delete", "-f", &id]);
    w.finish();
}

#[test]
#[ignore = "needs root"]
fn pause_and_resume_freeze_the_container() {
    let mut w = World::new("pause");
    w.config(&["sleep", "1000"], |_| {});
    let id = w.create();
    w.ok(&["start", &id]);
    w.ok(&["pause", &id]);
    assert_eq!(w.status(&id), "paused");
    let e = w.fails(&["delete", &id]);
    says(&e, "not stopped");
    w.ok(&["resume", &id]);
    assert_eq!(w.status(&id), "running");
    // A paused container is killed and removed by delete --force too.
    w.ok(&["pause", &id]);
    w.ok(&["delete", "--force", &id]);
    w.finish();
}

#[test]
#[ignore = "needs root"]
fn spec_writes_runcs_default_and_refuses_to_overwrite() {
    let w = World::new("spec");
    let d = w.dir.join("specdir");
    std::fs::create_dir_all(&d).unwrap();
    w.ok(&["spec", "--bundle", d.to_str().unwrap()]);
    let v: serde_json::Value = serde_json::from_slice(&std::fs::read(d.join("config.json")).unwrap()).unwrap();
    assert_eq!(v["process"]["args"][0], "sh");
    assert_eq!(v["hostname"], "runc");
    assert_eq!(v["root"]["path"], "rootfs");
    let e = w.fails(&["spec", "--bundle", d.to_str().unwrap()]);
    says(&e, "exists");
    w.finish();
}

#[test]
fn features_is_json_and_claims_what_works() {
    if berth_only() {
        return;
    }
    let o = std::process::Command::new(runtime()).arg("features").output().unwrap();
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["ociVersionMax"], "1.2.0");
    // The systemd driver (its tests run in tests/vm/run-systemd); not the
    // rootless user manager.
    assert_eq!(v["linux"]["cgroup"]["systemd"], true);
    assert_eq!(v["linux"]["cgroup"]["systemdUser"], false);
    // containerd decides from these whether it may ask for idmapped mounts,
    // user namespaces and rro; each is exercised by a test of its own.
    assert_eq!(v["linux"]["mountExtensions"]["idmap"]["enabled"], true);
    let opts = v["mountOptions"].as_array().unwrap();
    for o in ["rro", "rnosuid", "idmap", "ridmap", "tmpcopyup"] {
        assert!(opts.iter().any(|x| x == o), "mountOptions lacks {o}");
    }
    assert!(v["linux"]["namespaces"].as_array().unwrap().iter().any(|n| n == "user"));
    assert!(v["potentiallyUnsafeConfigAnnotations"].as_array().unwrap().iter().any(|a| a == "org.systemd.property."));
}

/// Everything `features` lists, asked for at once: every mount option (a
/// mount each), every namespace, every hook, every capability, every
/// seccomp action (but notify, which needs an agent: process.rs), operator,
/// architecture and flag. A caller that trusts the list must never see
/// create refuse what it claims.
#[test]
#[ignore = "needs root"]
fn create_accepts_everything_features_lists() {
    if berth_only() {
        return;
    }
    let mut w = World::new("features");
    let o = std::process::Command::new(runtime()).arg("features").output().unwrap();
    let f: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let list = |v: &serde_json::Value| -> Vec<String> { v.as_array().unwrap().iter().map(|x| x.as_str().unwrap().to_string()).collect() };
    let src = w.dir.join("bindsrc");
    std::fs::create_dir_all(&src).unwrap();
    // An idmapped bind needs a filesystem that supports it: the test's own
    // directory is on one where the rootfs test passes (ext4 here).
    let (mut mounts, mut idmapped) = (Vec::new(), Vec::new());
    for (i, opt) in list(&f["mountOptions"]).iter().enumerate() {
        let dest = format!("/m/{i}");
        match opt.as_str() {
            "bind" | "rbind" => mounts.push(json!({"destination": dest, "type": "bind", "source": src, "options": [opt]})),
            // In a container of their own, with no user namespace (as
            // rootfs::idmapped_bind_mounts_with_their_own_or_the_containers_mappings).
            "idmap" | "ridmap" => idmapped.push(json!({"destination": dest, "type": "bind", "source": src, "options": ["bind", opt],
                "uidMappings": [{"containerID": 0, "hostID": 1234, "size": 1}], "gidMappings": [{"containerID": 0, "hostID": 1234, "size": 1}]})),
            _ => mounts.push(json!({"destination": dest, "type": "tmpfs", "source": "tmpfs", "options": [opt]})),
        }
    }
    let caps = list(&f["linux"]["capabilities"]);
    let namespaces: Vec<serde_json::Value> = list(&f["linux"]["namespaces"]).into_iter().map(|n| json!({"type": n})).collect();
    let hooks: serde_json::Map<String, serde_json::Value> =
        list(&f["hooks"]).into_iter().map(|h| (h, json!([{"path": "/bin/true"}]))).collect();
    let sc = &f["linux"]["seccomp"];
    // Rare calls, none of which setup or the container makes.
    let calls = [
        "acct",
        "kexec_load",
        "swapon",
        "swapoff",
        "quotactl",
        "nfsservctl",
        "vhangup",
        "pivot_root",
        "lookup_dcookie",
        "uselib",
        "ustat",
        "sysfs",
    ];
    let mut rules = Vec::new();
    for (k, action) in list(&sc["actions"]).iter().filter(|a| *a != "SCMP_ACT_NOTIFY").enumerate() {
        rules.push(json!({"names": [calls[k % calls.len()]], "action": action, "errnoRet": 1}));
    }
    for op in list(&sc["operators"]) {
        rules.push(json!({"names": ["acct"], "action": "SCMP_ACT_ERRNO", "args": [{"index": 0, "value": 7, "valueTwo": 7, "op": op}]}));
    }
    w.config(&["true"], |c| {
        c["mounts"].as_array_mut().unwrap().extend(mounts);
        c["linux"]["namespaces"] = json!(namespaces);
        c["linux"]["uidMappings"] = json!([{"containerID": 0, "hostID": 300000, "size": 65536}]);
        c["linux"]["gidMappings"] = json!([{"containerID": 0, "hostID": 300000, "size": 65536}]);
        for set in ["bounding", "effective", "permitted"] {
            c["process"]["capabilities"][set] = json!(caps);
        }
        c["hooks"] = serde_json::Value::Object(hooks);
        c["linux"]["seccomp"] = json!({
            "defaultAction": "SCMP_ACT_ALLOW",
            "architectures": sc["archs"],
            "flags": sc["supportedFlags"],
            "syscalls": rules
        });
    });
    // The user namespace's root must reach the rootfs and the bind source.
    let _ = std::process::Command::new("chown").args(["-R", "300000:300000"]).arg(&w.bundle).status();
    let out = w.run_ok();
    assert!(out.is_empty(), "{out}");
    assert_eq!(idmapped.len(), 2, "idmap and ridmap are listed");
    w.config(&["true"], |c| c["mounts"].as_array_mut().unwrap().extend(idmapped));
    let (code, out, err) = w.run();
    // Idmapped mounts need the filesystem's support: tmpfs has it from
    // Linux 6.3 (the cgroup-v2 VM's 6.1 has its test tree on a tmpfs).
    let tmpfs = berth_sys::statfs_type(&src).is_ok_and(|t| t == 0x0102_1994);
    if code != 0 && tmpfs {
        says(&err, "the filesystem must support idmapped mounts");
        eprintln!("idmapped mounts: a tmpfs on this kernel refuses them; only the error was checked");
    } else {
        assert_eq!(code, 0, "{err}");
        assert!(out.is_empty(), "{out}");
    }
    w.finish();
}

#[test]
#[ignore = "needs root"]
fn log_format_json_writes_the_error_line_containerd_parses() {
    let w = World::new("logjson");
    let log = w.dir.join("log.json");
    let o = w.cmd().args(["--log", log.to_str().unwrap(), "--log-format", "json", "delete", "nosuch"]).output().unwrap();
    assert!(!o.status.success());
    let text = std::fs::read_to_string(&log).unwrap();
    let last: serde_json::Value = serde_json::from_str(text.lines().last().unwrap()).unwrap();
    assert_eq!(last["level"], "error");
    assert!(last["msg"].as_str().unwrap().contains("does not exist"));
    assert!(last["time"].as_str().unwrap().ends_with('Z'));
    w.finish();
}

#[test]
#[ignore = "needs root"]
fn start_without_a_process_fails_but_create_succeeds() {
    let mut w = World::new("noprocess");
    w.config(&["true"], |c| {
        c.as_object_mut().unwrap().remove("process");
    });
    let id = w.create();
    let e = w.fails(&["start", &id]);
    says(&e, "no process");
    w.finish();
}

#[test]
#[ignore = "needs root"]
fn preserved_fds_reach_the_container() {
    let mut w = World::new("preserve");
    w.config(&["sh", "-c", "echo through-fd3 >&3"], |_| {});
    let id = w.id();
    let bundle = w.bundle.to_string_lossy().into_owned();
    let f = w.dir.join("fd3.out");
    // sh opens the file as fd 3, then execs berth with it.
    let cmd = format!(
        "exec 3>{} ; exec {} --root {}{} run --preserve-fds 1 --bundle {} {}",
        f.display(),
        runtime(),
        w.root.display(),
        driver_flag(),
        bundle,
        id
    );
    let st = std::process::Command::new("sh").arg("-c").arg(cmd).status().unwrap();
    assert!(st.success());
    assert_eq!(std::fs::read_to_string(&f).unwrap(), "through-fd3\n");
    w.finish();
}

#[test]
#[ignore = "needs root"]
fn a_foreground_run_can_be_killed_and_inspected_from_elsewhere() {
    let mut w = World::new("fgkill");
    w.config(&["sleep", "1000"], |_| {});
    let id = w.id();
    let bundle = w.bundle.to_string_lossy().into_owned();
    let mut run = w.cmd().args(["run", "--bundle", &bundle, &id]).spawn().unwrap();
    assert!(eventually(|| w.berth(&["state", &id]).status.success() && w.status(&id) == "running"));
    w.ok(&["kill", &id, "KILL"]);
    let st = run.wait().unwrap();
    assert_eq!(st.code(), Some(137));
    w.finish();
}

#[test]
#[ignore = "needs root"]
fn delete_force_gets_through_a_sub_cgroup_the_container_froze_itself() {
    let mut w = World::new("subfrozen");
    w.config(&["sh", "-c", "sleep 1000 & wait"], |c| {
        c["linux"]["namespaces"] = serde_json::json!([{"type": "mount"}, {"type": "pid"}]);
        c.as_object_mut().unwrap().remove("hostname");
    });
    let id = w.create();
    w.ok(&["start", &id]);
    let pid = w.state(&id)["pid"].as_i64().unwrap();
    // Freeze the init in a sub-cgroup of its own (v1 freezer or v2 cgroup.freeze).
    let dirs = w.cgroup_dirs(&id);
    let d = dirs.iter().find(|d| d.controllers.iter().any(|c| c == "freezer")).or_else(|| dirs.iter().find(|d| d.v2)).unwrap();
    let sub = d.path.join("frozen");
    std::fs::create_dir(&sub).unwrap();
    std::fs::write(sub.join("cgroup.procs"), pid.to_string()).unwrap();
    if d.v2 {
        std::fs::write(sub.join("cgroup.freeze"), "1").unwrap();
    } else {
        std::fs::write(sub.join("freezer.state"), "FROZEN").unwrap();
    }
    let o = if other_runtime() { w.berth(&["delete", "--force", &id]) } else { w.berth(&["delete", "--force", "--timeout", "5", &id]) };
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    w.finish();
}

#[test]
#[ignore = "needs root"]
fn delete_force_of_a_container_with_hundreds_of_processes() {
    let mut w = World::new("forkbomb");
    // 300 sleepers, and a loop that keeps forking while it is being killed.
    w.config(&["sh", "-c", "i=0; while [ $i -lt 300 ]; do sleep 1000 & i=$((i+1)); done; echo up > /dev/shm/up; while true; do sleep 1000 & sleep 0.01; done"], |c| {
        c["linux"]["resources"]["pids"] = json!({"limit": 2000});
    });
    let id = w.create();
    w.ok(&["start", &id]);
    let pid = w.state(&id)["pid"].as_i64().unwrap();
    assert!(eventually_within(60, || std::path::Path::new(&format!("/proc/{pid}/root/dev/shm/up")).exists()));
    let n = w.cgroup_file(&id, "pids", "cgroup.procs", "cgroup.procs").lines().count();
    assert!(n > 300, "only {n} processes");
    w.ok(&["delete", "--force", &id]);
    w.finish();
}

#[test]
#[ignore = "needs root"]
fn delete_past_its_deadline_names_what_is_stuck_and_can_be_retried() {
    if berth_only() {
        return;
    }
    // A v1 freezer outside the container holds its init frozen: SIGKILL
    // stays pending, so the init cannot exit until that freezer thaws.
    let layout = berth_cgroups::Layout::host().unwrap();
    let Some(freezer) = layout.hierarchies.iter().find(|h| h.controllers.iter().any(|c| c == "freezer")) else {
        eprintln!("skipped: needs a cgroup v1 freezer");
        return;
    };
    let mut w = World::new("deadline");
    w.config(&["sleep", "1000"], |_| {});
    let id = w.create();
    w.ok(&["start", &id]);
    let pid = w.state(&id)["pid"].as_i64().unwrap();
    let jail = freezer.mount.join(format!("berth-test-jail-{}", std::process::id()));
    std::fs::create_dir(&jail).unwrap();
    std::fs::write(jail.join("cgroup.procs"), pid.to_string()).unwrap();
    std::fs::write(jail.join("freezer.state"), "FROZEN").unwrap();
    let t0 = std::time::Instant::now();
    let o = w.berth(&["delete", "--force", "--timeout", "0.5", &id]);
    let took = t0.elapsed();
    std::fs::write(jail.join("freezer.state"), "THAWED").unwrap();
    let e = String::from_utf8_lossy(&o.stderr).into_owned();
    assert!(!o.status.success(), "delete should have failed");
    assert!(took < std::time::Duration::from_secs(5), "took {took:?}");
    assert!(e.contains(&format!("pid {pid}")) && e.contains("sleep") && e.contains("state D"), "{e}");
    // The state is kept and the same command now finishes.
    assert!(w.root.join(&id).exists());
    w.ok(&["delete", "--force", &id]);
    assert!(eventually(|| std::fs::remove_dir(&jail).is_ok()));
    w.finish();
}

#[test]
#[ignore = "needs root"]
fn hook_failures_timeouts_and_hooks_that_ignore_stdin() {
    let mut w = World::new("hookfail");
    // A large state (annotations) that hooks exiting at once never read:
    // berth must neither die of SIGPIPE nor block.
    let big: serde_json::Map<String, serde_json::Value> = (0..2000).map(|i| (format!("a{i}"), serde_json::json!("x".repeat(40)))).collect();
    let hook = |path: &str| serde_json::json!([{"path": path}]);
    w.config(&["true"], |c| {
        c["annotations"] = serde_json::Value::Object(big.clone());
        c["hooks"] =
            serde_json::json!({"createRuntime": hook("/bin/true"), "poststart": hook("/bin/false"), "poststop": hook("/bin/false")});
    });
    // poststart and poststop failures are warnings: the container ran.
    let (code, _, err) = w.run();
    assert_eq!(code, 0, "{err}");
    says(&err, "(poststart /bin/false): failed");

    // createContainer failing aborts, and cleans up.
    w.config(&["true"], |c| c["hooks"] = serde_json::json!({"createContainer": hook("/bin/false")}));
    let (code, _, err) = w.run();
    assert_ne!(code, 0);
    says(&err, "(createContainer /bin/false): failed");

    // A hook over its timeout is killed; create fails at once, cleaned up.
    let t0 = std::time::Instant::now();
    w.config(&["true"], |c| {
        c["hooks"] = serde_json::json!({"createRuntime": [{"path": "/bin/sleep", "args": ["sleep", "30"], "timeout": 1}]})
    });
    let (code, _, err) = w.run();
    assert_ne!(code, 0);
    says(&err, "did not finish within 1 s");
    assert!(t0.elapsed() < std::time::Duration::from_secs(10), "the hook timeout was not enforced");
    w.finish();
}

#[test]
fn every_command_answers_help() {
    for cmd in [
        "create", "start", "run", "state", "kill", "delete", "list", "ps", "exec", "update", "events", "pause", "resume", "spec",
        "features",
    ] {
        let o = std::process::Command::new(runtime()).args([cmd, "--help"]).output().unwrap();
        assert!(o.status.success(), "{cmd} --help: {}", String::from_utf8_lossy(&o.stderr));
        assert!(!o.stdout.is_empty(), "{cmd} --help printed nothing");
    }
}

#[test]
#[ignore = "needs root"]
fn all_six_hooks_run_in_order_with_the_state_each_must_see() {
    let mut w = World::new("sixhooks");
    // Runtime-namespace hooks append to a file of the test; startContainer
    // runs in the container (its path resolves there) and writes in it.
    let out = w.dir.join("hooks.out");
    let script = w.dir.join("hook.sh");
    std::fs::write(&script, format!("#!/bin/sh\nread -r s\necho \"$1 $s\" >> {}\n", out.display())).unwrap();
    std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let h = |name: &str| serde_json::json!([{"path": script.to_str().unwrap(), "args": ["hook.sh", name]}]);
    w.config(&["true"], |c| {
        c["hooks"] = serde_json::json!({
            "prestart": h("prestart"), "createRuntime": h("createRuntime"), "createContainer": h("createContainer"),
            "startContainer": [{"path": "/bin/sh", "args": ["sh", "-c", "read -r s; echo \"startContainer $s\" > /start.out"]}],
            "poststart": h("poststart"), "poststop": h("poststop")
        });
    });
    let id = w.create();
    w.ok(&["start", &id]);
    assert!(eventually(|| w.status(&id) == "stopped"));
    w.ok(&["delete", &id]);
    let text = std::fs::read_to_string(&out).unwrap();
    let seen: Vec<(String, serde_json::Value)> = text
        .lines()
        .map(|l| {
            let (n, j) = l.split_once(' ').unwrap();
            (n.to_string(), serde_json::from_str(j).unwrap())
        })
        .collect();
    let names: Vec<&str> = seen.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, vec!["prestart", "createRuntime", "createContainer", "poststart", "poststop"]);
    for (n, st) in &seen {
        let want = match n.as_str() {
            "poststart" => "running",
            "poststop" => "stopped",
            // The deprecated prestart hook sees "created", as runtime-tools'
            // hooks_stdin checks (runtime-spec 1.0's timing).
            "prestart" => "created",
            _ => "creating",
        };
        assert_eq!(st["status"], want, "{n}: {st}");
        assert_eq!(st["id"], id.as_str());
        assert_eq!(st["bundle"], w.bundle.to_str().unwrap());
        if n != "poststop" {
            assert!(st["pid"].as_i64().unwrap_or(0) > 0, "{n}: {st}");
        }
    }
    let start = std::fs::read_to_string(w.bundle.join("rootfs/start.out")).unwrap();
    let (n, j) = start.trim().split_once(' ').unwrap();
    assert_eq!(n, "startContainer");
    let st: serde_json::Value = serde_json::from_str(j).unwrap();
    assert_eq!(st["status"], "created", "{st}");
    w.finish();
}

#[test]
#[ignore = "needs root"]
fn delete_of_an_exited_container_kills_a_process_moved_into_its_cgroup() {
    // The init of its own PID namespace took every process of the
    // namespace with it; a process moved into the container's cgroup from
    // outside was not in it, and delete must still end it (it skips the
    // cgroup-wide kill only for an empty cgroup).
    let mut w = World::new("movedin");
    w.config(&["sleep", "1000"], |_| {});
    let id = w.create();
    w.ok(&["start", &id]);
    let mut outsider = std::process::Command::new("sleep").arg("1000").spawn().unwrap();
    for d in w.cgroup_dirs(&id) {
        std::fs::write(d.path.join("cgroup.procs"), outsider.id().to_string()).unwrap();
    }
    w.ok(&["kill", &id, "KILL"]);
    assert!(eventually(|| w.status(&id) == "stopped"));
    assert!(outsider.try_wait().unwrap().is_none(), "the outsider went with the init: the test proves nothing");
    let o = w.berth(&["delete", &id]);
    let gone = eventually(|| outsider.try_wait().unwrap().is_some());
    if !gone {
        let _ = outsider.kill();
        let _ = outsider.wait();
    }
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(gone, "a process in the container's cgroup outlived its delete");
    w.finish();
}
