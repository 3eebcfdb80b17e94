//! OCI `linux.resources`, and how each limit is written on v1 and on v2.
//!
//! Each controller goes where it is mounted. A limit that the host has no
//! file for is an error naming the setting: never silently dropped.

use crate::{write, Cgroup, CgroupError, Dir, Result};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::Path;

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Resources {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub devices: Vec<DeviceRule>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory: Option<Memory>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu: Option<Cpu>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pids: Option<Pids>,
    #[serde(default, rename = "blockIO", skip_serializing_if = "Option::is_none")]
    pub block_io: Option<BlockIo>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub hugepage_limits: Vec<Hugepage>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network: Option<Network>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rdma: Option<BTreeMap<String, Rdma>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unified: Option<BTreeMap<String, String>>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct DeviceRule {
    #[serde(default)]
    pub allow: bool,
    #[serde(default, rename = "type", skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub major: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub minor: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub access: Option<String>,
}

impl DeviceRule {
    /// The v1 `devices.allow`/`devices.deny` line: `c 1:3 rwm`.
    pub fn v1_line(&self) -> String {
        let num = |n: Option<i64>| n.filter(|n| *n >= 0).map_or_else(|| "*".to_string(), |n| n.to_string());
        let kind = self.kind.as_deref().unwrap_or("a");
        if kind == "a" && self.major.is_none() && self.minor.is_none() {
            return "a".to_string();
        }
        // Only r, w and m mean anything (the kernel refuses a line with any
        // other letter): kept in that order, each once.
        let given = self.access.as_deref().filter(|a| !a.is_empty()).unwrap_or("rwm");
        let access: String = ['r', 'w', 'm'].into_iter().filter(|c| given.contains(*c)).collect();
        let access = if access.is_empty() { "rwm".to_string() } else { access };
        format!("{} {}:{} {}", kind, num(self.major), num(self.minor), access)
    }
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Memory {
    pub limit: Option<i64>,
    pub reservation: Option<i64>,
    pub swap: Option<i64>,
    pub kernel: Option<i64>,
    #[serde(rename = "kernelTCP")]
    pub kernel_tcp: Option<i64>,
    pub swappiness: Option<u64>,
    #[serde(rename = "disableOOMKiller")]
    pub disable_oom_killer: Option<bool>,
    pub use_hierarchy: Option<bool>,
    pub check_before_update: Option<bool>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Cpu {
    pub shares: Option<u64>,
    pub quota: Option<i64>,
    pub burst: Option<u64>,
    pub period: Option<u64>,
    pub realtime_runtime: Option<i64>,
    pub realtime_period: Option<u64>,
    pub cpus: Option<String>,
    pub mems: Option<String>,
    pub idle: Option<i64>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Pids {
    #[serde(default)]
    pub limit: i64,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BlockIo {
    pub weight: Option<u16>,
    pub leaf_weight: Option<u16>,
    #[serde(default)]
    pub weight_device: Vec<WeightDevice>,
    #[serde(default)]
    pub throttle_read_bps_device: Vec<ThrottleDevice>,
    #[serde(default)]
    pub throttle_write_bps_device: Vec<ThrottleDevice>,
    #[serde(default, rename = "throttleReadIOPSDevice")]
    pub throttle_read_iops_device: Vec<ThrottleDevice>,
    #[serde(default, rename = "throttleWriteIOPSDevice")]
    pub throttle_write_iops_device: Vec<ThrottleDevice>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WeightDevice {
    pub major: i64,
    pub minor: i64,
    pub weight: Option<u16>,
    pub leaf_weight: Option<u16>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ThrottleDevice {
    pub major: i64,
    pub minor: i64,
    pub rate: u64,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Hugepage {
    pub page_size: String,
    pub limit: u64,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Network {
    #[serde(rename = "classID")]
    pub class_id: Option<u32>,
    #[serde(default)]
    pub priorities: Vec<NetPriority>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct NetPriority {
    pub name: String,
    pub priority: u32,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Rdma {
    pub hca_handles: Option<u32>,
    pub hca_objects: Option<u32>,
}

/// The devices every container may use (runc's defaults): /dev/null, zero,
/// full, random, urandom, tty, ptmx, pts/*, and mknod of any device.
pub fn default_device_rules() -> Vec<DeviceRule> {
    let r = |kind: &str, major: i64, minor: i64, access: &str| DeviceRule {
        allow: true,
        kind: Some(kind.into()),
        major: Some(major),
        minor: Some(minor),
        access: Some(access.into()),
    };
    vec![
        r("c", -1, -1, "m"),
        r("b", -1, -1, "m"),
        r("c", 1, 3, "rwm"),
        r("c", 1, 5, "rwm"),
        r("c", 1, 7, "rwm"),
        r("c", 1, 8, "rwm"),
        r("c", 1, 9, "rwm"),
        r("c", 5, 0, "rwm"),
        r("c", 5, 1, "rwm"),
        r("c", 5, 2, "rwm"),
        r("c", 136, -1, "rwm"),
    ]
}

struct Target<'a> {
    cg: &'a Cgroup,
}

fn unsupported(setting: &str) -> CgroupError {
    CgroupError::Unsupported { setting: setting.to_string() }
}

impl Target<'_> {
    /// Where `controller` lives: its v1 directory, or the v2 one when the
    /// v2 hierarchy offers that controller.
    fn dir(&self, controller: &str) -> Option<&Dir> {
        if let Some(d) = self.cg.v1_dir(controller) {
            return Some(d);
        }
        let d = self.cg.v2_dir()?;
        let ctrls = std::fs::read_to_string(d.path.join("cgroup.controllers")).unwrap_or_default();
        ctrls.split_whitespace().any(|c| c == controller).then_some(d)
    }

    fn need(&self, controller: &str, setting: &str) -> Result<&Dir> {
        self.dir(controller).ok_or_else(|| unsupported(setting))
    }
}

fn set(dir: &Path, file: &str, value: impl ToString) -> Result<()> {
    write(&dir.join(file), &value.to_string())
}

fn max_or(v: i64) -> String {
    if v < 0 {
        "max".to_string()
    } else {
        v.to_string()
    }
}

/// Writes `r` into the container's cgroup, each controller where it is
/// mounted. `with_default_devices` adds runc's default device rules (at
/// create; `update` passes the caller's list as it is).
pub fn apply(cg: &Cgroup, r: &Resources, device_rules: &[DeviceRule]) -> Result<()> {
    let t = Target { cg };
    if let Some(m) = &r.memory {
        apply_memory(&t, m)?;
    }
    if let Some(c) = &r.cpu {
        apply_cpu(&t, c)?;
    }
    // A pids limit of 0 is "not set" (runc); -1 is unlimited.
    if let Some(p) = r.pids.as_ref().filter(|p| p.limit != 0) {
        let d = t.need("pids", "linux.resources.pids")?;
        set(&d.path, "pids.max", if p.limit > 0 { p.limit.to_string() } else { "max".into() })?;
    }
    if let Some(b) = &r.block_io {
        apply_blkio(&t, b)?;
    }
    for h in &r.hugepage_limits {
        let d = t.need("hugetlb", "linux.resources.hugepageLimits")?;
        let f = if d.v2 { format!("hugetlb.{}.max", h.page_size) } else { format!("hugetlb.{}.limit_in_bytes", h.page_size) };
        set(&d.path, &f, h.limit)?;
    }
    if let Some(n) = &r.network {
        apply_network(&t, n)?;
    }
    if let Some(rd) = &r.rdma {
        if !rd.is_empty() {
            let d = t.need("rdma", "linux.resources.rdma")?;
            for (dev, l) in rd {
                let mut s = dev.clone();
                if let Some(h) = l.hca_handles {
                    s += &format!(" hca_handle={h}");
                }
                if let Some(o) = l.hca_objects {
                    s += &format!(" hca_object={o}");
                }
                set(&d.path, "rdma.max", s)?;
            }
        }
    }
    if let Some(u) = r.unified.as_ref().filter(|u| !u.is_empty()) {
        apply_unified(cg, u)?;
    }
    if !device_rules.is_empty() {
        apply_devices(&t, device_rules)?;
    }
    Ok(())
}

/// linux.resources.memory: v2's memory.max/low/swap.max, or v1's limits.
fn apply_memory(t: &Target<'_>, m: &Memory) -> Result<()> {
    let d = t.need("memory", "linux.resources.memory")?;
    if d.v2 {
        if let Some(v) = m.limit.filter(|v| *v != 0) {
            set(&d.path, "memory.max", max_or(v))?;
        }
        if let Some(v) = m.reservation.filter(|v| *v != 0) {
            set(&d.path, "memory.low", max_or(v))?;
        }
        if let Some(v) = m.swap.filter(|v| *v != 0) {
            // OCI's swap is memory+swap; v2's memory.swap.max is swap alone.
            let s = match (v, m.limit) {
                (v, _) if v < 0 => "max".to_string(),
                (v, Some(l)) if l > 0 => (v - l).max(0).to_string(),
                (v, _) => v.to_string(),
            };
            set(&d.path, "memory.swap.max", s)?;
        }
        if m.swappiness.is_some() {
            return Err(unsupported("linux.resources.memory.swappiness (cgroup v2)"));
        }
        if m.kernel.is_some_and(|v| v != 0) || m.kernel_tcp.is_some_and(|v| v != 0) {
            return Err(unsupported("linux.resources.memory.kernel/kernelTCP (cgroup v2)"));
        }
        if m.disable_oom_killer == Some(true) {
            return Err(unsupported("linux.resources.memory.disableOOMKiller (cgroup v2)"));
        }
    } else {
        let p = &d.path;
        let lim = m.limit.filter(|v| *v != 0).map(max_or_v1);
        let swap = m.swap.filter(|v| *v != 0).map(max_or_v1);
        if let Some(l) = &lim {
            // memory.limit must stay <= memsw.limit: try both orders.
            if set(p, "memory.limit_in_bytes", l).is_err() {
                if let Some(s) = &swap {
                    set(p, "memory.memsw.limit_in_bytes", s)?;
                }
                set(p, "memory.limit_in_bytes", l)?;
            }
        }
        if let Some(s) = &swap {
            if !p.join("memory.memsw.limit_in_bytes").exists() {
                return Err(unsupported("linux.resources.memory.swap (no swap accounting)"));
            }
            set(p, "memory.memsw.limit_in_bytes", s)?;
        }
        if let Some(v) = m.reservation.filter(|v| *v != 0) {
            set(p, "memory.soft_limit_in_bytes", max_or_v1(v))?;
        }
        if let Some(v) = m.kernel.filter(|v| *v != 0) {
            // Deprecated, and recent kernels accept and ignore it; where
            // the file is gone it cannot be honoured at all.
            if !p.join("memory.kmem.limit_in_bytes").exists() {
                return Err(unsupported("linux.resources.memory.kernel (no kernel memory limit on this kernel)"));
            }
            set(p, "memory.kmem.limit_in_bytes", max_or_v1(v))?;
        }
        if let Some(v) = m.kernel_tcp.filter(|v| *v != 0) {
            set(p, "memory.kmem.tcp.limit_in_bytes", max_or_v1(v))?;
        }
        if let Some(v) = m.swappiness {
            set(p, "memory.swappiness", v)?;
        }
        if m.disable_oom_killer == Some(true) {
            set(p, "memory.oom_control", 1)?;
        }
    }
    Ok(())
}

/// linux.resources.cpu: weight and bandwidth (v2), shares, CFS and RT (v1),
/// and the cpuset.
fn apply_cpu(t: &Target<'_>, c: &Cpu) -> Result<()> {
    // Zeros are "not set" (runc): they need no cpu controller either.
    let nz = |v: Option<i64>| v.is_some_and(|v| v != 0);
    let any_cpu = c.shares.is_some_and(|v| v != 0)
        || nz(c.quota)
        || c.period.is_some_and(|v| v != 0)
        || c.burst.is_some()
        || nz(c.realtime_runtime)
        || c.realtime_period.is_some_and(|v| v != 0)
        || c.idle.is_some();
    if any_cpu {
        let d = t.need("cpu", "linux.resources.cpu")?;
        if d.v2 {
            if let Some(s) = c.shares.filter(|s| *s > 0) {
                // The conversion runc and crun use: [2, 262144] -> [1, 10000].
                let w = 1 + ((s.clamp(2, 262144) - 2) * 9999) / 262142;
                set(&d.path, "cpu.weight", w)?;
            }
            // 0 is "not set" for both, as runc reads them.
            let (quota, period) = (c.quota.filter(|q| *q != 0), c.period.filter(|p| *p > 0));
            if quota.is_some() || period.is_some() {
                let q = quota.filter(|q| *q > 0).map_or_else(|| "max".to_string(), |q| q.to_string());
                let per = period.unwrap_or(100000);
                set(&d.path, "cpu.max", format!("{q} {per}"))?;
            }
            if let Some(b) = c.burst {
                set(&d.path, "cpu.max.burst", b)?;
            }
            if let Some(i) = c.idle {
                set(&d.path, "cpu.idle", i)?;
            }
            if c.realtime_runtime.is_some_and(|v| v != 0) || c.realtime_period.is_some_and(|v| v != 0) {
                return Err(unsupported("linux.resources.cpu.realtimeRuntime (cgroup v2)"));
            }
        } else {
            let p = &d.path;
            if let Some(s) = c.shares.filter(|s| *s > 0) {
                set(p, "cpu.shares", s)?;
            }
            // The kernel checks quota/period against the parent's at each
            // write: a shorter period with the old quota can be over the
            // parent's limit, so where the period is refused the quota
            // goes first (runc's order).
            let (period, quota) = (c.period.filter(|v| *v > 0), c.quota.filter(|v| *v != 0));
            match (period, quota) {
                (Some(per), Some(q)) => {
                    if set(p, "cpu.cfs_period_us", per).is_err() {
                        set(p, "cpu.cfs_quota_us", q)?;
                        set(p, "cpu.cfs_period_us", per)?;
                    } else {
                        set(p, "cpu.cfs_quota_us", q)?;
                    }
                }
                (Some(per), None) => set(p, "cpu.cfs_period_us", per)?,
                (None, Some(q)) => set(p, "cpu.cfs_quota_us", q)?,
                (None, None) => {}
            }
            if let Some(b) = c.burst {
                set(p, "cpu.cfs_burst_us", b)?;
            }
            if let Some(v) = c.realtime_period.filter(|v| *v > 0) {
                set(p, "cpu.rt_period_us", v)?;
            }
            if let Some(v) = c.realtime_runtime.filter(|v| *v != 0) {
                set(p, "cpu.rt_runtime_us", v)?;
            }
            if let Some(i) = c.idle {
                set(p, "cpu.idle", i)?;
            }
        }
    }
    if c.cpus.as_deref().is_some_and(|s| !s.is_empty()) || c.mems.as_deref().is_some_and(|s| !s.is_empty()) {
        let d = t.need("cpuset", "linux.resources.cpu.cpus")?;
        if let Some(v) = c.cpus.as_deref().filter(|s| !s.is_empty()) {
            set(&d.path, "cpuset.cpus", v)?;
        }
        if let Some(v) = c.mems.as_deref().filter(|s| !s.is_empty()) {
            set(&d.path, "cpuset.mems", v)?;
        }
    }
    Ok(())
}

/// linux.resources.network: net_cls and net_prio (v1 only).
fn apply_network(t: &Target<'_>, n: &Network) -> Result<()> {
    if let Some(id) = n.class_id {
        let d = t.need("net_cls", "linux.resources.network.classID")?;
        set(&d.path, "net_cls.classid", id)?;
    }
    for p in &n.priorities {
        let d = t.need("net_prio", "linux.resources.network.priorities")?;
        set(&d.path, "net_prio.ifpriomap", format!("{} {}", p.name, p.priority))?;
    }
    Ok(())
}

/// linux.resources.unified: v2 files by name, each of which must exist.
fn apply_unified(cg: &Cgroup, u: &BTreeMap<String, String>) -> Result<()> {
    // On a v1 or hybrid host the v2 files would be written beside v1
    // limits on the same controllers: refused, as runc does.
    if cg.dirs.iter().any(|d| !d.v2) {
        return Err(CgroupError::UnifiedOnV1);
    }
    let d = cg.v2_dir().ok_or_else(|| unsupported("linux.resources.unified (no cgroup v2 hierarchy)"))?;
    for (k, v) in u {
        if k.contains('/') || k.starts_with('.') {
            return Err(unsupported(&format!("linux.resources.unified key {k:?}")));
        }
        let f = d.path.join(k);
        if !f.exists() {
            return Err(CgroupError::NoUnifiedFile { key: k.clone() });
        }
        set(&d.path, k, v)?;
    }

    Ok(())
}

fn max_or_v1(v: i64) -> String {
    if v < 0 {
        "-1".to_string()
    } else {
        v.to_string()
    }
}

fn apply_blkio(t: &Target<'_>, b: &BlockIo) -> Result<()> {
    let d = t.dir("blkio").or_else(|| t.dir("io")).ok_or_else(|| unsupported("linux.resources.blockIO"))?;
    let p = &d.path;
    // Weights of 0 are "not set": Docker sends blockIO.weight 0 when the
    // user gave none, and runc skips it.
    let weight = b.weight.filter(|w| *w != 0);
    if d.v2 {
        if let Some(w) = weight {
            let w2 = 1 + (u64::from(w).clamp(10, 1000) - 10) * 9999 / 990;
            let f = if p.join("io.bfq.weight").exists() { "io.bfq.weight" } else { "io.weight" };
            set(p, f, if f == "io.bfq.weight" { u64::from(w) } else { w2 })?;
        }
        for wd in &b.weight_device {
            if let Some(w) = wd.weight.filter(|w| *w != 0) {
                set(p, "io.bfq.weight", format!("{}:{} {}", wd.major, wd.minor, w))?;
            }
        }
        let lines = [
            ("rbps", &b.throttle_read_bps_device),
            ("wbps", &b.throttle_write_bps_device),
            ("riops", &b.throttle_read_iops_device),
            ("wiops", &b.throttle_write_iops_device),
        ];
        for (key, devs) in lines {
            for td in devs.iter() {
                set(p, "io.max", format!("{}:{} {}={}", td.major, td.minor, key, td.rate))?;
            }
        }
        return Ok(());
    }
    let weight_file = |plain: &str, bfq: &str| if p.join(plain).exists() { plain.to_string() } else { bfq.to_string() };
    if let Some(w) = weight {
        let f = weight_file("blkio.weight", "blkio.bfq.weight");
        if !p.join(&f).exists() {
            return Err(unsupported("linux.resources.blockIO.weight (no blkio weight file)"));
        }
        set(p, &f, w)?;
    }
    if let Some(w) = b.leaf_weight.filter(|w| *w != 0) {
        if !p.join("blkio.leaf_weight").exists() {
            return Err(unsupported("linux.resources.blockIO.leafWeight"));
        }
        set(p, "blkio.leaf_weight", w)?;
    }
    for wd in &b.weight_device {
        if let Some(w) = wd.weight.filter(|w| *w != 0) {
            let f = weight_file("blkio.weight_device", "blkio.bfq.weight_device");
            if !p.join(&f).exists() {
                return Err(unsupported("linux.resources.blockIO.weightDevice"));
            }
            set(p, &f, format!("{}:{} {}", wd.major, wd.minor, w))?;
        }
        if let Some(w) = wd.leaf_weight {
            set(p, "blkio.leaf_weight_device", format!("{}:{} {}", wd.major, wd.minor, w))?;
        }
    }
    let files = [
        ("blkio.throttle.read_bps_device", &b.throttle_read_bps_device),
        ("blkio.throttle.write_bps_device", &b.throttle_write_bps_device),
        ("blkio.throttle.read_iops_device", &b.throttle_read_iops_device),
        ("blkio.throttle.write_iops_device", &b.throttle_write_iops_device),
    ];
    for (f, devs) in files {
        for td in devs.iter() {
            set(p, f, format!("{}:{} {}", td.major, td.minor, td.rate))?;
        }
    }
    Ok(())
}

fn apply_devices(t: &Target<'_>, rules: &[DeviceRule]) -> Result<()> {
    if let Some(d) = t.cg.v1_dir("devices") {
        for r in rules {
            let f = if r.allow { "devices.allow" } else { "devices.deny" };
            set(&d.path, f, r.v1_line())?;
        }
        return Ok(());
    }
    if let Some(d) = t.cg.v2_dir() {
        let prog = crate::devices::program(rules);
        let fd = berth_sys::openat(None, &d.path, libc::O_RDONLY | libc::O_DIRECTORY, 0)
            .map_err(|source| CgroupError::Open { path: d.path.clone(), source })?;
        return berth_sys::attach_device_program(std::os::fd::AsFd::as_fd(&fd), &prog)
            .map_err(|source| CgroupError::DeviceProgram { path: d.path.clone(), source });
    }
    Err(unsupported("linux.resources.devices"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn v1_device_lines() {
        let all = DeviceRule { allow: false, access: Some("rwm".into()), ..Default::default() };
        assert_eq!(all.v1_line(), "a");
        let null = DeviceRule { allow: true, kind: Some("c".into()), major: Some(1), minor: Some(3), access: Some("rwm".into()) };
        assert_eq!(null.v1_line(), "c 1:3 rwm");
        let any = DeviceRule { allow: true, kind: Some("c".into()), major: Some(136), minor: None, access: Some("rw".into()) };
        assert_eq!(any.v1_line(), "c 136:* rw");
    }

    #[test]
    fn parses_oci_names() {
        let r: Resources = serde_json::from_str(
            r#"{"memory":{"limit":1048576,"disableOOMKiller":true},"blockIO":{"weight":10,"throttleReadIOPSDevice":[{"major":8,"minor":0,"rate":5}]},"pids":{"limit":32}}"#,
        )
        .unwrap();
        assert_eq!(r.memory.unwrap().limit, Some(1048576));
        assert_eq!(r.block_io.unwrap().throttle_read_iops_device[0].rate, 5);
        assert_eq!(r.pids.unwrap().limit, 32);
    }
}
