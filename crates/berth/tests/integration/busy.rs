//! `why-busy`, and teardown's check that no mount of a container survives in
//! another mount namespace. Berth-only.
use crate::common::*;

/// A background process, killed and reaped when dropped (also when a test
/// fails).
struct Holder(std::process::Child);

impl Holder {
    fn id(&self) -> u32 {
        self.0.id()
    }
    fn alive(&mut self) -> bool {
        self.0.try_wait().unwrap().is_none()
    }
    fn kill(&mut self) -> std::io::Result<()> {
        self.0.kill()
    }
    fn wait(&mut self) -> std::io::Result<std::process::ExitStatus> {
        self.0.wait()
    }
}

impl Drop for Holder {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Runs `script` in a new private mount namespace in the background; it
/// signals readiness by creating `ready`.
fn foreign_ns(w: &World, script: &str) -> Holder {
    foreign_ns_as(w, script, "private")
}

/// The same, with the new namespace's mounts made `propagation` (private,
/// slave...).
fn foreign_ns_as(w: &World, script: &str, propagation: &str) -> Holder {
    let ready = w.dir.join("ready");
    let _ = std::fs::remove_file(&ready);
    let full = format!("{script}; touch {}; exec sleep 1000", ready.display());
    let c = Holder(std::process::Command::new("unshare").args(["-m", "--propagation", propagation, "sh", "-c", &full]).spawn().unwrap());
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

/// The caller's own mount of the container's rootfs (as podman mounts its
/// overlay before create), unmounted when dropped.
struct CallerMount(std::path::PathBuf);

impl CallerMount {
    fn bind(rootfs: &std::path::Path) -> CallerMount {
        let r = rootfs.display();
        assert!(sh(&format!("mount --bind {r} {r}")));
        CallerMount(rootfs.to_path_buf())
    }
}

impl Drop for CallerMount {
    fn drop(&mut self) {
        sh(&format!("umount -l {}", self.0.display()));
    }
}

fn sh(c: &str) -> bool {
    std::process::Command::new("sh").arg("-c").arg(c).status().unwrap().success()
}

/// Whether the mount namespace of `pid` has a mount at `path`.
fn has_mount(pid: u32, path: &std::path::Path) -> bool {
    let mi = std::fs::read_to_string(format!("/proc/{pid}/mountinfo")).unwrap();
    mi.lines().any(|l| l.split(' ').nth(4) == Some(path.to_str().unwrap()))
}

#[test]
#[ignore = "needs root"]
fn delete_detaches_a_copy_of_the_rootfs_that_another_namespace_holds() {
    if berth_only() {
        return;
    }
    let mut w = World::new("reclaim");
    w.config(&["sleep", "1000"], |_| {});
    let rootfs = w.bundle.join("rootfs");
    let caller = CallerMount::bind(&rootfs);
    let id = w.create();
    w.ok(&["start", &id]);
    // An unrelated process clones the host's namespace while the rootfs is
    // mounted: a private copy of it lives on there.
    let mut holder = foreign_ns(&w, "true");
    assert!(has_mount(holder.id(), &rootfs), "the holder has no copy to begin with");
    let o = w.berth(&["delete", "--force", &id]);
    let e = String::from_utf8_lossy(&o.stderr).into_owned();
    assert!(o.status.success(), "{e}");
    assert!(e.contains("detached a copy") && e.contains(&format!("pid {}", holder.id())) && e.contains(rootfs.to_str().unwrap()), "{e}");
    assert!(!w.root.join(&id).exists(), "state left");
    // The copy is gone from the holder's namespace; the holder is unharmed.
    assert!(!has_mount(holder.id(), &rootfs), "the copy is still there");
    assert!(holder.alive(), "the holder was harmed");
    holder.kill().unwrap();
    holder.wait().unwrap();
    drop(caller);
    w.finish();
}

#[test]
#[ignore = "needs root"]
fn a_copy_reached_by_propagation_is_left_to_the_caller_s_unmount() {
    if berth_only() {
        return;
    }
    // As in a systemd service's namespace (ProtectSystem, PrivateTmp): a
    // slave of the host's mounts receives the caller's rootfs mount through
    // propagation, and loses it the same way.
    let mut w = World::new("reclaimslave");
    w.config(&["sleep", "1000"], |_| {});
    let rootfs = w.bundle.join("rootfs");
    // The rootfs mount under a shared one, as on a systemd host: unmounts
    // propagate through the parent.
    let parent = CallerMount::bind(&w.bundle);
    assert!(sh(&format!("mount --make-shared {}", w.bundle.display())));
    let caller = CallerMount::bind(&rootfs);
    let mut holder = foreign_ns_as(&w, "true", "slave");
    let id = w.create();
    assert!(has_mount(holder.id(), &rootfs), "no copy through propagation");
    let o = w.berth(&["delete", "--force", &id]);
    let e = String::from_utf8_lossy(&o.stderr).into_owned();
    // (Other tests' private namespaces may hold copies of it: those go.)
    assert!(o.status.success() && !e.contains(&format!("pid {} ", holder.id())), "{e}");
    assert!(has_mount(holder.id(), &rootfs), "a propagated copy was detached");
    drop(caller);
    assert!(eventually(|| !has_mount(holder.id(), &rootfs)), "the caller's unmount did not reach the copy");
    assert!(holder.alive());
    drop(parent);
    w.finish();
}

#[test]
#[ignore = "needs root"]
fn delete_refuses_to_detach_a_copy_someone_mounted_on_and_names_them() {
    if berth_only() {
        return;
    }
    let mut w = World::new("reclaimno");
    w.config(&["sleep", "1000"], |_| {});
    let rootfs = w.bundle.join("rootfs");
    let leak = rootfs.join("leak");
    std::fs::create_dir_all(&leak).unwrap();
    let caller = CallerMount::bind(&rootfs);
    let id = w.create();
    // The holder mounts a filesystem of its own on its copy: detaching the
    // copy would take that along.
    let mut holder = foreign_ns(&w, &format!("mount -t tmpfs berth-own {}", leak.display()));
    let e = w.fails(&["delete", "--force", &id]);
    assert!(e.contains(&format!("pid {}", holder.id())) && e.contains("cannot be detached safely") && e.contains("of its own"), "{e}");
    assert!(w.root.join(&id).exists(), "the state is kept");
    assert!(has_mount(holder.id(), &rootfs) && has_mount(holder.id(), &leak), "the holder's mounts were touched");
    // The same command finishes once the holder is gone.
    holder.kill().unwrap();
    holder.wait().unwrap();
    w.ok(&["delete", "--force", &id]);
    drop(caller);
    w.finish();
}

#[test]
#[ignore = "needs root"]
fn a_mount_of_someone_else_s_under_the_container_s_path_is_not_the_container_s() {
    if berth_only() {
        return;
    }
    // No caller mount: the rootfs is a plain directory. A tmpfs another
    // namespace mounts there holds nothing of the container's.
    let mut w = World::new("notours");
    w.config(&["sleep", "1000"], |_| {});
    let id = w.create();
    let leak = w.bundle.join("rootfs/leak");
    std::fs::create_dir_all(&leak).unwrap();
    let mut holder = foreign_ns(&w, &format!("mount -t tmpfs berth-leak {}", leak.display()));
    let o = w.berth(&["delete", "--force", &id]);
    let e = String::from_utf8_lossy(&o.stderr).into_owned();
    assert!(o.status.success() && !e.contains("detached"), "{e}");
    assert!(has_mount(holder.id(), &leak), "someone else's mount was touched");
    holder.kill().unwrap();
    holder.wait().unwrap();
    w.finish();
}

#[test]
#[ignore = "needs root"]
fn delete_detaches_a_copy_in_a_namespace_no_process_holds() {
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
    let rootfs = w.bundle.join("rootfs");
    let caller = CallerMount::bind(&rootfs);
    let id = w.create();
    // A mount namespace kept alive only by a bind mount of its nsfs file,
    // made while the rootfs is mounted.
    let pin = w.dir.join("pin");
    std::fs::create_dir_all(&pin).unwrap();
    std::fs::write(pin.join("ns"), "").unwrap();
    assert!(sh(&format!("mount --bind {p} {p} && mount --make-private {p}", p = pin.display())));
    assert!(sh(&format!("unshare --mount={}/ns --propagation private true", pin.display())));
    let inside = |path: &std::path::Path| {
        let o = std::process::Command::new("nsenter")
            .arg(format!("--mount={}/ns", pin.display()))
            .args(["cat", "/proc/self/mountinfo"])
            .output()
            .unwrap();
        String::from_utf8_lossy(&o.stdout).lines().any(|l| l.split(' ').nth(4) == Some(path.to_str().unwrap()))
    };
    assert!(inside(&rootfs), "no copy in the pinned namespace to begin with");
    let o = w.berth(&["delete", "--force", &id]);
    let e = String::from_utf8_lossy(&o.stderr).into_owned();
    let gone = !inside(&rootfs);
    sh(&format!("umount {p}/ns; umount {p}", p = pin.display()));
    assert!(o.status.success(), "{e}");
    assert!(e.contains("detached a copy") && e.contains("kept by an nsfs"), "{e}");
    assert!(gone, "the copy is still in the pinned namespace");
    drop(caller);
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

#[test]
#[ignore = "needs root"]
fn a_config_pointing_its_root_at_a_host_mount_never_detaches_that_mount_elsewhere() {
    if berth_only() {
        return;
    }
    // root.path is a mount of the host's (here a bind outside the bundle,
    // standing for /home or someone's data), not one made for the
    // container: copies of it in other namespaces are not the container's.
    let mut w = World::new("hostroot");
    let host = w.dir.join("hostdata");
    std::fs::create_dir_all(&host).unwrap();
    std::fs::rename(w.bundle.join("rootfs"), host.join("rootfs")).unwrap();
    let data = host.join("rootfs");
    let mount = CallerMount::bind(&data);
    w.config(&["sleep", "1000"], |c| c["root"]["path"] = serde_json::json!(data.to_str().unwrap()));
    let id = w.create();
    let mut holder = foreign_ns(&w, "true");
    assert!(has_mount(holder.id(), &data), "the holder has no copy of the host mount");
    let o = w.berth(&["delete", "--force", &id]);
    let e = String::from_utf8_lossy(&o.stderr).into_owned();
    assert!(o.status.success() && !e.contains(&format!("pid {} ", holder.id())), "{e}");
    assert!(has_mount(holder.id(), &data), "a host mount's copy was detached in someone else's namespace");
    assert!(holder.alive());
    drop(holder);
    drop(mount);
    w.finish();
}
