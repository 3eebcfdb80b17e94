//! The verbs: check the status, act, persist. Every change happens under
//! the container's lock; every ending goes through [`teardown::destroy`].

use crate::config::Spec;
use crate::error::Context;
use crate::init::{self, Init};
use crate::process::{self, Process};
use crate::spawn::{self, Channel, Msg};
use crate::state::{Container, Phase, Record, Status};
use crate::teardown::{self, Timings};
use crate::{hooks, log, Result, RuntimeError};
use berth_cgroups::{Cgroup, Layout};
use berth_sys as sys;
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::time::Duration;

#[derive(Debug, Default, Clone)]
pub struct CreateOptions {
    pub root: PathBuf,
    pub id: String,
    pub bundle: PathBuf,
    pub pid_file: Option<PathBuf>,
    pub console_socket: Option<PathBuf>,
    pub pidfd_socket: Option<PathBuf>,
    pub preserve_fds: u32,
    pub no_pivot: bool,
    pub no_new_keyring: bool,
    /// An ephemeral writable layer over the rootfs (as the annotation
    /// run.berth.layer=ephemeral asks), kept under `storage`.
    pub ephemeral_layer: bool,
    pub storage: PathBuf,
    /// berth itself is the other end of the process' terminal when it has
    /// one and no console socket is given (a foreground `run`, as runc).
    pub foreground: bool,
    /// The systemd cgroup driver (`--systemd-cgroup`): the cgroup is a
    /// transient unit that systemd makes.
    pub systemd_cgroup: bool,
}

/// A container that `create` made: its lock is held while this lives.
#[derive(Debug)]
pub struct Created {
    pub container: Container,
    pub record: Record,
    pub init: Process,
    /// True when this process is the init's parent (and can reap it).
    pub is_parent: bool,
    /// The pty master, when berth is the terminal's other end.
    pub terminal: Option<OwnedFd>,
}

/// `create`: the container process is set up and waits on the exec fifo.
/// On any failure, whatever was made is torn down before returning.
pub fn create(o: &CreateOptions) -> Result<Created> {
    let mut t = teardown::Timings::default();
    let mut since = std::time::Instant::now();
    crate::state::validate_id(&o.id)?;
    let bundle = std::fs::canonicalize(&o.bundle).ctx_at("bundle", &o.bundle)?;
    // Relative paths of the config (bind sources above all) are the
    // bundle's, as runc reads them.
    std::env::set_current_dir(&bundle).ctx_at("chdir to the bundle", &bundle)?;
    let spec = Spec::load(&bundle)?;
    spec.validate(&bundle)?;
    // A terminal and no console socket: in the foreground, berth is the
    // terminal's other end (the setup sends the master over a socket pair
    // of berth's own); detached, nobody would be.
    let own_tty = spec.process.as_ref().is_some_and(|p| p.terminal) && o.console_socket.is_none();
    if own_tty && !o.foreground {
        return Err(crate::config::ConfigError::DetachedTty.into());
    }
    let (ours, theirs) = match own_tty {
        true => sys::stream_pair().map(|(a, b)| (Some(a), Some(b))).ctx("socketpair for the terminal")?,
        false => (None, None),
    };
    let rootfs = std::fs::canonicalize(spec.rootfs(&bundle)).ctx("rootfs")?;
    t.mark("config", &mut since);
    let container = Container::create(&o.root, &o.id)?;
    t.mark("state_dir", &mut since);
    let mut record = Record {
        id: o.id.clone(),
        bundle: bundle.clone(),
        rootfs: rootfs.clone(),
        pid: 0,
        start_time: 0,
        created: log::rfc3339_now(),
        owner: user_name(sys::getuid()),
        annotations: spec.annotations.clone(),
        cgroup: Cgroup::default(),
        own_pidns: spec.namespace("pid").is_some(),
        config: Some(spec.clone()),
        phase: Phase::Creating,
        mount_watermark: 0,
        mounts: Default::default(),
        layer: None,
        host_mount_base: None,
    };
    let made = create_in(o, &spec, &container, &mut record, theirs, (&mut t, &mut since))
        .and_then(|(init, is_parent)| Ok((init, is_parent, ours.as_ref().map(crate::tty::receive_master).transpose()?)));
    match made {
        Ok((init, is_parent, terminal)) => Ok(Created { container, record, init, is_parent, terminal }),
        Err(e) => {
            let saved = container.load().ok().flatten();
            let rec = saved.as_ref().or(Some(&record));
            if let Err(e2) = teardown::destroy(&container, rec, &teardown::Options { poststop: false, ..Default::default() }) {
                log::warn(&format!("cleanup after failed create: {e2}"));
            }
            Err(e)
        }
    }
}

fn user_name(uid: u32) -> String {
    if let Ok(p) = std::fs::read_to_string("/etc/passwd") {
        for l in p.lines() {
            let f: Vec<&str> = l.split(':').collect();
            if f.len() > 2 && f[2] == uid.to_string() {
                return f[0].to_string();
            }
        }
    }
    uid.to_string()
}

/// Resolves, records and makes what the container owns besides its
/// processes: its cgroup (refused unless it is the container's own), its
/// writable layer, the mount it is stacked on without a mount namespace.
/// Each is recorded before it is made, so that a crash from here on leaves
/// a state that `delete --force` can finish.
fn record_and_make(
    o: &CreateOptions,
    spec: &Spec,
    c: &Container,
    rec: &mut Record,
) -> Result<(Layout, Vec<berth_cgroups::systemd::Property>)> {
    let l = spec.linux();
    let layout = Layout::host().ctx("read mountinfo")?;
    let own = berth_cgroups::parse_proc_cgroup(&std::fs::read_to_string("/proc/self/cgroup").unwrap_or_default());
    let given = l.cgroups_path.clone().filter(|p| !p.is_empty());
    let mut unit_props = Vec::new();
    let cgroup = if o.systemd_cgroup {
        // The unit is made later, once the init exists (a scope starts
        // with its processes); its directory is recorded now.
        let unit = berth_cgroups::systemd::unit_for(given.as_deref().unwrap_or(""), &o.id)?;
        if !berth_cgroups::systemd::booted() {
            return Err(berth_cgroups::systemd::SystemdError::NotRunning.into());
        }
        // What becomes the unit's properties is checked before anything is
        // made (a bad annotation is bad input, not a failed start).
        unit_props = unit_properties(spec)?;
        berth_cgroups::Cgroup::for_unit(&layout, unit)?
    } else {
        let cg_path = given.unwrap_or_else(|| format!("berth/{}", o.id));
        if cg_path.split('/').any(|c| c == "..") {
            return Err(crate::config::invalid("linux.cgroupsPath", format!("{cg_path:?} must not contain ..")));
        }
        if cg_path.contains('\0') {
            return Err(crate::config::invalid("linux.cgroupsPath", "must not contain a NUL byte"));
        }
        if cg_path.contains(':') {
            return Err(crate::config::invalid(
                "linux.cgroupsPath",
                format!("{cg_path:?} is in the systemd form (slice:prefix:name): pass --systemd-cgroup to use the systemd cgroup driver"),
            ));
        }
        Cgroup::resolve(&layout, &cg_path, &own)
    };
    // Only a cgroup of the container's own is ever recorded, so teardown
    // cannot kill, freeze or thaw anything else.
    if let Some(why) = cgroup.refusal(&layout, &own) {
        let shown = l.cgroups_path.clone().unwrap_or_default();
        return Err(crate::config::ConfigError::CgroupsPath { path: shown, why }.into());
    }
    rec.cgroup = cgroup;
    rec.cgroup.plan();
    // The writable layer likewise: recorded, then made.
    let root = c.dir.parent().unwrap_or_else(|| Path::new("/"));
    rec.layer = crate::layer::requested(spec, o.ephemeral_layer, &o.storage, root, &o.id, &rec.rootfs)?;
    if spec.namespace("mount").is_none() {
        // Its mounts will be made in this namespace, on a bind of the
        // rootfs: what is stacked there after this ID is the container's.
        rec.host_mount_base = Some(sys::mount_id(&rec.rootfs).ctx_at("mount id of", &rec.rootfs)?.1);
    }
    c.save(rec)?;
    crate::fault("create:state-saved");
    if let Some(layer) = &rec.layer {
        layer.make()?;
    }
    crate::reaper::claim_cgroup(root, &rec.cgroup)?;
    if rec.cgroup.systemd.is_none() {
        // What it makes was recorded by the plan, saved above; only a
        // directory made though it was there at the plan (removed
        // meanwhile by another container's teardown) needs a save.
        let planned = rec.cgroup.dirs.clone();
        rec.cgroup.create()?;
        if rec.cgroup.dirs != planned {
            c.save(rec)?;
        }
        crate::fault("create:cgroup-created");
        apply_resources(spec, &rec.cgroup)?;
    }
    for (k, v) in &l.time_offsets {
        if !matches!(k.as_str(), "monotonic" | "boottime") {
            return Err(crate::config::invalid("linux.timeOffsets", format!("unknown clock {k:?}")));
        }
        let _ = v;
    }

    Ok((layout, unit_props))
}

/// The config's limits, written to the cgroup's files.
fn apply_resources(spec: &Spec, cg: &Cgroup) -> Result<()> {
    let res = spec.linux().resources.clone().unwrap_or_default();
    berth_cgroups::apply(cg, &res, &device_rules(&res))?;
    Ok(())
}

/// The config's device rules, then the devices every container may use
/// (as runc does); no rules in the config: the cgroup's own default.
fn device_rules(res: &berth_cgroups::Resources) -> Vec<berth_cgroups::DeviceRule> {
    let mut devices = res.devices.clone();
    if !devices.is_empty() {
        devices.extend(berth_cgroups::default_device_rules());
    }
    devices
}

/// The unit properties of the config: its resources, then its
/// `org.systemd.property.*` annotations.
fn unit_properties(spec: &Spec) -> Result<Vec<berth_cgroups::systemd::Property>> {
    use berth_cgroups::systemd;
    let res = spec.linux().resources.clone().unwrap_or_default();
    let mut props = systemd::resource_properties(&res, &device_rules(&res))?;
    props.extend(systemd::annotation_properties(&spec.annotations)?);
    Ok(props)
}

/// The systemd driver: the container's transient unit, started with the
/// init as its process and the limits as properties, then the limits
/// written to its files as with cgroupfs (delegation makes them the
/// container's). Recorded in the state before this, so a failure or a
/// crash from here on is torn down by stopping the unit.
fn start_unit(spec: &Spec, id: &str, cg: &Cgroup, pid: i32, props: Vec<berth_cgroups::systemd::Property>) -> Result<()> {
    use berth_cgroups::systemd::Systemd;
    let Some(unit) = &cg.systemd else { return Ok(()) };
    let t0 = std::time::Instant::now();
    let mut sd = Systemd::connect(sys::getuid())?;
    let connected = t0.elapsed();
    let pid = u32::try_from(pid).map_err(|_| RuntimeError::Init(crate::spawn::InitError::DiedAtOnce))?;
    sd.start(unit, pid, &format!("berth container {id}"), props)?;
    if unit.is_slice() {
        // A slice takes no PIDs at start: the init joins its cgroup.
        cg.add_pid(pid.cast_signed(), false, true)?;
    }
    crate::fault("create:cgroup-created");
    cg.enable_controllers_to_unit();
    apply_resources(spec, cg)?;
    log::debug(&format!(
        "systemd: unit {} started over {} (connect {:.3}ms, total {:.3}ms)",
        unit.name,
        sd.transport().display(),
        connected.as_secs_f64() * 1e3,
        t0.elapsed().as_secs_f64() * 1e3
    ));
    Ok(())
}

/// The exec fifo (opened by the init, waited on by `start`), and the
/// sockets the init is handed: the console socket (berth's own end of a
/// pair when given, else a connection to --console-socket) and the seccomp
/// listener.
fn endpoints(
    o: &CreateOptions,
    spec: &Spec,
    c: &Container,
    own_console: Option<OwnedFd>,
) -> Result<(PathBuf, Option<OwnedFd>, Option<OwnedFd>)> {
    let l = spec.linux();
    let fifo = c.fifo();
    sys::mkfifo(&fifo, 0o622).ctx_at("mkfifo", &fifo)?;
    // Any container user must be able to open it for writing (not the umask's 0600).
    std::fs::set_permissions(&fifo, std::os::unix::fs::PermissionsExt::from_mode(0o622)).ctx_at("chmod", &fifo)?;
    let console = match own_console {
        Some(fd) => Some(fd),
        None => o.console_socket.as_deref().map(|p| sys::unix_connect(p).ctx_at("connect to console socket", p)).transpose()?,
    };
    let listener = l
        .seccomp
        .as_ref()
        .and_then(|v| v.get("listenerPath"))
        .and_then(|v| v.as_str())
        .filter(|p| !p.is_empty())
        .map(crate::seccomp::connect_agent)
        .transpose()?;
    Ok((fifo, console, listener))
}

/// The phase timings of a create, and when the current phase began.
type Clock<'a> = (&'a mut teardown::Timings, &'a mut std::time::Instant);

fn create_in(
    o: &CreateOptions,
    spec: &Spec,
    c: &Container,
    rec: &mut Record,
    own_console: Option<OwnedFd>,
    (t, since): Clock<'_>,
) -> Result<(Process, bool)> {
    let l = spec.linux();
    let (layout, unit_props) = record_and_make(o, spec, c, rec)?;
    t.mark("cgroup", since);
    let (fifo, console, listener) = endpoints(o, spec, c, own_console)?;
    t.mark("endpoints", since);
    let (parent_end, child_end) = sys::seqpacket_pair().ctx("socketpair")?;
    let pid_path = spec.namespace("pid").and_then(|n| n.path.clone()).filter(|p| !p.is_empty());
    // Namespaces joined by path (other than pid and time) take the slow
    // path: the child joins them, then makes the rest itself.
    let slow = l.namespaces.iter().any(|n| n.path.as_deref().is_some_and(|p| !p.is_empty()) && n.kind != "pid" && n.kind != "time");
    // Before any namespace of this process changes: the helper that holds
    // an idmap's user namespace must be this process' plain child.
    let idmapped = crate::rootfs::prepare_idmapped(spec)?;
    let restore = spawn::enter_for_children(spec, pid_path.as_deref(), slow)?;
    let clone_flags = spawn::clone_namespaces(spec, slow);
    // cgroups: v2 through CLONE_INTO_CGROUP where it can; v1 by the child
    // moving itself, unless it starts in a new user namespace (then it may
    // not write the host's cgroup files and is moved).
    let child_joins_v1 = !clone_flags.contains(sys::Namespaces::USER);
    let (forked, into_v2) = spawn::clone_into(clone_flags, &rec.cgroup)?;
    let (pid, pidfd) = match forked {
        sys::Forked::Child => {
            drop(parent_end);
            init::child_main(Init {
                spec,
                id: &o.id,
                rootfs: &rec.rootfs,
                cgroup: &rec.cgroup,
                layout: &layout,
                chan: Channel(child_end),
                fifo: Some(fifo.as_path()),
                console_socket: console,
                seccomp_listener: listener,
                preserve_fds: o.preserve_fds,
                no_pivot: o.no_pivot,
                no_new_keyring: o.no_new_keyring,
                cloned: clone_flags,
                pidns_joined: pid_path.is_some() && !slow,
                join_v1_cgroups: child_joins_v1,
                idmapped,
                layer: rec.layer.as_ref().map(|l| l.mount_data()),
            })
        }
        sys::Forked::Parent { pid, pidfd } => (pid, pidfd),
    };
    // Its clone holds a copy of this namespace's mounts until its
    // pivot_root: marked at once, so that teardowns meanwhile do not search
    // it (nor detach anything there).
    let root = c.dir.parent().unwrap_or_else(|| Path::new("/"));
    let marked = if clone_flags.contains(sys::Namespaces::MOUNT) { crate::reclaim::ns_id_of(pid) } else { 0 };
    crate::reclaim::mark_creating(root, marked, &o.id);
    drop(child_end);
    for (fd, flag) in &restore {
        // Only needed where they were changed; harmless elsewhere.
        let _ = sys::setns(fd.as_fd(), *flag);
    }
    drop(console);
    drop(listener);
    let chan = Channel(parent_end);
    t.mark("clone", since);
    crate::fault("create:cloned");
    let first =
        Process::open(pid, process::stat(pid).map(|s| s.0).unwrap_or(0)).ok_or(RuntimeError::Init(crate::spawn::InitError::DiedAtOnce))?;
    rec.pid = pid;
    rec.start_time = first.start_time;
    rec.mounts.ns_id = marked;
    c.save(rec)?;
    crate::fault("create:pid-saved");
    // With the systemd driver, systemd moves the init into its unit.
    let v2_by_hand = !into_v2 && rec.cgroup.systemd.is_none();
    if child_joins_v1 {
        chan.expect(Msg::Joined)?;
        rec.cgroup.add_pid(pid, false, v2_by_hand)?;
    } else {
        rec.cgroup.add_pid(pid, true, v2_by_hand)?;
    }
    start_unit(spec, &o.id, &rec.cgroup, pid, unit_props)?;
    if clone_flags.contains(sys::Namespaces::USER) {
        spawn::write_maps(pid, spec)?;
    }
    chan.send_msg(&Msg::Go(spawn::hook_state(rec, pid, Status::Creating)))?;

    // Serve the child until it is ready.
    let (init_proc, child) = spawn::serve_until_ready(&chan, &pidfd, pid, spec, c, rec)?;
    t.mark("setup", since);
    let (init, is_parent) = match init_proc {
        Some(x) => x,
        None => (Process { pid, start_time: first.start_time, pidfd }, true),
    };
    crate::fault("create:ready");
    rec.mount_watermark = sys::mount_id_unique(Path::new(&format!("/proc/{}/root", init.pid))).unwrap_or(0);
    rec.mounts = crate::reclaim::identify(&rec.rootfs, &rec.bundle, rec.host_mount_base, marked);
    t.mark("mounts_recorded", since);
    rec.phase = Phase::Created;
    c.save(rec)?;
    crate::reclaim::unmark_creating(root, marked);
    t.mark("state_saved", since);
    log::info(&format!("create {}: {} (setup in the container: {child})", o.id, t.line()));
    if let Some(p) = &o.pid_file {
        crate::state::write_atomic(p, init.pid.to_string().as_bytes())?;
    }
    if let Some(s) = &o.pidfd_socket {
        let sock = sys::unix_connect(s).ctx_at("connect to pidfd socket", s)?;
        sys::send_fd(sock.as_fd(), b"pidfd", init.pidfd.as_fd()).ctx("send the pidfd")?;
    }
    Ok((init, is_parent))
}

/// `start`: releases a created container through its exec fifo.
pub fn start(root: &Path, id: &str) -> Result<()> {
    let c = Container::open_locked(root, id)?;
    let mut rec = c.load()?.ok_or_else(|| RuntimeError::NotExist { id: id.into() })?;
    let status = rec.status(&c);
    if status != Status::Created {
        return Err(crate::state::StateError::Cannot { verb: "start", status }.into());
    }
    if rec.config.as_ref().is_some_and(|s| s.process.is_none()) {
        return Err(crate::state::StateError::NoProcess.into());
    }
    let init = rec.init().ok_or(RuntimeError::NotRunning)?;
    release(&c, &init)?;
    crate::fault("start:released");
    rec.phase = Phase::Started;
    c.save(&rec)?;
    poststart(&rec)?;
    Ok(())
}

/// Opens the fifo for reading without blocking, then waits for the init's
/// byte or its death, whichever comes first.
fn release(c: &Container, init: &Process) -> Result<()> {
    let fifo = c.fifo();
    let fd = sys::openat(None, &fifo, libc::O_RDONLY | libc::O_NONBLOCK, 0).ctx_at("open", &fifo)?;
    let mut file = std::fs::File::from(fd.try_clone().ctx("dup")?);
    let mut got = false;
    loop {
        let r = sys::poll_in(&[fd.as_fd(), init.pidfd.as_fd()], -1).ctx("wait for the container to start")?;
        if r[0] & libc::POLLIN != 0 {
            let mut b = [0u8; 1];
            if std::io::Read::read(&mut file, &mut b).unwrap_or(0) == 1 {
                got = true;
                continue;
            }
        }
        if r[0] & libc::POLLHUP != 0 {
            // The writer's end closes at the exec (close-on-exec), or when
            // the process dies first.
            if !got {
                return Err(crate::state::StateError::StartFailed.into());
            }
            break;
        }
        if r[1] != 0 {
            if got {
                break; // ran and already exited
            }
            return Err(crate::state::StateError::ExitedBeforeStart.into());
        }
    }
    let _ = std::fs::remove_file(&fifo);
    Ok(())
}

fn poststart(rec: &Record) -> Result<()> {
    if let Some(h) = rec.config.as_ref().and_then(|s| s.hooks.as_ref()) {
        let st = serde_json::to_string(&rec.oci(Status::Running)).unwrap_or_default();
        for (i, hook) in h.poststart.iter().enumerate() {
            if let Err(e) = hooks::run("poststart", i, hook, &st) {
                log::warn(&e.to_string());
            }
        }
    }
    Ok(())
}

/// `state`: the OCI state JSON.
pub fn state(root: &Path, id: &str) -> Result<String> {
    let c = Container::open(root, id)?;
    let rec = c.load()?.ok_or_else(|| RuntimeError::NotExist { id: id.into() })?;
    let st = rec.status(&c);
    serde_json::to_string_pretty(&rec.oci(st)).map_err(|e| crate::state::StateError::Encode(e).into())
}

/// One row of `list`.
#[derive(Debug)]
pub struct Listed {
    pub record: Record,
    pub status: Status,
}

pub fn list(root: &Path) -> Result<Vec<Listed>> {
    let mut out = Vec::new();
    let rd = match std::fs::read_dir(root) {
        Ok(rd) => rd,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
        Err(e) => return Err(RuntimeError::io_at("read", root, e)),
    };
    let mut names: Vec<String> = rd.flatten().filter_map(|e| e.file_name().into_string().ok()).collect();
    names.sort();
    for n in names {
        let Ok(c) = Container::open(root, &n) else { continue };
        let Ok(Some(rec)) = c.load() else { continue };
        let status = rec.status(&c);
        out.push(Listed { record: rec, status });
    }
    Ok(out)
}

/// Parses a signal given as a name (with or without SIG) or a number; 0,
/// as for kill(2), sends nothing and only checks (runc's `kill ID 0`).
pub fn parse_signal(s: &str) -> Result<i32> {
    if let Ok(n) = s.parse::<i32>() {
        if (0..=64).contains(&n) {
            return Ok(n);
        }
        return Err(RuntimeError::Usage(format!("invalid signal {s:?}")));
    }
    let up = s.to_ascii_uppercase();
    let name = up.strip_prefix("SIG").unwrap_or(&up);
    const SIGS: &[(&str, i32)] = &[
        ("HUP", 1),
        ("INT", 2),
        ("QUIT", 3),
        ("ILL", 4),
        ("TRAP", 5),
        ("ABRT", 6),
        ("IOT", 6),
        ("BUS", 7),
        ("FPE", 8),
        ("KILL", 9),
        ("USR1", 10),
        ("SEGV", 11),
        ("USR2", 12),
        ("PIPE", 13),
        ("ALRM", 14),
        ("TERM", 15),
        ("STKFLT", 16),
        ("CHLD", 17),
        ("CONT", 18),
        ("STOP", 19),
        ("TSTP", 20),
        ("TTIN", 21),
        ("TTOU", 22),
        ("URG", 23),
        ("XCPU", 24),
        ("XFSZ", 25),
        ("VTALRM", 26),
        ("PROF", 27),
        ("WINCH", 28),
        ("IO", 29),
        ("POLL", 29),
        ("PWR", 30),
        ("SYS", 31),
    ];
    if let Some((_, n)) = SIGS.iter().find(|(k, _)| *k == name) {
        return Ok(*n);
    }
    // SIGRTMIN+n and SIGRTMAX-n, each within the 31 real-time signals.
    let bad = || RuntimeError::Usage(format!("invalid signal {s:?}"));
    let offset = |rest: &str, sign: char| -> Result<i32> {
        if rest.is_empty() {
            return Ok(0);
        }
        let n = rest.strip_prefix(sign).filter(|d| !d.is_empty() && d.bytes().all(|b| b.is_ascii_digit())).ok_or_else(bad)?;
        n.parse::<i32>().ok().filter(|n| (0..=30).contains(n)).ok_or_else(bad)
    };
    if let Some(rest) = name.strip_prefix("RTMIN") {
        return Ok(34 + offset(rest, '+')?);
    }
    if let Some(rest) = name.strip_prefix("RTMAX") {
        return Ok(64 - offset(rest, '-')?);
    }
    Err(bad())
}

/// Parses a duration: seconds (`1.5`), or with a unit (`5s`, `500ms`, `2m`).
/// It must be finite, not negative, and at most a year: anything else is
/// an error naming `what`, never a panic or an endless wait.
pub fn parse_duration(s: &str, what: &str) -> Result<Duration> {
    let t = s.trim();
    let (num, scale) = if let Some(v) = t.strip_suffix("ms") {
        (v, 1e-3)
    } else if let Some(v) = t.strip_suffix('s') {
        (v, 1.0)
    } else if let Some(v) = t.strip_suffix('m') {
        (v, 60.0)
    } else if let Some(v) = t.strip_suffix('h') {
        (v, 3600.0)
    } else {
        (t, 1.0)
    };
    let secs = num.parse::<f64>().ok().map(|x| x * scale).filter(|x| x.is_finite() && *x >= 0.0 && *x <= 366.0 * 86400.0);
    let shown: String = s.chars().take(40).collect();
    secs.map(Duration::from_secs_f64)
        .ok_or_else(|| RuntimeError::Usage(format!("invalid {what} {shown:?}: a duration from 0 to a year (e.g. 10, 5s, 500ms)")))
}

/// `kill`: a signal through the init's confirmed pidfd; with `all`, to
/// every process of the container.
pub fn kill(root: &Path, id: &str, sig: i32, all: bool) -> Result<()> {
    let c = Container::open_locked(root, id)?;
    let rec = c.load()?.ok_or_else(|| RuntimeError::NotExist { id: id.into() })?;
    let status = rec.status(&c);
    if matches!(status, Status::Stopped) && !all {
        return Err(RuntimeError::NotRunning);
    }
    if all {
        if sig == libc::SIGKILL {
            return teardown::kill_cgroup(&rec);
        }
        teardown::signal_listed(&rec.cgroup, &rec.cgroup.pids(), sig);
        return Ok(());
    }
    let init = rec.init().ok_or(RuntimeError::NotRunning)?;
    init.signal(sig)?;
    crate::fault("kill:signaled");
    Ok(())
}

/// `delete`: a stopped (or created) container is torn down; a running one
/// only with `force`. An unknown ID fails with "does not exist".
pub fn delete(root: &Path, id: &str, force: bool, deadline: Duration) -> Result<Timings> {
    let t0 = std::time::Instant::now();
    let c = Container::open_locked(root, id)?;
    let rec = c.load()?;
    let locked = t0.elapsed();
    if let Some(r) = &rec {
        let st = r.status(&c);
        // runtime-spec: deleting a container that is not stopped is an
        // error (a created one included) unless forced.
        if matches!(st, Status::Running | Status::Paused | Status::Created | Status::Creating) && !force {
            return Err(crate::state::StateError::NotStopped { id: id.into(), status: st }.into());
        }
        if st == Status::Paused {
            let _ = r.cgroup.set_frozen(false);
        }
    }
    if crate::log::debug_enabled() {
        crate::log::debug(&format!(
            "delete {id}: locked and loaded in {:.3}ms, status read in {:.3}ms",
            locked.as_secs_f64() * 1e3,
            (t0.elapsed() - locked).as_secs_f64() * 1e3
        ));
    }
    teardown::destroy(&c, rec.as_ref(), &teardown::Options { deadline, poststop: true })
}

/// `update`: new resource limits for a created, running or paused container,
/// written to its cgroup and kept in its state.
pub fn update(root: &Path, id: &str, r: &berth_cgroups::Resources) -> Result<()> {
    let c = Container::open_locked(root, id)?;
    let mut rec = c.load()?.ok_or_else(|| RuntimeError::NotExist { id: id.into() })?;
    if rec.status(&c) == Status::Stopped {
        return Err(crate::state::StateError::UpdateStopped { id: id.into() }.into());
    }
    // v1 takes device rules one by one on top of what it has; on v2 the
    // program is rebuilt from every rule so far, the new ones last, and
    // replaces the old one: the same outcome.
    let mut devices = r.devices.clone();
    let stored = rec
        .config
        .as_ref()
        .and_then(|s| s.linux.as_ref())
        .and_then(|l| l.resources.as_ref())
        .map(|r| r.devices.clone())
        .unwrap_or_default();
    if !r.devices.is_empty() && rec.cgroup.v1_dir("devices").is_none() {
        let mut all = stored.clone();
        if !all.is_empty() {
            all.extend(berth_cgroups::default_device_rules());
        }
        all.extend(r.devices.iter().cloned());
        devices = all;
    }
    if let Some(unit) = &rec.cgroup.systemd {
        // systemd's view first (it would write its own back on a reload).
        let props = berth_cgroups::systemd::resource_properties(r, &devices)?;
        berth_cgroups::systemd::Systemd::connect(sys::getuid()).and_then(|mut sd| sd.set_properties(&unit.name, props))?;
    }
    berth_cgroups::apply(&rec.cgroup, r, &devices)?;
    if let Some(spec) = rec.config.as_mut() {
        let linux = spec.linux.get_or_insert_with(Default::default);
        let cur = linux.resources.get_or_insert_with(Default::default);
        let mut merged = serde_json::to_value(&*cur).unwrap_or_default();
        if let (Some(m), serde_json::Value::Object(new)) = (merged.as_object_mut(), serde_json::to_value(r).unwrap_or_default()) {
            for (k, v) in new {
                m.insert(k, v);
            }
            // Device rules accumulate (a later update builds on them all).
            if !r.devices.is_empty() {
                let mut all = stored.clone();
                all.extend(r.devices.iter().cloned());
                m.insert("devices".into(), serde_json::to_value(all).unwrap_or_default());
            }
        }
        *cur = serde_json::from_value(merged).map_err(crate::state::StateError::MergeResources)?;
    }
    c.save(&rec)
}

/// `ps`: the host PIDs of every process of the container.
pub fn pids(root: &Path, id: &str) -> Result<Vec<i32>> {
    let c = Container::open(root, id)?;
    let rec = c.load()?.ok_or_else(|| RuntimeError::NotExist { id: id.into() })?;
    Ok(rec.cgroup.pids())
}

/// `pause` / `resume` through the freezer.
pub fn set_paused(root: &Path, id: &str, paused: bool) -> Result<()> {
    let c = Container::open_locked(root, id)?;
    let rec = c.load()?.ok_or_else(|| RuntimeError::NotExist { id: id.into() })?;
    let st = rec.status(&c);
    match (paused, st) {
        (true, Status::Running) | (false, Status::Paused) => Ok(rec.cgroup.set_frozen(paused)?),
        (true, _) => Err(crate::state::StateError::NotRunning { id: id.into() }.into()),
        (false, _) => Err(crate::state::StateError::NotPaused { id: id.into() }.into()),
    }
}

/// `run`: create, start, wait in the foreground forwarding signals, delete.
/// Returns the exit code (128+signal for a signal).
pub fn run(o: &CreateOptions, detach: bool, keep: bool) -> Result<i32> {
    // The init may be a grandchild (namespaces joined by path): as subreaper
    // this process still reaps it and learns its exit status.
    let _ = sys::set_child_subreaper();
    let mut created = create(&CreateOptions { foreground: !detach, ..o.clone() })?;
    let c = &created.container;
    let result = (|| {
        if created.record.config.as_ref().is_some_and(|s| s.process.is_none()) {
            return Err(crate::state::StateError::NoProcess.into());
        }
        release(c, &created.init)?;
        let mut rec = created.record.clone();
        rec.phase = Phase::Started;
        c.save(&rec)?;
        poststart(&rec)?;
        Ok::<_, RuntimeError>(rec)
    })();
    let rec = match result {
        Ok(r) => r,
        Err(e) => {
            let _ = teardown::destroy(c, Some(&created.record), &teardown::Options::default());
            return Err(e);
        }
    };
    if detach {
        return Ok(0);
    }
    created.container.unlock();
    let code = match &created.terminal {
        Some(m) => crate::tty::relay(m, &created.init.pidfd)?,
        None => crate::process::wait_forwarding(&created.init.pidfd)?,
    };
    if !keep && created.container.relock()? {
        // Whatever another command changed meanwhile, tear down what is there.
        let rec = created.container.load()?.unwrap_or(rec);
        teardown::destroy(&created.container, Some(&rec), &teardown::Options::default())?;
    }
    Ok(code)
}

/// Fills in `container` from the containers under `root`.
pub fn attribute(holders: &mut [crate::busy::Holder], root: &Path) {
    let Ok(list) = list(root) else { return };
    let mut by_pid = std::collections::BTreeMap::new();
    for c in list {
        for p in c.record.cgroup.pids() {
            by_pid.insert(p, c.record.id.clone());
        }
        if c.record.pid > 0 {
            by_pid.insert(c.record.pid, c.record.id.clone());
        }
    }
    for h in holders {
        h.container = by_pid.get(&h.pid).cloned();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signals_by_number_name_and_realtime_offset() {
        let ok = [
            ("9", 9),
            ("0", 0),
            ("KILL", 9),
            ("SIGKILL", 9),
            ("sigterm", 15),
            ("term", 15),
            ("IOT", 6),
            ("SIGPOLL", 29),
            ("64", 64),
            ("RTMIN", 34),
            ("SIGRTMIN+1", 35),
            ("RTMAX", 64),
            ("SIGRTMAX-1", 63),
        ];
        for (s, n) in ok {
            assert_eq!(parse_signal(s).unwrap(), n, "{s}");
        }
        for s in ["65", "-9", "SIGFOO", "", "SIG", "KILL9", "SIGRTMIN+31", "RTMAX-31", " 9"] {
            let e = parse_signal(s).unwrap_err();
            assert!(matches!(e, RuntimeError::Usage(_)), "{s}: {e}");
        }
    }

    #[test]
    fn durations_with_or_without_a_unit() {
        let ok =
            [("10", 10_000), ("5s", 5_000), ("500ms", 500), ("1.5", 1_500), ("2m", 120_000), ("1h", 3_600_000), ("0", 0), (" 3s ", 3_000)];
        for (s, ms) in ok {
            assert_eq!(parse_duration(s, "--timeout").unwrap(), Duration::from_millis(ms), "{s}");
        }
        for s in ["", "s", "ms", "-1", "1d", "nan", "inf", "367d", "9000h", "1e9", "5 s", "0x10"] {
            let e = parse_duration(s, "--timeout").unwrap_err();
            assert!(e.to_string().starts_with("invalid --timeout"), "{s}: {e}");
        }
    }
}
