//! The bundle's config.json (runtime-spec 1.x, Linux), and its validation.
//!
//! Only what the spec defines is modelled. Unknown properties are ignored (the
//! spec requires it) and logged at debug. A property the spec defines but
//! berth cannot honour is rejected by [`Spec::validate`] with its name.

pub mod mount_options;
pub mod names;

use crate::{log, Result, RuntimeError};
/// linux.resources (also what `update` takes).
pub use berth_cgroups::Resources;

/// Why a bundle's configuration cannot be run.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("config.json is not valid JSON: {0}")]
    Json(#[source] serde_json::Error),
    /// Valid JSON of the wrong shape (at: config.json, linux.seccomp,
    /// resources, a --process file).
    #[error("{at}: {source}")]
    Schema { at: String, source: serde_json::Error },
    #[error("unsupported ociVersion {0:?}: berth runs runtime-spec 1.x")]
    OciVersion(String),
    /// A setting runtime-spec defines that berth cannot honour.
    #[error("{setting} is not supported by berth")]
    Unsupported { setting: String },
    /// A setting whose value is wrong, or that contradicts another.
    #[error("{setting}: {why}")]
    Invalid { setting: &'static str, why: String },
    /// A terminal, detached, with no console socket: no one would hold
    /// the terminal's other end. runc's words: callers match them.
    #[error("cannot allocate tty if runc will detach without setting console socket")]
    DetachedTty,
    /// A cgroupsPath that cannot be the container's own cgroup.
    #[error("linux.cgroupsPath {path:?}: {why}")]
    CgroupsPath { path: String, why: berth_cgroups::Refusal },
    #[error("{} is not a regular file", path.display())]
    NotRegular { path: PathBuf },
    #[error("{} is larger than {max_mib} MiB", path.display())]
    TooLarge { path: PathBuf, max_mib: u64 },
}

/// A [`ConfigError::Invalid`] for `setting`.
pub fn invalid(setting: &'static str, why: impl Into<String>) -> RuntimeError {
    RuntimeError::Config(ConfigError::Invalid { setting, why: why.into() })
}
use berth_sys::Namespaces;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Spec {
    pub oci_version: String,
    #[serde(default)]
    pub process: Option<Process>,
    #[serde(default)]
    pub root: Option<Root>,
    #[serde(default)]
    pub hostname: Option<String>,
    #[serde(default)]
    pub domainname: Option<String>,
    #[serde(default)]
    pub mounts: Vec<Mount>,
    #[serde(default)]
    pub hooks: Option<Hooks>,
    #[serde(default)]
    pub annotations: BTreeMap<String, String>,
    #[serde(default)]
    pub linux: Option<Linux>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Process {
    #[serde(default)]
    pub terminal: bool,
    #[serde(default)]
    pub console_size: Option<ConsoleSize>,
    #[serde(default)]
    pub user: User,
    #[serde(default)]
    pub args: Vec<String>,
    #[serde(default)]
    pub command_line: Option<String>,
    #[serde(default)]
    pub env: Vec<String>,
    #[serde(default)]
    pub cwd: String,
    #[serde(default)]
    pub capabilities: Option<Capabilities>,
    #[serde(default)]
    pub rlimits: Vec<Rlimit>,
    #[serde(default)]
    pub no_new_privileges: bool,
    #[serde(default)]
    pub apparmor_profile: Option<String>,
    #[serde(default)]
    pub oom_score_adj: Option<i32>,
    #[serde(default)]
    pub selinux_label: Option<String>,
    #[serde(default)]
    pub io_priority: Option<IoPriority>,
    #[serde(default)]
    pub scheduler: Option<Scheduler>,
    #[serde(default, rename = "execCPUAffinity")]
    pub exec_cpu_affinity: Option<Value>,
}

/// process.ioPriority.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct IoPriority {
    pub class: String,
    #[serde(default)]
    pub priority: i64,
}

impl IoPriority {
    /// The kernel's (class, level), or an error naming what is wrong.
    pub fn kernel(&self) -> Result<(u32, u32)> {
        let class = match self.class.as_str() {
            "IOPRIO_CLASS_RT" => 1,
            "IOPRIO_CLASS_BE" => 2,
            "IOPRIO_CLASS_IDLE" => 3,
            c => return Err(invalid("process.ioPriority", format!("unknown class {c:?}"))),
        };
        if !(0..=7).contains(&self.priority) {
            return Err(invalid("process.ioPriority", format!("priority {} is not in 0..7", self.priority)));
        }
        Ok((class, u32::try_from(self.priority).unwrap_or(0)))
    }
}

/// process.scheduler.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Scheduler {
    pub policy: String,
    #[serde(default)]
    pub nice: i32,
    #[serde(default)]
    pub priority: i32,
    #[serde(default)]
    pub flags: Vec<String>,
    #[serde(default)]
    pub runtime: u64,
    #[serde(default)]
    pub deadline: u64,
    #[serde(default)]
    pub period: u64,
}

impl Scheduler {
    /// The kernel's sched_attr, or an error naming what is wrong.
    pub fn kernel(&self) -> Result<berth_sys::SchedAttr> {
        let policy = match self.policy.as_str() {
            "SCHED_OTHER" => 0,
            "SCHED_FIFO" => 1,
            "SCHED_RR" => 2,
            "SCHED_BATCH" => 3,
            "SCHED_IDLE" => 5,
            "SCHED_DEADLINE" => 6,
            "SCHED_ISO" => return Err(invalid("process.scheduler", "SCHED_ISO is not implemented by Linux")),
            p => return Err(invalid("process.scheduler", format!("unknown policy {p:?}"))),
        };
        let mut flags = 0u64;
        for f in &self.flags {
            flags |= match f.as_str() {
                "SCHED_FLAG_RESET_ON_FORK" => 0x01,
                "SCHED_FLAG_RECLAIM" => 0x02,
                "SCHED_FLAG_DL_OVERRUN" => 0x04,
                "SCHED_FLAG_KEEP_POLICY" => 0x08,
                "SCHED_FLAG_KEEP_PARAMS" => 0x10,
                "SCHED_FLAG_UTIL_CLAMP_MIN" => 0x20,
                "SCHED_FLAG_UTIL_CLAMP_MAX" => 0x40,
                f => return Err(invalid("process.scheduler", format!("unknown flag {f:?}"))),
            };
        }
        if !(-20..=19).contains(&self.nice) {
            return Err(invalid("process.scheduler", format!("nice {} is not in -20..19", self.nice)));
        }
        let rt = policy == 1 || policy == 2;
        if rt && !(1..=99).contains(&self.priority) || !rt && self.priority != 0 {
            return Err(invalid("process.scheduler", format!("priority {} is not valid for {}", self.priority, self.policy)));
        }
        if policy == 6 && (self.runtime == 0 || self.deadline == 0) {
            return Err(invalid("process.scheduler", "SCHED_DEADLINE needs runtime and deadline"));
        }
        Ok(berth_sys::SchedAttr {
            policy,
            flags,
            nice: self.nice,
            priority: self.priority.cast_unsigned(), // checked above: 0..=99
            runtime: self.runtime,
            deadline: self.deadline,
            period: self.period,
            ..Default::default()
        })
    }
}

#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize)]
pub struct ConsoleSize {
    pub height: u16,
    pub width: u16,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct User {
    #[serde(default)]
    pub uid: u32,
    #[serde(default)]
    pub gid: u32,
    #[serde(default)]
    pub umask: Option<u32>,
    #[serde(default)]
    pub additional_gids: Vec<u32>,
    #[serde(default)]
    pub username: Option<String>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Capabilities {
    #[serde(default)]
    pub bounding: Vec<String>,
    #[serde(default)]
    pub effective: Vec<String>,
    #[serde(default)]
    pub inheritable: Vec<String>,
    #[serde(default)]
    pub permitted: Vec<String>,
    #[serde(default)]
    pub ambient: Vec<String>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Rlimit {
    #[serde(rename = "type")]
    pub kind: String,
    pub hard: u64,
    pub soft: u64,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Root {
    pub path: String,
    #[serde(default)]
    pub readonly: bool,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Mount {
    pub destination: String,
    #[serde(default, rename = "type")]
    pub kind: Option<String>,
    #[serde(default)]
    pub source: Option<String>,
    #[serde(default)]
    pub options: Vec<String>,
    #[serde(default)]
    pub uid_mappings: Vec<IdMapping>,
    #[serde(default)]
    pub gid_mappings: Vec<IdMapping>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Hooks {
    #[serde(default)]
    pub prestart: Vec<Hook>,
    #[serde(default)]
    pub create_runtime: Vec<Hook>,
    #[serde(default)]
    pub create_container: Vec<Hook>,
    #[serde(default)]
    pub start_container: Vec<Hook>,
    #[serde(default)]
    pub poststart: Vec<Hook>,
    #[serde(default)]
    pub poststop: Vec<Hook>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Hook {
    pub path: String,
    #[serde(default)]
    pub args: Vec<String>,
    #[serde(default)]
    pub env: Vec<String>,
    #[serde(default)]
    pub timeout: Option<i64>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct IdMapping {
    #[serde(rename = "containerID")]
    pub container_id: u32,
    #[serde(rename = "hostID")]
    pub host_id: u32,
    pub size: u32,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Namespace {
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(default)]
    pub path: Option<String>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Device {
    #[serde(rename = "type")]
    pub kind: String,
    pub path: String,
    #[serde(default)]
    pub major: i64,
    #[serde(default)]
    pub minor: i64,
    #[serde(default)]
    pub file_mode: Option<u32>,
    #[serde(default)]
    pub uid: Option<u32>,
    #[serde(default)]
    pub gid: Option<u32>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct TimeOffset {
    #[serde(default)]
    pub secs: i64,
    #[serde(default)]
    pub nanosecs: u32,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Linux {
    #[serde(default)]
    pub uid_mappings: Vec<IdMapping>,
    #[serde(default)]
    pub gid_mappings: Vec<IdMapping>,
    #[serde(default)]
    pub sysctl: BTreeMap<String, String>,
    #[serde(default)]
    pub resources: Option<Resources>,
    #[serde(default)]
    pub cgroups_path: Option<String>,
    #[serde(default)]
    pub namespaces: Vec<Namespace>,
    #[serde(default)]
    pub devices: Vec<Device>,
    #[serde(default)]
    pub seccomp: Option<Value>,
    #[serde(default)]
    pub rootfs_propagation: Option<String>,
    #[serde(default)]
    pub masked_paths: Vec<String>,
    #[serde(default)]
    pub readonly_paths: Vec<String>,
    #[serde(default)]
    pub mount_label: Option<String>,
    #[serde(default)]
    pub intel_rdt: Option<Value>,
    #[serde(default)]
    pub personality: Option<Personality>,
    #[serde(default)]
    pub time_offsets: BTreeMap<String, TimeOffset>,
    #[serde(default)]
    pub memory_policy: Option<Value>,
    #[serde(default)]
    pub net_devices: Option<Value>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Personality {
    pub domain: String,
    #[serde(default)]
    pub flags: Vec<String>,
}

/// The namespaces berth knows, with their clone flag and /proc/PID/ns name.
pub const NAMESPACES: &[(&str, Namespaces, &str)] = &[
    ("pid", Namespaces::PID, "pid"),
    ("network", Namespaces::NET, "net"),
    ("mount", Namespaces::MOUNT, "mnt"),
    ("ipc", Namespaces::IPC, "ipc"),
    ("uts", Namespaces::UTS, "uts"),
    ("user", Namespaces::USER, "user"),
    ("cgroup", Namespaces::CGROUP, "cgroup"),
    ("time", Namespaces::TIME, "time"),
];

pub fn ns_flag(kind: &str) -> Option<Namespaces> {
    NAMESPACES.iter().find(|(k, _, _)| *k == kind).map(|(_, f, _)| *f)
}

impl Spec {
    /// Reads `bundle/config.json`.
    pub fn load(bundle: &Path) -> Result<Spec> {
        let path = bundle.join("config.json");
        let text = read_regular_file(&path, MAX_CONFIG)?;
        Spec::parse(&text)
    }

    pub fn parse(text: &str) -> Result<Spec> {
        let raw: Value = serde_json::from_str(text).map_err(ConfigError::Json)?;
        log_unknown("", &raw);
        check_shapes(&raw)?;
        serde_json::from_value(raw).map_err(|source| ConfigError::Schema { at: "config.json".into(), source }.into())
    }

    pub fn linux(&self) -> &Linux {
        static EMPTY: std::sync::OnceLock<Linux> = std::sync::OnceLock::new();
        self.linux.as_ref().unwrap_or_else(|| EMPTY.get_or_init(Linux::default))
    }

    /// The namespace of `kind` requested, if any.
    pub fn namespace(&self, kind: &str) -> Option<&Namespace> {
        self.linux().namespaces.iter().find(|n| n.kind == kind)
    }

    /// The absolute rootfs path.
    pub fn rootfs(&self, bundle: &Path) -> PathBuf {
        let p = self.root.as_ref().map(|r| r.path.as_str()).unwrap_or("rootfs");
        if p.starts_with('/') {
            PathBuf::from(p)
        } else {
            bundle.join(p)
        }
    }

    /// Rejects what berth cannot run, naming the setting.
    pub fn validate(&self, bundle: &Path) -> Result<()> {
        let v = self.oci_version.as_str();
        if !(v.starts_with("1.") || v == "1") {
            return Err(ConfigError::OciVersion(v.to_string()).into());
        }
        // A config without a process can be created (start then fails).
        let no_process = Process { args: vec!["-".into()], cwd: "/".into(), ..Default::default() };
        let p = self.process.as_ref().unwrap_or(&no_process);
        validate_process(p)?;
        let rootfs = self.rootfs(bundle);
        if !rootfs.is_dir() {
            return Err(invalid("root.path", format!("rootfs {} does not exist or is not a directory", rootfs.display())));
        }
        if self.hooks.as_ref().is_some_and(|h| {
            !(h.prestart.is_empty()
                && h.create_runtime.is_empty()
                && h.create_container.is_empty()
                && h.start_container.is_empty()
                && h.poststart.is_empty()
                && h.poststop.is_empty())
        }) {
            // Hooks are validated and run by the hooks module.
            for h in self.all_hooks() {
                if !h.path.starts_with('/') {
                    return Err(invalid("hooks", format!("hook path {:?} must be absolute", h.path)));
                }
            }
        }
        self.validate_namespaces()?;
        self.validate_linux(p)?;
        for m in &self.mounts {
            if !m.destination.starts_with('/') {
                return Err(invalid("mounts", format!("mount destination {:?} must be absolute", m.destination)));
            }
            for o in &m.options {
                if !mount_options::known_mount_option(o) {
                    log::debug(&format!("mount {}: option {o:?} passed to the filesystem as data", m.destination));
                }
            }
        }
        Ok(())
    }

    /// linux.namespaces and what needs one: kinds known and listed once,
    /// paths that exist, id maps with a user namespace, time offsets with a
    /// time namespace, hostname and domainname with a uts namespace.
    fn validate_namespaces(&self) -> Result<()> {
        let l = self.linux();
        let mut seen = Vec::new();
        for ns in &l.namespaces {
            if ns_flag(&ns.kind).is_none() {
                return Err(invalid("linux.namespaces", format!("unknown namespace type {:?}", ns.kind)));
            }
            if seen.contains(&ns.kind.as_str()) {
                return Err(invalid("linux.namespaces", format!("namespace {:?} is listed twice", ns.kind)));
            }
            seen.push(ns.kind.as_str());
            if let Some(path) = ns.path.as_deref().filter(|p| !p.is_empty()) {
                if !Path::new(path).exists() {
                    return Err(invalid("linux.namespaces", format!("{} namespace path {path} does not exist", ns.kind)));
                }
            }
        }
        let new_user = self.namespace("user").is_some_and(|n| n.path.as_deref().unwrap_or("").is_empty());
        if (!l.uid_mappings.is_empty() || !l.gid_mappings.is_empty()) && self.namespace("user").is_none() {
            return Err(invalid("linux.uidMappings/gidMappings", "are set but no user namespace is requested"));
        }
        if new_user && (l.uid_mappings.is_empty() || l.gid_mappings.is_empty()) {
            return Err(invalid("linux.uidMappings", "a new user namespace needs linux.uidMappings and linux.gidMappings"));
        }
        if !l.time_offsets.is_empty() && self.namespace("time").is_none() {
            return Err(invalid("linux.timeOffsets", "is set but no time namespace is requested"));
        }
        if self.hostname.as_deref().is_some_and(|h| !h.is_empty()) && self.namespace("uts").is_none() {
            return Err(invalid("hostname", "requires a new uts namespace"));
        }
        if self.domainname.as_deref().is_some_and(|h| !h.is_empty()) && self.namespace("uts").is_none() {
            return Err(invalid("domainname", "requires a new uts namespace"));
        }
        Ok(())
    }

    /// The rest of linux: sysctls, ids, propagation, seccomp, what berth
    /// cannot honour, personality, devices.
    fn validate_linux(&self, p: &Process) -> Result<()> {
        let l = self.linux();
        let unsupported = |what: &str| Err(ConfigError::Unsupported { setting: what.to_string() }.into());
        for k in l.sysctl.keys() {
            self.check_sysctl(k)?;
        }
        for (what, id) in [("process.user.uid", p.user.uid), ("process.user.gid", p.user.gid)]
            .into_iter()
            .chain(p.user.additional_gids.iter().map(|g| ("process.user.additionalGids", *g)))
        {
            check_id(what, id)?;
        }
        if let Some(prop) = l.rootfs_propagation.as_deref().filter(|s| !s.is_empty()) {
            if mount_options::propagation_flag(prop).is_none() {
                return Err(invalid("linux.rootfsPropagation", format!("{prop:?} is not valid")));
            }
        }
        if let Some(sc) = &l.seccomp {
            crate::seccomp::Profile::parse(sc)?.validate()?;
        }
        if l.intel_rdt.is_some() {
            return unsupported("linux.intelRdt");
        }
        if l.memory_policy.is_some() {
            return unsupported("linux.memoryPolicy");
        }
        if l.net_devices.is_some() {
            return unsupported("linux.netDevices");
        }
        if l.mount_label.as_deref().is_some_and(|s| !s.is_empty()) {
            return Err(invalid("linux.mountLabel", "is set but SELinux is not supported by berth on this host"));
        }
        if let Some(pers) = &l.personality {
            if pers.domain != "LINUX" && pers.domain != "LINUX32" {
                return Err(invalid("linux.personality", format!("domain {:?} is not valid", pers.domain)));
            }
            if !pers.flags.is_empty() {
                return unsupported("linux.personality.flags");
            }
        }
        for d in &l.devices {
            if !matches!(d.kind.as_str(), "c" | "b" | "u" | "p") {
                return Err(invalid("linux.devices", format!("{:?} has invalid type {:?}", d.path, d.kind)));
            }
            if !d.path.starts_with("/dev/") {
                return Err(invalid("linux.devices", format!("path {:?} must be under /dev", d.path)));
            }
        }
        Ok(())
    }

    /// A sysctl is set only where it is namespaced, and only in a namespace
    /// of the container's own: what runc allows, in runc's words.
    fn check_sysctl(&self, key: &str) -> Result<()> {
        if key.is_empty() || key.contains('/') || key.split('.').any(|c| c.is_empty() || c == "..") {
            return Err(invalid("linux.sysctl", format!("key {key:?} is not valid")));
        }
        // The namespace is the container's own: new, or joined by a path
        // that is not this process' (the host's) namespace.
        let own = |kind: &str, proc_name: &str| {
            self.namespace(kind).is_some_and(|n| match n.path.as_deref().filter(|p| !p.is_empty()) {
                None => true,
                Some(path) => {
                    let ino = |p: &str| std::fs::metadata(p).map(|m| std::os::unix::fs::MetadataExt::ino(&m)).ok();
                    ino(path).is_some() && ino(path) != ino(&format!("/proc/self/ns/{proc_name}"))
                }
            })
        };
        const IPC: &[&str] = &[
            "kernel.msgmax",
            "kernel.msgmnb",
            "kernel.msgmni",
            "kernel.sem",
            "kernel.shmall",
            "kernel.shmmax",
            "kernel.shmmni",
            "kernel.shm_rmid_forced",
        ];
        if IPC.contains(&key) || key.starts_with("fs.mqueue.") {
            if own("ipc", "ipc") {
                return Ok(());
            }
            return Err(invalid("linux.sysctl", format!("sysctl {key:?} is not allowed in the hosts ipc namespace")));
        }
        if key.starts_with("net.") {
            if own("network", "net") {
                return Ok(());
            }
            return Err(invalid("linux.sysctl", format!("sysctl {key:?} not allowed in host network namespace")));
        }
        if key == "kernel.domainname" {
            if own("uts", "uts") {
                return Ok(());
            }
            return Err(invalid("linux.sysctl", format!("sysctl {key:?} is not allowed in the hosts uts namespace")));
        }
        if key == "kernel.hostname" {
            return Err(invalid("linux.sysctl", format!("sysctl {key:?} is not allowed as it conflicts with the OCI \"hostname\" field")));
        }
        Err(invalid("linux.sysctl", format!("sysctl {key:?} is not in a separate kernel namespace")))
    }

    pub fn all_hooks(&self) -> Vec<&Hook> {
        match &self.hooks {
            None => vec![],
            Some(h) => h
                .prestart
                .iter()
                .chain(&h.create_runtime)
                .chain(&h.create_container)
                .chain(&h.start_container)
                .chain(&h.poststart)
                .chain(&h.poststop)
                .collect(),
        }
    }
}

/// The largest config.json berth reads (runc has no limit; this one only
/// keeps a hostile file from exhausting memory).
pub const MAX_CONFIG: u64 = 64 << 20;

/// Reads a file that must be a regular one of at most `max` bytes: opened
/// without blocking (a FIFO in its place would hang the reader forever) and
/// checked before it is read.
pub fn read_regular_file(path: &Path, max: u64) -> Result<String> {
    use std::io::Read;
    use std::os::unix::fs::OpenOptionsExt;
    let f = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY)
        .open(path)
        .map_err(|e| RuntimeError::io_at("read", path, e))?;
    let md = f.metadata().map_err(|e| RuntimeError::io_at("stat", path, e))?;
    if !md.is_file() {
        return Err(ConfigError::NotRegular { path: path.to_path_buf() }.into());
    }
    if md.len() > max {
        return Err(ConfigError::TooLarge { path: path.to_path_buf(), max_mib: max >> 20 }.into());
    }
    let mut text = String::new();
    f.take(max + 1).read_to_string(&mut text).map_err(|e| RuntimeError::io_at("read", path, e))?;
    Ok(text)
}

/// JSON properties that must be objects, and arrays whose items must be:
/// serde would take `[]` for a struct (its fields all defaulted), so
/// `"user": []` would silently mean uid 0.
fn check_shapes(raw: &Value) -> Result<()> {
    const OBJECTS: &[&str] = &[
        "/process",
        "/process/user",
        "/process/capabilities",
        "/process/consoleSize",
        "/process/ioPriority",
        "/process/scheduler",
        "/root",
        "/hooks",
        "/annotations",
        "/linux",
        "/linux/resources",
        "/linux/resources/memory",
        "/linux/resources/cpu",
        "/linux/resources/pids",
        "/linux/resources/blockIO",
        "/linux/resources/network",
        "/linux/resources/unified",
        "/linux/resources/rdma",
        "/linux/sysctl",
        "/linux/seccomp",
        "/linux/personality",
        "/linux/timeOffsets",
        "/linux/intelRdt",
    ];
    const ARRAYS_OF_OBJECTS: &[&str] = &[
        "/mounts",
        "/process/rlimits",
        "/linux/namespaces",
        "/linux/devices",
        "/linux/uidMappings",
        "/linux/gidMappings",
        "/linux/resources/devices",
        "/linux/resources/hugepageLimits",
        "/linux/seccomp/syscalls",
        "/hooks/prestart",
        "/hooks/createRuntime",
        "/hooks/createContainer",
        "/hooks/startContainer",
        "/hooks/poststart",
        "/hooks/poststop",
    ];
    let kind = |v: &Value| match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    };
    for p in OBJECTS {
        match raw.pointer(p) {
            Some(Value::Object(_)) | Some(Value::Null) | None => {}
            Some(v) => return Err(invalid("config.json", format!("{} must be an object, not {}", &p[1..].replace('/', "."), kind(v)))),
        }
    }
    for p in ARRAYS_OF_OBJECTS {
        match raw.pointer(p) {
            Some(Value::Array(items)) => {
                if let Some(v) = items.iter().find(|v| !v.is_object()) {
                    return Err(invalid(
                        "config.json",
                        format!("the items of {} must be objects, not {}", &p[1..].replace('/', "."), kind(v)),
                    ));
                }
            }
            Some(Value::Null) | None => {}
            Some(v) => return Err(invalid("config.json", format!("{} must be an array, not {}", &p[1..].replace('/', "."), kind(v)))),
        }
    }
    Ok(())
}

/// process: args, strings, cwd, what berth cannot honour, io priority,
/// scheduler, capabilities, rlimits.
fn validate_process(p: &Process) -> Result<()> {
    let unsupported = |what: &str| Err(ConfigError::Unsupported { setting: what.to_string() }.into());
    if p.args.is_empty() {
        return Err(invalid("process.args", "must not be empty"));
    }
    check_exec_strings(&p.args, &p.env)?;
    if !p.cwd.starts_with('/') {
        return Err(invalid("process.cwd", format!("{:?} must be an absolute path", p.cwd)));
    }
    if p.apparmor_profile.as_deref().is_some_and(|s| !s.is_empty()) {
        return Err(invalid("process.apparmorProfile", "is set but AppArmor is not supported by berth on this host"));
    }
    if p.selinux_label.as_deref().is_some_and(|s| !s.is_empty()) {
        return Err(invalid("process.selinuxLabel", "is set but SELinux is not supported by berth on this host"));
    }
    if let Some(io) = &p.io_priority {
        io.kernel()?;
    }
    if let Some(s) = &p.scheduler {
        s.kernel()?;
    }
    if p.exec_cpu_affinity.is_some() {
        return unsupported("process.execCPUAffinity");
    }
    if let Some(c) = &p.capabilities {
        for name in c.bounding.iter().chain(&c.effective).chain(&c.inheritable).chain(&c.permitted).chain(&c.ambient) {
            if names::cap_number(name).is_none() {
                return Err(invalid("process.capabilities", format!("unknown capability {name:?}")));
            }
        }
    }
    for r in &p.rlimits {
        if names::rlimit_number(&r.kind).is_none() {
            return Err(invalid("process.rlimits", format!("unknown rlimit type {:?}", r.kind)));
        }
    }
    Ok(())
}

/// Checks that a process' argument or environment entry can reach execve
/// as it is: no NUL byte, and (for the environment) KEY=VALUE.
pub fn check_exec_strings(args: &[String], env: &[String]) -> Result<()> {
    let shown = |s: &str| format!("{:?}", s.chars().take(64).collect::<String>());
    if let Some(a) = args.iter().find(|a| a.contains('\0')) {
        return Err(invalid("process.args", format!("entry {} contains a NUL byte", shown(a))));
    }
    for e in env {
        if e.contains('\0') {
            return Err(invalid("process.env", format!("entry {} contains a NUL byte", shown(e))));
        }
        if e.split_once('=').is_none_or(|(k, _)| k.is_empty()) {
            return Err(invalid("process.env", format!("entry {} is not KEY=VALUE", shown(e))));
        }
    }
    Ok(())
}

/// A uid or gid the kernel can take: -1 (4294967295) means "leave it as it
/// is" to setresuid(2), so a process meant to run as it would stay root.
pub fn check_id(what: &'static str, id: u32) -> Result<()> {
    if id == u32::MAX {
        return Err(invalid(what, format!("{id} is not a valid ID (it is -1, which setresuid takes as \"no change\")")));
    }
    Ok(())
}

/// Logs (at debug) top-level and well-known nested properties the spec does
/// not define; they are ignored.
fn log_unknown(prefix: &str, v: &Value) {
    const TOP: &[&str] = &[
        "ociVersion",
        "process",
        "root",
        "hostname",
        "domainname",
        "mounts",
        "hooks",
        "annotations",
        "linux",
        "solaris",
        "windows",
        "vm",
        "zos",
    ];
    if let (true, Some(obj)) = (prefix.is_empty(), v.as_object()) {
        for k in obj.keys() {
            if !TOP.contains(&k.as_str()) {
                log::debug(&format!("config.json: ignoring property {k:?} that runtime-spec does not define"));
            }
        }
    }
}

/// The default config.json that `spec` writes: runc's defaults.
pub fn default_spec_json(rootless: bool) -> Value {
    let mut v = serde_json::json!({
        "ociVersion": "1.2.0",
        "process": {
            "terminal": true,
            "user": {"uid": 0, "gid": 0},
            "args": ["sh"],
            "env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "TERM=xterm"],
            "cwd": "/",
            "capabilities": {
                "bounding": ["CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"],
                "effective": ["CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"],
                "permitted": ["CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"],
                "ambient": ["CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"]
            },
            "rlimits": [{"type": "RLIMIT_NOFILE", "hard": 1024, "soft": 1024}],
            "noNewPrivileges": true
        },
        "root": {"path": "rootfs", "readonly": true},
        "hostname": "runc",
        "mounts": [
            {"destination": "/proc", "type": "proc", "source": "proc"},
            {"destination": "/dev", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]},
            {"destination": "/dev/pts", "type": "devpts", "source": "devpts", "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"]},
            {"destination": "/dev/shm", "type": "tmpfs", "source": "shm", "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"]},
            {"destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue", "options": ["nosuid", "noexec", "nodev"]},
            {"destination": "/sys", "type": "sysfs", "source": "sysfs", "options": ["nosuid", "noexec", "nodev", "ro"]},
            {"destination": "/sys/fs/cgroup", "type": "cgroup", "source": "cgroup", "options": ["nosuid", "noexec", "nodev", "relatime", "ro"]}
        ],
        "linux": {
            "resources": {"devices": [{"allow": false, "access": "rwm"}]},
            "namespaces": [{"type": "pid"}, {"type": "network"}, {"type": "ipc"}, {"type": "uts"}, {"type": "mount"}],
            "maskedPaths": [
                "/proc/acpi", "/proc/asound", "/proc/kcore", "/proc/keys", "/proc/latency_stats", "/proc/timer_list",
                "/proc/timer_stats", "/proc/sched_debug", "/sys/firmware", "/proc/scsi"
            ],
            "readonlyPaths": ["/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"]
        }
    });
    if rootless {
        let l = v["linux"].as_object_mut().unwrap();
        l.remove("resources");
        let uid = berth_sys::getuid();
        l.insert("uidMappings".into(), serde_json::json!([{"containerID": 0, "hostID": uid, "size": 1}]));
        l.insert("gidMappings".into(), serde_json::json!([{"containerID": 0, "hostID": uid, "size": 1}]));
        l["namespaces"] = serde_json::json!([{"type": "pid"}, {"type": "ipc"}, {"type": "uts"}, {"type": "mount"}, {"type": "user"}]);
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_spec_parses_and_names_runc_defaults() {
        let s: Spec = serde_json::from_value(default_spec_json(false)).unwrap();
        assert_eq!(s.process.as_ref().unwrap().args, vec!["sh"]);
        assert!(s.namespace("pid").is_some());
        assert_eq!(s.mounts.len(), 7);
    }

    #[test]
    fn rejects_bad_json_and_version() {
        assert!(matches!(Spec::parse("{"), Err(RuntimeError::Config(ConfigError::Json(_)))));
        let s = Spec::parse(r#"{"ociVersion":"2.0.0","process":{"args":["x"],"cwd":"/"}}"#).unwrap();
        let e = s.validate(Path::new("/nonexistent")).unwrap_err().to_string();
        assert!(e.contains("ociVersion"), "{e}");
    }

    #[test]
    fn unknown_properties_are_ignored() {
        let s = Spec::parse(r#"{"ociVersion":"1.0.2","someFutureField":{"a":1},"process":{"args":["x"],"cwd":"/","futureKnob":true}}"#)
            .unwrap();
        assert_eq!(s.oci_version, "1.0.2");
    }
}
