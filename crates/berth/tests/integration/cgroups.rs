use crate::common::*;
use serde_json::json;

#[test]
#[ignore = "needs root"]
fn limits_are_written_to_the_cgroup_files() {
    let mut w = World::new("limits");
    w.config(&["sleep", "1000"], |c| {
        c["linux"]["resources"]["memory"] = json!({"limit": 67108864, "reservation": 33554432});
        c["linux"]["resources"]["pids"] = json!({"limit": 42});
        c["linux"]["resources"]["cpu"] = json!({"shares": 512, "quota": 50000, "period": 100000, "cpus": "0", "mems": "0"});
    });
    let id = w.create();
    assert_eq!(w.cgroup_file(&id, "memory", "memory.limit_in_bytes", "memory.max"), "67108864");
    assert_eq!(w.cgroup_file(&id, "memory", "memory.soft_limit_in_bytes", "memory.low"), "33554432");
    assert_eq!(w.cgroup_file(&id, "pids", "pids.max", "pids.max"), "42");
    if pure_v2() {
        assert_eq!(w.cgroup_file(&id, "cpu", "", "cpu.max"), "50000 100000");
        // 512 shares -> weight 1 + (510 * 9999) / 262142 = 20
        assert_eq!(w.cgroup_file(&id, "cpu", "", "cpu.weight"), "20");
    } else {
        assert_eq!(w.cgroup_file(&id, "cpu", "cpu.shares", ""), "512");
        assert_eq!(w.cgroup_file(&id, "cpu", "cpu.cfs_quota_us", ""), "50000");
        assert_eq!(w.cgroup_file(&id, "cpu", "cpu.cfs_period_us", ""), "100000");
    }
    assert_eq!(w.cgroup_file(&id, "cpuset", "cpuset.cpus", "cpuset.cpus"), "0");
    // The init is in the cgroup.
    let pid = w.state(&id)["pid"].to_string();
    let procs = w.cgroup_file(&id, "pids", "cgroup.procs", "cgroup.procs");
    assert!(procs.lines().any(|l| l == pid), "{procs}");
    w.finish();
}

#[test]
#[ignore = "needs root"]
fn pids_limit_is_enforced() {
    let mut w = World::new("pidsmax");
    w.config(&["sh", "-c", "for i in 1 2 3 4 5 6 7 8; do sleep 5 & done; echo forked"], |c| {
        c["linux"]["resources"]["pids"] = json!({"limit": 4});
    });
    let (_, out, err) = w.run();
    // The shell itself plus at most three sleeps fit: the fork of the rest fails.
    assert!(err.contains("fork") || err.contains("Resource") || err.contains("can't"), "stdout {out:?} stderr {err:?}");
    w.finish();
}

#[test]
#[ignore = "needs root"]
fn device_rules_deny_and_allow() {
    // /dev/kmsg (c 1:11) opened for writing needs no capability: only the
    // device cgroup (v1 list or v2 eBPF program) decides.
    let mut w = World::new("devcg");
    let kmsg = |allow: bool| {
        move |c: &mut serde_json::Value| {
            c["linux"]["devices"] = json!([{"path": "/dev/kmsg-test", "type": "c", "major": 1, "minor": 11, "fileMode": 438}]);
            let mut rules = vec![json!({"allow": false, "access": "rwm"})];
            if allow {
                rules.push(json!({"allow": true, "type": "c", "major": 1, "minor": 11, "access": "w"}));
            }
            c["linux"]["resources"]["devices"] = json!(rules);
        }
    };
    let script = ["sh", "-c", "echo berth-device-test > /dev/kmsg-test && echo allowed || echo denied; echo x > /dev/null && echo null-ok"];
    w.config(&script, kmsg(false));
    assert_eq!(w.run_ok(), "denied\nnull-ok\n");
    w.config(&script, kmsg(true));
    assert_eq!(w.run_ok(), "allowed\nnull-ok\n");
    if !pure_v2() {
        w.config(&["sleep", "1000"], kmsg(true));
        let id = w.create();
        let list = w.cgroup_file(&id, "devices", "devices.list", "");
        assert!(list.contains("c 1:11 w"), "{list}");
        assert!(list.contains("c 1:3 rwm"), "default /dev/null rule missing: {list}");
        assert!(!list.contains("a *:* rwm"), "{list}");
    }
    w.finish();
}

#[test]
#[ignore = "needs root"]
fn sub_cgroups_made_inside_the_container_are_removed() {
    let mut w = World::new("subcg");
    // The container's view of its own cgroup is writable only if mounted rw.
    w.config(&["sleep", "1000"], |c| {
        for m in c["mounts"].as_array_mut().unwrap() {
            if m["type"] == "cgroup" {
                m["options"] = json!(["nosuid", "noexec", "nodev", "rw"]);
            }
        }
    });
    let id = w.create();
    w.ok(&["start", &id]);
    for d in w.cgroup_dirs(&id) {
        std::fs::create_dir(d.path.join("child")).unwrap();
    }
    w.delete_and_reap(&id);
    for d in w.cgroup_dirs(&id) {
        assert!(!d.path.exists(), "{} left", d.path.display());
    }
    w.finish();
}

#[test]
#[ignore = "needs root"]
fn an_absolute_cgroups_path_is_used_as_given() {
    if cgroupfs_only() {
        return;
    }
    let mut w = World::new("cgabs");
    let rel = format!("berth-test-abs-{}", std::process::id());
    w.config(&["sleep", "1000"], |c| {
        c["linux"]["cgroupsPath"] = json!(format!("/{rel}"));
        c["linux"]["resources"]["pids"] = json!({"limit": 7});
    });
    let id = w.create();
    let layout = berth_cgroups::Layout::host().unwrap();
    let pids = layout.hierarchies.iter().find(|h| h.controllers.iter().any(|c| c == "pids") || (h.v2 && layout.pure_v2())).unwrap();
    let dir = pids.mount.join(&rel);
    assert_eq!(std::fs::read_to_string(dir.join("pids.max")).unwrap().trim(), "7");
    w.delete_and_reap(&id);
    assert!(!dir.exists());
    w.finish();
}

#[test]
#[ignore = "needs root"]
fn hugetlb_limits_and_the_unified_map_go_where_the_controller_is() {
    // On this project's hybrid host hugetlb lives on the v2 hierarchy, next
    // to v1 controllers; on a pure v2 host everything does. The unified map
    // is for pure v2 only: beside v1 controllers it is refused, as runc does.
    let layout = berth_cgroups::Layout::host().unwrap();
    let pure_v2 = layout.hierarchies.iter().all(|h| h.v2);
    let mut w = World::new("hugetlb");
    w.config(&["sleep", "1000"], |c| {
        c["linux"]["resources"]["hugepageLimits"] = json!([{"pageSize": "2MB", "limit": 4194304}]);
        if pure_v2 {
            c["linux"]["resources"]["unified"] = json!({"hugetlb.2MB.rsvd.max": "6291456"});
        }
    });
    let id = w.create();
    assert_eq!(w.cgroup_file(&id, "hugetlb", "hugetlb.2MB.limit_in_bytes", "hugetlb.2MB.max"), "4194304");
    if pure_v2 {
        assert_eq!(w.cgroup_file(&id, "none", "", "hugetlb.2MB.rsvd.max"), "6291456");
    }
    // A unified key whose controller is not there is an error naming it;
    // on a v1 or hybrid host any unified key is runc's "invalid configuration".
    w.config(&["true"], |c| {
        c["linux"]["resources"]["unified"] = json!({"nosuch.controller.file": "1"});
    });
    let (code, _, err) = w.run();
    assert_ne!(code, 0);
    says(&err, if pure_v2 { "nosuch.controller.file" } else { "invalid configuration" });
    w.finish();
}

/// A whole-disk block device of this machine, as (major, minor), if any.
fn a_disk() -> Option<(u64, u64)> {
    for e in std::fs::read_dir("/sys/dev/block").ok()?.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if e.path().join("partition").exists() || name.starts_with("7:") || name.starts_with("1:") {
            continue; // partitions, loop and ram devices
        }
        let (ma, mi) = name.split_once(':')?;
        return Some((ma.parse().ok()?, mi.parse().ok()?));
    }
    None
}

#[test]
#[ignore = "needs root"]
fn block_io_throttles_are_written() {
    let Some((ma, mi)) = a_disk() else {
        eprintln!("skipped: no block device");
        return;
    };
    let mut w = World::new("blkio");
    w.config(&["sleep", "1000"], |c| {
        c["linux"]["resources"]["blockIO"] = json!({
            "throttleReadBpsDevice": [{"major": ma, "minor": mi, "rate": 1048576}],
            "throttleWriteIOPSDevice": [{"major": ma, "minor": mi, "rate": 300}]
        });
    });
    let id = w.create();
    if pure_v2() {
        let max = w.cgroup_file(&id, "io", "", "io.max");
        assert!(max.contains(&format!("{ma}:{mi} rbps=1048576")) && max.contains("wiops=300"), "{max}");
    } else {
        assert_eq!(w.cgroup_file(&id, "blkio", "blkio.throttle.read_bps_device", ""), format!("{ma}:{mi} 1048576"));
        assert_eq!(w.cgroup_file(&id, "blkio", "blkio.throttle.write_iops_device", ""), format!("{ma}:{mi} 300"));
    }
    w.finish();
}

#[test]
#[ignore = "needs root"]
fn without_cgroups_path_the_default_is_berth_id_next_to_berths_own_cgroup() {
    if berth_only() || cgroupfs_only() {
        return;
    }
    let mut w = World::new("cgdefault");
    w.config(&["sleep", "1000"], |_| {});
    let id = w.id();
    // Undo the harness's explicit path: this test is about the default.
    let p = w.bundle.join("config.json");
    let mut v: serde_json::Value = serde_json::from_slice(&std::fs::read(&p).unwrap()).unwrap();
    v["linux"].as_object_mut().unwrap().remove("cgroupsPath");
    std::fs::write(&p, serde_json::to_vec(&v).unwrap()).unwrap();
    let bundle = w.bundle.to_string_lossy().into_owned();
    w.ok(&["create", "--bundle", &bundle, &id]);
    let layout = berth_cgroups::Layout::host().unwrap();
    let own = berth_cgroups::parse_proc_cgroup(&std::fs::read_to_string("/proc/self/cgroup").unwrap());
    let dirs = berth_cgroups::Cgroup::resolve(&layout, &format!("berth/{id}"), &own).dirs;
    let pid = w.state(&id)["pid"].to_string();
    for d in &dirs {
        let procs = std::fs::read_to_string(d.path.join("cgroup.procs")).unwrap();
        assert!(procs.lines().any(|l| l == pid), "{} lacks the init", d.path.display());
    }
    w.delete_and_reap(&id);
    for d in &dirs {
        assert!(!d.path.exists(), "{} left", d.path.display());
    }
    w.finish();
}

#[test]
#[ignore = "needs root"]
fn update_changes_limits_from_flags_and_from_a_resources_file() {
    let mut w = World::new("update");
    w.config(&["sleep", "1000"], |c| {
        c["linux"]["resources"]["pids"] = json!({"limit": 10});
    });
    let id = w.create();
    w.ok(&["start", &id]);
    w.ok(&["update", "--pids-limit", "20", "--memory", "33554432", &id]);
    assert_eq!(w.cgroup_file(&id, "pids", "pids.max", "pids.max"), "20");
    assert_eq!(w.cgroup_file(&id, "memory", "memory.limit_in_bytes", "memory.max"), "33554432");
    let f = w.dir.join("res.json");
    std::fs::write(&f, r#"{"pids": {"limit": 30}}"#).unwrap();
    w.ok(&["update", "--resources", f.to_str().unwrap(), &id]);
    assert_eq!(w.cgroup_file(&id, "pids", "pids.max", "pids.max"), "30");
    let e = w.fails(&["update", "--l3-cache-schema", "L3:0=f", &id]);
    says(&e, "intelRdt");
    w.ok(&["kill", &id, "KILL"]);
    assert!(eventually(|| w.status(&id) == "stopped"));
    w.fails(&["update", "--pids-limit", "5", &id]);
    w.finish();
}

#[test]
#[ignore = "needs root"]
fn events_stats_report_the_cgroup_and_the_stream_ends_with_the_container() {
    let mut w = World::new("events");
    w.config(&["sh", "-c", "i=0; while [ $i -lt 20000 ]; do i=$((i+1)); done; sleep 1000"], |c| {
        c["linux"]["resources"]["pids"] = json!({"limit": 50});
        c["linux"]["resources"]["memory"] = json!({"limit": 67108864});
    });
    let id = w.create();
    w.ok(&["start", &id]);
    let v: serde_json::Value = serde_json::from_str(w.ok(&["events", "--stats", &id]).trim()).unwrap();
    assert_eq!(v["type"], "stats");
    assert_eq!(v["id"], id.as_str());
    let d = &v["data"];
    assert!(d["pids"]["current"].as_u64().unwrap() >= 1, "{d}");
    assert_eq!(d["pids"]["limit"], 50);
    assert_eq!(d["memory"]["usage"]["limit"], 67108864);
    assert!(d["memory"]["usage"]["usage"].as_u64().unwrap() > 0, "{d}");
    // Block I/O and huge pages in runc's shape: {major, minor, op, value}
    // entries; one object per huge page size the kernel has.
    if !other_runtime() {
        for e in d["blkio"]["ioServiceBytesRecursive"].as_array().expect("blkio.ioServiceBytesRecursive") {
            assert!(e["major"].is_u64() && e["minor"].is_u64() && e["op"].is_string() && e["value"].is_u64(), "{e}");
        }
        let sizes = std::fs::read_dir("/sys/kernel/mm/hugepages").map(|d| d.count()).unwrap_or(0);
        let h = d["hugetlb"].as_object().expect("hugetlb");
        assert_eq!(h.len(), sizes, "one entry per huge page size: {h:?}");
        assert!(h.values().all(|v| v["usage"].is_u64()), "{h:?}");
    }
    assert!(eventually(|| {
        let v: serde_json::Value = serde_json::from_str(w.ok(&["events", "--stats", &id]).trim()).unwrap();
        v["data"]["cpu"]["usage"]["total"].as_u64().unwrap_or(0) > 0
    }));
    // The stream prints stats every interval and ends when the container does.
    let mut stream = w.cmd().args(["events", "--interval", "50ms", &id]).stdout(std::process::Stdio::piped()).spawn().unwrap();
    // Two stats lines (however slow the machine), then the container ends.
    let mut lines = std::io::BufRead::lines(std::io::BufReader::new(stream.stdout.take().unwrap()));
    let mut n = 0;
    while n < 2 {
        let l = lines.next().expect("the stream ended before two stats lines").unwrap();
        n += usize::from(l.contains("\"stats\""));
    }
    w.ok(&["kill", &id, "KILL"]);
    let rest = std::thread::spawn(move || lines.count());
    let st = wait_within(&mut stream, 10);
    assert!(st.is_some(), "the event stream did not end with the container");
    assert!(st.unwrap().success());
    rest.join().unwrap();
    w.finish();
}

#[test]
#[ignore = "needs root"]
fn update_of_device_rules_denies_then_allows_again() {
    let mut w = World::new("updatedev");
    // runc spec's default: deny every device, then the standard ones allowed.
    w.config(&["sleep", "1000"], |_| {});
    let id = w.create();
    w.ok(&["start", &id]);
    let probe = |w: &World| w.berth(&["exec", &id, "sh", "-c", "echo x > /dev/null && echo allowed"]);
    assert_eq!(String::from_utf8_lossy(&probe(&w).stdout), "allowed\n");
    let f = w.dir.join("dev.json");
    std::fs::write(&f, r#"{"devices": [{"allow": false, "type": "c", "major": 1, "minor": 3, "access": "rw"}]}"#).unwrap();
    w.ok(&["update", "--resources", f.to_str().unwrap(), &id]);
    let o = probe(&w);
    assert!(!o.status.success(), "/dev/null still writable after a deny rule");
    assert!(String::from_utf8_lossy(&o.stderr).contains("Operation not permitted"), "{}", String::from_utf8_lossy(&o.stderr));
    // Allowed again: on v2 the old program must be gone, not just joined
    // by a new one (attached programs must all allow).
    std::fs::write(&f, r#"{"devices": [{"allow": true, "type": "c", "major": 1, "minor": 3, "access": "rw"}]}"#).unwrap();
    w.ok(&["update", "--resources", f.to_str().unwrap(), &id]);
    assert_eq!(String::from_utf8_lossy(&probe(&w).stdout), "allowed\n");
    // Other limits updated later keep the device rules.
    w.ok(&["update", "--pids-limit", "50", &id]);
    assert_eq!(String::from_utf8_lossy(&probe(&w).stdout), "allowed\n");
    w.ok(&["delete", "--force", &id]);
    w.finish();
}

#[test]
#[ignore = "needs root"]
fn events_report_an_oom_kill() {
    let mut w = World::new("oomevent");
    // `tail` of /dev/zero buffers a line that never ends: it grows until the
    // cgroup's limit has the kernel kill it; the shell then reports and ends.
    w.config(&["sh", "-c", "sleep 0.3; tail /dev/zero; echo done"], |c| {
        c["linux"]["resources"]["memory"] = json!({"limit": 16 << 20, "swap": 16 << 20});
    });
    let id = w.create();
    let mut stream = w.cmd().args(["events", "--interval", "1s", &id]).stdout(std::process::Stdio::piped()).spawn().unwrap();
    let out = drain_stdout(&mut stream);
    w.ok(&["start", &id]);
    // berth's stream ends with the container; runc 1.1's goes on (then it
    // is ended here, and only what it printed counts).
    wait_within(&mut stream, 20);
    let text = out.join().unwrap();
    let oom: Vec<serde_json::Value> =
        text.lines().filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok()).filter(|v| v["type"] == "oom").collect();
    assert!(!oom.is_empty(), "no oom event in: {text}");
    assert_eq!(oom[0]["id"], id.as_str());
    w.finish();
}

#[test]
#[ignore = "needs root"]
fn values_runc_reads_as_not_set_are_not_set() {
    // What Docker and others send for "no limit": 0 for weights, limits,
    // quota and period; runc skips them, so must berth.
    let mut w = World::new("notset");
    w.config(&["true"], |c| {
        c["linux"]["resources"] = serde_json::json!({
            "blockIO": {"weight": 0, "leafWeight": 0, "weightDevice": [{"major": 8, "minor": 0, "weight": 0}]},
            "memory": {"limit": 0, "reservation": 0, "swap": 0, "kernel": 0, "kernelTCP": 0},
            "cpu": {"shares": 0, "quota": 0, "period": 0, "realtimeRuntime": 0, "realtimePeriod": 0},
            "pids": {"limit": 0}
        });
    });
    w.run_ok();
    w.finish();
}
