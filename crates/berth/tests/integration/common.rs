//! Test harness: real containers from a busybox rootfs, each test with its
//! own bundle, state root and container IDs, and a leak check at the end.

use serde_json::{json, Value};
use std::fs;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};

/// The runtime under test: berth, or any runc-compatible binary named by
/// BERTH_TEST_RUNTIME (the runtime-neutral tests also run against runc, to
/// prove the tests themselves).
pub fn runtime() -> String {
    std::env::var("BERTH_TEST_RUNTIME").unwrap_or_else(|_| env!("CARGO_BIN_EXE_berth").to_string())
}

/// BERTH_TEST_ENOSYS=call,call...: every runtime command runs under the
/// `enosys` example (crates/sys/examples), which makes those system calls
/// fail with ENOSYS, so the fallbacks for older kernels are exercised here.
pub fn enosys() -> Option<(PathBuf, String)> {
    let calls = std::env::var("BERTH_TEST_ENOSYS").ok().filter(|c| !c.is_empty())?;
    Some((enosys_wrapper(), calls))
}

/// The `enosys` example, built beside the berth binary by `cargo test`
/// (and copied into the VM beside it).
pub fn enosys_wrapper() -> PathBuf {
    Path::new(env!("CARGO_BIN_EXE_berth")).with_file_name("examples").join("enosys")
}

/// True when testing another runtime than berth.
pub fn other_runtime() -> bool {
    std::env::var_os("BERTH_TEST_RUNTIME").is_some()
}

/// For tests of what only berth does: skipped (true) for other runtimes.
pub fn berth_only() -> bool {
    if other_runtime() {
        eprintln!("skipped: berth-only");
        return true;
    }
    false
}

/// BERTH_TEST_CGROUP_DRIVER=systemd: every command runs with
/// `--systemd-cgroup` and each container's cgroupsPath is
/// `system.slice:berth-test:ID` (the systemd VM tier, tests/vm/run-systemd).
pub fn systemd_driver() -> bool {
    std::env::var("BERTH_TEST_CGROUP_DRIVER").is_ok_and(|d| d == "systemd")
}

/// The driver's global flag, for tests that write a runtime command line
/// themselves.
pub fn driver_flag() -> &'static str {
    if systemd_driver() {
        " --systemd-cgroup"
    } else {
        ""
    }
}

/// For tests of cgroupfs paths (a cgroupsPath of their own): skipped
/// (true) under the systemd driver.
pub fn cgroupfs_only() -> bool {
    if systemd_driver() {
        eprintln!("skipped: a cgroupfs path (the systemd driver takes slice:prefix:name)");
        return true;
    }
    false
}

/// The systemd unit of container `id` under the systemd driver.
pub fn unit_of(id: &str) -> berth_cgroups::systemd::Unit {
    berth_cgroups::systemd::unit_for(&format!("system.slice:berth-test:{id}"), id).unwrap()
}

/// Asserts that an error message says `needle`; berth's wording only.
pub fn says(msg: &str, needle: &str) {
    if !other_runtime() {
        assert!(msg.contains(needle), "expected {needle:?} in: {msg}");
    }
}

static SEQ: AtomicUsize = AtomicUsize::new(0);

fn busybox() -> PathBuf {
    for p in ["/bin/busybox", "/usr/bin/busybox"] {
        if Path::new(p).exists() {
            return PathBuf::from(p);
        }
    }
    panic!("busybox not found: install busybox-static");
}

const APPLETS: &[&str] = &[
    "sh", "ls", "cat", "echo", "id", "sleep", "true", "false", "hostname", "ps", "mount", "grep", "stat", "touch", "mkdir", "readlink",
    "ulimit", "umask", "wc", "head", "tail", "tty", "kill", "test", "ip", "env", "pwd", "dd", "uname", "awk", "cut", "tr", "nproc", "find",
    "rm", "chmod", "date", "seq", "pidof", "sysctl", "printf", "mknod", "ln", "yes", "xargs", "sort", "stty",
];

/// One test's world: a bundle with its own rootfs, a private --root.
pub struct World {
    pub name: String,
    pub dir: PathBuf,
    pub root: PathBuf,
    pub bundle: PathBuf,
    pub ids: Vec<String>,
    /// The config has no cgroupsPath of the test's own: each container gets one.
    auto_cgroup: std::cell::Cell<bool>,
    /// Another copy of the runtime's binary to run (see [`World::use_copy`]).
    binary: Option<PathBuf>,
    /// System calls made to fail with ENOSYS for this world's commands
    /// (besides BERTH_TEST_ENOSYS's).
    pub enosys: Option<String>,
}

impl World {
    pub fn new(name: &str) -> World {
        let n = SEQ.fetch_add(1, Ordering::SeqCst);
        // Under the system's temp dir, not the build tree: containers with a
        // user namespace run as a mapped uid that must be able to traverse
        // every parent of the rootfs, and a clone may sit in a 0700 dir.
        let base = std::env::temp_dir().join("berth-tests");
        fs::create_dir_all(&base).unwrap();
        std::fs::set_permissions(&base, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
        let dir = base.join(format!("{name}-{}-{n}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        let bundle = dir.join("bundle");
        let rootfs = bundle.join("rootfs");
        for d in ["bin", "proc", "sys", "dev", "tmp", "etc", "root"] {
            fs::create_dir_all(rootfs.join(d)).unwrap();
        }
        fs::copy(busybox(), rootfs.join("bin/busybox")).unwrap();
        for a in APPLETS {
            symlink("busybox", rootfs.join("bin").join(a)).unwrap();
        }
        fs::write(rootfs.join("etc/passwd"), "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/sh\n").unwrap();
        fs::write(rootfs.join("etc/group"), "root:x:0:\n").unwrap();
        let root = dir.join("state");
        let w = World {
            name: name.to_string(),
            dir,
            root,
            bundle,
            ids: vec![],
            auto_cgroup: std::cell::Cell::new(true),
            binary: None,
            enosys: None,
        };
        w.write_config(&w.default_config(&["true"]));
        w
    }

    /// runc's default config (as `berth spec` writes it), without a
    /// terminal or ambient capabilities, with a writable root, running `args`.
    pub fn default_config(&self, args: &[&str]) -> Value {
        let mut v = berth_runtime::config::default_spec_json(false);
        v["process"]["terminal"] = json!(false);
        v["process"]["args"] = json!(args);
        v["process"]["env"] = json!(["PATH=/bin", "TERM=xterm"]);
        v["process"]["capabilities"].as_object_mut().unwrap().remove("ambient");
        v["root"]["readonly"] = json!(false);
        v["hostname"] = json!("berth-test");
        v
    }

    pub fn write_config(&self, v: &Value) {
        self.auto_cgroup.set(v.get("linux").is_some_and(|l| l.get("cgroupsPath").is_none()));
        fs::write(self.bundle.join("config.json"), serde_json::to_vec_pretty(v).unwrap()).unwrap();
    }

    /// Edits the config with `f`, starting from the default running `args`.
    pub fn config(&self, args: &[&str], f: impl FnOnce(&mut Value)) {
        let mut v = self.default_config(args);
        f(&mut v);
        self.write_config(&v);
    }

    /// `delete --force`, then (berth) `gc --wait`: where cgroup removal is
    /// deferred to the reaper, the cgroup is gone only after that.
    pub fn delete_and_reap(&self, id: &str) {
        self.ok(&["delete", "--force", id]);
        if !other_runtime() {
            self.ok(&["gc", "--wait"]);
        }
    }

    /// Where this test's writable layers live: beside its bundle, or under
    /// $BERTH_TEST_STORAGE when the temp dir is a tmpfs shared with --root
    /// (the VM), which berth refuses for layers.
    pub fn storage(&self) -> PathBuf {
        match std::env::var_os("BERTH_TEST_STORAGE") {
            Some(s) => PathBuf::from(s).join(self.dir.file_name().unwrap()),
            None => self.dir.join("storage"),
        }
    }

    /// A fresh container ID for this test.
    pub fn id(&mut self) -> String {
        let id =
            format!("t{}-{}-{}", std::process::id(), SEQ.fetch_add(1, Ordering::SeqCst), self.name.chars().take(20).collect::<String>());
        self.ids.push(id.clone());
        self.set_cgroup(&id);
        id
    }

    /// Runs a private copy of the runtime's binary from now on (for attacks
    /// on the binary itself); returns its path.
    pub fn use_copy(&mut self) -> PathBuf {
        let p = self.dir.join("runtime-copy");
        fs::copy(runtime(), &p).unwrap();
        self.binary = Some(p.clone());
        p
    }

    pub fn cmd(&self) -> Command {
        let bin = self.binary.clone().unwrap_or_else(|| PathBuf::from(runtime()));
        let calls = enosys().map(|(_, c)| c).into_iter().chain(self.enosys.clone()).collect::<Vec<_>>().join(",");
        let mut c = match (!calls.is_empty()).then(|| (enosys_wrapper(), calls)) {
            // The ENOSYS tier: the runtime under a filter that makes those
            // calls fail as on a kernel without them.
            Some((wrapper, calls)) => {
                let mut c = Command::new(wrapper);
                c.arg(calls).arg(bin);
                c
            }
            None => Command::new(bin),
        };
        c.arg("--root").arg(&self.root);
        if systemd_driver() {
            c.arg("--systemd-cgroup");
        }
        // Deferred cgroups (the VM's auto mode) in short batches.
        c.env("BERTH_REAP_WINDOW_MS", "20");
        if !other_runtime() {
            // Writable layers of this test only, on the disk (not a tmpfs).
            c.arg("--storage").arg(self.storage());
        }
        c.stdin(Stdio::null());
        c
    }

    /// Runs berth with `args` and returns its output.
    /// Runs berth with `args` and returns its output. stdout and stderr go
    /// to files, not pipes: a created container inherits them and keeps
    /// them open, and a pipe would then never reach EOF.
    pub fn berth(&self, args: &[&str]) -> Output {
        let n = SEQ.fetch_add(1, Ordering::SeqCst);
        let (op, ep) = (self.dir.join(format!("out.{n}")), self.dir.join(format!("err.{n}")));
        let status = self
            .cmd()
            .args(args)
            .stdout(fs::File::create(&op).unwrap())
            .stderr(fs::File::create(&ep).unwrap())
            .status()
            .expect("run berth");
        let o = Output { status, stdout: fs::read(&op).unwrap_or_default(), stderr: fs::read(&ep).unwrap_or_default() };
        let _ = fs::remove_file(&op);
        let _ = fs::remove_file(&ep);
        o
    }

    /// Runs berth, asserting success.
    pub fn ok(&self, args: &[&str]) -> String {
        let o = self.berth(args);
        assert!(o.status.success(), "berth {args:?} failed: {}", String::from_utf8_lossy(&o.stderr));
        String::from_utf8_lossy(&o.stdout).into_owned()
    }

    /// Runs berth, asserting failure; returns stderr.
    pub fn fails(&self, args: &[&str]) -> String {
        let o = self.berth(args);
        assert!(!o.status.success(), "berth {args:?} should have failed; stdout: {}", String::from_utf8_lossy(&o.stdout));
        String::from_utf8_lossy(&o.stderr).into_owned()
    }

    /// Points the config's cgroupsPath at `/berth-tests/ID` (absolute: every
    /// runtime reads it the same way), so the tests know where to look.
    pub fn set_cgroup(&self, id: &str) {
        let p = self.bundle.join("config.json");
        let Ok(mut v) = serde_json::from_slice::<Value>(&fs::read(&p).unwrap()) else { return };
        if self.auto_cgroup.get() && v.get("linux").is_some() {
            let path = if systemd_driver() { format!("system.slice:berth-test:{id}") } else { format!("/berth-tests/{id}") };
            v["linux"]["cgroupsPath"] = json!(path);
            fs::write(&p, serde_json::to_vec_pretty(&v).unwrap()).unwrap();
        }
    }

    /// `run` in the foreground: (exit code, stdout, stderr).
    pub fn run(&mut self) -> (i32, String, String) {
        let id = self.id();
        let bundle = self.bundle.to_string_lossy().into_owned();
        let o = self.berth(&["run", "--bundle", &bundle, &id]);
        (o.status.code().unwrap_or(-1), String::from_utf8_lossy(&o.stdout).into_owned(), String::from_utf8_lossy(&o.stderr).into_owned())
    }

    /// `run`, asserting exit 0; returns stdout.
    pub fn run_ok(&mut self) -> String {
        let (code, out, err) = self.run();
        assert_eq!(code, 0, "container failed: stdout {out:?} stderr {err:?}");
        out
    }

    /// `create` a container; returns its ID.
    pub fn create(&mut self) -> String {
        let id = self.id();
        let bundle = self.bundle.to_string_lossy().into_owned();
        self.ok(&["create", "--bundle", &bundle, &id]);
        id
    }

    pub fn state(&self, id: &str) -> Value {
        serde_json::from_str(&self.ok(&["state", id])).unwrap()
    }

    pub fn status(&self, id: &str) -> String {
        self.state(id)["status"].as_str().unwrap().to_string()
    }

    /// The cgroup directories berth would use for container `id`.
    pub fn cgroup_dirs(&self, id: &str) -> Vec<berth_cgroups::Dir> {
        let layout = berth_cgroups::Layout::host().unwrap();
        if systemd_driver() {
            return berth_cgroups::Cgroup::for_unit(&layout, unit_of(id)).unwrap().dirs;
        }
        let own = berth_cgroups::parse_proc_cgroup(&fs::read_to_string("/proc/self/cgroup").unwrap());
        berth_cgroups::Cgroup::resolve(&layout, &format!("/berth-tests/{id}"), &own).dirs
    }

    /// Reads a cgroup file of container `id`: the v1 `controller` hierarchy
    /// file `v1`, or on a v2 host the file `v2`.
    pub fn cgroup_file(&self, id: &str, controller: &str, v1: &str, v2: &str) -> String {
        let dirs = self.cgroup_dirs(id);
        let p = match dirs.iter().find(|d| !d.v2 && d.controllers.iter().any(|c| c == controller)) {
            Some(d) => d.path.join(v1),
            None => dirs.iter().find(|d| d.v2).expect("a cgroup dir").path.join(v2),
        };
        fs::read_to_string(&p).unwrap_or_else(|e| panic!("read {}: {e}", p.display())).trim().to_string()
    }

    /// What is left of container `id` (after it should be gone): its state
    /// directory, cgroup directories, processes rooted in this bundle.
    pub fn leftovers(&self, id: &str) -> Vec<String> {
        let mut l = Vec::new();
        if !other_runtime() {
            // The reaper's share of the teardown, finished first.
            let o = self.berth(&["gc", "--wait"]);
            if !o.status.success() {
                l.push(format!("gc --wait failed: {}", String::from_utf8_lossy(&o.stderr)));
            }
            for e in fs::read_dir(self.storage().join("layers")).into_iter().flatten().flatten() {
                if e.file_name().to_string_lossy().starts_with(&format!("{id}.")) {
                    l.push(format!("writable layer {}", e.path().display()));
                }
            }
        }
        if self.root.join(id).exists() {
            l.push(format!("state {}", self.root.join(id).display()));
        }
        for d in self.cgroup_dirs(id) {
            if d.path.exists() {
                l.push(format!("cgroup {}", d.path.display()));
            }
        }
        l.extend(self.rooted_processes());
        l
    }

    /// Processes whose root is this test's rootfs (compared by device and
    /// inode: a root in another mount namespace reads as "/").
    pub fn rooted_processes(&self) -> Vec<String> {
        use std::os::unix::fs::MetadataExt;
        let mut l = Vec::new();
        let Ok(m) = fs::metadata(self.bundle.join("rootfs")) else { return l };
        if let Ok(rd) = fs::read_dir("/proc") {
            for e in rd.flatten() {
                if let Ok(r) = fs::metadata(e.path().join("root")) {
                    if (r.dev(), r.ino()) == (m.dev(), m.ino()) {
                        l.push(format!(
                            "process {} ({}) rooted in the rootfs",
                            e.file_name().to_string_lossy(),
                            fs::read_to_string(e.path().join("comm")).unwrap_or_default().trim()
                        ));
                    }
                }
            }
        }
        l
    }

    /// Deletes every container of the test and checks that nothing is left:
    /// no state, no cgroup, no mount under the bundle, no process rooted in it.
    pub fn finish(mut self) {
        let leaks = self.cleanup();
        assert!(leaks.is_empty(), "left behind: {leaks:#?}");
    }

    fn cleanup(&mut self) -> Vec<String> {
        // Cleaning up is done with every system call there is.
        self.enosys = None;
        let mut leaks = Vec::new();
        let ids = std::mem::take(&mut self.ids);
        for id in &ids {
            let _ = self.berth(&["delete", "--force", id]);
        }
        if !other_runtime() {
            // What the reaper was handed (layers; deferred cgroups, auto on
            // cgroup v2 with memory and io before Linux 7.2) is finished now.
            let o = self.berth(&["gc", "--wait"]);
            if !o.status.success() {
                leaks.push(format!("gc --wait failed: {}", String::from_utf8_lossy(&o.stderr)));
            }
        }
        let mut left = Vec::new();
        for id in ids {
            for d in self.cgroup_dirs(&id) {
                if d.path.exists() {
                    leaks.push(format!("cgroup {}", d.path.display()));
                    left.push(d.path);
                }
            }
        }
        force_remove_cgroups(&left);
        if !other_runtime() {
            for e in fs::read_dir(self.root.join("@reaper")).into_iter().flatten().flatten() {
                if e.path().extension().is_some_and(|x| x == "json") {
                    leaks.push(format!("reaper job {}", e.path().display()));
                }
            }
            for e in fs::read_dir(self.storage().join("layers")).into_iter().flatten().flatten() {
                leaks.push(format!("writable layer {}", e.path().display()));
            }
        }
        if let Ok(rd) = fs::read_dir(&self.root) {
            // (Marks of creates in flight, @creating, are gone with them.)
            for e in rd.flatten().filter(|e| e.file_name() != "@reaper") {
                leaks.push(format!("state {}", e.path().display()));
            }
        }
        let mi = fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
        let b = self.dir.to_string_lossy().into_owned();
        for l in mi.lines() {
            if l.split(' ').nth(4).is_some_and(|mp| mp.starts_with(&b)) {
                leaks.push(format!("mount {l}"));
            }
        }
        leaks.extend(self.rooted_processes());
        leaks
    }
}

impl Drop for World {
    fn drop(&mut self) {
        // Also on failure: remove what the test made, quietly.
        let _ = self.cleanup();
        let _ = fs::remove_dir_all(self.storage());
        let _ = fs::remove_dir_all(&self.dir);
    }
}

pub fn pure_v2() -> bool {
    berth_cgroups::Layout::host().map(|l| l.pure_v2()).unwrap_or(false)
}

/// Polls `f` for up to 5 s (for state changes that happen asynchronously,
/// e.g. a process exiting after a signal). Tests assert on the result.
pub fn eventually(f: impl FnMut() -> bool) -> bool {
    eventually_within(5, f)
}

/// Waits at most `secs` for `child` to end by itself; kills it otherwise
/// and returns None (a runtime whose event stream never ends fails the
/// test instead of hanging the suite). Its stdout, if piped, should be
/// drained by a thread meanwhile.
pub fn wait_within(child: &mut std::process::Child, secs: u64) -> Option<std::process::ExitStatus> {
    let mut st = None;
    if eventually_within(secs, || {
        st = child.try_wait().unwrap();
        st.is_some()
    }) {
        return st;
    }
    let _ = child.kill();
    let _ = child.wait();
    None
}

/// The next connection to `listener`, within `secs` (a runtime that fails
/// before it connects must fail the test, not hang it).
pub fn accept_within(listener: &std::os::unix::net::UnixListener, secs: u64) -> std::os::unix::net::UnixStream {
    listener.set_nonblocking(true).unwrap();
    let mut conn = None;
    let ok = eventually_within(secs, || {
        conn = listener.accept().ok();
        conn.is_some()
    });
    assert!(ok, "nothing connected to the console socket within {secs} s");
    let (c, _) = conn.unwrap();
    c.set_nonblocking(false).unwrap();
    c
}

/// The last resort of a test's cleanup, when the runtime under test left
/// a cgroup behind (runc cannot delete a container whose sub-cgroup it
/// froze itself): thawed, its processes killed, removed deepest first.
/// Every hierarchy is thawed before anything is killed (a frozen process
/// cannot die).
fn force_remove_cgroups(top: &[PathBuf]) {
    fn walk(d: &Path, out: &mut Vec<PathBuf>) {
        for e in fs::read_dir(d).into_iter().flatten().flatten() {
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                walk(&e.path(), out);
            }
        }
        out.push(d.to_path_buf());
    }
    if top.is_empty() {
        return;
    }
    let mut dirs = Vec::new();
    for t in top {
        walk(t, &mut dirs);
    }
    for d in &dirs {
        let _ = fs::write(d.join("freezer.state"), "THAWED");
        let _ = fs::write(d.join("cgroup.freeze"), "0");
    }
    let _ = eventually(|| {
        let mut any = false;
        for d in &dirs {
            for pid in fs::read_to_string(d.join("cgroup.procs")).unwrap_or_default().split_whitespace().filter_map(|p| p.parse().ok()) {
                any = true;
                if let Ok(fd) = berth_sys::pidfd_open(pid) {
                    let _ = berth_sys::pidfd_send_signal(std::os::fd::AsFd::as_fd(&fd), 9);
                }
            }
        }
        !any
    });
    // Deepest first; a hierarchy may count a killed process a little
    // longer than cgroup.procs shows it.
    let _ = eventually(|| {
        for d in &dirs {
            let _ = fs::remove_dir(d);
        }
        dirs.iter().all(|d| !d.exists())
    });
}

/// Reads a child's stdout to its end in a thread.
pub fn drain_stdout(child: &mut std::process::Child) -> std::thread::JoinHandle<String> {
    let mut out = child.stdout.take().expect("stdout piped");
    std::thread::spawn(move || {
        let mut s = String::new();
        let _ = std::io::Read::read_to_string(&mut out, &mut s);
        s
    })
}

/// `eventually` with a longer limit, for work that is slow under software
/// emulation (the VM) or a loaded host.
pub fn eventually_within(secs: u64, mut f: impl FnMut() -> bool) -> bool {
    let end = std::time::Instant::now() + std::time::Duration::from_secs(secs);
    while std::time::Instant::now() < end {
        if f() {
            return true;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    f()
}
