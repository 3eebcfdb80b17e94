//! `events`: the container's cgroup statistics in runc's JSON shape
//! (`{"type":"stats","id":...,"data":{...}}`), once or every interval, and
//! `{"type":"oom"}` when the kernel's OOM killer hits the container.

use crate::state::{Container, Status};
use crate::{Result, RuntimeError};
use serde_json::{json, Map, Value};
use std::fs;
use std::path::Path;
use std::time::Duration;

fn read(p: &Path) -> Option<String> {
    fs::read_to_string(p).ok().map(|s| s.trim().to_string())
}

fn num(p: &Path) -> u64 {
    read(p).and_then(|s| s.parse().ok()).unwrap_or(0)
}

/// `key value` lines (cpu.stat, memory.stat, memory.events...).
fn kv(p: &Path) -> Map<String, Value> {
    let mut m = Map::new();
    for l in read(p).unwrap_or_default().lines() {
        if let Some((k, v)) = l.split_once(' ') {
            if let Ok(n) = v.trim().parse::<u64>() {
                m.insert(k.to_string(), json!(n));
            }
        }
    }
    m
}

fn get(m: &Map<String, Value>, k: &str) -> u64 {
    m.get(k).and_then(Value::as_u64).unwrap_or(0)
}

/// The statistics of the container's cgroup.
pub fn stats(cg: &berth_cgroups::Cgroup) -> Value {
    let mut data = json!({"cpu": {"usage": {}, "throttling": {}}, "memory": {"usage": {}}, "pids": {}, "blkio": {}, "hugetlb": {}});
    if let Some(d) = cg.v1_dir("cpuacct") {
        let percpu: Vec<u64> =
            read(&d.path.join("cpuacct.usage_percpu")).unwrap_or_default().split_whitespace().filter_map(|x| x.parse().ok()).collect();
        let st = kv(&d.path.join("cpuacct.stat"));
        // cpuacct.stat counts USER_HZ ticks (100 per second).
        data["cpu"]["usage"] = json!({"total": num(&d.path.join("cpuacct.usage")), "percpu": percpu, "kernel": get(&st, "system") * 10_000_000, "user": get(&st, "user") * 10_000_000});
    }
    if let Some(d) = cg.v1_dir("cpu") {
        let st = kv(&d.path.join("cpu.stat"));
        data["cpu"]["throttling"] = json!({"periods": get(&st, "nr_periods"), "throttled_periods": get(&st, "nr_throttled"), "throttled_time": get(&st, "throttled_time")});
    }
    if let Some(d) = cg.v1_dir("memory") {
        let p = &d.path;
        let raw = kv(&p.join("memory.stat"));
        data["memory"] = json!({
            "cache": get(&raw, "cache"),
            "usage": {"usage": num(&p.join("memory.usage_in_bytes")), "max": num(&p.join("memory.max_usage_in_bytes")), "limit": num(&p.join("memory.limit_in_bytes")), "failcnt": num(&p.join("memory.failcnt"))},
            "swap": {"usage": num(&p.join("memory.memsw.usage_in_bytes")), "max": num(&p.join("memory.memsw.max_usage_in_bytes")), "limit": num(&p.join("memory.memsw.limit_in_bytes")), "failcnt": num(&p.join("memory.memsw.failcnt"))},
            "raw": raw,
        });
    }
    if let Some(d) = cg.v1_dir("pids") {
        data["pids"] = json!({"current": num(&d.path.join("pids.current")), "limit": read(&d.path.join("pids.max")).and_then(|s| s.parse::<u64>().ok()).unwrap_or(0)});
    }
    // Block I/O, runc's shape: entries {major, minor, op, value}.
    if let Some(d) = cg.v1_dir("blkio") {
        let entries = |f: &str| -> Vec<Value> {
            read(&d.path.join(f))
                .unwrap_or_default()
                .lines()
                .filter_map(|l| {
                    let mut it = l.split_whitespace();
                    let (dev, op, v) = (it.next()?, it.next()?, it.next()?);
                    let (ma, mi) = dev.split_once(':')?;
                    Some(json!({"major": ma.parse::<u64>().ok()?, "minor": mi.parse::<u64>().ok()?, "op": op, "value": v.parse::<u64>().ok()?}))
                })
                .collect()
        };
        data["blkio"] = json!({
            "ioServiceBytesRecursive": entries("blkio.throttle.io_service_bytes_recursive"),
            "ioServicedRecursive": entries("blkio.throttle.io_serviced_recursive"),
        });
    } else if let Some(d) = cg.v2_dir().filter(|d| d.path.join("io.stat").exists()) {
        let (mut bytes, mut ios) = (Vec::new(), Vec::new());
        for l in read(&d.path.join("io.stat")).unwrap_or_default().lines() {
            let mut it = l.split_whitespace();
            let Some((ma, mi)) = it.next().and_then(|dev| dev.split_once(':')) else { continue };
            let (Ok(ma), Ok(mi)) = (ma.parse::<u64>(), mi.parse::<u64>()) else { continue };
            for kv in it {
                let Some((k, v)) = kv.split_once('=') else { continue };
                let Ok(v) = v.parse::<u64>() else { continue };
                let (list, op) = match k {
                    "rbytes" => (&mut bytes, "Read"),
                    "wbytes" => (&mut bytes, "Write"),
                    "dbytes" => (&mut bytes, "Discard"),
                    "rios" => (&mut ios, "Read"),
                    "wios" => (&mut ios, "Write"),
                    "dios" => (&mut ios, "Discard"),
                    _ => continue,
                };
                list.push(json!({"major": ma, "minor": mi, "op": op, "value": v}));
            }
        }
        data["blkio"] = json!({"ioServiceBytesRecursive": bytes, "ioServicedRecursive": ios});
    }
    // Huge pages per size, wherever the hugetlb controller is (on this kind
    // of hybrid host, the unified hierarchy).
    let hugetlb_dir = cg.v1_dir("hugetlb").map(|d| (d.path.clone(), true)).or_else(|| cg.v2_dir().map(|d| (d.path.clone(), false)));
    if let Some((dir, v1)) = hugetlb_dir {
        let mut h = Map::new();
        let suffix = if v1 { ".usage_in_bytes" } else { ".current" };
        for e in fs::read_dir(&dir).into_iter().flatten().flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            let Some(size) = name.strip_prefix("hugetlb.").and_then(|r| r.strip_suffix(suffix)) else { continue };
            if size.contains('.') {
                continue; // hugetlb.2MB.rsvd.current and the like
            }
            let stat = if v1 {
                json!({"usage": num(&dir.join(&name)), "max": num(&dir.join(format!("hugetlb.{size}.max_usage_in_bytes"))), "failcnt": num(&dir.join(format!("hugetlb.{size}.failcnt")))})
            } else {
                json!({"usage": num(&dir.join(&name)), "failcnt": get(&kv(&dir.join(format!("hugetlb.{size}.events"))), "max")})
            };
            h.insert(size.to_string(), stat);
        }
        data["hugetlb"] = Value::Object(h);
    }
    if let Some(d) = cg.v2_dir() {
        let p = &d.path;
        if p.join("cpu.stat").exists() && cg.v1_dir("cpuacct").is_none() {
            let st = kv(&p.join("cpu.stat"));
            data["cpu"] = json!({
                "usage": {"total": get(&st, "usage_usec") * 1000, "kernel": get(&st, "system_usec") * 1000, "user": get(&st, "user_usec") * 1000},
                "throttling": {"periods": get(&st, "nr_periods"), "throttled_periods": get(&st, "nr_throttled"), "throttled_time": get(&st, "throttled_usec") * 1000},
            });
        }
        if p.join("memory.current").exists() && cg.v1_dir("memory").is_none() {
            let raw = kv(&p.join("memory.stat"));
            let limit = read(&p.join("memory.max")).and_then(|s| s.parse::<u64>().ok()).unwrap_or(u64::MAX);
            data["memory"] = json!({
                "cache": get(&raw, "file"),
                "usage": {"usage": num(&p.join("memory.current")), "max": num(&p.join("memory.peak")), "limit": limit, "failcnt": get(&kv(&p.join("memory.events")), "max")},
                "swap": {"usage": num(&p.join("memory.swap.current")), "limit": read(&p.join("memory.swap.max")).and_then(|s| s.parse::<u64>().ok()).unwrap_or(u64::MAX)},
                "raw": raw,
            });
        }
        if p.join("pids.current").exists() && cg.v1_dir("pids").is_none() {
            data["pids"] = json!({"current": num(&p.join("pids.current")), "limit": read(&p.join("pids.max")).and_then(|s| s.parse::<u64>().ok()).unwrap_or(0)});
        }
    }
    data
}

/// How many times the OOM killer has killed in the container's cgroup.
fn oom_kills(cg: &berth_cgroups::Cgroup) -> u64 {
    if let Some(d) = cg.v1_dir("memory") {
        return get(&kv(&d.path.join("memory.oom_control")), "oom_kill");
    }
    cg.v2_dir().map(|d| get(&kv(&d.path.join("memory.events")), "oom_kill")).unwrap_or(0)
}

/// Prints stats once, or every `interval` (with OOM events between) until
/// the container stops.
pub fn events(root: &Path, id: &str, once: bool, interval: Duration, out: &mut dyn std::io::Write) -> Result<()> {
    let c = Container::open(root, id)?;
    let rec = c.load()?.ok_or_else(|| RuntimeError::NotExist { id: id.into() })?;
    if rec.status(&c) == Status::Stopped {
        return Err(crate::state::StateError::NotRunning { id: id.into() }.into());
    }
    // runc's field order (type, id, data): callers and runc's own tests
    // match the line's start, and a JSON object's keys print sorted.
    let id_json = Value::from(id).to_string();
    let line = |kind: &str, data: Option<Value>, out: &mut dyn std::io::Write| {
        let _ = match data {
            Some(d) => writeln!(out, r#"{{"type":"{kind}","id":{id_json},"data":{d}}}"#),
            None => writeln!(out, r#"{{"type":"{kind}","id":{id_json}}}"#),
        };
        let _ = out.flush();
    };
    if once {
        line("stats", Some(stats(&rec.cgroup)), out);
        return Ok(());
    }
    let init = rec.init().ok_or(RuntimeError::NotRunning)?;
    let mut ooms = oom_kills(&rec.cgroup);
    // On v2 the kernel notifies changes of memory.events: an OOM kill is
    // seen when it happens, while the cgroup still exists (systemd removes
    // a scope's cgroup as soon as it empties, before an interval is over).
    let watch = rec
        .cgroup
        .v2_dir()
        .filter(|_| rec.cgroup.v1_dir("memory").is_none())
        .and_then(|d| berth_sys::inotify_watch(&d.path.join("memory.events"), libc::IN_MODIFY).ok());
    let mut next = std::time::Instant::now();
    loop {
        let now = std::time::Instant::now();
        if now >= next {
            line("stats", Some(stats(&rec.cgroup)), out);
            next = now + interval;
        }
        // Wait for the interval, a change of memory.events, or the end.
        let ms = berth_sys::poll_ms(next.saturating_duration_since(std::time::Instant::now()));
        let mut fds = vec![std::os::fd::AsFd::as_fd(&init.pidfd)];
        fds.extend(watch.as_ref().map(std::os::fd::AsFd::as_fd));
        let ready = berth_sys::poll_in(&fds, ms).unwrap_or_else(|_| vec![1]);
        if let Some(w) = &watch {
            berth_sys::drain(std::os::fd::AsFd::as_fd(w));
        }
        let done = ready.first().is_none_or(|r| *r != 0);
        let now = oom_kills(&rec.cgroup);
        if now > ooms {
            line("oom", None, out);
            ooms = now;
        }
        if done {
            return Ok(());
        }
    }
}
