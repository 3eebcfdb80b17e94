//! `exec`: a new process in a running container. It joins every namespace
//! of the container's init through the init's confirmed pidfd (setns on a
//! pidfd), its cgroup (CLONE_INTO_CGROUP on v2, moving itself on v1), and
//! gets the process settings (user, capabilities, no_new_privs, seccomp).

use crate::config::Process;
use crate::error::Context;
use crate::spawn::{Channel, Msg};
use crate::state::{Container, Status};
use crate::{rootfs, security, Result, RuntimeError};
use berth_sys as sys;
use std::ffi::CString;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};

#[derive(Debug, Default, Clone)]
pub struct ExecOptions {
    pub root: PathBuf,
    pub id: String,
    /// The process to run (from --process, or the config's process with
    /// the command line's arguments and flags applied).
    pub process: Option<Process>,
    pub args: Vec<String>,
    pub tty: bool,
    pub console_socket: Option<PathBuf>,
    pub detach: bool,
    pub pid_file: Option<PathBuf>,
    pub cwd: Option<String>,
    pub env: Vec<String>,
    pub user: Option<(u32, Option<u32>)>,
    pub additional_gids: Vec<u32>,
    pub caps: Vec<String>,
    pub no_new_privs: bool,
    pub preserve_fds: u32,
    pub ignore_paused: bool,
    /// Send a pidfd of the process to this AF_UNIX socket.
    pub pidfd_socket: Option<PathBuf>,
    /// runc's `--cgroup` values: existing sub-cgroups to run the process in.
    pub cgroups: Vec<String>,
}

/// Runs the process; returns its exit code (0 with `detach`).
pub fn exec(o: &ExecOptions) -> Result<i32> {
    let c = Container::open(&o.root, &o.id)?;
    let rec = c.load()?.ok_or_else(|| RuntimeError::NotExist { id: o.id.clone() })?;
    match rec.status(&c) {
        Status::Running | Status::Created => {}
        Status::Paused if o.ignore_paused => {}
        Status::Paused => return Err(crate::state::StateError::ExecPaused.into()),
        s => return Err(crate::state::StateError::Cannot { verb: "exec in", status: s }.into()),
    }
    let init = rec.init().ok_or(RuntimeError::NotRunning)?;
    let spec = rec.config.clone().unwrap_or_default();
    let p = process_to_exec(o, &spec)?;
    let ns_flags = namespaces_to_join(init.pid);
    let (own_console, console) = console_for(o, &p)?;
    let seccomp = spec.linux.as_ref().and_then(|l| l.seccomp.as_ref()).map(crate::seccomp::Profile::parse).transpose()?;
    // The agent of an SCMP_ACT_NOTIFY profile gets the exec'd process's
    // notify fd too, with the container's state.
    let listener = seccomp
        .as_ref()
        .filter(|s| s.uses_notify())
        .and_then(|s| s.listener_path.as_deref())
        .filter(|p| !p.is_empty())
        .map(crate::seccomp::connect_agent)
        .transpose()?;
    // Only the agent reads it.
    let state = if listener.is_some() { serde_json::to_string(&rec.oci(Status::Running)).unwrap_or_default() } else { String::new() };
    let (parent_end, child_end) = sys::seqpacket_pair().ctx("socketpair")?;
    // The exec'd process may be a grandchild (a PID namespace is entered by
    // the children of who joins it): as subreaper this process still reaps it.
    let _ = sys::set_child_subreaper();
    // The container's root as its init sees it, opened while the init's
    // pidfd still proves the PID is the init's: a container without a mount
    // namespace of its own is entered by chroot, not by setns.
    let init_root = sys::openat(None, Path::new(&format!("/proc/{}/root", init.pid)), libc::O_PATH | libc::O_DIRECTORY, 0)
        .ctx_pid("open the root of the container's init", init.pid)?;
    if init.exited() {
        return Err(RuntimeError::NotRunning);
    }
    let cgroup = if o.cgroups.is_empty() { rec.cgroup.clone() } else { rec.cgroup.sub(&o.cgroups)? };
    // Into the v2 cgroup by CLONE_INTO_CGROUP; where the kernel (before
    // 5.7) or a filter refuses it, the child moves itself there.
    let (forked, into_v2) = crate::spawn::clone_into(sys::Namespaces::empty(), &cgroup)?;
    let join_v2 = !into_v2 && cgroup.v2_dir().is_some();
    let middle = match &forked {
        sys::Forked::Parent { pidfd, .. } => pidfd.try_clone().ctx("dup pidfd")?,
        sys::Forked::Child => sys::pidfd_open(sys::getpid()).ctx("pidfd")?,
    };
    if let sys::Forked::Child = forked {
        drop(parent_end);
        let chan = Channel(child_end);
        let r = child(&Entry {
            chan: &chan,
            cg: &cgroup,
            join_v2,
            init_pidfd: &init.pidfd,
            init_root: &init_root,
            ns_flags,
            p: &p,
            console: console.as_ref(),
            seccomp: seccomp.as_ref(),
            listener: listener.as_ref(),
            state: &state,
            preserve_fds: o.preserve_fds,
        });
        if let Err(e) = r {
            let _ = chan.send_msg(&Msg::Error(e.to_string()));
        }
        sys::exit_now(1);
    }
    drop(child_end);
    drop(console);
    let chan = Channel(parent_end);
    // "pid N", then the channel closes at the exec (close-on-exec), or an error.
    let pid = match chan.recv_msg()? {
        Msg::Pid(n) => n,
        m => return Err(m.unexpected("pid")),
    };
    let pidfd = sys::pidfd_open(pid).ctx_pid("pidfd of", pid)?;
    // Once the middle process is gone, the process is this one's child (we
    // are its subreaper) and can be waited for.
    let _ = sys::waitid_pidfd(middle.as_fd(), false);
    match chan.recv_msg() {
        Err(_) => {} // closed: exec'd
        Ok(m) => {
            let _ = sys::waitid_pidfd(pidfd.as_fd(), false);
            return Err(m.unexpected("the exec"));
        }
    }
    if let Some(f) = &o.pid_file {
        crate::state::write_atomic(f, pid.to_string().as_bytes())?;
    }
    if let Some(s) = &o.pidfd_socket {
        let sock = sys::unix_connect(s).ctx_at("connect to pidfd socket", s)?;
        sys::send_fd(sock.as_fd(), b"pidfd", pidfd.as_fd()).ctx("send the pidfd")?;
    }
    if o.detach {
        return Ok(0);
    }
    match &own_console {
        Some(sock) => crate::tty::relay(&crate::tty::receive_master(sock)?, &pidfd),
        None => crate::process::wait_forwarding(&pidfd),
    }
}

/// The process to exec: `--process`'s, or the container's with the
/// command line's changes; checked as the config's process is.
fn process_to_exec(o: &ExecOptions, spec: &crate::config::Spec) -> Result<Process> {
    let mut p = match &o.process {
        Some(p) => p.clone(),
        None => {
            let mut p = spec.process.clone().unwrap_or_default();
            if o.args.is_empty() {
                return Err(RuntimeError::Usage("exec needs a command (or --process)".into()));
            }
            p.args = o.args.clone();
            p.terminal = o.tty;
            p.env.extend(o.env.iter().cloned());
            if let Some(cwd) = &o.cwd {
                p.cwd = cwd.clone();
            }
            if let Some((uid, gid)) = o.user {
                p.user.uid = uid;
                p.user.gid = gid.unwrap_or(p.user.gid);
            }
            if !o.additional_gids.is_empty() {
                p.user.additional_gids = o.additional_gids.clone();
            }
            if let Some(caps) = p.capabilities.as_mut() {
                for cap in &o.caps {
                    // Not the inheritable set: a capability there would pass
                    // to programs the process runs, setuid or not, beyond
                    // what was asked (CVE-2022-29162; runc 1.1.2 and later).
                    for set in [&mut caps.bounding, &mut caps.effective, &mut caps.permitted, &mut caps.ambient] {
                        if !set.contains(cap) {
                            set.push(cap.clone());
                        }
                    }
                }
            }
            p.no_new_privileges |= o.no_new_privs;
            p
        }
    };
    if p.cwd.is_empty() {
        p.cwd = "/".into();
    }
    for cap in p
        .capabilities
        .iter()
        .flat_map(|c| c.bounding.iter().chain(&c.effective).chain(&c.permitted).chain(&c.inheritable).chain(&c.ambient))
    {
        if crate::config::names::cap_number(cap).is_none() {
            return Err(crate::config::invalid("--cap", format!("unknown capability {cap:?}")));
        }
    }
    if p.args.is_empty() {
        return Err(crate::config::invalid("process.args", "the process to exec has no args"));
    }
    crate::config::check_exec_strings(&p.args, &p.env)?;
    for (what, id) in [("uid", p.user.uid), ("gid", p.user.gid)] {
        crate::config::check_id(what, id)?;
    }

    Ok(p)
}

/// The namespaces of the container's init that differ from berth's: those
/// are joined (a container may share some of the host's).
fn namespaces_to_join(init_pid: i32) -> sys::Namespaces {
    let mut ns_flags = sys::Namespaces::empty();
    for (_, flag, name) in crate::config::NAMESPACES {
        let ours = std::fs::metadata(format!("/proc/self/ns/{name}")).map(|m| std::os::unix::fs::MetadataExt::ino(&m));
        let theirs = std::fs::metadata(format!("/proc/{}/ns/{name}", init_pid)).map(|m| std::os::unix::fs::MetadataExt::ino(&m));
        if let (Ok(a), Ok(b)) = (ours, theirs) {
            if a != b {
                ns_flags |= *flag;
            }
        }
    }
    ns_flags
}

/// The terminal's socket: the console socket given, or, with a terminal in
/// the foreground, one end of a pair whose other end (returned first) berth
/// keeps to be the terminal's other side, as runc does. Detached, nobody
/// would be: refused.
fn console_for(o: &ExecOptions, p: &Process) -> Result<(Option<OwnedFd>, Option<OwnedFd>)> {
    let mut own_console = None;
    let console = match (&o.console_socket, p.terminal) {
        (Some(s), true) => Some(sys::unix_connect(s).ctx_at("connect to console socket", s)?),
        (None, true) if o.detach => return Err(crate::config::ConfigError::DetachedTty.into()),
        (None, true) => {
            let (ours, theirs) = sys::stream_pair().ctx("socketpair for the terminal")?;
            own_console = Some(ours);
            Some(theirs)
        }
        _ => None,
    };
    Ok((own_console, console))
}

/// What the exec'd process's side needs to enter the container.
struct Entry<'a> {
    chan: &'a Channel,
    cg: &'a berth_cgroups::Cgroup,
    /// Not started in the v2 cgroup by the clone: moves itself there.
    join_v2: bool,
    init_pidfd: &'a OwnedFd,
    init_root: &'a OwnedFd,
    /// The init's namespaces that differ from berth's.
    ns_flags: sys::Namespaces,
    p: &'a Process,
    console: Option<&'a OwnedFd>,
    seccomp: Option<&'a crate::seccomp::Profile>,
    /// Connected to the seccomp agent (SCMP_ACT_NOTIFY).
    listener: Option<&'a OwnedFd>,
    /// The container's state, for the agent.
    state: &'a str,
    preserve_fds: u32,
}

/// The exec'd process's side, in the clone: into the cgroup and the
/// init's namespaces, then set up as the container's process is, and exec.
fn child(e: &Entry<'_>) -> Result<()> {
    let Entry { chan, cg, join_v2, init_pidfd, init_root, ns_flags, p, console, seccomp, listener, state, preserve_fds } = *e;
    crate::log::debug("nsexec container setup: berth's clone enters the container's namespaces");
    crate::log::debug("child process in init(): berth sets up the process in the container");
    // Not dumpable until the exec: nothing in the container may open this
    // process' /proc/PID/{exe,fd,cwd,root} while it runs berth's code.
    sys::set_dumpable(false).ctx("prctl(PR_SET_DUMPABLE, 0)")?;
    let mut keep = vec![chan.0.as_raw_fd(), init_pidfd.as_raw_fd(), init_root.as_raw_fd()];
    keep.extend(console.map(|f| f.as_raw_fd()));
    keep.extend(listener.map(|f| f.as_raw_fd()));
    keep.extend(crate::log::file_fd());
    let preserved =
        sys::preserved_fds(preserve_fds).ok_or_else(|| RuntimeError::Usage(format!("--preserve-fds {preserve_fds}: too many")))?;
    sys::close_fds_from(preserved.end, &keep);
    cg.join_self_v1()?;
    if join_v2 {
        cg.add_pid(sys::getpid(), false, true)?;
    }
    if !ns_flags.is_empty() {
        sys::setns(init_pidfd.as_fd(), ns_flags).ctx("join the container's namespaces")?;
    }
    if !ns_flags.contains(sys::Namespaces::MOUNT) {
        // Same mount namespace as ours: the container is its init's chroot.
        sys::fchdir(init_root.as_fd()).ctx("chdir to the container's root")?;
        sys::chroot(Path::new(".")).ctx("chroot into the container's root")?;
    }
    // The PID namespace applies to children: the process is a child of this one.
    if let Some(pid) = sys::fork().ctx("fork")? {
        chan.send_msg(&Msg::Pid(pid))?;
        sys::exit_now(0);
    }
    security::set_rlimits(p)?;
    security::set_scheduling(p)?;
    let pty = if p.terminal {
        let root = rootfs::Root::open(Path::new("/"))?;
        let ptmx = root.open_in(Path::new("dev/ptmx"), libc::O_RDWR | libc::O_NOCTTY).ctx("open /dev/ptmx in the container")?;
        let (master, slave) = sys::open_pty(ptmx).ctx("open pty")?;
        if let Some(sz) = p.console_size {
            sys::set_winsize(master.as_fd(), sz.height, sz.width).ctx("set console size")?;
        }
        let sock = console.ok_or_else(|| crate::config::invalid("--console-socket", "no console socket"))?;
        crate::init::use_terminal(&master, &slave, sock, p.user.uid)?;
        Some((master, slave))
    } else {
        crate::init::fix_stdio_owner(p.user.uid, p.user.gid);
        None
    };
    drop(pty);
    let exe = crate::init::find_executable(&p.args[0], &p.env, &p.cwd)?;
    let entered = crate::init::chdir_in_root(&p.cwd).is_ok();
    security::drop_bounding(p.capabilities.as_ref())?;
    if p.no_new_privileges {
        security::no_new_privs()?;
    }
    sys::umask(p.user.umask.unwrap_or(0o022));
    let filter = seccomp.map(|s| s.compile().map(|f| (s, f))).transpose()?;
    if !p.no_new_privileges {
        if let Some((s, f)) = &filter {
            crate::seccomp::load_and_hand_over(s, f, listener, state)?;
        }
    }
    security::switch_user_and_caps(p)?;
    if !entered {
        crate::init::chdir_as_user(&p.cwd)?;
    }
    for fd in preserved.clone() {
        sys::clear_cloexec(fd).ctx_fd("preserve fd", fd)?;
    }
    let _ = sys::cloexec_from(preserved.end.cast_unsigned());
    sys::reset_signals();
    if p.no_new_privileges {
        if let Some((s, f)) = &filter {
            crate::seccomp::load_and_hand_over(s, f, listener, state)?;
        }
    }
    crate::config::check_exec_strings(&p.args, &p.env)?;
    let cstrings = |v: &[String]| v.iter().filter_map(|a| CString::new(a.as_str()).ok()).collect::<Vec<CString>>();
    let (argv, envp) = (cstrings(&p.args), cstrings(&p.env));
    crate::log::debug("setns_init: about to exec (berth: the process enters the container)");
    let e = sys::execve(&exe, &argv, &envp);
    Err(crate::spawn::InitError::Exec { arg0: p.args[0].clone(), source: e }.into())
}
