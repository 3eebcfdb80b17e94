//! The systemd cgroup driver: the container's cgroup is a transient scope
//! that systemd makes (StartTransientUnit over D-Bus, `Delegate=yes`, the
//! container's init as its one PID), with the resources as unit properties
//! so that systemd's view of the unit agrees with the files. Everything
//! else (limits systemd has no property for, the device program, kill,
//! freeze, waiting for empty) is done on the files, as with cgroupfs:
//! delegation makes the scope's files the container's to write.
//!
//! cgroupsPath is `slice:prefix:name` (runc's form): the unit is
//! `prefix-name.scope` in `slice`, or `name` itself when it ends in
//! `.slice`. Slices nest by their dashes: `kubepods-besteffort.slice` is
//! `/kubepods.slice/kubepods-besteffort.slice`.
//!
//! Only the unified hierarchy (cgroup v2) is supported.

use crate::{DeviceRule, Resources};
use berth_dbus::{Bus, Call, DbusError, Value};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// What the systemd driver could not do.
#[derive(Debug, thiserror::Error)]
pub enum SystemdError {
    /// runc's words (callers match them).
    #[error("expected cgroupsPath to be of format \"slice:prefix:name\" for systemd cgroups, got {0:?} instead")]
    NotSystemdForm(String),
    #[error("linux.cgroupsPath {path:?}: {why}")]
    BadName { path: String, why: String },
    /// runc's words.
    #[error("systemd not running on this host, can't use systemd as cgroups manager")]
    NotRunning,
    #[error("the systemd cgroup driver needs the unified cgroup hierarchy (cgroup v2 only); this host mounts cgroup v1 controllers")]
    NeedsV2,
    #[error("annotation {key}: {why}")]
    Annotation { key: String, why: String },
    #[error("systemd unit {unit}: {step}: {source}")]
    Bus { unit: String, step: &'static str, source: DbusError },
    /// The job systemd ran for the unit did not end in `done`.
    #[error("systemd unit {unit}: {verb} job ended {result:?}")]
    Job { unit: String, verb: &'static str, result: String },
    #[error("connect to systemd: {0}")]
    Connect(DbusError),
}

type Result<T> = std::result::Result<T, SystemdError>;

/// The unit a container's cgroup is, as recorded in its state: teardown
/// stops it whatever flags `delete` is given (containerd's cleanup runs
/// `delete --force` without `--systemd-cgroup`).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Unit {
    /// `prefix-name.scope`, or a `.slice`.
    pub name: String,
    /// The slice a scope is placed in.
    pub slice: String,
    /// The cgroup's path in the unified hierarchy (`/system.slice/x.scope`).
    pub cgroup: String,
}

impl Unit {
    pub fn is_slice(&self) -> bool {
        self.name.ends_with(".slice")
    }
}

/// True when systemd is this host's init (as sd_booted(3) tells).
pub fn booted() -> bool {
    Path::new("/run/systemd/system").is_dir()
}

fn bad(path: &str, why: impl Into<String>) -> SystemdError {
    SystemdError::BadName { path: path.to_string(), why: why.into() }
}

/// A unit name systemd accepts: its characters, its length.
fn check_unit_name(path: &str, name: &str) -> Result<()> {
    let ok = |c: char| c.is_ascii_alphanumeric() || ":_.-\\@".contains(c);
    if name.len() > 255 || !name.chars().all(ok) || name.starts_with('.') {
        return Err(bad(path, format!("{name:?} is not a valid systemd unit name")));
    }
    Ok(())
}

/// The cgroup path of a slice: `a-b.slice` is `/a.slice/a-b.slice`; the
/// root slice `-.slice` is `/`.
pub fn expand_slice(path: &str, slice: &str) -> Result<String> {
    check_unit_name(path, slice)?;
    let stem = slice.strip_suffix(".slice").ok_or_else(|| bad(path, format!("{slice:?} is not a slice (no .slice suffix)")))?;
    if stem == "-" {
        return Ok(String::new());
    }
    if stem.is_empty() || stem.starts_with('-') || stem.ends_with('-') || stem.contains("--") {
        return Err(bad(path, format!("{slice:?} is not a valid slice name")));
    }
    let mut out = String::new();
    let mut prefix = String::new();
    for part in stem.split('-') {
        if !prefix.is_empty() {
            prefix.push('-');
        }
        prefix.push_str(part);
        out.push('/');
        out.push_str(&prefix);
        out.push_str(".slice");
    }
    Ok(out)
}

/// The unit a `slice:prefix:name` cgroupsPath names; an empty path is
/// `:berth:ID` (runc's `:runc:ID`, in berth's name).
pub fn unit_for(cgroups_path: &str, id: &str) -> Result<Unit> {
    let shown = cgroups_path;
    let parts: Vec<&str> = if cgroups_path.is_empty() { vec!["", "berth", id] } else { cgroups_path.split(':').collect() };
    let [slice, prefix, name] = parts[..] else { return Err(SystemdError::NotSystemdForm(shown.to_string())) };
    if name.is_empty() {
        return Err(bad(shown, "the name part is empty"));
    }
    if slice.contains('/') {
        return Err(bad(shown, "a slice has no '/': nest slices with '-' (a-b.slice is inside a.slice)"));
    }
    let slice = match slice {
        "" => "system.slice".to_string(),
        "-" => "-.slice".to_string(),
        s => s.to_string(),
    };
    let parent = expand_slice(shown, &slice)?;
    if name.ends_with(".slice") {
        // A slice unit: systemd places it by its own name.
        let cgroup = expand_slice(shown, name)?;
        return Ok(Unit { name: name.to_string(), slice, cgroup });
    }
    let unit = if prefix.is_empty() { format!("{name}.scope") } else { format!("{prefix}-{name}.scope") };
    check_unit_name(shown, &unit)?;
    Ok(Unit { cgroup: format!("{parent}/{unit}"), name: unit, slice })
}

/// A property as StartTransientUnit and SetUnitProperties take it.
pub type Property = (String, Value);

fn prop(name: &str, v: Value) -> Property {
    (name.to_string(), v)
}

/// systemd's "infinity" for the u64 limits.
const INFINITY: u64 = u64::MAX;

/// A byte-array CPU or NUMA-node mask (systemd's AllowedCPUs): bit i of
/// byte j is CPU 8j+i. From a cpuset list ("0-3,7").
pub fn cpu_mask(list: &str) -> Option<Vec<u8>> {
    let mut bytes: Vec<u8> = Vec::new();
    for part in list.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (a, b) = match part.split_once('-') {
            Some((a, b)) => (a.trim().parse::<usize>().ok()?, b.trim().parse::<usize>().ok()?),
            None => {
                let n = part.parse::<usize>().ok()?;
                (n, n)
            }
        };
        if a > b || b >= 1 << 16 {
            return None;
        }
        for cpu in a..=b {
            if bytes.len() <= cpu / 8 {
                bytes.resize(cpu / 8 + 1, 0);
            }
            bytes[cpu / 8] |= 1 << (cpu % 8);
        }
    }
    Some(bytes)
}

fn bytes(v: Vec<u8>) -> Value {
    Value::Array("y".into(), v.into_iter().map(Value::Byte).collect())
}

/// A limit in bytes as systemd takes it: negative is infinity.
fn limit(v: i64) -> Value {
    Value::U64(u64::try_from(v).unwrap_or(INFINITY))
}

/// The unit properties for `r`: what systemd has a property for, so that
/// its view of the unit is the container's (it writes them back to the
/// files on every daemon-reload). The files are then written as with
/// cgroupfs, which also covers what has no property.
pub fn resource_properties(r: &Resources, rules: &[DeviceRule]) -> Result<Vec<Property>> {
    let mut p = Vec::new();
    if let Some(m) = &r.memory {
        if let Some(v) = m.limit.filter(|v| *v != 0) {
            p.push(prop("MemoryMax", limit(v)));
        }
        if let Some(v) = m.reservation.filter(|v| *v != 0) {
            p.push(prop("MemoryLow", limit(v)));
        }
        if let Some(v) = m.swap.filter(|v| *v != 0) {
            // OCI's swap is memory+swap; systemd's MemorySwapMax is swap alone.
            let swap = match (v, m.limit) {
                (v, _) if v < 0 => INFINITY,
                (v, Some(l)) if l > 0 => u64::try_from((v - l).max(0)).unwrap_or(0),
                (v, _) => u64::try_from(v).unwrap_or(0),
            };
            p.push(prop("MemorySwapMax", Value::U64(swap)));
        }
    }
    if let Some(c) = &r.cpu {
        if let Some(s) = c.shares.filter(|s| *s > 0) {
            p.push(prop("CPUWeight", Value::U64(1 + ((s.clamp(2, 262144) - 2) * 9999) / 262142)));
        }
        let (quota, period) = (c.quota.filter(|q| *q != 0), c.period.filter(|p| *p > 0));
        if let Some(per) = period {
            p.push(prop("CPUQuotaPeriodUSec", Value::U64(per)));
        }
        if quota.is_some() || period.is_some() {
            let per = period.unwrap_or(100_000);
            let per_sec = match quota.and_then(|q| u64::try_from(q).ok()) {
                // systemd keeps whole percents of a CPU: rounded up to
                // 10 ms a second, so the file can still be set exactly.
                Some(q) => (q.saturating_mul(1_000_000) / per).div_ceil(10_000).saturating_mul(10_000),
                None => INFINITY,
            };
            p.push(prop("CPUQuotaPerSecUSec", Value::U64(per_sec)));
        }
        if let Some(list) = c.cpus.as_deref().filter(|s| !s.is_empty()) {
            let m = cpu_mask(list).ok_or_else(|| bad("linux.resources.cpu.cpus", format!("{list:?} is not a CPU list")))?;
            p.push(prop("AllowedCPUs", bytes(m)));
        }
        if let Some(list) = c.mems.as_deref().filter(|s| !s.is_empty()) {
            let m = cpu_mask(list).ok_or_else(|| bad("linux.resources.cpu.mems", format!("{list:?} is not a node list")))?;
            p.push(prop("AllowedMemoryNodes", bytes(m)));
        }
    }
    if let Some(pids) = r.pids.as_ref().filter(|p| p.limit != 0) {
        p.push(prop("TasksMax", limit(pids.limit)));
    }
    if let Some(b) = &r.block_io {
        // blkio's 10..1000 to io's 1..10000, as runc and crun convert.
        let io_weight = |w: u16| Value::U64(1 + (u64::from(w.clamp(10, 1000)) - 10) * 9999 / 990);
        if let Some(w) = b.weight.filter(|w| *w != 0) {
            p.push(prop("IOWeight", io_weight(w)));
        }
        let per_device: Vec<Value> = b
            .weight_device
            .iter()
            .filter_map(|d| {
                let w = d.weight.filter(|w| *w != 0)?;
                let Value::U64(w) = io_weight(w) else { return None };
                Some(Value::Struct(vec![Value::str(format!("/dev/block/{}:{}", d.major, d.minor)), Value::U64(w)]))
            })
            .collect();
        if !per_device.is_empty() {
            p.push(prop("IODeviceWeight", Value::Array("(st)".into(), per_device)));
        }
    }
    if let Some(u) = &r.unified {
        unified_properties(u, &mut p)?;
    }
    p.extend(device_properties(rules));
    Ok(p)
}

/// `linux.resources.unified` keys systemd has a property for.
fn unified_properties(u: &BTreeMap<String, String>, p: &mut Vec<Property>) -> Result<()> {
    let bytes_or_max = |k: &str, v: &str| -> Result<Value> {
        match v.trim() {
            "max" => Ok(Value::U64(INFINITY)),
            n => n.parse::<u64>().map(Value::U64).map_err(|_| bad("linux.resources.unified", format!("{k}: {v:?} is not a number or max"))),
        }
    };
    for (k, v) in u {
        let name = match k.as_str() {
            "memory.high" => "MemoryHigh",
            "memory.low" => "MemoryLow",
            "memory.min" => "MemoryMin",
            "memory.max" => "MemoryMax",
            "memory.swap.max" => "MemorySwapMax",
            "pids.max" => "TasksMax",
            "cpu.weight" => "CPUWeight",
            "cpuset.cpus" | "cpuset.mems" => {
                let m = cpu_mask(v).ok_or_else(|| bad("linux.resources.unified", format!("{k}: {v:?} is not a list")))?;
                p.push(prop(if k == "cpuset.cpus" { "AllowedCPUs" } else { "AllowedMemoryNodes" }, bytes(m)));
                continue;
            }
            "cpu.max" => {
                let mut it = v.split_whitespace();
                let (q, per) = (it.next().unwrap_or("max"), it.next().and_then(|x| x.parse::<u64>().ok()).unwrap_or(100_000));
                if per == 0 {
                    return Err(bad("linux.resources.unified", "cpu.max: a period of 0"));
                }
                let per_sec = match q {
                    "max" => INFINITY,
                    q => {
                        let q = q.parse::<u64>().map_err(|_| bad("linux.resources.unified", format!("cpu.max: {v:?}")))?;
                        (q.saturating_mul(1_000_000) / per).div_ceil(10_000).saturating_mul(10_000)
                    }
                };
                p.push(prop("CPUQuotaPeriodUSec", Value::U64(per)));
                p.push(prop("CPUQuotaPerSecUSec", Value::U64(per_sec)));
                continue;
            }
            _ => continue,
        };
        p.push(prop(name, bytes_or_max(k, v)?));
    }
    Ok(())
}

/// DevicePolicy and DeviceAllow for the config's device rules (v1's
/// semantics: the last rule naming every device sets the default, later
/// rules refine it). systemd can express an allow-list only: for that,
/// DevicePolicy=strict with every allowed device; an allow-all (or a
/// deny-list, which systemd cannot express) leaves systemd's policy open
/// and the device program berth attaches to the scope alone decides.
/// Where systemd's entries are coarser than a rule (`*:n`), they allow
/// more than the rule, never less: berth's own program is exact, and
/// both must allow an access.
pub fn device_properties(rules: &[DeviceRule]) -> Vec<Property> {
    let is_all =
        |r: &DeviceRule| matches!(r.kind.as_deref(), None | Some("a")) && r.major.is_none_or(|m| m < 0) && r.minor.is_none_or(|m| m < 0);
    // An empty DeviceAllow first clears what the unit had (an update).
    let clear = prop("DeviceAllow", Value::Array("(ss)".into(), vec![]));
    let open = vec![clear.clone(), prop("DevicePolicy", Value::str("auto"))];
    if rules.is_empty() {
        return vec![];
    }
    let (default_allow, rest) = match rules
        .iter()
        .rposition(|r| is_all(r) && r.access.as_deref().is_none_or(|a| a.contains('r') && a.contains('w') && a.contains('m')))
    {
        Some(k) => (rules[k].allow, &rules[k + 1..]),
        None => (true, rules),
    };
    if default_allow {
        return open;
    }
    let mut allow = Vec::new();
    for r in rest.iter().filter(|r| r.allow) {
        let perms: String = r.access.as_deref().unwrap_or("rwm").chars().filter(|c| "rwm".contains(*c)).collect();
        if perms.is_empty() {
            continue;
        }
        let kinds: &[&str] = match r.kind.as_deref() {
            Some("c") => &["char"],
            Some("b") => &["block"],
            _ => &["char", "block"],
        };
        for kind in kinds {
            let path = match (r.major.filter(|m| *m >= 0), r.minor.filter(|m| *m >= 0)) {
                (Some(ma), Some(mi)) => format!("/dev/{kind}/{ma}:{mi}"),
                (Some(ma), None) => format!("{kind}-{ma}"),
                (None, _) => format!("{kind}-*"),
            };
            allow.push(Value::Struct(vec![Value::str(path), Value::str(perms.clone())]));
        }
    }
    vec![clear, prop("DevicePolicy", Value::str("strict")), prop("DeviceAllow", Value::Array("(ss)".into(), allow))]
}

/// The `org.systemd.property.NAME` annotations as properties; values are
/// in GVariant's text form (`uint64 123`, `'text'`, `true`, `['a', 'b']`).
pub fn annotation_properties(annotations: &BTreeMap<String, String>) -> Result<Vec<Property>> {
    let mut out = Vec::new();
    for (k, v) in annotations {
        let Some(name) = k.strip_prefix("org.systemd.property.") else { continue };
        let err = |why: String| SystemdError::Annotation { key: k.clone(), why };
        if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric()) {
            return Err(err("not a systemd property name".into()));
        }
        if name.ends_with("Sec") && !name.ends_with("USec") {
            return Err(err(format!("time properties take microseconds: use {}USec", name.trim_end_matches("Sec"))));
        }
        out.push(prop(name, gvariant(v).map_err(err)?));
    }
    Ok(out)
}

/// A value in GVariant's text form: booleans, quoted strings, numbers
/// (bare ones are int32, as GVariant reads them; or typed: `uint64 5`),
/// and arrays of strings (`['a', 'b']`, `@as []`).
pub fn gvariant(text: &str) -> std::result::Result<Value, String> {
    let t = text.trim();
    let unquote = |s: &str| -> Option<String> {
        let q = s.chars().next().filter(|c| *c == '\'' || *c == '"')?;
        let inner = s.strip_prefix(q)?.strip_suffix(q)?;
        (!inner.contains(q) && !inner.contains('\\')).then(|| inner.to_string())
    };
    match t {
        "true" => return Ok(Value::Bool(true)),
        "false" => return Ok(Value::Bool(false)),
        "@as []" | "[]" => return Ok(Value::Array("s".into(), vec![])),
        _ => {}
    }
    if let Some(s) = unquote(t) {
        return Ok(Value::Str(s));
    }
    if let Some(inner) = t.strip_prefix('[').and_then(|x| x.strip_suffix(']')) {
        let items = inner.split(',').map(|s| unquote(s.trim()).map(Value::Str)).collect::<Option<Vec<_>>>();
        return items.map(|v| Value::Array("s".into(), v)).ok_or_else(|| format!("{t:?}: only arrays of quoted strings are supported"));
    }
    let num = |s: &str| s.trim().parse::<i128>().map_err(|_| format!("{t:?} is not a GVariant value berth reads"));
    let fit = |n: i128, ty: &str| format!("{n} does not fit a {ty}");
    let (ty, rest) = t.split_once(' ').unwrap_or(("int32", t));
    let n = num(rest)?;
    Ok(match ty {
        "byte" => Value::Byte(u8::try_from(n).map_err(|_| fit(n, ty))?),
        "int16" => Value::I16(i16::try_from(n).map_err(|_| fit(n, ty))?),
        "uint16" => Value::U16(u16::try_from(n).map_err(|_| fit(n, ty))?),
        "int32" => Value::I32(i32::try_from(n).map_err(|_| fit(n, ty))?),
        "uint32" => Value::U32(u32::try_from(n).map_err(|_| fit(n, ty))?),
        "int64" => Value::I64(i64::try_from(n).map_err(|_| fit(n, ty))?),
        "uint64" => Value::U64(u64::try_from(n).map_err(|_| fit(n, ty))?),
        other => return Err(format!("{t:?}: the type {other:?} is not one berth reads")),
    })
}

fn props_value(props: Vec<Property>) -> Value {
    // Later properties of the same name win (annotations over berth's own).
    let mut seen = std::collections::BTreeSet::new();
    let mut kept: Vec<Property> = props.into_iter().rev().filter(|(n, _)| n == "DeviceAllow" || seen.insert(n.clone())).collect();
    kept.reverse();
    Value::Array("(sv)".into(), kept.into_iter().map(|(n, v)| Value::Struct(vec![Value::Str(n), Value::variant(v)])).collect())
}

const DEST: &str = "org.freedesktop.systemd1";
const PATH: &str = "/org/freedesktop/systemd1";
const MANAGER: &str = "org.freedesktop.systemd1.Manager";

/// How long a unit's job may take before create (or delete) gives up.
pub const JOB_DEADLINE: Duration = Duration::from_secs(30);

/// A connection to systemd's manager.
#[derive(Debug)]
pub struct Systemd {
    bus: Bus,
}

impl Systemd {
    /// Connects to systemd on the system bus, and asks for its JobRemoved
    /// signals (systemd sends signals on the bus only while a client is
    /// subscribed). runc and crun go the same way. systemd's private
    /// socket (no bus daemon) was tried: under TCG one StopUnit in four or
    /// five got no answer within 30 s there, none on the bus.
    pub fn connect(uid: u32) -> Result<Systemd> {
        if !booted() {
            return Err(SystemdError::NotRunning);
        }
        let deadline = Instant::now() + JOB_DEADLINE;
        let path = system_bus_path();
        let mut bus = Bus::connect(&path, uid, true, deadline).map_err(SystemdError::Connect)?;
        let rule = "type='signal',sender='org.freedesktop.systemd1',interface='org.freedesktop.systemd1.Manager',member='JobRemoved'";
        let add = Call::new("org.freedesktop.DBus", "/org/freedesktop/DBus", "org.freedesktop.DBus", "AddMatch").arg(Value::str(rule));
        // Pipelined: their answers are checked on the way to the next
        // call's (systemd and the bus daemon handle a connection in order,
        // so the match is in place before any job of ours can end).
        bus.pipeline(add, deadline).map_err(SystemdError::Connect)?;
        bus.pipeline(Call::new(DEST, PATH, MANAGER, "Subscribe"), deadline).map_err(SystemdError::Connect)?;
        Ok(Systemd { bus })
    }

    /// The bus's socket (for the logs).
    pub fn transport(&self) -> &Path {
        &self.bus.path
    }

    fn manager(&mut self, unit: &str, step: &'static str, call: Call, deadline: Instant) -> Result<berth_dbus::Message> {
        self.bus.call(call, deadline).map_err(|source| SystemdError::Bus { unit: unit.to_string(), step, source })
    }

    /// Waits for the job's JobRemoved signal; its result must be `done`.
    fn wait_job(&mut self, unit: &str, verb: &'static str, job: &str, deadline: Instant) -> Result<()> {
        let m = self
            .bus
            .wait_signal(deadline, "JobRemoved", |m| {
                m.member.as_deref() == Some("JobRemoved") && m.body.get(1).and_then(Value::as_str) == Some(job)
            })
            .map_err(|source| SystemdError::Bus { unit: unit.to_string(), step: "wait for the job", source })?;
        let result = m.body.get(3).and_then(Value::as_str).unwrap_or("").to_string();
        if result == "done" {
            return Ok(());
        }
        Err(SystemdError::Job { unit: unit.to_string(), verb, result })
    }

    /// Starts `unit` as a transient unit holding `pid` with `props`, and
    /// waits for systemd to finish the job. A failed unit of the same name
    /// left from before is reset and the start tried once more.
    pub fn start(&mut self, unit: &Unit, pid: u32, description: &str, props: Vec<Property>) -> Result<()> {
        let deadline = Instant::now() + JOB_DEADLINE;
        let mut all = vec![
            prop("Description", Value::str(description)),
            prop("DefaultDependencies", Value::Bool(false)),
            prop("MemoryAccounting", Value::Bool(true)),
            prop("CPUAccounting", Value::Bool(true)),
            prop("IOAccounting", Value::Bool(true)),
            prop("TasksAccounting", Value::Bool(true)),
        ];
        if unit.is_slice() {
            all.push(prop("Wants", Value::Array("s".into(), vec![Value::str(unit.slice.clone())])));
        } else {
            all.push(prop("Slice", Value::str(unit.slice.clone())));
            all.push(prop("Delegate", Value::Bool(true)));
            all.push(prop("PIDs", Value::Array("u".into(), vec![Value::U32(pid)])));
        }
        all.extend(props);
        let body = props_value(all);
        for attempt in 0..2 {
            let call = Call::new(DEST, PATH, MANAGER, "StartTransientUnit")
                .arg(Value::str(unit.name.clone()))
                .arg(Value::str("replace"))
                .arg(body.clone())
                .arg(Value::Array("(sa(sv))".into(), vec![]));
            match self.manager(&unit.name, "StartTransientUnit", call, deadline) {
                Ok(reply) => {
                    let job = reply.body.first().and_then(Value::as_str).unwrap_or("").to_string();
                    return self.wait_job(&unit.name, "start", &job, deadline);
                }
                Err(SystemdError::Bus { source, .. })
                    if attempt == 0 && source.remote_name() == Some("org.freedesktop.systemd1.UnitExists") =>
                {
                    self.reset_failed(&unit.name);
                }
                Err(e) => return Err(e),
            }
        }
        Err(SystemdError::Job { unit: unit.name.clone(), verb: "start", result: "exists (not a failed unit that could be reset)".into() })
    }

    /// Stops `unit` and waits for the job; a unit systemd no longer has
    /// (it stops an emptied scope by itself, and forgets transient units)
    /// counts as stopped. A failed one is reset, so it goes too.
    pub fn stop(&mut self, unit: &str) -> Result<()> {
        let deadline = Instant::now() + JOB_DEADLINE;
        let call = Call::new(DEST, PATH, MANAGER, "StopUnit").arg(Value::str(unit)).arg(Value::str("replace"));
        match self.manager(unit, "StopUnit", call, deadline) {
            Ok(reply) => {
                let job = reply.body.first().and_then(Value::as_str).unwrap_or("").to_string();
                match self.wait_job(unit, "stop", &job, deadline) {
                    Ok(()) => {}
                    // A scope that had already ended: nothing to stop.
                    Err(SystemdError::Job { result, .. }) if result == "canceled" || result == "skipped" => {}
                    Err(e) => return Err(e),
                }
            }
            Err(SystemdError::Bus { source, .. })
                if matches!(source.remote_name(), Some("org.freedesktop.systemd1.NoSuchUnit" | "org.freedesktop.systemd1.LoadFailed")) => {}
            Err(e) => return Err(e),
        }
        self.reset_failed(unit);
        Ok(())
    }

    /// ResetFailedUnit; a unit that is not failed (or gone) is no error,
    /// so no answer is waited for.
    pub fn reset_failed(&mut self, unit: &str) {
        let call = Call::new(DEST, PATH, MANAGER, "ResetFailedUnit").arg(Value::str(unit));
        let _ = self.bus.notify(call, Instant::now() + JOB_DEADLINE);
    }

    /// SetUnitProperties (runtime only: nothing is written to /etc).
    pub fn set_properties(&mut self, unit: &str, props: Vec<Property>) -> Result<()> {
        if props.is_empty() {
            return Ok(());
        }
        let call = Call::new(DEST, PATH, MANAGER, "SetUnitProperties").arg(Value::str(unit)).arg(Value::Bool(true)).arg(props_value(props));
        self.manager(unit, "SetUnitProperties", call, Instant::now() + JOB_DEADLINE).map(drop)
    }
}

/// The system bus's socket: DBUS_SYSTEM_BUS_ADDRESS's unix path, or the
/// well-known one.
fn system_bus_path() -> PathBuf {
    std::env::var("DBUS_SYSTEM_BUS_ADDRESS")
        .ok()
        .and_then(|a| a.split(';').find_map(|one| one.strip_prefix("unix:path=").map(|p| p.split(',').next().unwrap_or(p).to_string())))
        .map_or_else(|| PathBuf::from("/run/dbus/system_bus_socket"), PathBuf::from)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cgroups_paths_name_units_and_slices_as_runc_does() {
        let u = unit_for("kubepods-besteffort-pod1234.slice:cri-containerd:abc", "x").unwrap();
        assert_eq!(u.name, "cri-containerd-abc.scope");
        assert_eq!(u.slice, "kubepods-besteffort-pod1234.slice");
        assert_eq!(u.cgroup, "/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod1234.slice/cri-containerd-abc.scope");
        let d = unit_for("", "c1").unwrap();
        assert_eq!(
            (d.name.as_str(), d.slice.as_str(), d.cgroup.as_str()),
            ("berth-c1.scope", "system.slice", "/system.slice/berth-c1.scope")
        );
        assert_eq!(unit_for(":runc:c2", "x").unwrap().cgroup, "/system.slice/runc-c2.scope");
        assert_eq!(unit_for("-::c3", "x").unwrap().cgroup, "/c3.scope");
        assert_eq!(unit_for("machine.slice:libpod:abc", "x").unwrap().cgroup, "/machine.slice/libpod-abc.scope");
        let s = unit_for("system.slice:x:pod-a.slice", "y").unwrap();
        assert!(s.is_slice());
        assert_eq!(s.cgroup, "/pod.slice/pod-a.slice");
    }

    #[test]
    fn paths_not_in_the_form_or_with_bad_names_are_refused() {
        for bad in [
            "/berth/x",
            "a:b",
            "a:b:c:d",
            "system.slice:p:",
            "a/b.slice:p:n",
            "nodot:p:n",
            "-a.slice:p:n",
            "a--b.slice:p:n",
            "s.slice:p:n/x",
            "s.slice:p:n x",
        ] {
            assert!(unit_for(bad, "id").is_err(), "{bad}");
        }
        let e = unit_for("/berth/x", "id").unwrap_err().to_string();
        assert!(e.contains("expected cgroupsPath to be of format \"slice:prefix:name\""), "{e}");
    }

    #[test]
    fn cpu_masks_are_little_endian_bits() {
        assert_eq!(cpu_mask("0").unwrap(), vec![1]);
        assert_eq!(cpu_mask("0-3,7").unwrap(), vec![0x8f]);
        assert_eq!(cpu_mask("9").unwrap(), vec![0, 2]);
        assert!(cpu_mask("3-1").is_none());
        assert!(cpu_mask("x").is_none());
        assert!(cpu_mask("0-99999999").is_none());
    }

    #[test]
    fn resources_become_properties() {
        let r: Resources = serde_json::from_str(
            r#"{"memory":{"limit":67108864,"reservation":33554432,"swap":134217728},"cpu":{"shares":1024,"quota":50000,"period":100000,"cpus":"0-1"},
                "pids":{"limit":-1},"blockIO":{"weight":0}}"#,
        )
        .unwrap();
        let p: BTreeMap<String, Value> = resource_properties(&r, &[]).unwrap().into_iter().collect();
        assert_eq!(p["MemoryMax"], Value::U64(64 << 20));
        assert_eq!(p["MemoryLow"], Value::U64(32 << 20));
        assert_eq!(p["MemorySwapMax"], Value::U64(64 << 20));
        assert_eq!(p["CPUWeight"], Value::U64(39));
        assert_eq!(p["CPUQuotaPerSecUSec"], Value::U64(500_000));
        assert_eq!(p["CPUQuotaPeriodUSec"], Value::U64(100_000));
        assert_eq!(p["AllowedCPUs"], Value::Array("y".into(), vec![Value::Byte(3)]));
        assert_eq!(p["TasksMax"], Value::U64(u64::MAX));
        assert!(!p.contains_key("IOWeight"), "a blkio weight of 0 is not set (Docker sends it)");
        // 12.5 % of a CPU is kept by systemd as whole percents: rounded up.
        let r: Resources = serde_json::from_str(r#"{"cpu":{"quota":12500,"period":100000}}"#).unwrap();
        let p: BTreeMap<String, Value> = resource_properties(&r, &[]).unwrap().into_iter().collect();
        assert_eq!(p["CPUQuotaPerSecUSec"], Value::U64(130_000));
    }

    #[test]
    fn device_rules_become_an_allow_list_or_stay_open() {
        let rule = |allow: bool, kind: &str, major: i64, minor: i64, access: &str| DeviceRule {
            allow,
            kind: Some(kind.into()),
            major: Some(major),
            minor: Some(minor),
            access: Some(access.into()),
        };
        let mut rules = vec![rule(false, "a", -1, -1, "rwm")];
        rules.extend(crate::default_device_rules());
        rules.push(rule(true, "b", 8, -1, "r"));
        let p = device_properties(&rules);
        assert_eq!(p[1], prop("DevicePolicy", Value::str("strict")));
        let Value::Array(_, allow) = &p[2].1 else { panic!() };
        let entries: Vec<String> = allow.iter().map(|v| format!("{v:?}")).collect();
        let has = |path: &str, perms: &str| entries.iter().any(|e| e.contains(&format!("Str(\"{path}\"), Str(\"{perms}\")")));
        assert!(
            has("/dev/char/1:3", "rwm") && has("char-*", "m") && has("block-*", "m") && has("char-136", "rwm") && has("block-8", "r"),
            "{entries:?}"
        );
        // Allow-all, and a deny-list systemd cannot express: systemd stays open.
        let open = device_properties(&[rule(true, "a", -1, -1, "rwm")]);
        assert_eq!(open[1], prop("DevicePolicy", Value::str("auto")));
        let deny_list = device_properties(&[rule(false, "c", 1, 3, "rwm")]);
        assert_eq!(deny_list[1], prop("DevicePolicy", Value::str("auto")));
        assert!(device_properties(&[]).is_empty());
    }

    #[test]
    fn annotations_are_gvariant_text() {
        let mut a = BTreeMap::new();
        a.insert("org.systemd.property.TimeoutStopUSec".to_string(), "uint64 123456789".to_string());
        a.insert("org.systemd.property.CollectMode".to_string(), "'inactive-or-failed'".to_string());
        a.insert("org.systemd.property.After".to_string(), "['a.service', \"b.service\"]".to_string());
        a.insert("org.systemd.property.CPUWeight".to_string(), "uint64 50".to_string());
        a.insert("other".to_string(), "ignored".to_string());
        let p: BTreeMap<String, Value> = annotation_properties(&a).unwrap().into_iter().collect();
        assert_eq!(p["TimeoutStopUSec"], Value::U64(123456789));
        assert_eq!(p["CollectMode"], Value::str("inactive-or-failed"));
        assert_eq!(p["After"], Value::Array("s".into(), vec![Value::str("a.service"), Value::str("b.service")]));
        assert_eq!(p.len(), 4);
        for (k, v) in [("TimeoutStopSec", "uint64 1"), ("Bad-Name", "true"), ("X", "uint64 -1"), ("X", "{1}"), ("X", "'unterminated")] {
            let mut a = BTreeMap::new();
            a.insert(format!("org.systemd.property.{k}"), v.to_string());
            assert!(annotation_properties(&a).is_err(), "{k}={v}");
        }
        assert_eq!(gvariant("42").unwrap(), Value::I32(42));
        assert_eq!(gvariant("true").unwrap(), Value::Bool(true));
    }

    #[test]
    fn later_properties_of_a_name_win() {
        let v = props_value(vec![prop("CPUWeight", Value::U64(1)), prop("CPUWeight", Value::U64(2))]);
        let Value::Array(_, items) = v else { panic!() };
        assert_eq!(items.len(), 1);
        assert_eq!(items[0], Value::Struct(vec![Value::str("CPUWeight"), Value::variant(Value::U64(2))]));
    }
}
