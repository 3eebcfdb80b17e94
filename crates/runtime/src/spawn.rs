//! How a container's processes come to be, on the parent's side: the
//! namespaces set on berth itself for its children (a PID namespace by
//! path, the time namespace), the clone (clone3 into the container's v2
//! cgroup where the kernel can), and the handshake between parent and
//! child: [`Msg`]s over a SOCK_SEQPACKET [`Channel`]. The child's side is
//! [`crate::init`] (create) and [`crate::exec`] (exec).

use crate::config::{ns_flag, Spec};
use crate::error::Context;
use crate::process::{self, Process};
use crate::state::{Container, Record, Status};
use crate::{hooks, Result, RuntimeError};
use berth_sys as sys;
use std::os::fd::{AsFd, OwnedFd};
use std::path::Path;

/// The messages of the create (and exec) handshake, in the order they go:
///
/// | from | message | meaning |
/// |---|---|---|
/// | child | `Joined` | moved itself into the v1 cgroups (when it does) |
/// | parent | `Go(state)` | cgroup joined, id maps written; the OCI state for the container's hooks |
/// | child | `Maps` | (slow path) made its user namespace: write the maps |
/// | parent | `Mapped` | |
/// | child | `Hooks` | namespaces exist: run prestart/createRuntime now |
/// | parent | `HooksOk` | |
/// | child | `Pid(n)` | (slow path, and exec) the host PID of the real process |
/// | child | `Ready` | waiting on the exec fifo |
/// | either | `Error(text)` | setup failed; the child exits |
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Msg {
    Joined,
    Go(String),
    Maps,
    Mapped,
    Hooks,
    HooksOk,
    Pid(i32),
    /// Set up; with the child's phase timings (`Timings::line`).
    Ready(String),
    Error(String),
}

impl Msg {
    fn encode(&self) -> String {
        match self {
            Msg::Joined => "joined".into(),
            Msg::Go(state) => format!("go {state}"),
            Msg::Maps => "maps".into(),
            Msg::Mapped => "mapped".into(),
            Msg::Hooks => "hooks".into(),
            Msg::HooksOk => "hooks-ok".into(),
            Msg::Pid(n) => format!("pid {n}"),
            Msg::Ready(t) if t.is_empty() => "ready".into(),
            Msg::Ready(t) => format!("ready {t}"),
            Msg::Error(e) => format!("error {e}"),
        }
    }

    fn decode(m: &str) -> Result<Msg> {
        Ok(match m {
            "joined" => Msg::Joined,
            "maps" => Msg::Maps,
            "mapped" => Msg::Mapped,
            "hooks" => Msg::Hooks,
            "hooks-ok" => Msg::HooksOk,
            "ready" => Msg::Ready(String::new()),
            _ => {
                if let Some(state) = m.strip_prefix("go ") {
                    Msg::Go(state.to_string())
                } else if let Some(t) = m.strip_prefix("ready ") {
                    Msg::Ready(t.to_string())
                } else if let Some(e) = m.strip_prefix("error ") {
                    Msg::Error(e.to_string())
                } else if let Some(n) = m.strip_prefix("pid ").and_then(|n| n.trim().parse().ok()) {
                    Msg::Pid(n)
                } else {
                    let shown: String = m.chars().take(80).collect();
                    return Err(InitError::BadMessage(shown).into());
                }
            }
        })
    }

    /// The error a message means where `want` was expected.
    pub fn unexpected(self, want: &str) -> RuntimeError {
        match self {
            Msg::Error(e) => InitError::Failed(e).into(),
            m => InitError::Unexpected { got: m.encode(), want: want.to_string() }.into(),
        }
    }
}

/// What went wrong in a container's setup, or between its two sides.
#[derive(Debug, thiserror::Error)]
pub enum InitError {
    #[error("bad message on the sync socket: {0:?}")]
    BadMessage(String),
    #[error("the other side of the sync socket sent {got:?} where {want} was expected")]
    Unexpected { got: String, want: String },
    #[error("the other side of the sync socket closed")]
    Closed,
    /// The other side's setup failed and said why. Its error arrives as
    /// text: it crossed the socket (and, for a container's init, a PID
    /// namespace).
    #[error("{0}")]
    Failed(String),
    #[error("the container process died at once")]
    DiedAtOnce,
    #[error("the container process exited during setup ({0:?})")]
    ExitedDuringSetup(Option<berth_sys::ExitStatus>),
    #[error("the container's setup sent no pty master")]
    NoPtyMaster,
    /// The working directory could not be entered (runc's words).
    #[error("chdir to cwd ({cwd:?}) set in config.json: {source}")]
    Cwd { cwd: String, source: std::io::Error },
    /// execve of the container's process failed.
    #[error("exec {arg0}: {source}")]
    Exec { arg0: String, source: std::io::Error },
}

/// One end of the create handshake.
#[derive(Debug)]
pub struct Channel(pub OwnedFd);

/// A message is sent in packets of at most this many bytes, each led by
/// one byte: `+` (more follow) or `.` (the last). A message can be as
/// large as the config makes it (the state passed to hooks carries every
/// annotation), while a socket packet is limited by its buffer.
const PACKET: usize = 32 * 1024;

impl Channel {
    pub fn send(&self, msg: &str) -> Result<()> {
        let bytes = msg.as_bytes();
        let mut chunks = bytes.chunks(PACKET).peekable();
        if chunks.peek().is_none() {
            return sys::send(self.0.as_fd(), b".").ctx("write to the sync socket");
        }
        while let Some(c) = chunks.next() {
            let mut pkt = Vec::with_capacity(c.len() + 1);
            pkt.push(if chunks.peek().is_some() { b'+' } else { b'.' });
            pkt.extend_from_slice(c);
            sys::send(self.0.as_fd(), &pkt).ctx("write to the sync socket")?;
        }
        Ok(())
    }

    pub fn recv(&self) -> Result<String> {
        let mut buf = vec![0u8; PACKET + 1];
        let mut msg = Vec::new();
        loop {
            let (n, _) = sys::recv_fd(self.0.as_fd(), &mut buf).ctx("read the sync socket")?;
            if n == 0 {
                return Err(InitError::Closed.into());
            }
            msg.extend_from_slice(&buf[1..n]);
            if buf[0] != b'+' {
                return Ok(String::from_utf8_lossy(&msg).into_owned());
            }
        }
    }

    pub fn send_msg(&self, m: &Msg) -> Result<()> {
        self.send(&m.encode())
    }

    pub fn recv_msg(&self) -> Result<Msg> {
        Msg::decode(&self.recv()?)
    }

    /// Waits for `want`; an `Error` message (or any other) becomes an error.
    pub fn expect(&self, want: Msg) -> Result<()> {
        match self.recv_msg()? {
            m if m == want => Ok(()),
            m => Err(m.unexpected(&want.encode())),
        }
    }
}

/// Namespaces that apply to children are set on this process first: a
/// PID namespace by path (unless the clone's child joins it, `slow`), and
/// the time namespace (its offsets must be written before any process is
/// in it). Returns what this process' later children (hooks) must get
/// back: the namespaces changed here are for the container's init only.
pub fn enter_for_children(spec: &Spec, pid_path: Option<&str>, slow: bool) -> Result<Vec<(OwnedFd, sys::Namespaces)>> {
    let l = spec.linux();
    let restore: Vec<(OwnedFd, sys::Namespaces)> =
        [("pid_for_children", sys::Namespaces::PID), ("time_for_children", sys::Namespaces::TIME)]
            .iter()
            .filter_map(|(n, f)| sys::openat(None, Path::new(&format!("/proc/self/ns/{n}")), libc::O_RDONLY, 0).ok().map(|fd| (fd, *f)))
            .collect();
    if let Some(p) = pid_path {
        if !slow {
            let fd = sys::openat(None, Path::new(p), libc::O_RDONLY, 0).ctx_of("open pid namespace", p)?;
            sys::setns(fd.as_fd(), sys::Namespaces::PID).ctx_of("join pid namespace", p)?;
        }
    }
    if let Some(t) = spec.namespace("time") {
        match t.path.as_deref().filter(|p| !p.is_empty()) {
            Some(p) => {
                let fd = sys::openat(None, Path::new(p), libc::O_RDONLY, 0).ctx_of("open time namespace", p)?;
                sys::setns(fd.as_fd(), sys::Namespaces::TIME).ctx_of("join time namespace", p)?;
            }
            None => {
                sys::unshare(sys::Namespaces::TIME).ctx("unshare the time namespace")?;
                let mut offs = String::new();
                for (k, v) in &l.time_offsets {
                    offs += &format!("{k} {} {}\n", v.secs, v.nanosecs);
                }
                if !offs.is_empty() {
                    std::fs::write("/proc/self/timens_offsets", offs).ctx("write timens_offsets")?;
                }
            }
        }
    }
    Ok(restore)
}

/// The namespaces the clone itself creates (the fast path: one process, no
/// intermediate). None when the child must join namespaces by path first
/// (`slow`) and then make the rest itself; never cgroup (made after the
/// cgroup is joined) or time (set on berth for its children).
pub fn clone_namespaces(spec: &Spec, slow: bool) -> sys::Namespaces {
    let mut flags = sys::Namespaces::empty();
    if !slow {
        for n in &spec.linux().namespaces {
            let f = ns_flag(&n.kind).unwrap_or_default();
            let new = n.path.as_deref().unwrap_or("").is_empty();
            if new && f != sys::Namespaces::CGROUP && f != sys::Namespaces::TIME {
                flags |= f;
            }
        }
    }
    flags
}

/// clone3 with `namespaces`, started in the container's v2 cgroup where the
/// kernel can (CLONE_INTO_CGROUP, 5.7): no migration at all. Returns the
/// fork and whether the child is in the v2 cgroup already; where not (an
/// older kernel, a filter, no v2 directory), the caller moves it.
pub fn clone_into(namespaces: sys::Namespaces, cgroup: &berth_cgroups::Cgroup) -> Result<(sys::Forked, bool)> {
    let v2fd = cgroup.v2_dir().and_then(|d| sys::openat(None, &d.path, libc::O_RDONLY | libc::O_DIRECTORY, 0).ok());
    match sys::clone3(namespaces, v2fd.as_ref().map(|f| f.as_fd())) {
        Ok(f) => Ok((f, v2fd.is_some())),
        Err(e) if v2fd.is_some() && matches!(e.raw_os_error(), Some(libc::EINVAL | libc::E2BIG | libc::ENOSYS)) => {
            Ok((sys::clone3(namespaces, None).ctx("clone3")?, false))
        }
        Err(e) => Err(RuntimeError::io("clone3", e)),
    }
}

/// The parent's side of the handshake after `Go`, until the child says it
/// is ready: it writes the id maps of a user namespace the child made,
/// runs the prestart and createRuntime hooks when the namespaces exist,
/// and records the real init when the child forked one (a PID namespace
/// the clone did not make), reaping the intermediate. Returns that init,
/// if there was one; the state is saved at each step.
pub fn serve_until_ready(
    chan: &Channel,
    pidfd: &OwnedFd,
    pid: i32,
    spec: &Spec,
    c: &Container,
    rec: &mut Record,
) -> Result<(Option<(Process, bool)>, String)> {
    let mut init_proc: Option<(Process, bool)> = None;
    let child_phases: String;
    loop {
        let msg = match chan.recv_msg() {
            Ok(m) => m,
            Err(_) => {
                let st = sys::waitid_pidfd(pidfd.as_fd(), true).ok().flatten();
                return Err(crate::spawn::InitError::ExitedDuringSetup(st).into());
            }
        };
        match msg {
            Msg::Maps => {
                write_maps(pid, spec)?;
                chan.send_msg(&Msg::Mapped)?;
            }
            Msg::Hooks => {
                let cur = init_proc.as_ref().map_or(pid, |(p, _)| p.pid);
                let state = hook_state(rec, cur, Status::Created);
                if let Some(h) = &spec.hooks {
                    hooks::run_all("prestart", &h.prestart, &state)?;
                    hooks::run_all("createRuntime", &h.create_runtime, &hook_state(rec, cur, Status::Creating))?;
                }
                chan.send_msg(&Msg::HooksOk)?;
            }
            Msg::Ready(t) => {
                child_phases = t;
                break;
            }
            Msg::Pid(gpid) => {
                // The intermediate exits now; reap it.
                let _ = sys::waitid_pidfd(pidfd.as_fd(), false);
                let st = process::stat(gpid).map(|s| s.0).unwrap_or(0);
                let p = Process::open(gpid, st).ok_or(RuntimeError::Init(crate::spawn::InitError::DiedAtOnce))?;
                rec.pid = gpid;
                rec.start_time = st;
                c.save(rec)?;
                init_proc = Some((p, false));
            }
            m => {
                let _ = sys::waitid_pidfd(pidfd.as_fd(), false);
                return Err(m.unexpected("maps, hooks, pid or ready"));
            }
        }
    }
    Ok((init_proc, child_phases))
}

pub fn write_maps(pid: i32, spec: &Spec) -> Result<()> {
    let l = spec.linux();
    let fmt = crate::rootfs::map_text;
    std::fs::write(format!("/proc/{pid}/uid_map"), fmt(&l.uid_mappings)).ctx("write uid_map")?;
    std::fs::write(format!("/proc/{pid}/gid_map"), fmt(&l.gid_mappings)).ctx("write gid_map")?;
    Ok(())
}

pub fn hook_state(rec: &Record, pid: i32, status: Status) -> String {
    let mut st = rec.oci(status);
    st.pid = pid;
    serde_json::to_string(&st).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn handshake_messages_round_trip_and_junk_is_an_error() {
        for m in [
            Msg::Joined,
            Msg::Go("{\"id\":\"x y\"}".into()),
            Msg::Maps,
            Msg::Mapped,
            Msg::Hooks,
            Msg::HooksOk,
            Msg::Pid(4242),
            Msg::Ready(String::new()),
            Msg::Ready("root=1.000ms total=1.000ms".into()),
            Msg::Error("exec: \"x\": no such file".into()),
        ] {
            assert_eq!(Msg::decode(&m.encode()).unwrap(), m);
        }
        Msg::decode("pid x").unwrap_err();
        Msg::decode("hello").unwrap_err();
        // An error message keeps its words (callers match runc's).
        assert_eq!(Msg::Error("permission denied".into()).unexpected("ready").to_string(), "permission denied");
    }
}
