//! A small D-Bus client for berth's systemd cgroup driver.
//!
//! Only what talking to systemd's manager needs: connect to a unix socket,
//! authenticate with EXTERNAL (the kernel tells the peer our uid), call
//! methods, and wait for signals. Blocking I/O under deadlines, one
//! connection per command; no threads, no async runtime, no dependency.
//! It costs the binary a few KiB and the commands that never talk to
//! systemd nothing.
//!
//! Two kinds of peer: a bus daemon (the system bus, where the client says
//! `Hello` and asks the daemon to route signals to it with `AddMatch`), or
//! systemd's own private socket (peer to peer: no daemon, no `Hello`, and
//! systemd sends its signals to every such connection).
#![forbid(unsafe_code)]

pub mod wire;

pub use wire::{Message, Value};

use std::collections::VecDeque;
use std::io::{self, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// What went wrong talking D-Bus.
#[derive(Debug, thiserror::Error)]
pub enum DbusError {
    #[error("connect to {}: {source}", path.display())]
    Connect { path: PathBuf, source: io::Error },
    #[error("D-Bus {step}: {source}")]
    Io { step: &'static str, source: io::Error },
    #[error("D-Bus authentication refused by {}: {reply:?}", path.display())]
    Auth { path: PathBuf, reply: String },
    #[error("malformed D-Bus message: {0}")]
    Malformed(&'static str),
    /// The peer answered with an error (its name, such as
    /// `org.freedesktop.systemd1.NoSuchUnit`, and its message).
    #[error("{message} ({name})")]
    Remote { name: String, message: String },
    #[error("no answer over D-Bus within {} ms: {what}", waited.as_millis())]
    Timeout { waited: Duration, what: String },
}

impl DbusError {
    /// The D-Bus error name, when the peer answered with an error.
    pub fn remote_name(&self) -> Option<&str> {
        match self {
            DbusError::Remote { name, .. } => Some(name),
            _ => None,
        }
    }
}

pub type Result<T> = std::result::Result<T, DbusError>;

/// The largest message accepted from the peer.
const MAX_MESSAGE: usize = 16 << 20;

/// One connection.
#[derive(Debug)]
pub struct Bus {
    stream: UnixStream,
    serial: u32,
    /// Signals that arrived while a reply was awaited.
    queued: VecDeque<Message>,
    /// Calls sent without waiting ([`Bus::pipeline`]) whose replies are
    /// still to come: an error among them fails the next call.
    pending: Vec<(u32, String)>,
    /// True on a bus daemon (messages are routed by name).
    pub routed: bool,
    pub path: PathBuf,
}

fn io_err(step: &'static str) -> impl FnOnce(io::Error) -> DbusError {
    move |source| DbusError::Io { step, source }
}

impl Bus {
    /// Connects to the socket at `path` and authenticates as `uid`; on a
    /// bus daemon (`routed`), also says `Hello`.
    pub fn connect(path: &Path, uid: u32, routed: bool, deadline: Instant) -> Result<Bus> {
        let stream = UnixStream::connect(path).map_err(|source| DbusError::Connect { path: path.to_path_buf(), source })?;
        let mut bus = Bus { stream, serial: 0, queued: VecDeque::new(), pending: Vec::new(), routed, path: path.to_path_buf() };
        bus.set_deadline(deadline)?;
        // EXTERNAL: the uid as a decimal string, hex-encoded; the server
        // checks it against the socket's peer credentials.
        let hex: String = uid.to_string().bytes().map(|b| format!("{b:02x}")).collect();
        bus.stream.write_all(format!("\0AUTH EXTERNAL {hex}\r\n").as_bytes()).map_err(io_err("write the authentication"))?;
        let reply = bus.read_line()?;
        if !reply.starts_with("OK ") {
            return Err(DbusError::Auth { path: path.to_path_buf(), reply });
        }
        bus.stream.write_all(b"BEGIN\r\n").map_err(io_err("write BEGIN"))?;
        if routed {
            // The bus daemon handles a connection's messages in order: what
            // follows may be sent before Hello's answer comes.
            bus.pipeline(Call::new("org.freedesktop.DBus", "/org/freedesktop/DBus", "org.freedesktop.DBus", "Hello"), deadline)?;
        }
        Ok(bus)
    }

    fn set_deadline(&self, deadline: Instant) -> Result<()> {
        // A zero timeout means "none" to the socket: at least 1 ms.
        let left = deadline.saturating_duration_since(Instant::now()).max(Duration::from_millis(1));
        self.stream.set_read_timeout(Some(left)).map_err(io_err("set the read timeout"))?;
        self.stream.set_write_timeout(Some(left)).map_err(io_err("set the write timeout"))
    }

    fn read_line(&mut self) -> Result<String> {
        let mut line = Vec::new();
        let mut b = [0u8; 1];
        while line.len() < 1024 {
            let n = self.stream.read(&mut b).map_err(io_err("read the authentication reply"))?;
            if n == 0 {
                break;
            }
            if b[0] == b'\n' {
                break;
            }
            line.push(b[0]);
        }
        Ok(String::from_utf8_lossy(&line).trim_end().to_string())
    }

    /// Sends `m` (its serial is set here); returns the serial.
    pub fn send(&mut self, mut m: Message, deadline: Instant) -> Result<u32> {
        self.serial = self.serial.wrapping_add(1).max(1);
        m.serial = self.serial;
        let bytes = m.encode()?;
        self.set_deadline(deadline)?;
        self.stream.write_all(&bytes).map_err(io_err("write a message"))?;
        Ok(m.serial)
    }

    /// Reads the next message, waiting until `deadline` at most.
    fn read_message(&mut self, deadline: Instant, what: &str) -> Result<Message> {
        self.set_deadline(deadline)?;
        let timeout = |e: io::Error, step| {
            if matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut) {
                DbusError::Timeout { waited: Duration::ZERO, what: what.to_string() }
            } else {
                DbusError::Io { step, source: e }
            }
        };
        let mut start = [0u8; 16];
        self.stream.read_exact(&mut start).map_err(|e| timeout(e, "read a message"))?;
        let total = Message::length(&start, MAX_MESSAGE)?;
        let mut buf = vec![0u8; total];
        buf[..16].copy_from_slice(&start);
        self.stream.read_exact(&mut buf[16..]).map_err(|e| timeout(e, "read a message"))?;
        Message::decode(&buf)
    }

    /// Sends a call without waiting for its reply: the next [`Bus::call`]
    /// checks it on the way to its own (an error there is that call's
    /// error). Saves a round trip per call where order is all that matters.
    pub fn pipeline(&mut self, c: Call, deadline: Instant) -> Result<()> {
        let what = format!("{}.{}", c.0.interface.as_deref().unwrap_or(""), c.0.member.as_deref().unwrap_or(""));
        let serial = self.send(c.0, deadline)?;
        self.pending.push((serial, what));
        Ok(())
    }

    /// Sends a call whose answer nobody waits for (NO_REPLY_EXPECTED).
    pub fn notify(&mut self, c: Call, deadline: Instant) -> Result<()> {
        let mut m = c.0;
        m.flags |= wire::NO_REPLY_EXPECTED;
        self.send(m, deadline).map(drop)
    }

    /// Calls a method and waits for its reply; an error reply is
    /// [`DbusError::Remote`]. Signals read meanwhile are kept for
    /// [`Bus::wait_signal`].
    pub fn call(&mut self, c: Call, deadline: Instant) -> Result<Message> {
        let started = Instant::now();
        let what = format!("{}.{}", c.0.interface.as_deref().unwrap_or(""), c.0.member.as_deref().unwrap_or(""));
        let serial = self.send(c.0, deadline)?;
        loop {
            let m = self.read_message(deadline, &what).map_err(|e| with_wait(e, started))?;
            if let Some(i) = self.pending.iter().position(|(p, _)| m.reply_serial == Some(*p)) {
                let (_, earlier) = self.pending.swap_remove(i);
                if m.kind == wire::ERROR {
                    let message = m.body.first().and_then(Value::as_str).unwrap_or("").to_string();
                    let name = m.error_name.unwrap_or_default();
                    return Err(DbusError::Remote { name, message: format!("{earlier}: {message}") });
                }
                continue;
            }
            if m.reply_serial == Some(serial) && matches!(m.kind, wire::METHOD_RETURN | wire::ERROR) {
                if m.kind == wire::ERROR {
                    let message = m.body.first().and_then(Value::as_str).unwrap_or("").to_string();
                    return Err(DbusError::Remote { name: m.error_name.unwrap_or_default(), message });
                }
                return Ok(m);
            }
            if m.kind == wire::SIGNAL {
                self.queued.push_back(m);
            }
        }
    }

    /// Waits for a signal that `want` accepts (earlier ones that it does
    /// not are dropped).
    pub fn wait_signal(&mut self, deadline: Instant, what: &str, want: impl Fn(&Message) -> bool) -> Result<Message> {
        let started = Instant::now();
        while let Some(m) = self.queued.pop_front() {
            if want(&m) {
                return Ok(m);
            }
        }
        loop {
            let m = self.read_message(deadline, what).map_err(|e| with_wait(e, started))?;
            if m.kind == wire::SIGNAL && want(&m) {
                return Ok(m);
            }
        }
    }
}

fn with_wait(e: DbusError, started: Instant) -> DbusError {
    match e {
        DbusError::Timeout { what, .. } => DbusError::Timeout { waited: started.elapsed(), what },
        e => e,
    }
}

/// A method call being built.
#[derive(Debug)]
pub struct Call(Message);

impl Call {
    pub fn new(destination: &str, path: &str, interface: &str, member: &str) -> Call {
        Call(Message {
            kind: wire::METHOD_CALL,
            destination: Some(destination.to_string()),
            path: Some(path.to_string()),
            interface: Some(interface.to_string()),
            member: Some(member.to_string()),
            ..Default::default()
        })
    }

    /// Appends an argument.
    pub fn arg(mut self, v: Value) -> Call {
        self.0.body.push(v);
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::net::{UnixListener, UnixStream};

    /// A socket in a fresh directory of the test's (named `tag`).
    fn listener(tag: &str) -> (PathBuf, PathBuf, UnixListener) {
        let dir = std::env::temp_dir().join(format!("berth-dbus-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let sock = dir.join("s");
        let l = UnixListener::bind(&sock).unwrap();
        (dir, sock, l)
    }

    /// The peer's side of EXTERNAL: one connection accepted, authenticated.
    fn accept_authenticated(l: &UnixListener) -> UnixStream {
        let (mut s, _) = l.accept().unwrap();
        let mut got = Vec::new();
        let mut b = [0u8; 1];
        while !got.ends_with(b"\r\n") {
            s.read_exact(&mut b).unwrap();
            got.push(b[0]);
        }
        assert!(got.starts_with(b"\0AUTH EXTERNAL "), "{got:?}");
        s.write_all(b"OK 0123456789abcdef\r\n").unwrap();
        let mut begin = [0u8; 7];
        s.read_exact(&mut begin).unwrap();
        assert_eq!(&begin, b"BEGIN\r\n");
        s
    }

    /// The next message the peer receives.
    fn receive(s: &mut UnixStream) -> Message {
        let mut start = [0u8; 16];
        s.read_exact(&mut start).unwrap();
        let mut buf = vec![0u8; Message::length(&start, 1 << 20).unwrap()];
        buf[..16].copy_from_slice(&start);
        s.read_exact(&mut buf[16..]).unwrap();
        Message::decode(&buf).unwrap()
    }

    /// A peer that plays systemd's private socket: accepts EXTERNAL, answers
    /// one call with a signal first and then the reply.
    #[test]
    fn a_call_gets_its_reply_and_a_signal_sent_before_it_is_kept() {
        let (dir, sock, l) = listener("call");
        let peer = std::thread::spawn(move || {
            let mut s = accept_authenticated(&l);
            let call = receive(&mut s);
            assert_eq!(call.member.as_deref(), Some("StartTransientUnit"));
            let sig = Message {
                kind: wire::SIGNAL,
                serial: 1,
                member: Some("JobRemoved".into()),
                body: vec![Value::U32(9), Value::ObjectPath("/job/9".into()), Value::str("x.scope"), Value::str("done")],
                ..Default::default()
            };
            let reply = Message {
                kind: wire::METHOD_RETURN,
                serial: 2,
                reply_serial: Some(call.serial),
                body: vec![Value::ObjectPath("/job/9".into())],
                ..Default::default()
            };
            s.write_all(&sig.encode().unwrap()).unwrap();
            s.write_all(&reply.encode().unwrap()).unwrap();
        });
        let deadline = Instant::now() + Duration::from_secs(5);
        let mut bus = Bus::connect(&sock, 0, false, deadline).unwrap();
        let c =
            Call::new("org.freedesktop.systemd1", "/org/freedesktop/systemd1", "org.freedesktop.systemd1.Manager", "StartTransientUnit")
                .arg(Value::str("x.scope"));
        let r = bus.call(c, deadline).unwrap();
        assert_eq!(r.body, vec![Value::ObjectPath("/job/9".into())]);
        let s = bus.wait_signal(deadline, "JobRemoved", |m| m.body.get(1) == Some(&Value::ObjectPath("/job/9".into()))).unwrap();
        assert_eq!(s.body.get(3), Some(&Value::str("done")));
        // Nothing more comes: a deadline, not a hang.
        let e = bus.wait_signal(Instant::now() + Duration::from_millis(50), "nothing", |_| true).unwrap_err();
        assert!(matches!(e, DbusError::Timeout { .. } | DbusError::Io { .. }), "{e}");
        peer.join().unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// A pipelined call's error is the next call's error, not lost.
    #[test]
    fn an_error_answer_to_a_pipelined_call_fails_the_next_call() {
        let (dir, sock, l) = listener("pipe");
        let peer = std::thread::spawn(move || {
            let mut s = accept_authenticated(&l);
            let (first, second) = (receive(&mut s), receive(&mut s));
            let err = Message {
                kind: wire::ERROR,
                serial: 1,
                reply_serial: Some(first.serial),
                error_name: Some("org.freedesktop.DBus.Error.MatchRuleInvalid".into()),
                body: vec![Value::str("bad rule")],
                ..Default::default()
            };
            let ok = Message { kind: wire::METHOD_RETURN, serial: 2, reply_serial: Some(second.serial), ..Default::default() };
            s.write_all(&err.encode().unwrap()).unwrap();
            s.write_all(&ok.encode().unwrap()).unwrap();
        });
        let deadline = Instant::now() + Duration::from_secs(5);
        let mut bus = Bus::connect(&sock, 0, false, deadline).unwrap();
        bus.pipeline(Call::new("d", "/p", "org.freedesktop.DBus", "AddMatch"), deadline).unwrap();
        let e = bus.call(Call::new("d", "/p", "i.f", "Second"), deadline).unwrap_err();
        assert_eq!(e.remote_name(), Some("org.freedesktop.DBus.Error.MatchRuleInvalid"), "{e}");
        assert!(e.to_string().contains("org.freedesktop.DBus.AddMatch: bad rule"), "{e}");
        peer.join().unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
