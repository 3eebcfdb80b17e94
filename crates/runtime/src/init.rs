//! The container's side of `create`: what runs in the cloned child before
//! it becomes the container's process. berth does not re-execute itself: the
//! child is a copy of the `create` process (single-threaded, so that is
//! sound), set up in Rust, and the only exec is the container's own binary.
//!
//! Talks to the parent over a SOCK_SEQPACKET pair in [`Msg`]s (the order
//! of the handshake is documented there, in [`crate::spawn`]).

use crate::config::{ns_flag, Spec};
use crate::error::Context;
use crate::spawn::{Channel, InitError, Msg};
use crate::{hooks, rootfs, security, Result, RuntimeError};
use berth_sys as sys;
use std::ffi::CString;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};

/// Everything the child needs, prepared by the parent before the clone.
#[derive(Debug)]
pub struct Init<'a> {
    pub spec: &'a Spec,
    pub id: &'a str,
    pub rootfs: &'a Path,
    pub cgroup: &'a berth_cgroups::Cgroup,
    pub layout: &'a berth_cgroups::Layout,
    pub chan: Channel,
    pub fifo: Option<&'a Path>,
    pub console_socket: Option<OwnedFd>,
    /// Connected to linux.seccomp.listenerPath, for SCMP_ACT_NOTIFY.
    pub seccomp_listener: Option<OwnedFd>,
    pub preserve_fds: u32,
    pub no_pivot: bool,
    pub no_new_keyring: bool,
    /// Namespace flags the clone already created.
    pub cloned: sys::Namespaces,
    /// The parent joined the PID namespace given by path before the clone.
    pub pidns_joined: bool,
    /// The child moves itself into the v1 cgroups (cheaper than being moved).
    pub join_v1_cgroups: bool,
    /// Detached idmapped mounts prepared by the parent, by mount index.
    pub idmapped: Vec<(usize, OwnedFd)>,
    /// Mount data of the ephemeral writable layer's overlay.
    pub layer: Option<String>,
}

/// Entry of the cloned child: never returns.
pub fn child_main(init: Init<'_>) -> ! {
    // The debug lines of the setup's steps start with the words of runc's
    // (its nsexec and init()): what logs are searched for.
    crate::log::debug("nsexec container setup: berth's clone enters the container's namespaces");
    crate::log::debug("child process in init(): berth sets up the container's root, security and process");
    let code = match run(&init) {
        Ok(never) => match never {},
        Err(e) => {
            // Before `ready` the parent reports it; after, the parent has
            // moved on and only the process' stderr can tell.
            if READY.load(std::sync::atomic::Ordering::Relaxed) || init.chan.send_msg(&Msg::Error(e.to_string())).is_err() {
                eprintln!("berth: container init: {e}");
            }
            1
        }
    };
    sys::exit_now(code)
}

enum Never {}

/// Set once the parent was told `ready`.
static READY: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

fn run(init: &Init<'_>) -> Result<Never> {
    let spec = init.spec;
    // Without a process the container can be created, but not started.
    let no_process = crate::config::Process { cwd: "/".into(), ..Default::default() };
    let p = spec.process.as_ref().unwrap_or(&no_process);
    let preserved = shed_the_parents_fds(init)?;
    if init.join_v1_cgroups {
        init.cgroup.join_self_v1()?;
        init.chan.send_msg(&Msg::Joined)?;
    }
    let state_for_hooks = match init.chan.recv_msg()? {
        Msg::Go(state) => state,
        m => return Err(m.unexpected("go")),
    };
    let state_for_hooks = state_for_hooks.as_str();
    let mut t = crate::teardown::Timings::default();
    let mut since = std::time::Instant::now();

    // The exec fifo is opened now, while the host's filesystem is visible;
    // after pivot_root it is reopened for writing through host /proc.
    let fifo = init.fifo.map(|f| sys::openat(None, f, libc::O_PATH, 0).ctx_at("open", f)).transpose()?;
    let host_proc = sys::openat(None, Path::new("/proc"), libc::O_PATH | libc::O_DIRECTORY, 0).ctx("open /proc")?;
    if let Some(adj) = p.oom_score_adj {
        std::fs::write("/proc/self/oom_score_adj", adj.to_string()).ctx_of("set oom_score_adj", adj)?;
    }
    let entered = enter_namespaces(init)?;
    security::set_rlimits(p)?;
    security::set_scheduling(p)?;
    t.mark("namespaces", &mut since);

    // Runtime hooks run in the parent now that the namespaces exist.
    init.chan.send_msg(&Msg::Hooks)?;
    init.chan.expect(Msg::HooksOk)?;
    t.mark("hooks", &mut since);
    build_root(init, p, &entered, state_for_hooks)?;
    t.mark("root", &mut since);

    let exe = match p.args.first() {
        Some(a0) => Some(find_executable(a0, &p.env, &p.cwd)?),
        None => None,
    };
    t.mark("executable", &mut since);
    let seccomp = lock_down(init, p, preserved, state_for_hooks)?;
    // With no_new_privs the filter needs no privilege: loaded last before
    // the wait, so that the startContainer hooks run under it (runc's order).
    if let Some((prof, c)) = seccomp.as_ref().filter(|_| p.no_new_privileges) {
        crate::seccomp::load_and_hand_over(prof, c, init.seccomp_listener.as_ref(), state_for_hooks)?;
    }
    t.mark("lockdown", &mut since);
    crate::log::debug("init: closing the pipe to signal completion (berth: ready, waiting for start)");
    init.chan.send_msg(&Msg::Ready(t.line()))?;
    READY.store(true, std::sync::atomic::Ordering::Relaxed);
    let released = wait_for_start(init, fifo, host_proc, state_for_hooks)?;
    crate::config::check_exec_strings(&p.args, &p.env)?;
    let cstrings = |v: &[String]| v.iter().filter_map(|a| CString::new(a.as_str()).ok()).collect::<Vec<CString>>();
    let (argv, envp) = (cstrings(&p.args), cstrings(&p.env));
    let Some(exe) = exe else {
        return Err(crate::config::invalid("process", "the container has no process to run"));
    };
    let e = sys::execve(&exe, &argv, &envp);
    drop(released);
    Err(InitError::Exec { arg0: p.args[0].clone(), source: e }.into())
}

/// Not dumpable, and nothing of the parent's but what is listed may reach
/// the container (the state lock above all: held here, it would block
/// `start`). Until it execs, this process runs berth's code with host fds
/// open: not dumpable, so no process of the container (which may share its
/// PID namespace) can open its /proc/PID/{exe,fd,cwd,root}; execve resets
/// it. Returns the preserved fds.
fn shed_the_parents_fds(init: &Init<'_>) -> Result<std::ops::Range<i32>> {
    sys::set_dumpable(false).ctx("prctl(PR_SET_DUMPABLE, 0)")?;
    let mut keep = vec![init.chan.0.as_raw_fd()];
    keep.extend(init.console_socket.as_ref().map(|f| f.as_raw_fd()));
    keep.extend(init.seccomp_listener.as_ref().map(|f| f.as_raw_fd()));
    keep.extend(init.idmapped.iter().map(|(_, f)| f.as_raw_fd()));
    keep.extend(crate::log::file_fd());
    let preserved = sys::preserved_fds(init.preserve_fds)
        .ok_or_else(|| RuntimeError::Usage(format!("--preserve-fds {}: too many", init.preserve_fds)))?;
    sys::close_fds_from(preserved.end, &keep);
    Ok(preserved)
}

/// What [`enter_namespaces`] found out.
struct Entered {
    /// In a user namespace (new or joined): root of it by now.
    userns: bool,
    /// A mount namespace of the container's own (new or joined).
    own_mntns: bool,
}

/// Joins the namespaces given by path and makes the new ones the clone did
/// not, in the order that works: user first, mount last; a new PID
/// namespace by forking the real init; the cgroup namespace after the
/// cgroup. Then what lives in them: lo, hostname, domainname, keyring.
fn enter_namespaces(init: &Init<'_>) -> Result<Entered> {
    let spec = init.spec;
    let l = spec.linux();
    // Join namespaces given by path: user first, so the rest are joined with
    // the right credentials; mount last, so /proc paths still resolve.
    let mut joins: Vec<(sys::Namespaces, OwnedFd, String)> = Vec::new();
    for n in &l.namespaces {
        if let Some(path) = n.path.as_deref().filter(|p| !p.is_empty()) {
            let flag = ns_flag(&n.kind).unwrap_or_default();
            if flag == sys::Namespaces::PID || flag == sys::Namespaces::TIME {
                continue; // joined by the parent: they apply to children
            }
            let fd = sys::openat(None, Path::new(path), libc::O_RDONLY, 0).ctx_at("open the namespace", path)?;
            joins.push((flag, fd, path.to_string()));
        }
    }
    joins.sort_by_key(|(f, _, _)| match *f {
        sys::Namespaces::USER => 0,
        sys::Namespaces::MOUNT => 2,
        _ => 1,
    });
    for (flag, fd, path) in &joins {
        sys::setns(fd.as_fd(), *flag).ctx_of("join namespace", path)?;
    }
    let want_new = |kind: &str| spec.namespace(kind).is_some_and(|n| n.path.as_deref().unwrap_or("").is_empty());
    let mut userns = want_new("user") || joins.iter().any(|(f, _, _)| *f == sys::Namespaces::USER);
    if want_new("user") && !init.cloned.contains(sys::Namespaces::USER) {
        sys::unshare(sys::Namespaces::USER).ctx("unshare the user namespace")?;
        init.chan.send_msg(&Msg::Maps)?;
        init.chan.expect(Msg::Mapped)?;
        userns = true;
    }
    if userns {
        // Become root of the namespace (the mapped uid 0).
        sys::setresgid(0).ctx("setgid 0 in the user namespace")?;
        sys::setresuid(0).ctx("setuid 0 in the user namespace")?;
    }
    let mut flags = sys::Namespaces::empty();
    for kind in ["mount", "network", "ipc", "uts"] {
        let f = ns_flag(kind).unwrap_or_default();
        if want_new(kind) && !init.cloned.contains(f) {
            flags |= f;
        }
    }
    if !flags.is_empty() {
        sys::unshare(flags).ctx("unshare namespaces")?;
    }
    // A new PID namespace that the clone did not make: the real init is a
    // child of this process (which then goes away).
    let pid_path = spec.namespace("pid").and_then(|n| n.path.as_deref()).filter(|p| !p.is_empty());
    let fork_pid = match pid_path {
        Some(path) if !init.pidns_joined => {
            let fd = sys::openat(None, Path::new(path), libc::O_RDONLY, 0).ctx_of("open pid namespace", path)?;
            sys::setns(fd.as_fd(), sys::Namespaces::PID).ctx_of("join pid namespace", path)?;
            true
        }
        Some(_) => false,
        None if want_new("pid") && !init.cloned.contains(sys::Namespaces::PID) => {
            sys::unshare(sys::Namespaces::PID).ctx("unshare the pid namespace")?;
            true
        }
        None => false,
    };
    if fork_pid {
        if let Some(pid) = sys::fork().ctx("fork the container init")? {
            init.chan.send_msg(&Msg::Pid(pid))?;
            sys::exit_now(0);
        }
    }
    // The cgroup namespace comes after joining the cgroup, so its root is
    // the container's cgroup.
    if want_new("cgroup") {
        sys::unshare(sys::Namespaces::CGROUP).ctx("unshare the cgroup namespace")?;
    }
    if want_new("network") {
        sys::loopback_up().ctx("bring up lo")?;
    }
    if let Some(h) = spec.hostname.as_deref().filter(|h| !h.is_empty()) {
        sys::sethostname(h).ctx_of("sethostname", h)?;
    }
    if let Some(d) = spec.domainname.as_deref().filter(|h| !h.is_empty()) {
        sys::setdomainname(d).ctx_of("setdomainname", d)?;
    }
    if !init.no_new_keyring {
        if let Err(e) = sys::join_session_keyring(&format!("_ses.{}", init.id)) {
            if e.raw_os_error() != Some(libc::ENOSYS) {
                return Err(RuntimeError::io("join a new session keyring", e));
            }
        }
    }
    let own_mntns = want_new("mount") || joins.iter().any(|(f, _, _)| *f == sys::Namespaces::MOUNT);
    Ok(Entered { userns, own_mntns })
}

/// The root filesystem (mounts, /dev, pivot_root), the personality and the
/// process's stdio (a terminal through the console socket, or what
/// `create` was given).
fn build_root(init: &Init<'_>, p: &crate::config::Process, entered: &Entered, state_for_hooks: &str) -> Result<()> {
    let spec = init.spec;
    let l = spec.linux();
    let want_new = |kind: &str| spec.namespace(kind).is_some_and(|n| n.path.as_deref().unwrap_or("").is_empty());
    let plan = rootfs::Plan {
        spec,
        rootfs: init.rootfs,
        cgroup: init.cgroup,
        cgroup_layout: init.layout,
        userns: entered.userns,
        new_cgroupns: want_new("cgroup"),
        no_pivot: init.no_pivot,
        idmapped: &init.idmapped,
        layer: init.layer.as_deref(),
        host_ns: !entered.own_mntns,
    };
    if let Some(h) = spec.hooks.as_ref() {
        hooks::run_all_in("createContainer", &h.create_container, state_for_hooks, Some(init.rootfs))?;
    }
    // The working directory exists in the rootfs, as runc makes it.
    rootfs::Root::open(init.rootfs)?.mkdir_all(Path::new(&p.cwd), 0o755)?;
    let pty = rootfs::setup(&plan)?;
    rootfs::finish(spec)?;

    if let Some(pers) = &l.personality {
        sys::personality(if pers.domain == "LINUX32" { 0x0008 } else { 0 }).ctx("personality")?;
    }

    // The process' stdio: a terminal, or what `create` was given.
    if let Some((master, slave)) = &pty {
        let sock = init
            .console_socket
            .as_ref()
            .ok_or_else(|| crate::config::invalid("process.terminal", "is true but no --console-socket was given"))?;
        use_terminal(master, slave, sock, p.user.uid)?;
    } else {
        fix_stdio_owner(p.user.uid, p.user.gid);
    }
    drop(pty);

    Ok(())
}

/// The seccomp profile parsed and compiled, with the filter it loads.
type Seccomp = (crate::seccomp::Profile, sys::seccomp::Filter);

/// The process's cwd, bounding set, no_new_privs, umask, seccomp (loaded
/// here unless no_new_privs defers it to the very end), user and
/// capabilities, preserved fds, signals: everything but the exec. Returns
/// the filter still to load, if any.
fn lock_down(
    init: &Init<'_>,
    p: &crate::config::Process,
    preserved: std::ops::Range<i32>,
    state_for_hooks: &str,
) -> Result<Option<Seccomp>> {
    let l = init.spec.linux();
    // The cwd is entered as root, before the user switch (as runc: a cwd
    // the user may not search is still the process's cwd); only where root
    // cannot (a directory only the mapped user may enter) again as the user.
    let entered = match chdir_in_root(&p.cwd) {
        Ok(()) => true,
        Err(e) if p.user.uid == 0 => return Err(e),
        Err(_) => false,
    };
    security::drop_bounding(p.capabilities.as_ref())?;
    if p.no_new_privileges {
        security::no_new_privs()?;
    }
    if let Some(m) = p.user.umask {
        sys::umask(m);
    } else {
        sys::umask(0o022);
    }
    let filter = l.seccomp.as_ref().map(crate::seccomp::Profile::parse).transpose()?;
    let compiled = filter.as_ref().map(|f| f.compile()).transpose()?;
    // Without no_new_privs, loading a filter needs CAP_SYS_ADMIN: load it
    // before the capabilities go (as runc does). Otherwise just before the
    // wait for start (see run).
    if !p.no_new_privileges {
        if let (Some(prof), Some(c)) = (&filter, &compiled) {
            crate::seccomp::load_and_hand_over(prof, c, init.seccomp_listener.as_ref(), state_for_hooks)?;
        }
    }
    security::switch_user_and_caps(p)?;
    if !entered {
        chdir_as_user(&p.cwd)?;
    }

    // Only fds 0-2 and the preserved ones reach the container: everything
    // else is close-on-exec (done now, before a seccomp filter may forbid it).
    for fd in preserved.clone() {
        sys::clear_cloexec(fd).ctx_fd("preserve fd", fd)?;
    }
    // close_range needs Linux 5.11; without it, inherited fds were closed at
    // the start and every fd berth opened since is O_CLOEXEC.
    let _ = sys::cloexec_from(preserved.end.cast_unsigned());
    sys::reset_signals();
    Ok(filter.zip(compiled))
}

/// Blocks until `start` opens the exec fifo for reading, then runs the
/// startContainer hooks. The fifo's write end, returned, stays open
/// (close-on-exec) until the exec: `start` sees it close, and so returns
/// only once the process runs.
fn wait_for_start(init: &Init<'_>, fifo: Option<OwnedFd>, host_proc: OwnedFd, state_for_hooks: &str) -> Result<Option<std::fs::File>> {
    let spec = init.spec;
    let mut released = None;
    if let Some(f) = &fifo {
        let w = sys::openat(Some(host_proc.as_fd()), &PathBuf::from(format!("thread-self/fd/{}", f.as_raw_fd())), libc::O_WRONLY, 0)
            .ctx("open the exec fifo")?;
        let mut w = std::fs::File::from(w);
        std::io::Write::write_all(&mut w, b"0").ctx("write the exec fifo")?;
        released = Some(w);
    }
    drop(fifo);
    drop(host_proc);
    if let Some(h) = spec.hooks.as_ref() {
        // `start` was called on a created container (runtime-spec, and what
        // runc passes): the state says so.
        let mut st: serde_json::Value = serde_json::from_str(state_for_hooks).unwrap_or_default();
        st["status"] = serde_json::json!("created");
        hooks::run_all("startContainer", &h.start_container, &st.to_string())?;
    }

    Ok(released)
}

/// Sends the pty master over the console socket (with the slave's name, as
/// runc does) and makes the slave this process' stdio and controlling tty.
pub(crate) fn use_terminal(master: &OwnedFd, slave: &OwnedFd, sock: &OwnedFd, uid: u32) -> Result<()> {
    // The terminal is the process user's; its group stays devpts's (gid=5,
    // tty, in the default config), as runc leaves it.
    sys::fchown(slave.as_fd(), uid, u32::MAX).ctx("chown the pty to the process user")?;
    let n = sys::pty_number(master.as_fd()).ctx("pty number")?;
    sys::send_fd(sock.as_fd(), format!("/dev/pts/{n}").as_bytes(), master.as_fd()).ctx("send the pty master to the console socket")?;
    for fd in 0..3 {
        sys::dup2(slave.as_fd(), fd).ctx("dup the pty")?;
    }
    sys::setsid_ctty(slave.as_fd()).ctx("make the pty the controlling terminal")
}

/// Gives pipes and sockets on stdio to the container's user, so that it can
/// reopen them (/dev/stdout). Devices and files are left alone: chowning the
/// host's /dev/null would change a host file.
pub(crate) fn fix_stdio_owner(uid: u32, gid: u32) {
    if uid == 0 && gid == 0 {
        return;
    }
    let (si, so, se) = (std::io::stdin(), std::io::stdout(), std::io::stderr());
    for b in [si.as_fd(), so.as_fd(), se.as_fd()] {
        let Ok(st) = sys::fstat(b) else { continue }; // not open
        let t = st.st_mode & libc::S_IFMT;
        if t == libc::S_IFIFO || t == libc::S_IFSOCK {
            let _ = sys::fchown(b, uid, gid);
        }
    }
}

/// Enters the working directory `cwd` inside the container's root (this
/// process' root by now), resolved with no magic link followed: a
/// `/proc/self/fd/N` naming an fd berth still holds cannot lead out (the
/// CVE-2024-21626 class). Then checks that the kernel places the new
/// working directory under the root.
pub(crate) fn chdir_in_root(cwd: &str) -> Result<()> {
    let what = |source| InitError::Cwd { cwd: cwd.to_string(), source };
    let root = sys::openat(None, Path::new("/"), libc::O_PATH | libc::O_DIRECTORY, 0).map_err(what)?;
    let dir =
        sys::openat2(root.as_fd(), Path::new(cwd), libc::O_PATH | libc::O_DIRECTORY, 0, sys::RESOLVE_IN_ROOT | sys::RESOLVE_NO_MAGICLINKS)
            .map_err(what)?;
    sys::fchdir(dir.as_fd()).map_err(what)?;
    check_cwd_in_root(cwd)
}

/// Enters `cwd` again as the container's user, after the seccomp filter
/// may be loaded (a profile without openat2 is common): a plain chdir, so
/// that the user's own search permissions apply along the whole path, then
/// the same check that the kernel places it under the root.
pub(crate) fn chdir_as_user(cwd: &str) -> Result<()> {
    std::env::set_current_dir(cwd).map_err(|source| InitError::Cwd { cwd: cwd.to_string(), source })?;
    check_cwd_in_root(cwd)
}

/// getcwd(2) puts "(unreachable)" before a directory outside the root (and
/// glibc then fails with ENOENT): a cwd reached through an fd of the host.
fn check_cwd_in_root(cwd: &str) -> Result<()> {
    match std::env::current_dir() {
        Ok(d) if d.is_absolute() => Ok(()),
        Ok(d) => Err(crate::config::invalid("process.cwd", format!("{cwd:?} is outside the container's root ({})", d.display()))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            Err(crate::config::invalid("process.cwd", format!("{cwd:?} is outside the container's root")))
        }
        // A seccomp profile may refuse getcwd itself: nothing to check with.
        Err(_) => Ok(()),
    }
}

/// Finds the binary as execvp would, with the container's PATH, so that a
/// missing binary fails `create` with a clear error.
pub(crate) fn find_executable(arg0: &str, env: &[String], cwd: &str) -> Result<CString> {
    // Resolved as execve will resolve it. (By the execve, berth holds no
    // host directory fd that a /proc/self/fd path could lead through.)
    let is_exec = |p: &Path| {
        std::fs::metadata(p).map(|m| {
            use std::os::unix::fs::PermissionsExt;
            m.is_file() && m.permissions().mode() & 0o111 != 0
        })
    };
    let cand: Vec<PathBuf> = if arg0.contains('/') {
        vec![if arg0.starts_with('/') { PathBuf::from(arg0) } else { Path::new(cwd).join(arg0) }]
    } else {
        let path = env.iter().find_map(|e| e.strip_prefix("PATH=")).unwrap_or("/usr/local/bin:/usr/bin:/bin");
        path.split(':').filter(|d| !d.is_empty()).map(|d| Path::new(d).join(arg0)).collect()
    };
    for c in &cand {
        if let Ok(true) = is_exec(c) {
            use std::os::unix::ffi::OsStrExt;
            return CString::new(c.as_os_str().as_bytes())
                .map_err(|_| crate::config::invalid("process.args", "the binary's path has a NUL byte"));
        }
    }
    // runc's wording: podman and Docker map "no such file or directory" and
    // "executable file not found" to exit code 127, "permission denied" to 126.
    if arg0.contains('/') {
        return Err(crate::config::invalid(
            "exec",
            match std::fs::metadata(&cand[0]) {
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => format!("{arg0:?}: stat {arg0}: no such file or directory"),
                Err(e) => format!("{arg0:?}: stat {arg0}: {e}"),
                Ok(_) => format!("{arg0:?}: permission denied"),
            },
        ));
    }
    Err(crate::config::invalid("exec", format!("{arg0:?}: executable file not found in $PATH")))
}
