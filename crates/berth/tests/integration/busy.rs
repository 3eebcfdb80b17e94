//! `why-busy`, and teardown's check that no mount of a container survives in
//! another mount namespace. Berth-only.
use crate::common::*;

/// Runs `script` in a new private mount namespace in the background; it
/// signals readiness by creating `ready`.
fn foreign_ns(w: &World, script: &str) -> std::process::Child {
    let ready = w.dir.join("ready");
    let _ = std::fs::remove_file(&ready);
    let full = format!("{script}; touch {}; exec sleep 1000", ready.display());
    let c = std::process::Command::new("unshare").args(["-m", "--propagation", "private", "sh", "-c", &full]).spawn().unwrap();
    assert!(eventually(|| ready.exists()), "the foreign namespace did not come up");
    c
}

#[test]
#[ignore = "needs root"]
fn why_busy_names_the_holder_of_a_mount_in_a_foreign_namespace_and_a_container() {
    if berth_only() {
        return;
    }
    let mut w = World::new("whybusy");
    let target = w.dir.join("target");
    std::fs::create_dir_all(&target).unwrap();
    let out = w.berth(&["why-busy", target.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0), "nothing holds it yet");
    let mut holder = foreign_ns(&w, &format!("mount -t tmpfs berth-test {}", target.display()));
    let out = w.berth(&["why-busy", target.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains(&holder.id().to_string()) && text.contains("mount") && text.contains("tmpfs"), "{text}");
    let json: serde_json::Value =
        serde_json::from_slice(&w.berth(&["why-busy", "--format", "json", target.to_str().unwrap()]).stdout).unwrap();
    assert!(json.as_array().unwrap().iter().any(|h| h["pid"] == holder.id() && h["mount_namespace"].as_str().unwrap().starts_with("mnt:")));
    holder.kill().unwrap();
    holder.wait().unwrap();
    // A running container holds its rootfs as its root.
    w.config(&["sleep", "1000"], |_| {});
    let id = w.create();
    let rootfs = w.bundle.join("rootfs");
    let out = w.berth(&["why-busy", rootfs.to_str().unwrap()]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.lines().any(|l| l.contains("root") && l.ends_with(&id)), "{text}");
    assert_eq!(w.berth(&["why-busy", "/nonexistent/path"]).status.code(), Some(2));
    w.finish();
}

#[test]
#[ignore = "needs root"]
fn delete_names_a_mount_that_leaked_into_another_namespace() {
    if berth_only() {
        return;
    }
    let mut w = World::new("leakmount");
    w.config(&["sleep", "1000"], |_| {});
    let id = w.create();
    let leak = w.bundle.join("rootfs/leak");
    std::fs::create_dir_all(&leak).unwrap();
    let mut holder = foreign_ns(&w, &format!("mount -t tmpfs berth-leak {}", leak.display()));
    let e = w.fails(&["delete", "--force", &id]);
    assert!(e.contains(&format!("pid {}", holder.id())) && e.contains("leak"), "{e}");
    // The state is kept: the same command finishes once the holder is gone.
    assert!(w.root.join(&id).exists());
    holder.kill().unwrap();
    holder.wait().unwrap();
    w.ok(&["delete", "--force", &id]);
    w.finish();
}

#[test]
#[ignore = "needs root"]
fn delete_finds_a_leaked_mount_in_a_namespace_no_process_holds() {
    if berth_only() {
        return;
    }
    if berth_sys::mount_namespaces().is_err() || enosys().is_some_and(|(_, calls)| calls.contains("listmount")) {
        // Then only the namespaces some process is in can be walked: one
        // that nothing but an nsfs bind mount holds is out of sight.
        eprintln!("skipped: this kernel (or the ENOSYS tier) cannot list every mount namespace (listmount/NS_MNT_GET_NEXT, 6.12+)");
        return;
    }
    let mut w = World::new("pinnedns");
    w.config(&["sleep", "1000"], |_| {});
    let id = w.create();
    let leak = w.bundle.join("rootfs/leak");
    std::fs::create_dir_all(&leak).unwrap();
    // A mount namespace kept alive only by a bind mount of its nsfs file.
    let pin = w.dir.join("pin");
    std::fs::create_dir_all(&pin).unwrap();
    std::fs::write(pin.join("ns"), "").unwrap();
    let sh = |c: &str| assert!(std::process::Command::new("sh").arg("-c").arg(c).status().unwrap().success(), "{c}");
    sh(&format!("mount --bind {p} {p} && mount --make-private {p}", p = pin.display()));
    sh(&format!("unshare --mount={}/ns --propagation private mount -t tmpfs berth-pinned {}", pin.display(), leak.display()));
    let e = w.fails(&["delete", "--force", &id]);
    let why = w.berth(&["why-busy", leak.to_str().unwrap()]);
    sh(&format!("umount {p}/ns; umount {p}", p = pin.display()));
    assert_eq!(why.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&why.stdout).contains("kept by an nsfs"), "{}", String::from_utf8_lossy(&why.stdout));
    assert!(e.contains("kept by an nsfs") && e.contains("leak"), "{e}");
    // With the namespace gone, the same command finishes.
    w.ok(&["delete", "--force", &id]);
    w.finish();
}

#[test]
#[ignore = "needs root"]
fn why_busy_sees_overlay_dirs_and_loop_backing_files() {
    if berth_only() {
        return;
    }
    if !std::fs::read_to_string("/proc/filesystems").unwrap_or_default().contains("overlay") {
        eprintln!("skipped: no overlay filesystem in this kernel");
        return;
    }
    let w = World::new("busyoverlay");
    let d = |n: &str| {
        let p = w.dir.join(n);
        std::fs::create_dir_all(&p).unwrap();
        p
    };
    let (lower, upper, work, merged, mnt) = (d("lower"), d("upper"), d("work"), d("merged"), d("mnt"));
    let sh = |c: &str| std::process::Command::new("sh").arg("-c").arg(c).status().unwrap().success();
    // An overlay whose upper dir is ours, in a foreign namespace.
    let ready = w.dir.join("ready");
    let script = format!(
        "mount -t overlay overlay -o lowerdir={},upperdir={},workdir={} {} && touch {} && exec sleep 1000",
        lower.display(),
        upper.display(),
        work.display(),
        merged.display(),
        ready.display()
    );
    let mut holder = std::process::Command::new("unshare").args(["-m", "--propagation", "private", "sh", "-c", &script]).spawn().unwrap();
    assert!(eventually(|| ready.exists()), "overlay not mounted");
    let out = w.berth(&["why-busy", upper.to_str().unwrap()]);
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    holder.kill().unwrap();
    holder.wait().unwrap();
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(text.contains("overlay upperdir") && text.contains(&holder.id().to_string()), "{text}");
    // A filesystem image mounted through a loop device.
    let img = w.dir.join("disk.img");
    if !sh(&format!("truncate -s 8M {i} && mkfs.ext4 -q {i}", i = img.display())) {
        eprintln!("skipped the loop part: no mkfs.ext4");
        return;
    }
    assert!(sh(&format!("mount -o loop {} {}", img.display(), mnt.display())));
    let out = w.berth(&["why-busy", img.to_str().unwrap()]);
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(sh(&format!("umount {}", mnt.display())));
    assert!(text.contains("backed by") && text.contains("disk.img"), "{text}");
    w.finish();
}

#[test]
#[ignore = "needs root"]
fn delete_from_another_namespace_leaves_the_callers_own_rootfs_mount_alone() {
    if berth_only() {
        return;
    }
    if berth_sys::mount_id_unique(std::path::Path::new("/")).is_err() {
        eprintln!("skipped: no unique mount IDs on this kernel (6.8+): the host's namespace stands for the caller's");
        return;
    }
    // podman with a user namespace: the rootfs is mounted by the caller
    // before create, and the cleanup that runs `delete --force` is in a
    // private namespace of its own. That mount is the caller's to unmount
    // afterwards, not a leak. (The caller's namespace is a private one here,
    // so that other tests' namespaces never copy its mount.)
    let mut w = World::new("callermount");
    w.config(&["sleep", "1000"], |_| {});
    let id = w.id();
    let rootfs = w.bundle.join("rootfs");
    let b = format!("{} --root {}", runtime(), w.root.display());
    let script = format!(
        "set -e; mount --bind {r} {r}; {b} create --bundle {bundle} {id} </dev/null >/dev/null; {b} start {id}; \
         unshare -m --propagation private {b} delete --force {id}",
        r = rootfs.display(),
        bundle = w.bundle.display()
    );
    let o = std::process::Command::new("unshare").args(["-m", "--propagation", "private", "sh", "-c", &script]).output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    w.finish();
}

#[test]
#[ignore = "needs root"]
fn only_why_busy_itself_exits_2_on_an_error() {
    if berth_only() {
        return;
    }
    // A container may be named why-busy: its errors are the command's own (1).
    let w = World::new("whybusycode");
    assert_eq!(w.berth(&["delete", "why-busy"]).status.code(), Some(1));
    assert_eq!(w.berth(&["why-busy", "/nonexistent/path"]).status.code(), Some(2));
    w.finish();
}
