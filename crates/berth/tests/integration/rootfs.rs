use crate::common::*;
use serde_json::json;

#[test]
#[ignore = "needs root"]
fn default_devices_and_dev_symlinks() {
    let mut w = World::new("devices");
    w.config(&["sh", "-c", "for d in null zero full random urandom tty; do stat -c '%n %t:%T %a' /dev/$d; done; readlink /dev/ptmx; readlink /dev/fd; readlink /dev/stdin; echo x > /dev/null && head -c 3 /dev/zero | wc -c"], |_| {});
    let out = w.run_ok();
    for want in [
        "/dev/null 1:3 666",
        "/dev/zero 1:5 666",
        "/dev/full 1:7 666",
        "/dev/random 1:8 666",
        "/dev/urandom 1:9 666",
        "/dev/tty 5:0 666",
        "pts/ptmx",
        "/proc/self/fd",
        "/proc/self/fd/0",
    ] {
        assert!(out.contains(want), "missing {want:?} in {out}");
    }
    assert!(out.trim_end().ends_with('3'));
    w.finish();
}

#[test]
#[ignore = "needs root"]
fn linux_devices_are_created_with_mode_and_owner() {
    let mut w = World::new("lindev");
    w.config(&["stat", "-c", "%F %t:%T %a %u:%g", "/dev/fuse-test", "/dev/sub/loopx"], |c| {
        c["linux"]["devices"] = json!([
            {"path": "/dev/fuse-test", "type": "c", "major": 10, "minor": 229, "fileMode": 438, "uid": 7, "gid": 8},
            {"path": "/dev/sub/loopx", "type": "b", "major": 7, "minor": 200, "fileMode": 384}
        ]);
    });
    let out = w.run_ok();
    let l: Vec<&str> = out.lines().collect();
    assert_eq!(l[0], "character special file a:e5 666 7:8");
    assert_eq!(l[1], "block special file 7:c8 600 0:0");
    w.finish();
}

#[test]
#[ignore = "needs root"]
fn masked_and_readonly_paths() {
    let mut w = World::new("masked");
    w.config(
        &[
            "sh",
            "-c",
            "wc -c < /proc/timer_list; ls /sys/firmware | wc -l; echo 1 > /proc/sys/kernel/domainname && echo writable || echo ro",
        ],
        |_| {},
    );
    let out = w.run_ok();
    let l: Vec<&str> = out.lines().collect();
    assert_eq!(l.len(), 3, "{out}");
    assert_eq!(l[0].trim(), "0", "timer_list not masked");
    assert_eq!(l[1].trim(), "0", "firmware not masked");
    assert_eq!(l[2], "ro");
    w.finish();
}

#[test]
#[ignore = "needs root"]
fn masked_directories_share_one_read_only_tmpfs() {
    let mut w = World::new("maskone");
    for d in ["m1", "m2/deep", "m3"] {
        std::fs::create_dir_all(w.bundle.join("rootfs").join(d)).unwrap();
        std::fs::write(w.bundle.join("rootfs").join(d).join("secret"), "x").unwrap();
    }
    // Each masked directory's mount: its mount point, device, type, super options.
    w.config(
        &["sh", "-c", "awk '$5 ~ /^\\/(m1|m2\\/deep|m3|sys\\/firmware)$/ { for (i = 7; $i != \"-\"; i++); print $5, $3, $(i+1), $(i+3) }' /proc/self/mountinfo; ls /m1 /m2/deep /m3 | grep -c secret; touch /m3/new 2>/dev/null && echo rw || echo ro"],
        |c| {
            let m = c["linux"]["maskedPaths"].as_array_mut().unwrap();
            m.extend([json!("/m1"), json!("/m2/deep"), json!("/m3")]);
        },
    );
    let out = w.run_ok();
    let l: Vec<&str> = out.lines().collect();
    let (mounts, rest) = l.split_at(l.len().saturating_sub(2));
    for p in ["/m1 ", "/m2/deep ", "/m3 ", "/sys/firmware "] {
        assert!(mounts.iter().any(|x| x.starts_with(p)), "{p}not masked: {out}");
    }
    let devs: std::collections::BTreeSet<&str> = mounts.iter().map(|x| x.split(' ').nth(1).unwrap()).collect();
    assert_eq!(devs.len(), 1, "one superblock for every masked directory: {out}");
    for x in mounts {
        let f: Vec<&str> = x.split(' ').collect();
        assert_eq!(f[2], "tmpfs", "{out}");
        assert!(f[3].split(',').any(|o| o == "ro"), "read-only superblock: {out}");
    }
    assert_eq!(rest, ["0", "ro"], "a masked directory shows its files, or takes new ones: {out}");
    w.finish();
}

#[test]
#[ignore = "needs root"]
fn readonly_root_and_tmpfs_and_bind_mounts() {
    let mut w = World::new("mounts");
    let host_dir = w.dir.join("shared");
    std::fs::create_dir_all(&host_dir).unwrap();
    std::fs::write(host_dir.join("hello"), "from host\n").unwrap();
    w.config(&["sh", "-c", "touch /x 2>/dev/null && echo rw || echo ro; cat /data/hello; touch /data/y 2>/dev/null && echo rw || echo ro; echo t > /scratch/t && cat /scratch/t; grep ' /scratch ' /proc/self/mountinfo | grep -c nosuid"], |c| {
        c["root"]["readonly"] = json!(true);
        let m = c["mounts"].as_array_mut().unwrap();
        m.push(json!({"destination": "/data", "type": "bind", "source": host_dir.to_str().unwrap(), "options": ["rbind", "ro"]}));
        m.push(json!({"destination": "/scratch", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid", "size=1m", "mode=1777"]}));
    });
    let out = w.run_ok();
    assert_eq!(out, "ro\nfrom host\nro\nt\n1\n");
    w.finish();
}

#[test]
#[ignore = "needs root"]
fn symlinks_in_the_rootfs_cannot_point_mounts_outside() {
    let mut w = World::new("symlinkout");
    // /evil -> /etc of the host if followed naively; /up -> ../../../../..
    let rootfs = w.bundle.join("rootfs");
    std::os::unix::fs::symlink("/etc/berth-escape-test", rootfs.join("evil")).unwrap();
    std::os::unix::fs::symlink("../../../../../../../../tmp/berth-escape-up", rootfs.join("up")).unwrap();
    w.config(&["sh", "-c", "ls -d /etc/berth-escape-test /tmp/berth-escape-up"], |c| {
        let m = c["mounts"].as_array_mut().unwrap();
        m.push(json!({"destination": "/evil", "type": "tmpfs", "source": "tmpfs"}));
        m.push(json!({"destination": "/up", "type": "tmpfs", "source": "tmpfs"}));
    });
    let out = w.run_ok();
    // The mounts landed inside the rootfs...
    assert!(out.contains("/etc/berth-escape-test") && out.contains("/tmp/berth-escape-up"), "{out}");
    // ...and nothing was created on the host.
    assert!(!std::path::Path::new("/etc/berth-escape-test").exists());
    assert!(!std::path::Path::new("/tmp/berth-escape-up").exists());
    assert!(rootfs.join("etc/berth-escape-test").is_dir());
    w.finish();
}

#[test]
#[ignore = "needs root"]
fn sysctl_is_written_in_the_container() {
    let mut w = World::new("sysctl");
    w.config(&["cat", "/proc/sys/net/ipv4/ip_forward", "/proc/sys/kernel/msgmax"], |c| {
        c["linux"]["sysctl"] = json!({"net.ipv4.ip_forward": "1", "kernel.msgmax": "12345"});
    });
    assert_eq!(w.run_ok(), "1\n12345\n");
    w.finish();
}

#[test]
#[ignore = "needs root"]
fn no_pivot_uses_move_and_chroot() {
    let mut w = World::new("nopivot");
    w.config(&["sh", "-c", "ls /bin/busybox"], |_| {});
    let id = w.id();
    let bundle = w.bundle.to_string_lossy().into_owned();
    let out = w.ok(&["run", "--no-pivot", "--bundle", &bundle, &id]);
    assert_eq!(out, "/bin/busybox\n");
    w.finish();
}

#[test]
#[ignore = "needs root"]
fn rootfs_propagation_is_applied() {
    let mut w = World::new("propagation");
    w.config(&["awk", "$5 == \"/\"", "/proc/self/mountinfo"], |c| {
        c["linux"]["rootfsPropagation"] = json!("shared");
    });
    let out = w.run_ok();
    assert!(out.contains("shared:"), "{out}");
    w.finish();
}

#[test]
#[ignore = "needs root"]
fn cgroup_mount_shows_the_containers_own_cgroup() {
    let mut w = World::new("cgmount");
    w.config(&["sh", "-c", "ls /sys/fs/cgroup; touch /sys/fs/cgroup/x 2>/dev/null && echo rw || echo ro"], |_| {});
    let out = w.run_ok();
    assert!(out.ends_with("ro\n"), "{out}");
    if pure_v2() {
        assert!(out.contains("cgroup.procs"), "{out}");
    } else {
        assert!(out.contains("memory") && out.contains("pids"), "{out}");
    }
    w.finish();
}

/// Unmounts a test's host-side mount when dropped (also when the test fails).
struct HostMount(std::path::PathBuf);
impl Drop for HostMount {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

#[test]
#[ignore = "needs root"]
fn recursive_mount_attributes_reach_submounts() {
    let mut w = World::new("rro");
    let vol = w.dir.join("vol");
    std::fs::create_dir_all(vol.join("sub")).unwrap();
    assert!(std::process::Command::new("mount")
        .args(["-t", "tmpfs", "rro-test", vol.join("sub").to_str().unwrap()])
        .status()
        .unwrap()
        .success());
    let guard = HostMount(vol.join("sub"));
    let probe = "for d in /a /a/sub /b /b/sub; do touch $d/x 2>/dev/null && echo $d rw || echo $d ro; done; \
                 awk '$5 == \"/b/sub\" { print $6 }' /proc/self/mountinfo";
    w.config(&["sh", "-c", probe], |c| {
        let m = c["mounts"].as_array_mut().unwrap();
        m.push(json!({"destination": "/a", "type": "bind", "source": vol.to_str().unwrap(), "options": ["rbind", "ro"]}));
        m.push(json!({"destination": "/b", "type": "bind", "source": vol.to_str().unwrap(), "options": ["rbind", "rro", "rnosuid", "rnoatime"]}));
    });
    let out = w.run_ok();
    let l: Vec<&str> = out.lines().collect();
    // Plain ro leaves the submount writable; rro reaches it.
    assert_eq!(&l[..4], &["/a ro", "/a/sub rw", "/b ro", "/b/sub ro"], "{out}");
    let opts: Vec<&str> = l[4].split(',').collect();
    for want in ["ro", "nosuid", "noatime"] {
        assert!(opts.contains(&want), "/b/sub lacks {want}: {out}");
    }
    let _ = std::fs::remove_file(vol.join("sub/x"));
    drop(guard);
    w.finish();
}

#[test]
#[ignore = "needs root"]
fn idmapped_bind_mounts_with_their_own_or_the_containers_mappings() {
    let mut w = World::new("idmap");
    let src = w.dir.join("owned");
    std::fs::create_dir_all(&src).unwrap();
    std::fs::write(src.join("f"), "x").unwrap(); // owned by 0:0
    w.config(&["stat", "-c", "%u %g", "/idm/f", "/plain/f"], |c| {
        let m = c["mounts"].as_array_mut().unwrap();
        m.push(json!({"destination": "/idm", "type": "bind", "source": src.to_str().unwrap(), "options": ["bind"],
            "uidMappings": [{"containerID": 0, "hostID": 1234, "size": 1}],
            "gidMappings": [{"containerID": 0, "hostID": 4321, "size": 1}]}));
        m.push(json!({"destination": "/plain", "type": "bind", "source": src.to_str().unwrap(), "options": ["bind"]}));
    });
    let (code, out, err) = w.run();
    let fs = String::from_utf8_lossy(&std::process::Command::new("stat").args(["-fc", "%T"]).arg(&src).output().unwrap().stdout)
        .trim()
        .to_string();
    if code != 0 && fs == "tmpfs" && !other_runtime() {
        // tmpfs supports idmapped mounts from Linux 6.3 on: the error must say so.
        says(&err, "the filesystem must support idmapped mounts");
        eprintln!("idmapped mounts: {fs} on this kernel refuses them ({err}); only the error path was checked");
        w.finish();
        return;
    }
    assert_eq!(code, 0, "{err}");
    assert_eq!(out, "1234 4321\n0 0\n");

    // A bare `idmap` option takes the container's user namespace mappings:
    // files owned by host root then belong to the container's root.
    w.config(&["stat", "-c", "%u %g", "/idm/f", "/plain/f"], |c| {
        c["linux"]["namespaces"].as_array_mut().unwrap().push(json!({"type": "user"}));
        c["linux"]["uidMappings"] = json!([{"containerID": 0, "hostID": 100000, "size": 65536}]);
        c["linux"]["gidMappings"] = json!([{"containerID": 0, "hostID": 100000, "size": 65536}]);
        let m = c["mounts"].as_array_mut().unwrap();
        m.push(json!({"destination": "/idm", "type": "bind", "source": src.to_str().unwrap(), "options": ["bind", "idmap"]}));
        m.push(json!({"destination": "/plain", "type": "bind", "source": src.to_str().unwrap(), "options": ["bind"]}));
    });
    let out = w.run_ok();
    assert_eq!(out, "0 0\n65534 65534\n");

    // Only bind mounts can be idmapped; a clear error otherwise.
    w.config(&["true"], |c| {
        c["mounts"].as_array_mut().unwrap().push(json!({"destination": "/t", "type": "tmpfs", "source": "tmpfs", "options": ["idmap"],
            "uidMappings": [{"containerID": 0, "hostID": 1234, "size": 1}], "gidMappings": [{"containerID": 0, "hostID": 1234, "size": 1}]}));
    });
    let (code, _, err) = w.run();
    assert_ne!(code, 0);
    says(&err, "only bind mounts can be idmapped");
    w.finish();
}

#[test]
#[ignore = "needs root"]
fn tmpcopyup_starts_a_tmpfs_with_the_images_files() {
    let mut w = World::new("copyup");
    let img = w.bundle.join("rootfs/srv/data");
    std::fs::create_dir_all(img.join("sub")).unwrap();
    std::fs::write(img.join("sub/file"), "from the image\n").unwrap();
    std::os::unix::fs::symlink("sub/file", img.join("link")).unwrap();
    std::os::unix::fs::chown(img.join("sub/file"), Some(1234), Some(4321)).unwrap();
    std::fs::set_permissions(&img, std::os::unix::fs::PermissionsExt::from_mode(0o1777)).unwrap();
    let probe = "cat /srv/data/link; stat -c '%u:%g' /srv/data/sub/file; stat -c '%a' /srv/data; \
                 echo new > /srv/data/new; awk '$5 == \"/srv/data\" { print $9 }' /proc/self/mountinfo";
    w.config(&["sh", "-c", probe], |c| {
        c["mounts"]
            .as_array_mut()
            .unwrap()
            .push(json!({"destination": "/srv/data", "type": "tmpfs", "source": "tmpfs", "options": ["tmpcopyup", "nosuid"]}));
    });
    let out = w.run_ok();
    assert_eq!(out, "from the image\n1234:4321\n1777\ntmpfs\n");
    // Writes went to the tmpfs, not to the image.
    assert!(!img.join("new").exists());
    w.finish();
}
