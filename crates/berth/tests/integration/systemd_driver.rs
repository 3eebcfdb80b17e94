//! The systemd cgroup driver, against a real systemd (PID 1, cgroup v2):
//! these run in tests/vm/run-systemd's guest with
//! BERTH_TEST_CGROUP_DRIVER=systemd, and are skipped elsewhere, but for
//! the refusal on a host without systemd, which runs everywhere else.

use crate::common::*;
use serde_json::json;
use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

/// Skipped (true) unless the tests drive the systemd driver.
fn needs_systemd() -> bool {
    if !systemd_driver() {
        eprintln!("skipped: needs systemd as PID 1 and BERTH_TEST_CGROUP_DRIVER=systemd (tests/vm/run-systemd)");
        return true;
    }
    false
}

/// `systemctl show -p P1,P2 UNIT` as a map.
fn show(unit: &str, props: &[&str]) -> BTreeMap<String, String> {
    let o = Command::new("systemctl").args(["show", "-p", &props.join(","), unit]).output().expect("systemctl");
    String::from_utf8_lossy(&o.stdout).lines().filter_map(|l| l.split_once('=')).map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

/// What systemd says of a unit: active, failed, or not-found (gone).
fn load_and_active(unit: &str) -> (String, String) {
    let m = show(unit, &["LoadState", "ActiveState"]);
    (m.get("LoadState").cloned().unwrap_or_default(), m.get("ActiveState").cloned().unwrap_or_default())
}

fn gone(unit: &str) -> bool {
    eventually(|| load_and_active(unit).0 == "not-found")
}

fn cgroup_root() -> &'static Path {
    Path::new("/sys/fs/cgroup")
}

#[test]
#[ignore = "needs root"]
fn a_container_is_a_delegated_transient_scope_whose_properties_agree_with_its_files() {
    if needs_systemd() {
        return;
    }
    let mut w = World::new("sdscope");
    w.config(&["sleep", "1000"], |c| {
        c["linux"]["resources"] = json!({
            "memory": {"limit": 67108864, "reservation": 33554432},
            "pids": {"limit": 42},
            "cpu": {"shares": 512, "quota": 50000, "period": 100000}
        });
    });
    let id = w.create();
    let unit = unit_of(&id);
    let m = show(
        &unit.name,
        &[
            "ActiveState",
            "Delegate",
            "Slice",
            "ControlGroup",
            "MemoryMax",
            "MemoryLow",
            "TasksMax",
            "CPUWeight",
            "CPUQuotaPerSecUSec",
            "Transient",
        ],
    );
    assert_eq!(m["ActiveState"], "active", "{m:?}");
    assert_eq!(m["Delegate"], "yes");
    assert_eq!(m["Transient"], "yes");
    assert_eq!(m["Slice"], "system.slice");
    assert_eq!(m["ControlGroup"], unit.cgroup);
    assert_eq!(m["MemoryMax"], "67108864");
    assert_eq!(m["MemoryLow"], "33554432");
    assert_eq!(m["TasksMax"], "42");
    assert_eq!(m["CPUWeight"], "20");
    assert_eq!(m["CPUQuotaPerSecUSec"], "500ms");
    let dir = cgroup_root().join(unit.cgroup.trim_start_matches('/'));
    let file = |f: &str| std::fs::read_to_string(dir.join(f)).unwrap().trim().to_string();
    assert_eq!(file("memory.max"), "67108864");
    assert_eq!(file("memory.low"), "33554432");
    assert_eq!(file("pids.max"), "42");
    assert_eq!(file("cpu.weight"), "20");
    assert_eq!(file("cpu.max"), "50000 100000");
    let pid = w.state(&id)["pid"].to_string();
    assert!(file("cgroup.procs").lines().any(|l| l == pid), "the init is in the scope");
    // The container's own view: its cgroup is the scope.
    let proc_cgroup = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap();
    assert_eq!(proc_cgroup.trim(), format!("0::{}", unit.cgroup));
    w.ok(&["delete", "--force", &id]);
    assert!(gone(&unit.name), "the unit is gone after delete: {:?}", load_and_active(&unit.name));
    assert!(!dir.exists(), "{} left", dir.display());
    w.finish();
}

#[test]
#[ignore = "needs root"]
fn delete_without_the_flag_stops_the_unit_the_state_recorded() {
    if needs_systemd() {
        return;
    }
    // containerd's cleanup runs `delete --force` with no --systemd-cgroup.
    let mut w = World::new("sdnoflag");
    w.config(&["sleep", "1000"], |_| {});
    let id = w.create();
    let unit = unit_of(&id);
    assert_eq!(load_and_active(&unit.name).1, "active");
    let o = Command::new(runtime()).arg("--root").arg(&w.root).args(["delete", "--force", &id]).output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(gone(&unit.name), "{:?}", load_and_active(&unit.name));
    w.finish();
}

#[test]
#[ignore = "needs root"]
fn exec_joins_the_scope_and_pause_freezes_it() {
    if needs_systemd() {
        return;
    }
    let mut w = World::new("sdexec");
    w.config(&["sleep", "1000"], |_| {});
    let id = w.create();
    w.ok(&["start", &id]);
    let unit = unit_of(&id);
    let out = w.ok(&["exec", &id, "cat", "/proc/self/cgroup"]);
    // With a cgroup namespace the container sees "/", without one the scope.
    assert!(out.trim() == "0::/" || out.trim() == format!("0::{}", unit.cgroup), "{out}");
    let dir = cgroup_root().join(unit.cgroup.trim_start_matches('/'));
    let pid = w.state(&id)["pid"].to_string();
    let procs = std::fs::read_to_string(dir.join("cgroup.procs")).unwrap();
    assert!(procs.lines().any(|l| l == pid));
    w.ok(&["pause", &id]);
    assert_eq!(w.status(&id), "paused");
    assert_eq!(std::fs::read_to_string(dir.join("cgroup.freeze")).unwrap().trim(), "1");
    w.ok(&["resume", &id]);
    assert_eq!(w.status(&id), "running");
    w.ok(&["delete", "--force", &id]);
    assert!(gone(&unit.name));
    w.finish();
}

#[test]
#[ignore = "needs root"]
fn update_changes_the_units_properties_and_the_files() {
    if needs_systemd() {
        return;
    }
    let mut w = World::new("sdupdate");
    w.config(&["sleep", "1000"], |c| c["linux"]["resources"] = json!({"memory": {"limit": 67108864}, "pids": {"limit": 50}}));
    let id = w.create();
    let unit = unit_of(&id);
    w.ok(&["update", "--memory", "32M", "--pids-limit", "20", &id]);
    let m = show(&unit.name, &["MemoryMax", "TasksMax"]);
    assert_eq!((m["MemoryMax"].as_str(), m["TasksMax"].as_str()), ("33554432", "20"));
    assert_eq!(w.cgroup_file(&id, "memory", "", "memory.max"), "33554432");
    assert_eq!(w.cgroup_file(&id, "pids", "", "pids.max"), "20");
    // A daemon-reload makes systemd write its view back to the files: the
    // same values.
    assert!(Command::new("systemctl").arg("daemon-reload").status().unwrap().success());
    assert_eq!(w.cgroup_file(&id, "memory", "", "memory.max"), "33554432");
    assert_eq!(w.cgroup_file(&id, "pids", "", "pids.max"), "20");
    w.ok(&["delete", "--force", &id]);
    w.finish();
}

#[test]
#[ignore = "needs root"]
fn a_kubernetes_pod_slice_that_does_not_exist_yet_is_made() {
    if needs_systemd() {
        return;
    }
    let mut w = World::new("sdslice");
    let pod = format!("berthtest-besteffort-pod{}", std::process::id());
    let id = w.id();
    w.config(&["sleep", "1000"], |c| c["linux"]["cgroupsPath"] = json!(format!("{pod}.slice:cri-containerd:{id}")));
    // (systemd loads a slice with no unit file on demand: LoadState says
    // loaded for any name; the slice is new when it is inactive, with no cgroup.)
    assert_eq!(load_and_active(&format!("{pod}.slice")).1, "inactive", "the slice is new");
    assert!(!Path::new("/sys/fs/cgroup/berthtest.slice").exists());
    let bundle = w.bundle.to_string_lossy().into_owned();
    w.ok(&["create", "--bundle", &bundle, &id]);
    let scope = format!("cri-containerd-{id}.scope");
    let m = show(&scope, &["ActiveState", "Slice", "ControlGroup"]);
    assert_eq!(m["ActiveState"], "active");
    assert_eq!(m["Slice"], format!("{pod}.slice"));
    assert_eq!(m["ControlGroup"], format!("/berthtest.slice/berthtest-besteffort.slice/{pod}.slice/{scope}"));
    assert_eq!(load_and_active(&format!("{pod}.slice")).1, "active");
    w.ok(&["delete", "--force", &id]);
    assert!(gone(&scope));
    // The slices are the caller's (a kubelet removes its pod slices): the
    // test's own, stopped here.
    let _ = Command::new("systemctl").args(["stop", "berthtest.slice"]).status();
    w.finish();
}

#[test]
#[ignore = "needs root"]
fn annotations_set_unit_properties_and_bad_ones_are_refused() {
    if needs_systemd() {
        return;
    }
    let mut w = World::new("sdannot");
    w.config(&["sleep", "1000"], |c| {
        c["annotations"] =
            json!({"org.systemd.property.TimeoutStopUSec": "uint64 123456789", "org.systemd.property.CollectMode": "'inactive-or-failed'"});
    });
    let id = w.create();
    let unit = unit_of(&id);
    let m = show(&unit.name, &["TimeoutStopUSec", "CollectMode"]);
    assert_eq!(m["TimeoutStopUSec"], "2min 3.456789s");
    assert_eq!(m["CollectMode"], "inactive-or-failed");
    w.ok(&["delete", "--force", &id]);
    w.config(&["true"], |c| c["annotations"] = json!({"org.systemd.property.TimeoutStopSec": "uint64 5"}));
    let id = w.id();
    let bundle = w.bundle.to_string_lossy().into_owned();
    let err = w.fails(&["create", "--bundle", &bundle, &id]);
    says(&err, "use TimeoutStopUSec");
    assert_eq!(load_and_active(&unit_of(&id).name).0, "not-found");
    assert!(w.leftovers(&id).is_empty(), "{:?}", w.leftovers(&id));
    w.finish();
}

#[test]
#[ignore = "needs root"]
fn a_failed_create_leaves_no_unit_and_no_cgroup() {
    if needs_systemd() {
        return;
    }
    let mut w = World::new("sdfail");
    w.config(&["/no/such/binary"], |_| {});
    let id = w.id();
    let bundle = w.bundle.to_string_lossy().into_owned();
    let err = w.fails(&["run", "--bundle", &bundle, &id]);
    says(&err, "no such file or directory");
    let unit = unit_of(&id);
    assert!(gone(&unit.name), "{:?}", load_and_active(&unit.name));
    assert!(w.leftovers(&id).is_empty(), "{:?}", w.leftovers(&id));
    // A path not in the systemd form: runc's words, nothing made.
    w.config(&["true"], |c| c["linux"]["cgroupsPath"] = json!("/berth-tests/plain"));
    let id = w.id();
    let err = w.fails(&["run", "--bundle", &bundle, &id]);
    says(&err, "expected cgroupsPath to be of format \"slice:prefix:name\" for systemd cgroups");
    assert!(!Path::new("/sys/fs/cgroup/berth-tests/plain").exists());
    w.finish();
}

#[test]
#[ignore = "needs root"]
fn device_rules_reach_systemd_as_an_allow_list() {
    if needs_systemd() {
        return;
    }
    let mut w = World::new("sddev");
    // /dev/kmsg is made in the container, but neither the rules nor the
    // devices every container may use allow it.
    w.config(&["sh", "-c", "head -c1 /dev/zero >/dev/null && echo zero-ok; head -c1 /dev/kmsg >/dev/null 2>&1 || echo kmsg-denied"], |c| {
        c["linux"]["devices"] = json!([{"path": "/dev/kmsg", "type": "c", "major": 1, "minor": 11, "fileMode": 420}]);
        c["linux"]["resources"]["devices"] =
            json!([{"allow": false, "access": "rwm"}, {"allow": true, "type": "c", "major": 1, "minor": 5, "access": "rwm"}]);
    });
    let out = w.run_ok();
    assert!(out.contains("zero-ok") && out.contains("kmsg-denied"), "{out}");
    // While one runs, systemd's list shows the same devices.
    w.config(&["sleep", "1000"], |c| {
        c["linux"]["resources"]["devices"] =
            json!([{"allow": false, "access": "rwm"}, {"allow": true, "type": "c", "major": 1, "minor": 5, "access": "rwm"}]);
    });
    let id = w.create();
    let m = show(&unit_of(&id).name, &["DevicePolicy", "DeviceAllow"]);
    assert_eq!(m["DevicePolicy"], "strict");
    assert!(m["DeviceAllow"].contains("/dev/char/1:5 rwm"), "{m:?}");
    assert!(!m["DeviceAllow"].contains("1:11"), "{m:?}");
    w.ok(&["delete", "--force", &id]);
    w.finish();
}

#[test]
#[ignore = "needs root"]
fn without_systemd_the_driver_is_refused_in_one_line_and_leaves_nothing() {
    if berth_only() || systemd_driver() || std::path::Path::new("/run/systemd/system").exists() {
        eprintln!("skipped: systemd is running here");
        return;
    }
    let mut w = World::new("sdnone");
    let id = w.id();
    w.config(&["true"], |c| c["linux"]["cgroupsPath"] = json!(format!("system.slice:berth-test:{id}")));
    let bundle = w.bundle.to_string_lossy().into_owned();
    let err = w.fails(&["--systemd-cgroup", "run", "--bundle", &bundle, &id]);
    says(&err, "systemd not running on this host, can't use systemd as cgroups manager");
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(w.leftovers(&id).is_empty(), "{:?}", w.leftovers(&id));
    // Without the flag, the systemd form is refused, naming the flag.
    let err = w.fails(&["run", "--bundle", &bundle, &id]);
    says(&err, "pass --systemd-cgroup");
    w.finish();
}
