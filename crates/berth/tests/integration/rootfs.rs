use crate::common::*;
use serde_json::json;

#[test]
fn default_devices_and_dev_symlinks() {
    if not_root() {
        return;
    }
    let mut w = World::new("devices");
    w.config(&["sh", "-c", "for d in null zero full random urandom tty; do stat -c '%n %t:%T %a' /dev/$d; done; readlink /dev/ptmx; readlink /dev/fd; readlink /dev/stdin; echo x > /dev/null && head -c 3 /dev/zero | wc -c"], |_| {});
    let out = w.run_ok();
    for want in ["/dev/null 1:3 666", "/dev/zero 1:5 666", "/dev/full 1:7 666", "/dev/random 1:8 666", "/dev/urandom 1:9 666", "/dev/tty 5:0 666", "pts/ptmx", "/proc/self/fd", "/proc/self/fd/0"] {
        assert!(out.contains(want), "missing {want:?} in {out}");
    }
    assert!(out.trim_end().ends_with('3'));
    w.finish();
}

#[test]
fn linux_devices_are_created_with_mode_and_owner() {
    if not_root() {
        return;
    }
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
fn masked_and_readonly_paths() {
    if not_root() {
        return;
    }
    let mut w = World::new("masked");
    w.config(&["sh", "-c", "wc -c < /proc/timer_list; ls /sys/firmware | wc -l; echo 1 > /proc/sys/kernel/domainname && echo writable || echo ro"], |_| {});
    let out = w.run_ok();
    let l: Vec<&str> = out.lines().collect();
    assert_eq!(l.len(), 3, "{out}");
    assert_eq!(l[0].trim(), "0", "timer_list not masked");
    assert_eq!(l[1].trim(), "0", "firmware not masked");
    assert_eq!(l[2], "ro");
    w.finish();
}

#[test]
fn readonly_root_and_tmpfs_and_bind_mounts() {
    if not_root() {
        return;
    }
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
fn symlinks_in_the_rootfs_cannot_point_mounts_outside() {
    if not_root() {
        return;
    }
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
fn sysctl_is_written_in_the_container() {
    if not_root() {
        return;
    }
    let mut w = World::new("sysctl");
    w.config(&["cat", "/proc/sys/net/ipv4/ip_forward", "/proc/sys/kernel/msgmax"], |c| {
        c["linux"]["sysctl"] = json!({"net.ipv4.ip_forward": "1", "kernel.msgmax": "12345"});
    });
    assert_eq!(w.run_ok(), "1\n12345\n");
    w.finish();
}

#[test]
fn no_pivot_uses_move_and_chroot() {
    if not_root() {
        return;
    }
    let mut w = World::new("nopivot");
    w.config(&["sh", "-c", "ls /bin/busybox"], |_| {});
    let id = w.id();
    let bundle = w.bundle.to_string_lossy().into_owned();
    let out = w.ok(&["run", "--no-pivot", "--bundle", &bundle, &id]);
    assert_eq!(out, "/bin/busybox\n");
    w.finish();
}

#[test]
fn rootfs_propagation_is_applied() {
    if not_root() {
        return;
    }
    let mut w = World::new("propagation");
    w.config(&["awk", "$5 == \"/\"", "/proc/self/mountinfo"], |c| {
        c["linux"]["rootfsPropagation"] = json!("shared");
    });
    let out = w.run_ok();
    assert!(out.contains("shared:"), "{out}");
    w.finish();
}

#[test]
fn cgroup_mount_shows_the_containers_own_cgroup() {
    if not_root() {
        return;
    }
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
