//! Ephemeral writable layers (volatile overlay over the rootfs) and the
//! reaper that finishes their teardown. Berth-only.
use crate::common::*;
use serde_json::json;

fn layers(w: &World) -> Vec<std::path::PathBuf> {
    let mut v: Vec<_> = std::fs::read_dir(w.storage().join("layers")).into_iter().flatten().flatten().map(|e| e.path()).collect();
    v.sort();
    v
}

#[test]
#[ignore = "needs root"]
fn an_ephemeral_layer_takes_the_writes_and_goes_with_the_container() {
    if berth_only() {
        return;
    }
    let mut w = World::new("layer");
    let probe = "echo data > /written; rm /etc/group; ls /etc; awk '$5 == \"/\" { print $9, $NF }' /proc/self/mountinfo";
    w.config(&["sh", "-c", probe], |c| {
        c["annotations"] = json!({"run.berth.layer": "ephemeral"});
    });
    let out = w.run_ok();
    let l: Vec<&str> = out.lines().collect();
    assert_eq!(l[0], "passwd", "a whiteout hides /etc/group: {out}");
    assert!(l[1].starts_with("overlay ") && l[1].contains("volatile"), "the root is a volatile overlay: {out}");
    // The image is untouched.
    assert!(w.bundle.join("rootfs/etc/group").exists());
    assert!(!w.bundle.join("rootfs/written").exists());
    // After the container, `gc --wait` finds the layer deleted.
    w.ok(&["gc", "--wait"]);
    assert_eq!(layers(&w), Vec::<std::path::PathBuf>::new());
    w.finish();
}

#[test]
#[ignore = "needs root"]
fn keep_extra_lowers_and_the_flag() {
    if berth_only() {
        return;
    }
    let mut w = World::new("layerkeep");
    let extra = w.dir.join("extra");
    std::fs::create_dir_all(extra.join("opt")).unwrap();
    std::fs::write(extra.join("opt/from-extra"), "below\n").unwrap();
    w.config(&["sh", "-c", "cat /opt/from-extra; echo kept > /kept"], |c| {
        c["annotations"] = json!({"run.berth.layer": "keep", "run.berth.layer.lowers": extra.to_str().unwrap()});
    });
    assert_eq!(w.run_ok(), "below\n");
    w.ok(&["gc", "--wait"]);
    let l = layers(&w);
    assert_eq!(l.len(), 1, "the kept layer: {l:?}");
    assert_eq!(std::fs::read_to_string(l[0].join("upper/kept")).unwrap(), "kept\n");
    std::fs::remove_dir_all(&l[0]).unwrap();

    // `run --ephemeral-layer` asks for it without the annotation.
    w.config(&["sh", "-c", "touch /new && echo ok"], |_| {});
    let id = w.id();
    let bundle = w.bundle.to_string_lossy().into_owned();
    assert_eq!(w.ok(&["run", "--ephemeral-layer", "--bundle", &bundle, &id]), "ok\n");
    assert!(!w.bundle.join("rootfs/new").exists());

    // Bad requests are clear errors, leaving nothing.
    w.config(&["true"], |c| c["annotations"] = json!({"run.berth.layer": "sometimes"}));
    let (code, _, err) = w.run();
    assert_ne!(code, 0);
    says(&err, "run.berth.layer");
    w.config(&["true"], |c| c["annotations"] = json!({"run.berth.layer": "ephemeral", "run.berth.layer.lowers": "relative/path"}));
    let (code, _, err) = w.run();
    assert_ne!(code, 0);
    says(&err, "run.berth.layer.lowers");
    w.finish();
}

#[test]
#[ignore = "needs root"]
fn deferred_cgroups_are_removed_by_the_reaper_and_gc_can_be_inspected() {
    if berth_only() {
        return;
    }
    let mut w = World::new("reapdefer");
    w.config(&["sh", "-c", "dd if=/dev/zero of=/f bs=1M count=8 2>/dev/null; sleep 1000"], |c| {
        c["annotations"] = json!({"run.berth.layer": "ephemeral"});
    });
    let id = w.create();
    w.ok(&["start", &id]);
    let dirs = w.cgroup_dirs(&id);
    assert!(dirs.iter().all(|d| d.path.exists()));
    // The reaper is held off by a gc that is at work (its lock): the job
    // stays queued and visible.
    let lock = std::fs::OpenOptions::new().create(true).truncate(false).write(true).open({
        std::fs::create_dir_all(w.root.join("@reaper")).unwrap();
        w.root.join("@reaper/lock")
    });
    let lock = lock.unwrap();
    berth_sys::flock(std::os::fd::AsFd::as_fd(&lock), 2 /* LOCK_EX */).unwrap();
    let o = w.cmd().env("BERTH_CGROUP_REAP", "deferred").args(["delete", "--force", &id]).output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    // delete's guarantees: no state, no process; the cgroup is empty.
    assert!(!w.root.join(&id).exists());
    for d in &dirs {
        assert_eq!(std::fs::read_to_string(d.path.join("cgroup.procs")).unwrap_or_default(), "", "{}", d.path.display());
    }
    let list: serde_json::Value = serde_json::from_slice(&w.berth(&["gc", "--list"]).stdout).unwrap();
    let job = &list.as_array().unwrap()[0];
    assert_eq!(job["id"], id.as_str());
    assert_eq!(job["paths"].as_array().unwrap().len(), 1, "{job}");
    assert!(!job["cgroup"].is_null(), "{job}");
    drop(lock);
    w.ok(&["gc", "--wait"]);
    assert!(dirs.iter().all(|d| !d.path.exists()), "gc removed the cgroup");
    assert!(layers(&w).is_empty());
    w.finish();
}

#[test]
#[ignore = "needs root"]
fn deferred_cgroups_go_in_one_batch_without_anyone_asking() {
    if berth_only() {
        return;
    }
    let mut w = World::new("reapbatch");
    w.config(&["sleep", "1000"], |_| {});
    let ids: Vec<String> = (0..3).map(|_| w.create()).collect();
    let dirs: Vec<_> = ids.iter().flat_map(|id| w.cgroup_dirs(id)).collect();
    for id in &ids {
        let o = w
            .cmd()
            .env("BERTH_CGROUP_REAP", "deferred")
            .env("BERTH_REAP_WINDOW_MS", "700")
            .args(["delete", "--force", id])
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    }
    // Still there right after the deletes: they wait for their batch...
    assert!(dirs.iter().all(|d| d.path.exists()), "removed one by one");
    // ...which the background reaper runs by itself, all together.
    assert!(eventually(|| dirs.iter().all(|d| !d.path.exists())), "the batch never came");
    w.finish();
}

#[test]
#[ignore = "needs root"]
fn a_container_restarted_under_a_deferred_cgroup_gets_its_own_and_callers_may_remove_deferred_ones() {
    if berth_only() {
        return;
    }
    use std::os::unix::fs::MetadataExt;
    let mut w = World::new("reapclaim");
    // One cgroupsPath for two containers, as podman keeps a container's
    // cgroup across restarts.
    let cg = format!("/berth-tests/reapclaim-{}", std::process::id());
    w.config(&["sleep", "1000"], |c| c["linux"]["cgroupsPath"] = json!(cg));
    let layout = berth_cgroups::Layout::host().unwrap();
    let own = berth_cgroups::parse_proc_cgroup(&std::fs::read_to_string("/proc/self/cgroup").unwrap());
    let dirs = berth_cgroups::Cgroup::resolve(&layout, &cg, &own).dirs;
    let inos = || dirs.iter().map(|d| std::fs::metadata(&d.path).map(|m| m.ino()).unwrap_or(0)).collect::<Vec<_>>();
    let procs = || {
        dirs.iter().map(|d| std::fs::read_to_string(d.path.join("cgroup.procs")).unwrap_or_default().trim().to_string()).collect::<Vec<_>>()
    };
    // No reaper runs while this is held, so the batch cannot come first.
    std::fs::create_dir_all(w.root.join("@reaper")).unwrap();
    let lock = std::fs::OpenOptions::new().create(true).truncate(false).write(true).open(w.root.join("@reaper/lock")).unwrap();
    berth_sys::flock(std::os::fd::AsFd::as_fd(&lock), 2 /* LOCK_EX */).unwrap();
    let deferred_delete = |w: &World, id: &str| {
        let o = w.cmd().env("BERTH_CGROUP_REAP", "deferred").args(["delete", "--force", id]).output().unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    };

    let a = w.create();
    w.ok(&["start", &a]);
    let first = inos();
    deferred_delete(&w, &a);
    assert!(dirs.iter().all(|d| d.path.exists()), "the deferred cgroup waits for its batch");
    // Restarted before the batch: the new container gets a directory of
    // its own, and the queued job no longer holds it.
    let b = w.create();
    w.ok(&["start", &b]);
    let second = inos();
    assert!(first.iter().zip(&second).all(|(x, y)| x != y && *y != 0), "the old directory was reused: {first:?} {second:?}");
    let pid = w.state(&b)["pid"].as_i64().unwrap().to_string();
    assert!(procs().iter().all(|p| *p == pid), "{:?} (pid {pid})", procs());
    let list: serde_json::Value = serde_json::from_slice(&w.berth(&["gc", "--list"]).stdout).unwrap();
    assert!(list.as_array().unwrap().iter().all(|j| j["cgroup"].is_null()), "a job still holds the cgroup: {list}");
    drop(lock);
    w.ok(&["gc", "--wait"]);
    assert_eq!(inos(), second, "the batch removed the new container's cgroup");
    assert!(procs().iter().all(|p| *p == pid));

    // A caller that removes the cgroup itself right after delete (children
    // first, as runc's libcontainer, containers/common and the kubelet do)
    // is not in the reaper's way, nor the reaper in its.
    let lock = std::fs::OpenOptions::new().write(true).open(w.root.join("@reaper/lock")).unwrap();
    berth_sys::flock(std::os::fd::AsFd::as_fd(&lock), 2 /* LOCK_EX */).unwrap();
    deferred_delete(&w, &b);
    for d in &dirs {
        std::fs::remove_dir(&d.path).unwrap_or_else(|e| panic!("rmdir {}: {e}", d.path.display()));
    }
    drop(lock);
    w.ok(&["gc", "--wait"]);
    let list: serde_json::Value = serde_json::from_slice(&w.berth(&["gc", "--list"]).stdout).unwrap();
    assert_eq!(list, json!([]), "the job was not finished");
    assert!(dirs.iter().all(|d| !d.path.exists()));
    w.finish();
}
