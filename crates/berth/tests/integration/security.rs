//! Attacks, performed for real: each test sets up the precondition an
//! attacker needs, checks that it was reached, then checks that the attack
//! had no effect. SECURITY.md lists the classes and these tests.
use crate::common::*;
use serde_json::json;
use std::fs;
use std::os::unix::fs::{symlink, MetadataExt, PermissionsExt};
use std::path::Path;

/// Run in the container: waits for a process whose command line starts
/// with /evil (a berth binary running inside the container), holds its
/// /proc/PID/exe open, lets it go on (it blocks opening the fifo /tmp/f),
/// then writes through the held fd once no process runs the binary any
/// more. Reports `held ...`, then `WROTE` or `refused: ...`.
const EXE_ATTACK: &str = r#"#!/bin/sh
i=0
while :; do
  for d in /proc/[0-9]*; do
    case "$(tr '\0' ' ' < $d/cmdline 2>/dev/null)" in /evil*) pid=${d#/proc/};; esac
  done
  [ -n "$pid" ] && break
  i=$((i+1)); [ $i -gt 1000 ] && { echo "no target"; exit 1; }
  sleep 0.01
done
exec 3< /proc/$pid/exe || { echo "cannot open /proc/$pid/exe"; exit 1; }
echo "held /proc/$pid/exe"
cat /tmp/f > /dev/null
i=0
while :; do
  err=$( { echo '#!/bin/sh' > /proc/self/fd/3; } 2>&1 ) && { echo "WROTE"; exit 0; }
  case "$err" in *busy*) ;; *) echo "refused: $err"; exit 0;; esac
  i=$((i+1)); [ $i -gt 1000 ] && { echo "still busy"; exit 1; }
  sleep 0.01
done
"#;

/// A rootfs where /evil is the runtime's own binary as the container sees
/// it (a symlink to /proc/self/exe), with the attack script and a fifo.
fn exe_attack_rootfs(w: &World) {
    let r = w.bundle.join("rootfs");
    symlink("/proc/self/exe", r.join("evil")).unwrap();
    fs::write(r.join("attack.sh"), EXE_ATTACK).unwrap();
    fs::set_permissions(r.join("attack.sh"), fs::Permissions::from_mode(0o755)).unwrap();
    let st = std::process::Command::new("mkfifo").arg(r.join("tmp/f")).status().unwrap();
    assert!(st.success());
}

/// What the attack reported, and whether the binary changed.
fn exe_attack_outcome(w: &World, copy: &Path, before: &[u8]) {
    let out = fs::read_to_string(w.bundle.join("rootfs/tmp/out")).unwrap_or_default();
    assert!(out.contains("held /proc/"), "the attack never held the runtime's exe: {out:?}");
    assert!(!out.contains("WROTE"), "the container wrote through the runtime's exe: {out:?}");
    assert!(out.contains("refused"), "{out:?}");
    says(&out, "Read-only file system");
    assert_eq!(fs::read(copy).unwrap(), before, "the runtime binary changed");
}

#[test]
#[ignore = "needs root"]
fn cve_2019_5736_exec_cannot_overwrite_the_runtime_binary() {
    let mut w = World::new("cve5736exec");
    let copy = w.use_copy();
    let before = fs::read(&copy).unwrap();
    exe_attack_rootfs(&w);
    w.config(&["sh", "-c", "/attack.sh > /tmp/out 2>&1; sleep 1000"], |_| {});
    let id = w.id();
    let b = w.bundle.to_string_lossy().into_owned();
    w.ok(&["run", "-d", "--bundle", &b, &id]);
    // The runtime runs /evil, that is itself, in the container; it blocks
    // on the fifo as its log file until the attacker holds its exe.
    let _ = w.berth(&["exec", &id, "/evil", "--log", "/tmp/f", "state", "x"]);
    assert!(eventually(|| fs::read_to_string(w.bundle.join("rootfs/tmp/out"))
        .is_ok_and(|o| o.contains("refused") || o.contains("WROTE") || o.contains("busy"))));
    exe_attack_outcome(&w, &copy, &before);
    w.finish();
}

#[test]
#[ignore = "needs root"]
fn cve_2019_5736_init_cannot_overwrite_the_runtime_binary() {
    // The attacker shares the PID namespace of a container whose init is
    // /evil (as the containers of a pod may): it sees that init run the
    // runtime's binary, and outlives it.
    let mut w = World::new("cve5736init");
    let copy = w.use_copy();
    let before = fs::read(&copy).unwrap();
    exe_attack_rootfs(&w);
    let b = w.bundle.to_string_lossy().into_owned();
    w.config(&["sleep", "1000"], |_| {});
    let attacker = w.id();
    w.ok(&["run", "-d", "--bundle", &b, &attacker]);
    let pid = w.state(&attacker)["pid"].as_i64().unwrap();
    w.config(&["/evil", "--log", "/tmp/f", "state", "x"], |c| {
        for n in c["linux"]["namespaces"].as_array_mut().unwrap() {
            if n["type"] == "pid" {
                n["path"] = json!(format!("/proc/{pid}/ns/pid"));
            }
        }
    });
    let victim = w.id();
    w.ok(&["run", "-d", "--bundle", &b, &victim]);
    let _ = w.berth(&["exec", &attacker, "sh", "-c", "/attack.sh > /tmp/out 2>&1"]);
    exe_attack_outcome(&w, &copy, &before);
    w.finish();
}

#[test]
#[ignore = "needs root"]
fn cve_2024_21626_cwd_through_an_inherited_fd_cannot_reach_the_host() {
    let mut w = World::new("cve21626");
    let b = w.bundle.to_string_lossy().into_owned();
    // Every fd number berth might hold during setup, as the cwd of the init
    // and of an exec'd process: none may give the container the host's
    // files. A magic link refused (ELOOP) shows that the fd was there.
    let mut held = 0;
    for n in 3..12 {
        w.config(&["sh", "-c", "pwd; ls ."], |c| c["process"]["cwd"] = json!(format!("/proc/self/fd/{n}")));
        let (code, out, err) = w.run();
        if code == 0 {
            // Listing a host /proc (its kcore, sysrq-trigger) or an
            // unreachable cwd: out of the container.
            let out_of_root =
                out.contains("(unreachable)") || out.lines().any(|l| matches!(l, "kcore" | "sysrq-trigger" | "self" | "thread-self"));
            assert!(!out_of_root, "fd {n}: the container's cwd is the host's: {out}");
            assert!(other_runtime(), "fd {n}: a cwd through a magic link was accepted: {out}");
        } else {
            says(&err, "cwd");
            if err.contains("symbolic links") {
                held += 1;
            }
        }
    }
    if !other_runtime() {
        assert!(held > 0, "no fd was open during setup: the test does not reach its precondition");
    }
    w.config(&["sleep", "1000"], |_| {});
    let id = w.id();
    w.ok(&["run", "-d", "--bundle", &b, &id]);
    for n in 3..12 {
        let cwd = format!("/proc/self/fd/{n}");
        let o = w.berth(&["exec", "--cwd", &cwd, &id, "sh", "-c", "pwd; cat /proc/1/comm"]);
        let out = String::from_utf8_lossy(&o.stdout);
        assert!(!out.contains("(unreachable)"), "exec with cwd fd {n} left the container: {out}");
    }
    // The process holds no fd but its stdio (ls opens its own for /proc/self/fd).
    let fds = w.ok(&["exec", &id, "ls", "/proc/self/fd"]);
    let fds: Vec<&str> = fds.split_whitespace().collect();
    assert!(fds.len() <= 4, "the exec'd process inherited fds: {fds:?}");
    w.finish();
}

#[test]
#[ignore = "needs root"]
fn cve_2025_31133_masked_paths_are_never_bound_from_an_image_dev_null() {
    let mut w = World::new("cve31133");
    let r = w.bundle.join("rootfs");
    // No /dev tmpfs: the image's /dev is used, and its /dev/null is a
    // symlink to a file of the image.
    fs::write(r.join("etc/planted"), "image file\n").unwrap();
    symlink("/etc/planted", r.join("dev/null")).unwrap();
    assert!(fs::symlink_metadata(r.join("dev/null")).unwrap().file_type().is_symlink());
    w.config(&["sh", "-c", "cat /proc/keys; echo end; stat -c %F /dev/null"], |c| {
        c["mounts"].as_array_mut().unwrap().retain(|m| {
            m["destination"] != "/dev"
                && m["destination"] != "/dev/pts"
                && m["destination"] != "/dev/shm"
                && m["destination"] != "/dev/mqueue"
        });
    });
    let (code, out, err) = w.run();
    if code == 0 {
        assert!(!out.contains("image file"), "a masked path shows the image's file: {out}");
        assert!(out.starts_with("end"), "/proc/keys is not masked: {out}");
        assert!(out.contains("character special"), "{out}");
    } else {
        says(&err, "/dev/null");
    }
    assert_eq!(fs::read_to_string(r.join("etc/planted")).unwrap(), "image file\n");
    w.finish();
}

#[test]
#[ignore = "needs root"]
fn device_setup_never_follows_an_image_symlink() {
    let mut w = World::new("devsymlink");
    let r = w.bundle.join("rootfs");
    for (dev, victim) in [("zero", "victim-zero"), ("fuse", "victim-fuse")] {
        fs::write(r.join("etc").join(victim), "secret\n").unwrap();
        fs::set_permissions(r.join("etc").join(victim), fs::Permissions::from_mode(0o600)).unwrap();
        symlink(format!("/etc/{victim}"), r.join("dev").join(dev)).unwrap();
    }
    w.config(&["sh", "-c", "stat -c '%F %t:%T' /dev/zero /dev/fuse"], |c| {
        c["mounts"].as_array_mut().unwrap().retain(|m| {
            m["destination"] != "/dev"
                && m["destination"] != "/dev/pts"
                && m["destination"] != "/dev/shm"
                && m["destination"] != "/dev/mqueue"
        });
        c["linux"]["devices"] =
            json!([{"type": "c", "path": "/dev/fuse", "major": 10, "minor": 229, "fileMode": 438, "uid": 1000, "gid": 1000}]);
    });
    let out = w.run_ok();
    assert!(out.lines().all(|l| l.starts_with("character special")), "{out}");
    for victim in ["victim-zero", "victim-fuse"] {
        let m = fs::metadata(r.join("etc").join(victim)).unwrap();
        assert_eq!(m.mode() & 0o7777, 0o600, "{victim}: its mode was changed through the symlink");
        assert_eq!((m.uid(), m.gid()), (0, 0), "{victim}: its owner was changed through the symlink");
        assert_eq!(fs::read_to_string(r.join("etc").join(victim)).unwrap(), "secret\n");
    }
    w.finish();
}

#[test]
#[ignore = "needs root"]
fn cve_2025_52565_a_dev_console_symlink_is_not_followed() {
    // No /dev tmpfs; the image's /dev/console points at a file of the image:
    // the pty must not be bound over that file.
    let mut w = World::new("cve52565");
    let r = w.bundle.join("rootfs");
    fs::write(r.join("etc/console-target"), "image file\n").unwrap();
    symlink("/etc/console-target", r.join("dev/console")).unwrap();
    assert!(fs::symlink_metadata(r.join("dev/console")).unwrap().file_type().is_symlink());
    w.config(&["sh", "-c", "cat /etc/console-target > /tmp/seen; stat -c %F /dev/console >> /tmp/seen"], |c| {
        c["mounts"].as_array_mut().unwrap().retain(|m| m["destination"] != "/dev");
        c["process"]["terminal"] = json!(true);
    });
    let sock = w.dir.join("console.sock");
    let listener = std::os::unix::net::UnixListener::bind(&sock).unwrap();
    let id = w.id();
    let b = w.bundle.to_string_lossy().into_owned();
    let s = sock.to_string_lossy().into_owned();
    let mut child = w.cmd().args(["run", "--console-socket", &s, "--bundle", &b, &id]).stdout(std::process::Stdio::null()).spawn().unwrap();
    let conn = accept_within(&listener, 10);
    let st = wait_within(&mut child, 20).expect("run did not end");
    drop(conn);
    assert!(st.success(), "run failed");
    let seen = fs::read_to_string(r.join("tmp/seen")).unwrap_or_default();
    assert!(seen.starts_with("image file"), "the image's file was covered by the pty: {seen:?}");
    assert_eq!(fs::read_to_string(r.join("etc/console-target")).unwrap(), "image file\n");
    w.finish();
}

#[test]
#[ignore = "needs root"]
fn cve_2022_29162_exec_cap_does_not_fill_the_inheritable_set() {
    let mut w = World::new("cve29162");
    let b = w.bundle.to_string_lossy().into_owned();
    w.config(&["sleep", "1000"], |_| {});
    let id = w.id();
    w.ok(&["run", "-d", "--bundle", &b, &id]);
    let status = w.ok(&["exec", "--cap", "CAP_SYS_ADMIN", &id, "cat", "/proc/self/status"]);
    let field = |name: &str| u64::from_str_radix(status.lines().find_map(|l| l.strip_prefix(name)).unwrap().trim(), 16).unwrap();
    // CAP_SYS_ADMIN is 21: granted where asked, never inheritable.
    assert_ne!(field("CapEff:") & (1 << 21), 0, "--cap was not applied: {status}");
    assert_eq!(field("CapInh:"), 0, "{status}");
    assert_eq!(field("CapAmb:") & (1 << 21), 0, "{status}");
    w.finish();
}

#[test]
#[ignore = "needs root"]
fn sysctls_outside_the_containers_own_namespaces_are_refused() {
    let mut w = World::new("sysctlhost");
    let host_swappiness = fs::read_to_string("/proc/sys/vm/swappiness").unwrap();
    let want = if host_swappiness.trim() == "17" { "18" } else { "17" };
    let cases: &[(&str, &str, &[&str], &str)] = &[
        ("vm.swappiness", want, &["pid", "network", "ipc", "uts", "mount"], "is not in a separate kernel namespace"),
        ("kernel.hostname", "x", &["pid", "network", "ipc", "uts", "mount"], "conflicts with the OCI"),
        ("net.ipv4.ip_forward", "1", &["pid", "ipc", "uts", "mount"], "network namespace"),
        ("kernel.shmmax", "4096", &["pid", "network", "uts", "mount"], "ipc namespace"),
        ("fs.mqueue.msg_max", "20", &["pid", "network", "uts", "mount"], "ipc namespace"),
        ("kernel.domainname", "x", &["pid", "network", "ipc", "mount"], "uts namespace"),
    ];
    // Against a runtime that writes it after all, the host's value is put
    // back (also when an assertion fails) before the test fails.
    struct Restore(String);
    impl Drop for Restore {
        fn drop(&mut self) {
            if fs::read_to_string("/proc/sys/vm/swappiness").is_ok_and(|v| v != self.0) {
                let _ = fs::write("/proc/sys/vm/swappiness", &self.0);
            }
        }
    }
    let _restore = Restore(host_swappiness.clone());
    for (key, value, nss, why) in cases {
        w.config(&["true"], |c| {
            c["linux"]["sysctl"] = json!({ *key: value });
            c["linux"]["namespaces"] = json!(nss.iter().map(|n| json!({"type": n})).collect::<Vec<_>>());
            if !nss.contains(&"uts") {
                c.as_object_mut().unwrap().remove("hostname");
            }
        });
        let (code, _, err) = w.run();
        assert_ne!(code, 0, "sysctl {key} was accepted");
        says(&err, key);
        says(&err, why);
    }
    assert_eq!(fs::read_to_string("/proc/sys/vm/swappiness").unwrap(), host_swappiness, "the host's vm.swappiness changed");
    // In namespaces of its own they are set, there only.
    w.config(&["sh", "-c", "cat /proc/sys/kernel/shmmax /proc/sys/net/ipv4/ip_forward /proc/sys/kernel/domainname"], |c| {
        c["linux"]["sysctl"] = json!({"kernel.shmmax": "4096", "net.ipv4.ip_forward": "1", "kernel.domainname": "berth.test"});
    });
    assert_eq!(w.run_ok().split_whitespace().collect::<Vec<_>>(), ["4096", "1", "berth.test"]);
    w.finish();
}

#[test]
#[ignore = "needs root"]
fn cve_2025_52881_a_sysctl_write_is_not_redirected_by_a_mount_over_proc() {
    // A volume is mounted over the /proc file that a sysctl names: the
    // write must reach procfs (or fail), never the volume's file.
    let mut w = World::new("cve52881");
    let vol = w.dir.join("volume-file");
    fs::write(&vol, "volume\n").unwrap();
    let v = vol.to_string_lossy().into_owned();
    w.config(&["cat", "/proc/sys/net/core/somaxconn"], |c| {
        c["mounts"]
            .as_array_mut()
            .unwrap()
            .push(json!({"destination": "/proc/sys/net/core/somaxconn", "type": "bind", "source": v, "options": ["bind"]}));
        c["linux"]["sysctl"] = json!({"net.core.somaxconn": "1234"});
        c["linux"]["readonlyPaths"] = json!([]);
    });
    let (code, out, err) = w.run();
    // Precondition: the container sees the volume's file there.
    if code == 0 {
        assert_eq!(out.trim(), "volume", "the mount over /proc was not in place: {out}");
    } else {
        says(&err, "somaxconn");
    }
    assert_eq!(fs::read_to_string(&vol).unwrap(), "volume\n", "the sysctl was written into the volume");
    w.finish();
}

#[test]
#[ignore = "needs root"]
fn exec_into_a_container_without_a_mount_namespace_is_chrooted_into_it() {
    let mut w = World::new("execnomntns");
    let b = w.bundle.to_string_lossy().into_owned();
    fs::write(w.bundle.join("rootfs/marker"), "inside\n").unwrap();
    // A file only the host has: the exec'd process must not see it.
    let host_only = w.dir.join("host-only");
    fs::write(&host_only, "host\n").unwrap();
    w.config(&["sleep", "1000"], |c| c["linux"]["namespaces"].as_array_mut().unwrap().retain(|n| n["type"] != "mount"));
    let id = w.id();
    w.ok(&["run", "-d", "--bundle", &b, &id]);
    let hp = host_only.to_string_lossy().into_owned();
    let out = w.ok(&["exec", &id, "sh", "-c", &format!("cat /marker; test -e {hp} && echo HOST || echo no-host")]);
    assert_eq!(out.split_whitespace().collect::<Vec<_>>(), ["inside", "no-host"], "{out}");
    w.finish();
}

#[test]
#[ignore = "needs root"]
fn uid_and_gid_minus_one_are_refused() {
    let mut w = World::new("uidminus1");
    for (field, v) in [("uid", 4294967295u64), ("gid", 4294967295)] {
        w.config(&["id"], |c| c["process"]["user"][field] = json!(v));
        let (code, out, err) = w.run();
        assert_ne!(code, 0, "{field} -1 ran as: {out}");
        says(&err, "4294967295");
    }
    w.config(&["id"], |c| c["process"]["user"]["additionalGids"] = json!([4294967295u64]));
    let (code, _, _) = w.run();
    assert_ne!(code, 0);
    // Out of range: a clear error too.
    w.config(&["id"], |c| c["process"]["user"]["uid"] = json!(4294967296u64));
    let (code, _, err) = w.run();
    assert_ne!(code, 0);
    assert!(err.lines().count() <= 2 && !err.contains("panicked"), "{err}");
    let b = w.bundle.to_string_lossy().into_owned();
    w.config(&["sleep", "1000"], |_| {});
    let id = w.id();
    w.ok(&["run", "-d", "--bundle", &b, &id]);
    let o = w.berth(&["exec", "--user", "4294967295", &id, "id", "-u"]);
    assert!(!o.status.success() || String::from_utf8_lossy(&o.stdout).trim() != "0", "exec --user -1 ran as root");
    w.finish();
}

#[test]
#[ignore = "needs root"]
fn a_cgroups_path_naming_a_shared_cgroup_is_refused() {
    if berth_only() {
        return;
    }
    // A runtime that took such a path would kill, freeze and thaw everything
    // in it at the container's end (or at a failed create): so this runs in
    // a jail, a cgroup of the test's that is the root of a cgroup namespace
    // of its own (with the hierarchies mounted again inside it) and a PID
    // namespace of its own. Even a runtime that takes "/" reaches only the
    // jail's processes.
    let w = World::new("cgshared");
    let layout = berth_cgroups::Layout::host().unwrap();
    let own = berth_cgroups::parse_proc_cgroup(&fs::read_to_string("/proc/self/cgroup").unwrap());
    let jail_path = format!("/berth-tests/jail-{}", std::process::id());
    let mut jail = berth_cgroups::Cgroup::resolve(&layout, &jail_path, &own);
    jail.plan();
    jail.create().unwrap();
    let mut script = String::from("set -e\nfor f in $JAIL; do echo $$ > $f/cgroup.procs; done\nexec /usr/bin/unshare --cgroup --pid --fork --mount-proc --mount --propagation private sh -c '\nset -e\nmount -t tmpfs jail /sys/fs/cgroup\n");
    for h in &layout.hierarchies {
        let rel = h.mount.strip_prefix("/sys/fs/cgroup").unwrap_or_else(|_| Path::new("unified"));
        let at = Path::new("/sys/fs/cgroup").join(rel);
        if h.v2 {
            script += &format!("mkdir -p {0}; mount -t cgroup2 cgroup2 {0}\n", at.display());
        } else {
            script += &format!("mkdir -p {0}; mount -t cgroup -o {1} cgroup {0}\n", at.display(), h.controllers.join(","));
        }
    }
    // Precondition: "/" and "." name a cgroup with processes in it.
    let first = layout.hierarchies[0].mount.strip_prefix("/sys/fs/cgroup").map(Path::to_path_buf).unwrap_or_default();
    script += &format!("echo procs $(wc -l < /sys/fs/cgroup/{}/cgroup.procs)\n", first.display());
    let b = w.bundle.to_string_lossy().into_owned();
    let root = w.root.to_string_lossy().into_owned();
    for (i, path) in ["/", ".", "//", "./", "/."].iter().enumerate() {
        w.config(&["true"], |c| c["linux"]["cgroupsPath"] = json!(path));
        fs::copy(w.bundle.join("config.json"), w.dir.join(format!("config{i}.json"))).unwrap();
        script += &format!("cp {dir}/config{i}.json {b}/config.json\nif {rt} --root {root} create --bundle {b} jailed{i} 2>{dir}/err{i}; then echo accepted{i}; else echo refused{i}; fi\n", dir = w.dir.display(), rt = runtime());
    }
    script += "'\n";
    let dirs: Vec<String> = jail.dirs.iter().map(|d| d.path.to_string_lossy().into_owned()).collect();
    let o = std::process::Command::new("sh").arg("-c").arg(&script).env("JAIL", dirs.join(" ")).output().unwrap();
    let out = String::from_utf8_lossy(&o.stdout).into_owned();
    assert!(eventually(|| jail.remove().is_ok()), "the jail cgroup could not be removed");
    assert!(o.status.success(), "the jail failed: {}", String::from_utf8_lossy(&o.stderr));
    let procs: usize = out.lines().find_map(|l| l.strip_prefix("procs ")).and_then(|n| n.trim().parse().ok()).unwrap_or(0);
    assert!(procs > 0, "the jail's root cgroup had no process: {out}");
    for (i, path) in ["/", ".", "//", "./", "/."].iter().enumerate() {
        let err = fs::read_to_string(w.dir.join(format!("err{i}"))).unwrap_or_default();
        assert!(out.contains(&format!("refused{i}")), "cgroupsPath {path:?} was accepted: {out}");
        says(&err, "cgroupsPath");
        assert!(!w.root.join(format!("jailed{i}")).exists(), "state left for cgroupsPath {path:?}");
    }
    w.finish();
}

#[test]
#[ignore = "needs root"]
fn a_cgroup_that_already_has_processes_is_refused() {
    if berth_only() {
        return;
    }
    let mut w = World::new("cgbusy");
    let b = w.bundle.to_string_lossy().into_owned();
    let id = w.id();
    // A cgroup of the test's, with a process of the test's in it.
    let layout = berth_cgroups::Layout::host().unwrap();
    let own = berth_cgroups::parse_proc_cgroup(&fs::read_to_string("/proc/self/cgroup").unwrap());
    let mut cg = berth_cgroups::Cgroup::resolve(&layout, &format!("/berth-tests/{id}"), &own);
    cg.plan();
    cg.create().unwrap();
    let mut sleeper = std::process::Command::new("sleep").arg("1000").spawn().unwrap();
    cg.add_pid(sleeper.id().cast_signed(), true, true).unwrap();
    w.config(&["true"], |c| c["linux"]["cgroupsPath"] = json!(format!("/berth-tests/{id}")));
    let o = w.berth(&["create", "--bundle", &b, &id]);
    let err = String::from_utf8_lossy(&o.stderr).into_owned();
    let alive = sleeper.try_wait().unwrap().is_none();
    let _ = sleeper.kill();
    let _ = sleeper.wait();
    assert!(!o.status.success(), "a cgroup with a process in it was accepted");
    says(&err, "container's cgroup is not empty");
    assert!(alive, "the process in the cgroup was harmed");
    assert!(eventually(|| cg.remove().is_ok()));
    w.finish();
}

#[test]
#[ignore = "needs root"]
fn the_leak_check_cannot_be_fooled_by_a_process_named_berth() {
    if berth_only() {
        return;
    }
    // A container without a mount namespace has its mounts in the caller's;
    // a process that calls itself "berth" clones that namespace and keeps
    // the copy: delete must see it as the copy it is, and detach it there.
    let mut w = World::new("leakname");
    let b = w.bundle.to_string_lossy().into_owned();
    w.config(&["sleep", "1000"], |c| c["linux"]["namespaces"].as_array_mut().unwrap().retain(|n| n["type"] != "mount"));
    let id = w.id();
    w.ok(&["run", "-d", "--bundle", &b, &id]);
    // It names itself (as any process may, through /proc/self/comm), then
    // waits on its stdin: no child of its own.
    let mut holder = std::process::Command::new("/usr/bin/unshare")
        .args(["-m", "--propagation", "private", "sh", "-c", "echo -n berth > /proc/$$/comm; read x"])
        .stdin(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let pid = holder.id();
    let rootfs = w.bundle.join("rootfs").to_string_lossy().into_owned();
    assert!(
        eventually(|| fs::read_to_string(format!("/proc/{pid}/comm")).is_ok_and(|c| c.trim() == "berth")
            && fs::read_to_string(format!("/proc/{pid}/mountinfo")).is_ok_and(|m| m.contains(&rootfs))),
        "the holder never held a copy"
    );
    let o = w.berth(&["delete", "--force", &id]);
    let err = String::from_utf8_lossy(&o.stderr).into_owned();
    let left = fs::read_to_string(format!("/proc/{pid}/mountinfo")).unwrap_or_default();
    let _ = holder.kill();
    let _ = holder.wait();
    assert!(o.status.success(), "{err}");
    says(&err, &format!("detached a copy of its mounts that pid {pid} (berth)"));
    assert!(!left.lines().any(|l| l.split(' ').nth(4).is_some_and(|p| p.starts_with(&rootfs))), "the copy stayed: {left}");
    w.finish();
}

#[test]
#[ignore = "needs root"]
fn cve_2021_30465_a_mount_target_swapped_to_a_symlink_stays_inside_the_rootfs() {
    // While containers are created with a tmpfs on /mnt/a/b, a racing
    // thread flips /mnt/a between a directory and a symlink out of the
    // rootfs (absolute, and through ..): the mount must never land outside.
    let mut w = World::new("cve30465");
    let r = w.bundle.join("rootfs");
    let outside = w.dir.join("outside");
    fs::create_dir_all(outside.join("b")).unwrap();
    fs::write(outside.join("b/host-file"), "host\n").unwrap();
    fs::create_dir_all(r.join("mnt")).unwrap();
    w.config(&["sh", "-c", "ls /mnt/a/b; cat /proc/self/mountinfo"], |c| {
        c["mounts"]
            .as_array_mut()
            .unwrap()
            .push(json!({"destination": "/mnt/a/b", "type": "tmpfs", "source": "tmpfs", "options": ["size=64k"]}));
    });
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let (s, mnt, out) = (stop.clone(), r.join("mnt"), outside.clone());
    let flipper = std::thread::spawn(move || {
        let targets = [out.to_string_lossy().into_owned(), format!("../../../../../../../../..{}", out.display())];
        let mut i = 0;
        while !s.load(std::sync::atomic::Ordering::Relaxed) {
            let a = mnt.join("a");
            let _ = fs::remove_dir_all(&a).or_else(|_| fs::remove_file(&a));
            if i % 3 == 0 {
                let _ = fs::create_dir_all(a.join("b"));
            } else {
                let _ = symlink(&targets[i % 2], &a);
            }
            i += 1;
            std::thread::sleep(std::time::Duration::from_micros(200));
        }
    });
    let mut ran = 0;
    for _ in 0..20 {
        let (code, out, _) = w.run();
        if code == 0 {
            ran += 1;
            assert!(!out.contains("host-file"), "the container saw the host's directory: {out}");
        }
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    flipper.join().unwrap();
    assert!(ran > 0, "no run got through the race");
    assert_eq!(fs::read_dir(outside.join("b")).unwrap().count(), 1, "something was made outside the rootfs");
    w.finish();
}

#[test]
#[ignore = "needs root"]
fn the_binary_protection_has_a_sealed_memfd_where_the_mount_api_is_denied() {
    if berth_only() {
        return;
    }
    // Here: a read-only clone of the binary. In a user namespace of its own
    // berth may not clone mounts of the host's namespace: a sealed memfd.
    let w = World::new("exeprotect");
    let root = w.root.to_string_lossy().into_owned();
    let o = std::process::Command::new(runtime()).args(["--debug", "--root", &root, "exec", "nosuch", "true"]).output().unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("re-executed from a read-only mount copy"), "{err}");
    let o = std::process::Command::new("/usr/bin/unshare")
        .args(["-U", "-r"])
        .arg(runtime())
        .args(["--debug", "--root", &root, "exec", "nosuch", "true"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("re-executed from a sealed memfd copy"), "{err}");
    assert!(err.contains("does not exist"), "{err}");
    w.finish();
}

#[test]
#[ignore = "needs root"]
fn a_seccomp_profile_without_openat2_still_runs_a_non_root_process() {
    // The cwd is entered again as the user after the filter is loaded
    // (without no_new_privileges it loads first): that second entry may not
    // need openat2, which older profiles refuse.
    let mut w = World::new("seccompnoopenat2");
    w.config(&["pwd"], |c| {
        c["process"]["user"] = json!({"uid": 1000, "gid": 1000});
        c["process"]["noNewPrivileges"] = json!(false);
        c["linux"]["seccomp"] =
            json!({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["openat2"], "action": "SCMP_ACT_ERRNO"}]});
    });
    assert_eq!(w.run_ok().trim(), "/");
    w.finish();
}
