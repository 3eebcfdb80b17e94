//! Who holds a path: through a mount in some mount namespace (the mount point
//! itself, an overlay whose upper/lower/work dir is there, a loop device
//! backed by a file there), an open fd, a cwd or root, or a memory map.
//! `berth why-busy` prints it. (Teardown's own check for copies of a
//! container's mounts is in `reclaim`.)
//!
//! Paths a process sees are translated to this process's view through
//! /proc/PID/root, so holders inside containers are found too.

use serde::Serialize;
use std::collections::{BTreeMap, HashSet};
use std::fs;
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Holder {
    pub pid: i32,
    pub command: String,
    /// The mount namespace, as `mnt:[inode]`.
    pub mount_namespace: String,
    /// How it holds the path: `mount /x (overlay upperdir)`, `fd 3`, `cwd`...
    pub how: String,
    /// Peer groups the mount propagates with (`shared:N`, `master:N`).
    #[serde(skip)]
    pub peers: Vec<String>,
    /// The berth container the process belongs to, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub container: Option<String>,
}

fn under(p: &Path, base: &Path) -> bool {
    p == base || p.starts_with(base)
}

pub(crate) fn pids() -> Vec<i32> {
    let mut v: Vec<i32> =
        fs::read_dir("/proc").map(|rd| rd.flatten().filter_map(|e| e.file_name().to_str()?.parse().ok()).collect()).unwrap_or_default();
    v.sort();
    v
}

pub(crate) fn comm(pid: i32) -> String {
    fs::read_to_string(format!("/proc/{pid}/comm")).map(|s| s.trim().to_string()).unwrap_or_default()
}

/// The process's root as seen from here ("/" for the host's; for a root in
/// another mount namespace the kernel cannot name it and also says "/").
fn root_of(pid: i32) -> PathBuf {
    fs::read_link(format!("/proc/{pid}/root")).unwrap_or_else(|_| PathBuf::from("/"))
}

fn dev_ino(p: &Path) -> Option<(u64, u64)> {
    use std::os::unix::fs::MetadataExt;
    fs::metadata(p).ok().map(|m| (m.dev(), m.ino()))
}

/// (device, inode) of `path` and of the directories up to two levels below
/// it: a process whose root is one of them lives inside `path` even when its
/// root cannot be named from here.
fn identities(path: &Path) -> HashSet<(u64, u64)> {
    let mut set = HashSet::new();
    set.extend(dev_ino(path));
    let mut level = vec![path.to_path_buf()];
    for _ in 0..2 {
        let mut next = Vec::new();
        for d in &level {
            if let Ok(rd) = fs::read_dir(d) {
                for e in rd.flatten().take(1000) {
                    if e.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                        set.extend(dev_ino(&e.path()));
                        next.push(e.path());
                    }
                }
            }
        }
        level = next;
    }
    set
}

/// Where the path `p` (unescaped) of a process rooted at `root` is in this
/// process' view.
fn host_view(root: &Path, p: &str) -> PathBuf {
    if root == Path::new("/") {
        PathBuf::from(p)
    } else {
        root.join(p.trim_start_matches('/'))
    }
}

/// Loop devices and their backing files.
fn loop_backing() -> BTreeMap<String, PathBuf> {
    let mut m = BTreeMap::new();
    if let Ok(rd) = fs::read_dir("/sys/block") {
        for e in rd.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if let Ok(b) = fs::read_to_string(e.path().join("loop/backing_file")) {
                m.insert(format!("/dev/{name}"), PathBuf::from(b.trim()));
            }
        }
    }
    m
}

/// Mounts that hold `path`, one entry per mount namespace and mount, found
/// through the first process seen in each namespace. `skip_ns` excludes
/// namespaces (e.g. this process's own).
pub fn mount_holders(path: &Path, skip_ns: &[String]) -> Vec<Holder> {
    let target = Target::new(path);
    let mut seen: HashSet<String> = HashSet::new();
    let mut out = Vec::new();
    for pid in pids() {
        let Ok(ns) = fs::read_link(format!("/proc/{pid}/ns/mnt")) else { continue };
        let ns = ns.to_string_lossy().into_owned();
        if skip_ns.contains(&ns) || !seen.insert(ns.clone()) {
            continue;
        }
        let Some(found) = target.mounts_of(pid) else { continue };
        if found.is_empty() {
            continue;
        }
        let command = comm(pid);
        for (how, peers) in found {
            out.push(Holder { pid, command: command.clone(), mount_namespace: ns.clone(), how, peers, container: None });
        }
    }
    out
}

/// What is asked about, with what matching a mount against it needs.
struct Target<'a> {
    path: &'a Path,
    loops: BTreeMap<String, PathBuf>,
    /// The device number when `path` is a block device.
    dev: Option<u64>,
}

impl<'a> Target<'a> {
    fn new(path: &'a Path) -> Self {
        let meta = fs::metadata(path).ok();
        let is_dev = meta.as_ref().is_some_and(|m| std::os::unix::fs::FileTypeExt::is_block_device(&m.file_type()));
        let dev = meta.filter(|_| is_dev).map(|m| std::os::unix::fs::MetadataExt::rdev(&m));
        Target { path, loops: loop_backing(), dev }
    }

    /// The mounts in `pid`'s namespace that hold the target: how each holds
    /// it and its peer groups. None when the process is gone.
    fn mounts_of(&self, pid: i32) -> Option<Vec<(String, Vec<String>)>> {
        let path = self.path;
        let mi = fs::read_to_string(format!("/proc/{pid}/mountinfo")).ok()?;
        let root = root_of(pid);
        let mut out = Vec::new();
        for m in berth_sys::mountinfo::parse(&mi) {
            let mp = host_view(&root, &m.mount_point.to_string_lossy());
            let (fstype, source, opts) = (m.fs_type.as_str(), m.source.as_str(), m.super_options.as_str());
            let mut how = None;
            if under(&mp, path) {
                how = Some(format!("mount {} ({fstype})", mp.display()));
            } else if fstype == "overlay" {
                for o in opts.split(',') {
                    if let Some((k, v)) = o.split_once('=') {
                        if matches!(k, "upperdir" | "workdir" | "lowerdir")
                            && v.split(':').any(|d| under(&host_view(&root, &berth_sys::mountinfo::unescape(d)), path))
                        {
                            how = Some(format!("mount {} (overlay {k})", mp.display()));
                        }
                    }
                }
            } else if let Some(b) = self.loops.get(source) {
                if under(b, path) {
                    how = Some(format!("mount {} ({fstype} on {source} backed by {})", mp.display(), b.display()));
                }
            }
            if let (None, Some(dev)) = (&how, self.dev) {
                if berth_sys::makedev(m.dev.0, m.dev.1) == Some(dev) {
                    how = Some(format!("mount {} ({fstype} of the device)", mp.display()));
                }
            }
            if let Some(how) = how {
                let peers = m.group("shared").into_iter().chain(m.group("master")).map(str::to_string).collect();
                out.push((how, peers));
            }
        }
        Some(out)
    }
}

/// Every holder of `path`: mounts in every mount namespace, then each
/// process's fds, cwd, root and memory maps.
pub fn holders(path: &Path) -> Vec<Holder> {
    let mut out = mount_holders(path, &[]);
    out.extend(pinned_mount_holders(path));
    let inside = identities(path);
    let host_root = dev_ino(Path::new("/"));
    for pid in pids() {
        if pid == berth_sys::getpid() {
            continue;
        }
        let ns = fs::read_link(format!("/proc/{pid}/ns/mnt")).map(|p| p.to_string_lossy().into_owned()).unwrap_or_default();
        let root = root_of(pid);
        let mut hows = Vec::new();
        let rid = dev_ino(Path::new(&format!("/proc/{pid}/root")));
        if rid.is_some_and(|r| inside.contains(&r)) || (root != Path::new("/") && under(&root, path)) {
            // Its root is in there: so is everything it has open.
            out.push(Holder { pid, command: comm(pid), mount_namespace: ns.clone(), how: "root".into(), peers: vec![], container: None });
            continue;
        }
        if rid != host_root && root == Path::new("/") {
            continue; // a root elsewhere that cannot be named: paths unknown
        }
        if let Ok(cwd) = fs::read_link(format!("/proc/{pid}/cwd")) {
            if under(&host_view(&root, &cwd.to_string_lossy()), path) {
                hows.push("cwd".to_string());
            }
        }
        if let Ok(rd) = fs::read_dir(format!("/proc/{pid}/fd")) {
            for e in rd.flatten() {
                if let Ok(t) = fs::read_link(e.path()) {
                    let t = t.to_string_lossy();
                    if t.starts_with('/') && under(&host_view(&root, t.trim_end_matches(" (deleted)")), path) {
                        hows.push(format!("fd {}", e.file_name().to_string_lossy()));
                    }
                }
            }
        }
        if let Ok(maps) = fs::read_to_string(format!("/proc/{pid}/maps")) {
            let mut mapped = HashSet::new();
            for l in maps.lines() {
                if let Some(i) = l.find(" /") {
                    let f = l[i + 1..].trim_end_matches(" (deleted)");
                    if under(&host_view(&root, f), path) && mapped.insert(f.to_string()) {
                        hows.push(format!("mmap {f}"));
                    }
                }
            }
        }
        for how in hows {
            out.push(Holder { pid, command: comm(pid), mount_namespace: ns.clone(), how, peers: vec![], container: None });
        }
    }
    out
}

/// A process (the first /proc lists) in each mount namespace, by the
/// namespace's inode.
pub(crate) fn processes_by_mnt_ns() -> BTreeMap<u64, i32> {
    use std::os::unix::fs::MetadataExt;
    let mut out = BTreeMap::new();
    for pid in pids() {
        if let Ok(md) = std::fs::metadata(format!("/proc/{pid}/ns/mnt")) {
            out.entry(md.ino()).or_insert(pid);
        }
    }
    out
}

/// Mounts under `path` in namespaces that no process is in (kept by an nsfs
/// bind mount or an open fd): only the kernel's namespace list shows them.
fn pinned_mount_holders(path: &Path) -> Vec<Holder> {
    let Ok(nss) = berth_sys::mount_namespaces() else { return vec![] };
    let with_process = processes_by_mnt_ns();
    let mut out = Vec::new();
    for (id, ino) in nss.iter().filter(|n| !with_process.contains_key(&n.1)) {
        for m in berth_sys::list_mounts(*id).unwrap_or_default().iter().filter(|m| under(Path::new(&m.mount_point), path)) {
            out.push(Holder {
                pid: 0,
                command: "no process: kept by an nsfs bind mount or open fd".into(),
                mount_namespace: format!("mnt:[{ino}]"),
                how: format!("mount {} ({})", m.mount_point, m.fs_type),
                peers: vec![],
                container: None,
            });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_match_whole_components() {
        assert!(under(Path::new("/run/c/rootfs"), Path::new("/run/c")));
        assert!(under(Path::new("/run/c"), Path::new("/run/c")));
        assert!(!under(Path::new("/run/cc/rootfs"), Path::new("/run/c")), "a longer sibling name is not under");
        assert!(!under(Path::new("/run"), Path::new("/run/c")));
    }
}
