//! What runc's callers and runc's own suite see at berth's command line:
//! help and version pages, signal 0, exec's exit status, the JSON lines of
//! `list` and `events`, `ps` options, and the container setups runc 1.1.5's
//! suite found different (a frozen cgroup, a read-only /dev, procfs on an
//! image's symlink, a cwd only root can enter).

use crate::common::*;
use serde_json::json;
use std::fs;

#[test]
fn help_and_version_pages_have_runc_s_layout() {
    let w = World::new("help");
    let out = w.ok(&["-h"]);
    let l: Vec<&str> = out.lines().collect();
    assert_eq!(l[0], "NAME:", "{out}");
    assert!(l[1].contains(" - Open Container Initiative runtime"), "{out}");
    for cmd in ["delete", "exec", "kill", "list", "run", "spec", "update", "checkpoint", "restore"] {
        for flag in ["-h", "--help"] {
            let page = w.ok(&[cmd, flag]);
            let l: Vec<&str> = page.lines().collect();
            assert_eq!(l[0], "NAME:", "{cmd} {flag}: {page}");
            assert!(l[1].contains(&format!(" {cmd} - ")), "{cmd} {flag}: {page}");
        }
    }
    says(&w.fails(&["foo", "-h"]), "No help topic for 'foo'");
    let v = w.ok(&["-v"]);
    let l: Vec<&str> = v.lines().collect();
    assert!(l[0].contains(" version ") && l[1].starts_with("commit:") && l[2].starts_with("spec: "), "{v}");
    w.finish();
}

#[test]
#[ignore = "needs root"]
fn signal_zero_checks_and_kill_all_works_after_the_end() {
    let mut w = World::new("kill0");
    w.config(&["sleep", "1000"], |_| {});
    let id = w.id();
    let b = w.bundle.to_string_lossy().into_owned();
    w.ok(&["run", "-d", "--bundle", &b, &id]);
    w.ok(&["kill", &id, "0"]);
    assert_eq!(w.status(&id), "running", "signal 0 sends nothing");
    w.ok(&["kill", &id, "KILL"]);
    assert!(eventually(|| w.status(&id) == "stopped"));
    w.ok(&["kill", "-a", &id, "0"]);
    w.ok(&["delete", &id]);
    w.finish();
}

#[test]
#[ignore = "needs root"]
fn exec_failures_exit_255_and_ps_takes_ps_options() {
    let mut w = World::new("exec255");
    w.config(&["sleep", "1000"], |_| {});
    let id = w.id();
    let b = w.bundle.to_string_lossy().into_owned();
    w.ok(&["run", "-d", "--bundle", &b, &id]);
    let o = w.berth(&["exec", "nosuch-container", "true"]);
    assert_eq!(o.status.code(), Some(if other_runtime() { o.status.code().unwrap_or(0) } else { 255 }));
    let o = w.berth(&["exec", &id, "no-such-binary"]);
    assert_eq!(o.status.code(), Some(255), "{}", String::from_utf8_lossy(&o.stderr));
    let o = w.berth(&["exec", &id, "sh", "-c", "exit 42"]);
    assert_eq!(o.status.code(), Some(42), "the process's own status is passed on");
    // What follows the ID is ps's own (-e -x), not berth's: with the
    // host's procps ps (the VM has busybox's, which takes neither).
    let procps =
        std::process::Command::new("ps").arg("--version").output().is_ok_and(|o| String::from_utf8_lossy(&o.stdout).contains("procps"));
    if !procps {
        eprintln!("skipped the ps part: the host's ps is not procps");
        w.finish();
        return;
    }
    let out = w.ok(&["ps", &id, "-e", "-x"]);
    let l: Vec<&str> = out.lines().collect();
    assert!(l[0].contains("PID") && l[0].contains("COMMAND"), "{out}");
    assert!(l.len() >= 2 && l[1].split_whitespace().next().is_some_and(|p| p.parse::<i32>().is_ok()), "{out}");
    w.finish();
}

#[test]
#[ignore = "needs root"]
fn list_and_events_json_lines_start_as_runc_s() {
    let mut w = World::new("jsonorder");
    w.config(&["sleep", "1000"], |_| {});
    let id = w.id();
    let b = w.bundle.to_string_lossy().into_owned();
    w.ok(&["run", "-d", "--bundle", &b, &id]);
    let list = w.ok(&["list", "--format", "json"]);
    assert!(list.starts_with(r#"[{"ociVersion":"#), "{list}");
    let order = ["\"ociVersion\"", "\"id\"", "\"pid\"", "\"status\"", "\"bundle\"", "\"rootfs\"", "\"created\""];
    let at: Vec<usize> = order.iter().map(|k| list.find(k).unwrap_or_else(|| panic!("{k} missing: {list}"))).collect();
    assert!(at.windows(2).all(|p| p[0] < p[1]), "fields out of runc's order: {list}");
    let ev = w.ok(&["events", "--stats", &id]);
    assert!(ev.starts_with(&format!(r#"{{"type":"stats","id":"{id}","data":"#)), "{ev}");
    w.finish();
}

#[test]
#[ignore = "needs root"]
fn a_frozen_cgroup_is_refused_and_nothing_hangs() {
    let mut w = World::new("frozencg");
    w.config(&["true"], |_| {});
    let id = w.id();
    // The container's cgroup, made and frozen before create (v1 freezer or v2).
    let dirs = w.cgroup_dirs(&id);
    let frozen = dirs
        .iter()
        .find(|d| !d.v2 && d.controllers.iter().any(|c| c == "freezer"))
        .map(|d| (d.path.clone(), "freezer.state", "FROZEN"))
        .or_else(|| dirs.iter().find(|d| d.v2).map(|d| (d.path.clone(), "cgroup.freeze", "1")));
    let Some((dir, file, value)) = frozen else {
        eprintln!("skipped: no freezer here");
        return;
    };
    fs::create_dir_all(&dir).unwrap();
    fs::write(dir.join(file), value).unwrap();
    let b = w.bundle.to_string_lossy().into_owned();
    let o = w.berth(&["run", "-d", "--bundle", &b, &id]);
    let _ = fs::write(dir.join(file), if value == "1" { "0" } else { "THAWED" });
    let _ = fs::remove_dir(&dir);
    assert!(!o.status.success());
    says(&String::from_utf8_lossy(&o.stderr), "container's cgroup unexpectedly frozen");
    w.finish();
}

#[test]
#[ignore = "needs root"]
fn a_read_only_dev_is_read_only_once_its_devices_are_made() {
    let mut w = World::new("rodev");
    w.config(&["grep", "^tmpfs /dev ", "/proc/mounts"], |c| {
        for m in c["mounts"].as_array_mut().unwrap() {
            if m["destination"] == "/dev" {
                m["options"].as_array_mut().unwrap().push(json!("ro"));
            }
        }
    });
    let out = w.run_ok();
    assert!(out.contains(" ro,") || out.contains(" ro "), "{out}");
    w.finish();
}

#[test]
#[ignore = "needs root"]
fn procfs_is_never_mounted_through_an_image_symlink() {
    let mut w = World::new("procsymlink");
    w.config(&["true"], |_| {});
    let proc_dir = w.bundle.join("rootfs/proc");
    let _ = fs::remove_dir_all(&proc_dir);
    std::os::unix::fs::symlink("/symlink", &proc_dir).unwrap();
    let (code, _, err) = w.run();
    assert_ne!(code, 0);
    says(&err, "must be mounted on ordinary directory");
    w.finish();
}

#[test]
#[ignore = "needs root"]
fn a_cwd_only_root_can_enter_is_entered_before_the_user_switch() {
    let mut w = World::new("rootcwd");
    let home = w.bundle.join("rootfs/rootonly");
    fs::create_dir_all(&home).unwrap();
    fs::set_permissions(&home, std::os::unix::fs::PermissionsExt::from_mode(0o700)).unwrap();
    w.config(&["pwd"], |c| {
        c["process"]["cwd"] = json!("/rootonly");
        c["process"]["user"]["uid"] = json!(42);
    });
    let out = w.run_ok();
    assert_eq!(out.trim(), "/rootonly");
    w.finish();
}

#[test]
#[ignore = "needs root"]
fn no_pivot_leaves_no_full_procfs_to_mount_a_new_one_from() {
    // Without pivot_root the host's /proc stays in the namespace under the
    // chroot; a full procfs there would let the container mount an
    // unmasked one (in a user namespace of its own).
    let mut w = World::new("nopivotproc");
    w.config(
        &["/bin/busybox", "unshare", "-mrpf", "/bin/busybox", "sh", "-c", "/bin/busybox mount -t proc none /proc && echo mounted"],
        |c| {
            for set in ["bounding", "permitted", "effective"] {
                c["process"]["capabilities"][set].as_array_mut().unwrap().push(json!("CAP_SETFCAP"));
            }
        },
    );
    let id = w.id();
    let b = w.bundle.to_string_lossy().into_owned();
    let o = w.berth(&["run", "--no-pivot", "--bundle", &b, &id]);
    let out = String::from_utf8_lossy(&o.stdout);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!out.contains("mounted"), "a new procfs was mounted under --no-pivot: {out} {err}");
    assert!(err.contains("ermission denied") || err.contains("not permitted"), "{err}");
    w.finish();
}
