//! Who holds a path: through a mount in some mount namespace (the mount point
//! itself, an overlay whose upper/lower/work dir is there, a loop device
//! backed by a file there), an open fd, a cwd or root, or a memory map.
//! `berth why-busy` prints it; teardown uses the mount part to verify that
//! nothing of a container survives in another mount namespace.
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

fn pids() -> Vec<i32> {
    let mut v: Vec<i32> =
        fs::read_dir("/proc").map(|rd| rd.flatten().filter_map(|e| e.file_name().to_str()?.parse().ok()).collect()).unwrap_or_default();
    v.sort();
    v
}

fn comm(pid: i32) -> String {
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

/// Mounts under `paths` that live on in other mount namespaces as private
/// copies: those that share no peer group with a mount here, so that no
/// unmount here will ever reach them (the "device or resource busy" of a
/// later `rm -rf`). Copies that are slaves or peers of ours are not leaks.
///
/// Not leaks: mounts in this process's own namespace (the caller's, which it
/// unmounts after `delete`), peers and slaves of those, and mounts older
/// than the container (`watermark`, its root mount's unique ID: the caller
/// mounted the rootfs before `create`, possibly in another namespace than
/// the one it deletes from, as podman does with user namespaces). Without a
/// watermark (kernels before 6.8), the host's namespace (PID 1's) counts as
/// the caller's too.
///
/// `in_setup(ino)` tells whether the mount namespace of inode `ino` is that
/// of a container still being created (from records only berth writes):
/// its clone copied every mount of the caller's namespace, including a
/// container's that has none of its own, and drops that copy at its
/// pivot_root. Any other copy counts as passing only if it goes away
/// within a bounded wait ([`PASSING`]); nothing here rests on what a
/// process calls itself.
pub fn leaked_mounts(paths: &[&Path], watermark: u64, in_setup: &dyn Fn(u64) -> bool) -> Vec<Holder> {
    // Every namespace the kernel has (listmount, 6.12+), else the namespaces
    // of the processes that /proc shows.
    leaked_mounts_listmount(paths, watermark, in_setup).unwrap_or_else(|_| leaked_mounts_procfs(paths, in_setup))
}

/// The waits, in ms, before a copy of the container's mounts in another
/// namespace is called a leak (255 ms in all): a clone of another runtime's
/// create, or of one under another --root, holds one until its pivot_root.
/// Only paid when such a copy is there.
const PASSING: [u64; 8] = [1, 2, 4, 8, 16, 32, 64, 128];

/// Waits (at most [`PASSING`]) until `gone()` or `in_setup()`: true if
/// either came, false if the copy stayed.
fn passes(gone: &mut dyn FnMut() -> bool, in_setup: &dyn Fn() -> bool) -> bool {
    for ms in PASSING {
        if in_setup() || gone() {
            return true;
        }
        std::thread::sleep(std::time::Duration::from_millis(ms));
    }
    in_setup() || gone()
}

fn leaked_mounts_listmount(paths: &[&Path], watermark: u64, in_setup: &dyn Fn(u64) -> bool) -> std::io::Result<Vec<Holder>> {
    use std::os::unix::fs::MetadataExt;
    let nss = berth_sys::mount_namespaces()?;
    let own_ino = fs::metadata("/proc/self/ns/mnt")?.ino();
    let host_ino = if watermark == 0 { fs::metadata("/proc/1/ns/mnt").map(|m| m.ino()).unwrap_or(0) } else { 0 };
    let own = nss.iter().find(|n| n.1 == own_ino).ok_or_else(|| std::io::Error::from_raw_os_error(libc::ENOENT))?;
    let ours = propagation_groups(&berth_sys::list_mounts(own.0)?, paths);
    let mut candidates: Vec<(u64, u64, Vec<u64>)> = Vec::new();
    for (id, ino) in &nss {
        if *ino == own_ino || *ino == host_ino {
            continue;
        }
        let Ok(mounts) = berth_sys::list_mounts(*id) else { continue };
        let held = copies(&mounts, paths, watermark, &ours);
        if !held.is_empty() {
            candidates.push((*id, *ino, held));
        }
    }
    if candidates.is_empty() {
        return Ok(vec![]); // the common case: no process scan at all
    }
    // A process in each namespace, to name it.
    let by_ino = processes_by_mnt_ns();
    let mut out = Vec::new();
    for (id, ino, held) in candidates {
        let mut pid = by_ino.get(&ino).copied();
        // A namespace with no process is either pinned (an nsfs bind mount
        // or an open fd: a leak that stays) or passing: a clone has made it
        // but its task is not in /proc yet, or its last task has just
        // left. Looked at again a few times, 1 + 2 + 4 + 8 + 16 ms apart:
        // a passing one gets its process or goes away. (No event announces
        // either; this only runs when such a namespace holds the mounts.)
        let mut wait = std::time::Duration::from_millis(1);
        while pid.is_none() && wait.as_millis() <= 16 {
            std::thread::sleep(wait);
            wait *= 2;
            let still = berth_sys::list_mounts(id).is_ok_and(|ms| ms.iter().any(|m| held.contains(&m.id)));
            if !still {
                break;
            }
            pid = processes_by_mnt_ns().get(&ino).copied();
        }
        let mut gone = || !berth_sys::list_mounts(id).is_ok_and(|ms| ms.iter().any(|m| held.contains(&m.id)));
        if pid.is_some() && passes(&mut gone, &|| in_setup(ino)) {
            continue;
        }
        let (pid, command) = match pid {
            Some(p) => (p, comm(p)),
            None => (0, "no process: kept by an nsfs bind mount or open fd".to_string()),
        };
        let Ok(mounts) = berth_sys::list_mounts(id) else { continue };
        for m in mounts.iter().filter(|m| held.contains(&m.id)) {
            out.push(Holder {
                pid,
                command: command.clone(),
                mount_namespace: format!("mnt:[{ino}]"),
                how: format!("mount {} ({})", m.mount_point, m.fs_type),
                peers: vec![],
                container: None,
            });
        }
    }
    Ok(out)
}

/// The shared-subtree groups (peer and master) of the caller's own mounts
/// under `paths`: a mount elsewhere in one of them is the same mount seen
/// through propagation, which ends with the caller's unmount.
pub fn propagation_groups(own: &[berth_sys::MountEntry], paths: &[&Path]) -> HashSet<u64> {
    own.iter()
        .filter(|m| paths.iter().any(|p| under(Path::new(&m.mount_point), p)))
        .flat_map(|m| [m.peer_group, m.master])
        .filter(|g| *g != 0)
        .collect()
}

/// The mounts of another namespace that are copies of the container's:
/// under one of `paths`, made after `watermark` (the last mount ID before
/// the container's first; 0 when unknown), and not reached by propagation
/// from the caller's own (`ours`, from [`propagation_groups`]).
pub fn copies(mounts: &[berth_sys::MountEntry], paths: &[&Path], watermark: u64, ours: &HashSet<u64>) -> Vec<u64> {
    mounts
        .iter()
        .filter(|m| paths.iter().any(|p| under(Path::new(&m.mount_point), p)))
        .filter(|m| m.id > watermark && !ours.contains(&m.peer_group) && !ours.contains(&m.master))
        .map(|m| m.id)
        .collect()
}

/// A process (the first /proc lists) in each mount namespace, by the
/// namespace's inode.
fn processes_by_mnt_ns() -> BTreeMap<u64, i32> {
    use std::os::unix::fs::MetadataExt;
    let mut out = BTreeMap::new();
    for pid in pids() {
        if let Ok(md) = fs::metadata(format!("/proc/{pid}/ns/mnt")) {
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

/// The inode of a "mnt:[N]" namespace name.
fn ns_ino(name: &str) -> u64 {
    name.trim_start_matches("mnt:[").trim_end_matches(']').parse().unwrap_or(0)
}

fn leaked_mounts_procfs(paths: &[&Path], in_setup: &dyn Fn(u64) -> bool) -> Vec<Holder> {
    let own = fs::read_link("/proc/self/ns/mnt").map(|p| p.to_string_lossy().into_owned()).unwrap_or_default();
    let host = fs::read_link("/proc/1/ns/mnt").map(|p| p.to_string_lossy().into_owned()).unwrap_or_default();
    let mut out = Vec::new();
    for p in paths {
        // One walk of /proc: ours, then the others' that are no peers of ours.
        let (mine, others): (Vec<Holder>, Vec<Holder>) = mount_holders(p, &[]).into_iter().partition(|h| h.mount_namespace == own);
        let ours: HashSet<String> = mine.into_iter().flat_map(|h| h.peers).collect();
        let candidates: Vec<Holder> =
            others.into_iter().filter(|h| h.mount_namespace != host && !h.peers.iter().any(|g| ours.contains(g))).collect();
        if candidates.is_empty() {
            continue;
        }
        // Confirmed once per process: a namespace being set up, or copies
        // that go away within the bounded wait, are not leaks.
        let target = Target::new(p);
        let mut confirmed: BTreeMap<i32, Option<(String, Vec<String>)>> = BTreeMap::new();
        for mut h in candidates {
            let now = confirmed.entry(h.pid).or_insert_with(|| {
                let ino = ns_ino(&h.mount_namespace);
                let mut gone = || target.mounts_of(h.pid).is_none_or(|ms| ms.is_empty());
                if passes(&mut gone, &|| in_setup(ino)) {
                    return None;
                }
                let hows = target.mounts_of(h.pid)?.into_iter().map(|(how, _)| how).collect();
                let ns = fs::read_link(format!("/proc/{}/ns/mnt", h.pid)).ok()?.to_string_lossy().into_owned();
                (ns == h.mount_namespace).then(|| (comm(h.pid), hows))
            });
            if let Some((command, hows)) = now {
                if hows.contains(&h.how) {
                    h.command = command.clone();
                    out.push(h);
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use berth_sys::MountEntry;

    fn m(id: u64, mount_point: &str, peer_group: u64, master: u64) -> MountEntry {
        MountEntry { id, fs_type: "overlay".into(), mount_point: mount_point.into(), peer_group, master }
    }

    #[test]
    fn paths_match_whole_components() {
        assert!(under(Path::new("/run/c/rootfs"), Path::new("/run/c")));
        assert!(under(Path::new("/run/c"), Path::new("/run/c")));
        assert!(!under(Path::new("/run/cc/rootfs"), Path::new("/run/c")), "a longer sibling name is not under");
        assert!(!under(Path::new("/run"), Path::new("/run/c")));
    }

    #[test]
    fn the_caller_s_groups_come_from_its_mounts_under_the_paths_only() {
        let own = [m(10, "/b/rootfs", 7, 0), m(11, "/b/rootfs/proc", 0, 3), m(12, "/elsewhere", 9, 8), m(13, "/b/x", 0, 0)];
        let g = propagation_groups(&own, &[Path::new("/b")]);
        assert_eq!(g, HashSet::from([7, 3]), "group 0 means none; /elsewhere is not the container's");
    }

    #[test]
    fn a_copy_is_under_the_paths_newer_than_the_watermark_and_no_peer() {
        let ours = HashSet::from([7]);
        let theirs = [
            m(100, "/b/rootfs", 0, 0),      // a private copy: held
            m(101, "/b/rootfs/dev", 7, 0),  // a peer of ours: goes with our unmount
            m(102, "/b/rootfs/sys", 0, 7),  // a slave of ours: likewise
            m(40, "/b/rootfs/old", 0, 0),   // older than the container: not its mount
            m(103, "/bb/rootfs", 0, 0),     // another bundle with a longer name
            m(104, "/other", 0, 0),         // not the container's path at all
            m(105, "/b/rootfs/tmp", 12, 0), // shared, but in a group of someone else's
        ];
        assert_eq!(copies(&theirs, &[Path::new("/b")], 50, &ours), vec![100, 105]);
        assert_eq!(copies(&theirs, &[Path::new("/b")], 0, &ours), vec![100, 40, 105], "watermark 0: every mount counts");
        assert!(copies(&theirs, &[], 0, &ours).is_empty());
        assert_eq!(copies(&theirs, &[Path::new("/x"), Path::new("/other")], 50, &ours), vec![104]);
    }
}
