//! Copies of a container's mounts in other mount namespaces: found at
//! teardown, detached where that is safe, reported where it is not.
//!
//! Where a copy can come from at all. A mount namespace is a copy of its
//! parent's mounts at the moment it is made (clone or unshare); after that
//! it receives further mounts only through propagation (a shared or slave
//! mount), and those copies stay in a peer group with the original, so the
//! caller's unmount takes them along: they are no leak. A private copy that
//! outlives the container therefore comes from a namespace made while the
//! mount was visible in its parent:
//!
//! - the container's own mounts (proc, /dev, masked paths, binds...) live in
//!   its own namespace, private from its parent: only a namespace made from
//!   that one (by a process of the container, or by one that joined it)
//!   holds copies of them;
//! - the container's root filesystem is also visible in the caller's
//!   namespace (podman's overlay, a bind the caller made): any namespace
//!   cloned from there while it is mounted (an unrelated `unshare -m`,
//!   another runtime's container before its pivot_root) holds a copy.
//!
//! Either way the holder is a namespace made after the container's root
//! mount, and every mount it was made with is newer than that mount
//! (unique mount IDs, Linux 6.8+, grow in the order mounts are made). So
//! teardown walks the kernel's list of namespaces (6.12+) and asks each for
//! its first mount only (one listmount entry): a namespace holding a mount
//! older than the container's root mount was there before it and is not
//! read further. (Namespace IDs themselves are not in the order the
//! namespaces were made on 6.18: they come from per-CPU batches.) What a
//! delete costs thus grows only by that one question per namespace with the
//! containers that were there before, and by a full read of each namespace
//! made since. A namespace cloned between the caller's mount and `create`
//! holds copies older than the container's root mount; those were never
//! counted as the container's, before or now.
//!
//! A copy is the container's by identity, never by path alone (paths come
//! from the config): its filesystem instance (superblock device and root
//! directory) is the container's root's, recorded at create, it is mounted
//! at the container's rootfs path, and it was made after the container's
//! root mount. It is detached in its namespace (setns in a child; the mount
//! opened by its path with no symlink followed, its mount ID checked on the
//! fd, then detached through that very fd), so nothing but that mount is
//! touched. Everything mounted on it goes with it, so a copy is detached
//! only when everything on it is itself of the container (an identity
//! recorded at create); one holding a mount of someone else's is left alone
//! and reported, naming its holder, after a short wait (another container
//! on the same rootfs directory has such mounts only until its pivot_root).
//!
//! Never touched: a mount that is not of the container's root filesystem; a
//! bind of it elsewhere than the rootfs path, or at another namespace's
//! root; any mount in the caller's own namespace; a copy reached by
//! propagation (a peer or slave of the caller's mount: the caller's unmount
//! reaches it); a copy on which someone mounted something of their own.
//! Not covered: copies of the container's own mounts in a namespace made
//! from the container's (by a process of the container, kept alive from
//! outside after the container ended), which sit at that namespace's root.
//!
//! Kernels before 6.12 have no list of namespaces: the namespaces of the
//! processes /proc shows are read instead (each namespace once, from its
//! mountinfo), with the same identities; there the cost grows with the
//! processes and mounts, and a namespace no process is in is out of sight.

use crate::busy::Holder;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashSet};
use std::os::fd::{AsFd, OwnedFd};
use std::path::Path;

/// A filesystem instance as a mount shows it: the superblock's device, and
/// the directory of that filesystem at the mount's root.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Identity {
    pub dev: (u64, u64),
    pub root: String,
}

/// What teardown needs to know a copy of the container's mounts, recorded
/// at create.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContainerMounts {
    /// The ID of the container's mount namespace (Linux 6.12+; 0 when
    /// unknown, or when it has none of its own).
    #[serde(default)]
    pub ns_id: u64,
    /// The container's root filesystem, as the caller mounted it.
    #[serde(default)]
    pub roots: Vec<Identity>,
    /// What may sit on a copy of it and is the container's too: the roots,
    /// and without a mount namespace of its own what berth mounted there.
    #[serde(default)]
    pub inner: Vec<Identity>,
}

/// What identifies the container's mounts outside its own namespace, once
/// it is set up: the caller's own mount at `rootfs` (podman's overlay, a
/// bind), the only one of them visible there. Without a mount namespace of
/// its own (`host_base`: the mount the rootfs was on before create), what
/// berth stacked on `rootfs` in this namespace, and everything it mounted
/// under it. A rootfs that is a plain directory has none: the container's
/// bind of it lives in the container's namespace only (`ns_id`), and
/// another container's bind of the same directory is not this one's.
pub fn identify(rootfs: &Path, bundle: &Path, host_base: Option<u64>, ns_id: u64) -> ContainerMounts {
    let mut cm = ContainerMounts { ns_id, ..Default::default() };
    match host_base {
        None => cm.roots.extend(caller_mount(rootfs, bundle)),
        Some(base) => {
            let text = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
            for m in berth_sys::mountinfo::parse(&text).into_iter().filter(|m| m.mount_point.starts_with(rootfs)) {
                let id = Identity { dev: m.dev, root: m.root };
                if m.mount_point == rootfs && m.id != base {
                    cm.roots.push(id);
                } else if m.mount_point != rootfs {
                    cm.inner.push(id);
                }
            }
        }
    }
    cm.inner.extend(cm.roots.iter().cloned());
    cm.inner.sort_by(|a, b| (a.dev, &a.root).cmp(&(b.dev, &b.root)));
    cm.inner.dedup();
    cm
}

/// The identity of the caller's mount at `rootfs`, if the rootfs is a mount
/// root in this namespace made for the container: an overlay (what podman,
/// containerd, Docker and CRI-O mount as a container's root) or a mount
/// inside the container's bundle. A config pointing its root at a host
/// mount (`/`, `/home`, a bind of someone's data) gets none, so that no
/// copy of that mount elsewhere is ever taken for the container's. From
/// statmount (6.8+), else this namespace's mountinfo.
fn caller_mount(rootfs: &Path, bundle: &Path) -> Option<Identity> {
    let fd = berth_sys::openat(None, rootfs, libc::O_PATH | libc::O_DIRECTORY, 0).ok()?;
    if !berth_sys::is_mount_root(fd.as_fd()).ok()? {
        return None;
    }
    let (dev, root, fs_type) = match berth_sys::mount_id_unique_fd(fd.as_fd()).and_then(berth_sys::stat_mount) {
        Ok(m) => (m.dev, m.root, m.fs_type),
        Err(_) => {
            let text = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
            let classic = berth_sys::mount_id_fd(fd.as_fd()).ok()?;
            let m = berth_sys::mountinfo::parse(&text).into_iter().find(|m| m.id == classic)?;
            (m.dev, m.root, m.fs_type)
        }
    };
    let own = fs_type == "overlay" || (rootfs != bundle && rootfs.starts_with(bundle));
    own.then_some(Identity { dev, root })
}

/// Where the mount namespaces of creates in flight under a `--root` are
/// marked, by namespace ID: each holds a copy of every mount of the
/// caller's namespace (other containers' roots among them) from its clone
/// until its pivot_root, which drops it. Not a valid container ID ('@').
const CREATING: &str = "@creating";

/// Marks namespace `ns_id` as that of container `id`'s create in flight
/// (a symlink named by the ID, to the container's name): teardown's search
/// neither reads it nor detaches anything there. Best effort: unmarked, it
/// is only searched like any other.
pub fn mark_creating(root: &Path, ns_id: u64, id: &str) {
    if ns_id == 0 {
        return;
    }
    let dir = root.join(CREATING);
    let link = dir.join(ns_id.to_string());
    if std::os::unix::fs::symlink(id, &link).is_err() {
        let _ = std::fs::create_dir(&dir);
        let _ = std::os::unix::fs::symlink(id, &link);
    }
}

/// Removes the mark of [`mark_creating`] (the setup is over), and the
/// directory of marks once it is empty (a create marking meanwhile makes
/// it again; at worst its mark is lost, and its namespace only searched).
pub fn unmark_creating(root: &Path, ns_id: u64) {
    if ns_id != 0 {
        let dir = root.join(CREATING);
        let _ = std::fs::remove_file(dir.join(ns_id.to_string()));
        let _ = std::fs::remove_dir(dir);
    }
}

/// Removes every mark of container `id` (its teardown: a create that failed
/// or crashed after its clone, before its record knew the namespace). Only
/// creates in flight have marks, so the list is short.
pub fn unmark_container(root: &Path, id: &str) {
    let dir = root.join(CREATING);
    let Ok(rd) = std::fs::read_dir(&dir) else { return };
    for e in rd.flatten() {
        if std::fs::read_link(e.path()).is_ok_and(|t| t == Path::new(id)) {
            let _ = std::fs::remove_file(e.path());
        }
    }
    let _ = std::fs::remove_dir(dir);
}

/// The ID of the mount namespace of process `pid` (Linux 6.12+; 0 if unknown).
pub fn ns_id_of(pid: i32) -> u64 {
    berth_sys::openat(None, Path::new(&format!("/proc/{pid}/ns/mnt")), libc::O_RDONLY, 0)
        .and_then(|fd| berth_sys::mnt_ns_id(fd.as_fd()))
        .unwrap_or(0)
}

/// One mount, from statmount or mountinfo.
#[derive(Debug, Clone)]
struct Mnt {
    id: u64,
    parent: u64,
    ident: Identity,
    point: String,
    fs_type: String,
    peer: u64,
    master: u64,
}

/// A namespace holding copies: an fd on it, its inode, and its mounts.
struct Holding {
    /// Dropped once the detaching is done: it pins the namespace.
    fd: Option<OwnedFd>,
    ino: u64,
    /// The namespace's ID (0 when read through /proc).
    id: u64,
    /// From the unique-ID list (statmount) rather than mountinfo.
    unique: bool,
    mounts: Vec<Mnt>,
    /// The copies of the container's root that nothing else sits on.
    tops: Vec<u64>,
}

/// What teardown found: copies it detached, and copies it could not.
#[derive(Debug, Default)]
pub struct Outcome {
    pub detached: Vec<Holder>,
    pub held: Vec<Holder>,
}

/// Finds the copies of the container's mounts in other namespaces and
/// detaches those that can be. `watermark`: the unique ID of the
/// container's root mount (0 when unknown).
pub fn reclaim(cm: &ContainerMounts, watermark: u64, rootfs: &Path, root: &Path) -> Outcome {
    if cm.roots.is_empty() {
        return Outcome::default();
    }
    let mut found = match holding_listed(cm, watermark, rootfs, root) {
        Ok(h) => h,
        Err(_) => holding_procfs(cm, watermark, rootfs),
    };
    if found.is_empty() {
        return Outcome::default(); // the common case: nothing more to read
    }
    let mut out = Outcome::default();
    let by_ino = crate::busy::processes_by_mnt_ns();
    let known: HashSet<&Identity> = cm.roots.iter().chain(&cm.inner).collect();
    let name = |h: &Holding| match by_ino.get(&h.ino) {
        Some(p) => (*p, crate::busy::comm(*p)),
        None => (0, "no process: kept by an nsfs bind mount or open fd".to_string()),
    };
    let holder = |h: &Holding, m: &Mnt, how: String| {
        let (pid, command) = name(h);
        Holder {
            pid,
            command,
            mount_namespace: format!("mnt:[{}]", h.ino),
            how: format!("mount {} ({}){how}", m.point, m.fs_type),
            peers: vec![],
            container: None,
        }
    };
    // What can be detached, per namespace; what cannot is reported.
    let mut work: Vec<(&Holding, Vec<&Mnt>)> = Vec::new();
    for h in &found {
        let pid = name(h).0;
        let byid: BTreeMap<u64, &Mnt> = h.mounts.iter().map(|m| (m.id, m)).collect();
        let mut safe = Vec::new();
        for top in &h.tops {
            let sub = subtree(&h.mounts, *top);
            match sub.iter().map(|i| byid[i]).find(|m| !known.contains(&m.ident)) {
                // Another container on the same rootfs directory being set
                // up has its own mounts on its bind of it until its
                // pivot_root: such a copy is waited for, briefly.
                Some(other) if !passes(h, *top, pid) => {
                    out.held.push(holder(h, byid[top], format!(", which has {} ({}) of its own on it", other.point, other.fs_type)))
                }
                Some(_) => {}
                None => safe.push(byid[top]),
            }
        }
        if !safe.is_empty() {
            work.push((h, safe));
        }
    }
    // A create in flight is marked only once its clone has returned to its
    // parent, which may wait for a CPU: a namespace with a process in it
    // that is not marked yet is looked at again for a few ms (1 + 2 + 4 +
    // 8) before anything is detached there. One with no process yet is
    // mid-clone (copying the mounts, making a network namespace: long under
    // load) or pinned (an nsfs bind, an fd): detaching there at once is
    // harmless to a clone, which drops every copy at its pivot_root anyway,
    // and is what a pinned one needs. Marked ones, and copies gone
    // meanwhile, are left. (The /proc walk has no marks.)
    let marked = |h: &Holding| h.id != 0 && root.join(CREATING).join(h.id.to_string()).exists();
    let still = |h: &Holding, ms: &[&Mnt]| h.id == 0 || berth_sys::mount_ids(h.id).is_ok_and(|ids| ms.iter().any(|m| ids.contains(&m.id)));
    for ms in [0, 1, 2, 4, 8] {
        std::thread::sleep(std::time::Duration::from_millis(ms));
        work.retain(|(h, copies)| !marked(h) && still(h, copies));
        if !work.iter().any(|(h, _)| h.id != 0 && name(h).0 != 0) {
            break;
        }
    }
    if work.is_empty() {
        return out;
    }
    let jobs: Vec<(&OwnedFd, Vec<&Mnt>)> = work.iter().filter_map(|(h, ms)| Some((h.fd.as_ref()?, ms.clone()))).collect();
    let failed = detach_all(&jobs, work[0].0.unique);
    // (holding, mount ID, why) of what could not be detached.
    let mut left: Vec<(usize, u64, String)> = Vec::new();
    for (i, (h, ms)) in work.iter().enumerate() {
        for m in ms {
            match failed.iter().find(|(j, id, _)| *j == i && *id == m.id) {
                None => out.detached.push(holder(h, m, String::new())),
                Some((_, _, e)) => left.push((found.iter().position(|f| std::ptr::eq(f, *h)).unwrap_or(0), m.id, e.clone())),
            }
        }
    }
    drop(jobs);
    drop(work);
    if left.is_empty() {
        return out;
    }
    // Unpinned first: a namespace whose last process left goes away.
    for h in &mut found {
        h.fd = None;
    }
    for (k, id, e) in left {
        let h = &found[k];
        // A namespace whose process is setting up another container moves
        // its mounts about until its pivot_root: the copy is then at no
        // path, and goes away with the old root.
        if !passes(h, id, name(h).0) {
            if let Some(m) = h.mounts.iter().find(|m| m.id == id) {
                out.held.push(holder(h, m, format!(": detaching it failed: {e}")));
            }
        }
    }
    out
}

/// The waits, in ms, for a copy that cannot be detached to go away (255 ms
/// in all), before it is reported.
const PASSING: [u64; 8] = [1, 2, 4, 8, 16, 32, 64, 128];

/// Whether mount `top` leaves namespace `h` within [`PASSING`] (re-read
/// through the mountinfo of `pid`, a process in it, when the namespace was
/// read that way).
fn passes(h: &Holding, top: u64, pid: i32) -> bool {
    let Some(was) = h.mounts.iter().find(|m| m.id == top) else { return true };
    let still = || {
        if h.unique {
            berth_sys::list_mounts(h.id).is_ok_and(|ms| ms.iter().any(|m| m.id == top))
        } else {
            // Classic mount IDs are reused at once: the same ID, filesystem
            // and place. A process gone is taken as its namespace gone: the
            // /proc walk sees a namespace only through its processes (and
            // this one's fd on it is dropped when the search ends).
            std::fs::read_to_string(format!("/proc/{pid}/mountinfo")).is_ok_and(|text| {
                berth_sys::mountinfo::parse(&text)
                    .iter()
                    .any(|m| m.id == top && m.dev == was.ident.dev && m.root == was.ident.root && m.mount_point == Path::new(&was.point))
            })
        }
    };
    for ms in PASSING {
        if !still() {
            return true;
        }
        std::thread::sleep(std::time::Duration::from_millis(ms));
    }
    !still()
}

/// The IDs of `top` and every mount under it.
fn subtree(mounts: &[Mnt], top: u64) -> Vec<u64> {
    let mut out = vec![top];
    let mut i = 0;
    while i < out.len() {
        let p = out[i];
        out.extend(mounts.iter().filter(|m| m.parent == p && m.id != p).map(|m| m.id));
        i += 1;
    }
    out
}

/// The copies in `mounts` of the container's root that sit on no other such
/// copy: the container's root filesystem (by identity), where it is mounted
/// for the container (at `rootfs`), made after the container's root mount
/// (`watermark`), not in `ours`' propagation groups. A bind of the
/// container's root elsewhere is someone's deliberate mount, not a copy, and
/// so is the root ("/") of another namespace: another container's on the
/// same rootfs directory looks the same as one made from this container's.
fn tops(mounts: &[Mnt], cm: &ContainerMounts, rootfs: &Path, watermark: u64, ours: &HashSet<u64>) -> Vec<u64> {
    let at = |m: &Mnt| Path::new(&m.point) == rootfs;
    let copy = |m: &Mnt| cm.roots.contains(&m.ident) && at(m) && m.id > watermark && !ours.contains(&m.peer) && !ours.contains(&m.master);
    let ids: HashSet<u64> = mounts.iter().filter(|m| copy(m)).map(|m| m.id).collect();
    let mut out: Vec<u64> =
        mounts.iter().filter(|m| ids.contains(&m.id) && (m.parent == m.id || !ids.contains(&m.parent))).map(|m| m.id).collect();
    out.sort_unstable();
    out
}

/// The propagation groups of the caller's mount of `rootfs`, if it has one:
/// copies in them go with the caller's own unmount.
fn own_groups(rootfs: &Path) -> HashSet<u64> {
    let listed = berth_sys::mount_id_unique(rootfs).and_then(berth_sys::stat_mount);
    if let Ok(m) = listed {
        return [m.peer_group, m.master].into_iter().filter(|g| *g != 0).collect();
    }
    // Before statmount (6.8): this namespace's mountinfo, every mount at
    // the rootfs path.
    let text = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    berth_sys::mountinfo::parse(&text)
        .iter()
        .filter(|m| m.mount_point == rootfs)
        .flat_map(|m| [m.group("shared"), m.group("master")])
        .filter_map(|g| g.and_then(|g| g.parse().ok()))
        .filter(|g: &u64| *g != 0)
        .collect()
}

/// Linux 6.12+: every namespace, from the kernel's list; only those made
/// after the container's root mount are read.
fn holding_listed(cm: &ContainerMounts, watermark: u64, rootfs: &Path, root: &Path) -> std::io::Result<Vec<Holding>> {
    let own = berth_sys::openat(None, Path::new("/proc/self/ns/mnt"), libc::O_RDONLY, 0)?;
    let own_id = berth_sys::mnt_ns_id(own.as_fd())?;
    // Without listmount (or where it is refused) every namespace would look
    // empty: the /proc walk does instead.
    berth_sys::first_mount_id(own_id)?;
    let mut ours: Option<HashSet<u64>> = None;
    let mut out = Vec::new();
    let (mut walked, mut read) = (0, 0);
    let creating: Option<HashSet<u64>> =
        std::fs::read_dir(root.join(CREATING)).ok().map(|rd| rd.flatten().filter_map(|e| e.file_name().to_str()?.parse().ok()).collect());
    let mut look = |fd: OwnedFd, id: u64| {
        walked += 1;
        if id == own_id || id == cm.ns_id {
            return;
        }
        // A create in flight under this root drops its copies at its
        // pivot_root (berth's own records: no container can write them).
        if creating.as_ref().is_some_and(|c| c.contains(&id)) {
            return;
        }
        // A namespace whose first mount is older than the container's
        // root mount was there before it: it can hold a copy only through
        // propagation. (Namespace IDs are not in the order namespaces were
        // made on every kernel; mount IDs are.)
        if watermark > 0 && berth_sys::first_mount_id(id).ok().flatten().is_none_or(|first| first <= watermark) {
            return;
        }
        read += 1;
        // Superblocks first (no paths: cheaper), the whole list only where
        // the container's root filesystem is mounted.
        let devs: HashSet<(u64, u64)> = cm.roots.iter().map(|r| r.dev).collect();
        if !berth_sys::mount_devs(id).is_ok_and(|ms| ms.iter().any(|(mid, dev)| *mid > watermark && devs.contains(dev))) {
            return;
        }
        let Ok(list) = berth_sys::list_mounts(id) else { return };
        if !list.iter().any(|m| m.id > watermark && cm.roots.iter().any(|r| r.dev == m.dev && r.root == m.root)) {
            return;
        }
        let ours = ours.get_or_insert_with(|| own_groups(rootfs));
        let mounts: Vec<Mnt> = list
            .into_iter()
            .map(|m| Mnt {
                id: m.id,
                parent: m.parent,
                ident: Identity { dev: m.dev, root: m.root },
                point: m.mount_point,
                fs_type: m.fs_type,
                peer: m.peer_group,
                master: m.master,
            })
            .collect();
        let tops = tops(&mounts, cm, rootfs, watermark, ours);
        if !tops.is_empty() {
            let ino = berth_sys::fstat(fd.as_fd()).map(|s| s.st_ino).unwrap_or(0);
            out.push(Holding { fd: Some(fd), ino, id, unique: true, mounts, tops });
        }
    };
    let stuck = walk_namespaces(own, &mut look)?;
    crate::log::debug(&format!(
        "mount namespaces walked: {walked}, {read} of them made after the container's root mount; {stuck} resumptions"
    ));
    Ok(out)
}

/// Visits every mount namespace of the kernel's list once, from `own`
/// both ways. No step can be taken from a namespace that no process is in
/// (ENOENT both ways, as at an end of the list): the walk then resumes from
/// the namespaces of processes (/proc) it has not seen, which only costs
/// their reading when such a namespace is there. Returns how many times.
fn walk_namespaces(own: OwnedFd, visit: &mut dyn FnMut(OwnedFd, u64)) -> std::io::Result<u32> {
    let own_id = berth_sys::mnt_ns_id(own.as_fd())?;
    let mut seen: HashSet<u64> = HashSet::from([own_id]);
    let mut resumed = 0;
    let mut stuck = one_way(&own, false, &mut seen, visit)? | one_way(&own, true, &mut seen, visit)?;
    while stuck {
        resumed += 1;
        stuck = false;
        for pid in crate::busy::pids() {
            let Ok(fd) = berth_sys::openat(None, Path::new(&format!("/proc/{pid}/ns/mnt")), libc::O_RDONLY, 0) else { continue };
            let Ok(id) = berth_sys::mnt_ns_id(fd.as_fd()) else { continue };
            if !seen.insert(id) {
                continue;
            }
            stuck |= one_way(&fd, false, &mut seen, visit)? | one_way(&fd, true, &mut seen, visit)?;
            visit(fd, id);
        }
        if resumed > 3 {
            break;
        }
    }
    Ok(resumed)
}

/// Walks the list from `fd` one way, visiting each namespace not yet
/// `seen`; true when it ended at a namespace no step can be taken from
/// either way (stuck, rather than at the end of the list).
fn one_way(fd: &OwnedFd, later: bool, seen: &mut HashSet<u64>, visit: &mut dyn FnMut(OwnedFd, u64)) -> std::io::Result<bool> {
    let mut cur = berth_sys::mnt_ns_step(fd.as_fd(), later)?;
    while let Some((fd, id)) = cur {
        cur = berth_sys::mnt_ns_step(fd.as_fd(), later)?;
        let stuck = cur.is_none() && berth_sys::mnt_ns_step(fd.as_fd(), !later)?.is_none();
        if seen.insert(id) {
            visit(fd, id);
        }
        if stuck {
            return Ok(true);
        }
    }
    Ok(false)
}

/// Before 6.12: the namespace of each process /proc shows, each read once
/// from its mountinfo. Without unique mount IDs (the watermark 0, before
/// 6.8) the host's namespace (PID 1's) counts as the caller's too.
fn holding_procfs(cm: &ContainerMounts, watermark: u64, rootfs: &Path) -> Vec<Holding> {
    use std::os::unix::fs::MetadataExt;
    let ino_of = |pid: i32| std::fs::metadata(format!("/proc/{pid}/ns/mnt")).map(|m| m.ino()).ok();
    let own = ino_of(berth_sys::getpid());
    let host = if watermark == 0 { ino_of(1) } else { None };
    let mut seen: HashSet<u64> = HashSet::new();
    let mut ours: Option<HashSet<u64>> = None;
    let mut out = Vec::new();
    for (ino, pid) in crate::busy::processes_by_mnt_ns() {
        if Some(ino) == own || Some(ino) == host || !seen.insert(ino) {
            continue;
        }
        let Ok(text) = std::fs::read_to_string(format!("/proc/{pid}/mountinfo")) else { continue };
        let mounts: Vec<Mnt> = berth_sys::mountinfo::parse(&text)
            .into_iter()
            .map(|m| {
                let group = |k: &str| m.group(k).and_then(|g| g.parse().ok()).unwrap_or(0);
                Mnt {
                    id: m.id,
                    parent: m.parent,
                    ident: Identity { dev: m.dev, root: m.root.clone() },
                    point: m.mount_point.to_string_lossy().into_owned(),
                    fs_type: m.fs_type.clone(),
                    peer: group("shared"),
                    master: group("master"),
                }
            })
            .collect();
        // mountinfo's IDs are the classic ones: no watermark applies.
        if !mounts.iter().any(|m| cm.roots.contains(&m.ident) && Path::new(&m.point) == rootfs) {
            continue;
        }
        let ours = ours.get_or_insert_with(|| own_groups(rootfs));
        let tops = tops(&mounts, cm, rootfs, 0, ours);
        if tops.is_empty() {
            continue;
        }
        // The namespace by fd, checked to be the one that was read.
        let Ok(fd) = berth_sys::openat(None, Path::new(&format!("/proc/{pid}/ns/mnt")), libc::O_RDONLY, 0) else { continue };
        if berth_sys::fstat(fd.as_fd()).map(|s| s.st_ino).ok() != Some(ino) {
            continue;
        }
        out.push(Holding { fd: Some(fd), ino, id: 0, unique: false, mounts, tops });
    }
    out
}

/// Detaches, for each `(namespace, mounts)` of `work`, those mounts there:
/// from one child that joins each namespace in turn (this process's own
/// namespace and working directory stay as they are). Each mount is opened
/// at its mount point with no symlink followed, its ID checked on the fd,
/// then detached through the fd. Returns, by the index in `work`, the
/// mounts that are still there, with why.
fn detach_all(work: &[(&OwnedFd, Vec<&Mnt>)], unique: bool) -> Vec<(usize, u64, String)> {
    let all = |e: &dyn std::fmt::Display| -> Vec<(usize, u64, String)> {
        work.iter().enumerate().flat_map(|(i, (_, ms))| ms.iter().map(move |m| (i, m.id, e.to_string()))).collect()
    };
    let (r, w) = match berth_sys::stream_pair() {
        Ok(p) => p,
        Err(e) => return all(&e),
    };
    match berth_sys::fork() {
        Ok(None) => {
            drop(r);
            let mut report = String::new();
            // The child's own fd directory, in the procfs of the namespace
            // it comes from (trusted), opened before it joins any other.
            match berth_sys::openat(None, Path::new("/proc/self/fd"), libc::O_RDONLY | libc::O_DIRECTORY, 0) {
                Err(e) => report = all(&format!("open /proc/self/fd: {e}")).iter().map(|(i, id, e)| format!("{i} {id} {e}\n")).collect(),
                Ok(proc_fds) => {
                    for (i, (ns, mounts)) in work.iter().enumerate() {
                        if let Err(e) = berth_sys::setns(ns.as_fd(), berth_sys::Namespaces::MOUNT) {
                            report.extend(mounts.iter().map(|m| format!("{i} {} join its namespace: {e}\n", m.id)));
                            continue;
                        }
                        for m in mounts {
                            if let Err(e) = detach_one(&proc_fds, m, unique) {
                                report.push_str(&format!("{i} {} {e}\n", m.id));
                            }
                        }
                    }
                }
            }
            let _ = berth_sys::write_all(w.as_fd(), report.as_bytes());
            berth_sys::exit_now(0);
        }
        Ok(Some(pid)) => {
            drop(w);
            let mut text = Vec::new();
            let mut buf = [0u8; 4096];
            while let Ok(n) = berth_sys::read(r.as_fd(), &mut buf) {
                if n == 0 {
                    break;
                }
                text.extend_from_slice(&buf[..n]);
            }
            let _ = berth_sys::waitpid(pid);
            String::from_utf8_lossy(&text)
                .lines()
                .filter_map(|l| {
                    let mut f = l.splitn(3, ' ');
                    Some((f.next()?.parse().ok()?, f.next()?.parse().ok()?, f.next().unwrap_or("").to_string()))
                })
                .collect()
        }
        Err(e) => all(&format!("fork: {e}")),
    }
}

/// In the holder's namespace: open, check, detach.
fn detach_one(proc_fds: &OwnedFd, m: &Mnt, unique: bool) -> std::io::Result<()> {
    let root = berth_sys::openat(None, Path::new("/"), libc::O_PATH | libc::O_DIRECTORY, 0)?;
    let rel = m.point.trim_start_matches('/');
    let fd = berth_sys::openat2(
        root.as_fd(),
        Path::new(if rel.is_empty() { "." } else { rel }),
        libc::O_PATH | libc::O_NOFOLLOW | libc::O_CLOEXEC,
        0,
        berth_sys::RESOLVE_NO_SYMLINKS | berth_sys::RESOLVE_NO_MAGICLINKS,
    )?;
    let id = if unique { berth_sys::mount_id_unique_fd(fd.as_fd())? } else { berth_sys::mount_id_fd(fd.as_fd())? };
    if id != m.id || !berth_sys::is_mount_root(fd.as_fd())? {
        return Err(std::io::Error::other(format!("{} is now another mount (ID {id})", m.point)));
    }
    berth_sys::detach_mount_fd(proc_fds.as_fd(), fd.as_fd())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(id: u64, parent: u64, dev: u64, root: &str, peer: u64, master: u64) -> Mnt {
        Mnt {
            id,
            parent,
            ident: Identity { dev: (0, dev), root: root.into() },
            point: if parent == 1 { "/b/rootfs".into() } else { format!("/b/rootfs/m{id}") },
            fs_type: "overlay".into(),
            peer,
            master,
        }
    }

    fn cm() -> ContainerMounts {
        ContainerMounts {
            ns_id: 9,
            roots: vec![Identity { dev: (0, 50), root: "/".into() }],
            inner: vec![Identity { dev: (0, 60), root: "/".into() }],
        }
    }

    #[test]
    fn a_copy_is_the_container_s_root_by_identity_where_it_is_mounted_newer_than_the_watermark_and_no_peer() {
        let mut elsewhere = m(107, 1, 50, "/", 0, 0);
        elsewhere.point = "/srv/bind-of-it".into();
        let mut ns_root = m(108, 108, 50, "/", 0, 0);
        ns_root.point = "/".into();
        let mounts = [
            m(100, 1, 50, "/", 0, 0),    // a private copy of the root: held
            m(101, 100, 60, "/", 0, 0),  // the container's proc on it: goes along
            m(40, 1, 50, "/", 0, 0),     // older than the container's root mount
            m(102, 1, 50, "/sub", 0, 0), // the same filesystem, another directory
            m(103, 1, 51, "/", 0, 0),    // another filesystem
            m(104, 1, 50, "/", 7, 0),    // a peer of the caller's mount
            m(105, 1, 50, "/", 0, 7),    // a slave of it
            m(106, 100, 50, "/", 0, 0),  // a copy on a copy: goes with the first
            elsewhere,                   // a deliberate bind elsewhere: not a copy
            ns_root,                     // another namespace's root: maybe another container's
        ];
        let b = Path::new("/b/rootfs");
        assert_eq!(tops(&mounts, &cm(), b, 50, &HashSet::from([7])), vec![100]);
        assert_eq!(tops(&mounts, &cm(), b, 0, &HashSet::new()), vec![40, 100, 104, 105], "no watermark, no groups");
        assert!(tops(&mounts, &cm(), Path::new("/other"), 50, &HashSet::new()).is_empty(), "a rootfs path elsewhere");
        assert_eq!(subtree(&mounts, 100), vec![100, 101, 106]);
    }

    #[test]
    fn nothing_is_a_copy_without_a_recorded_root() {
        let mounts = [m(100, 1, 50, "/", 0, 0)];
        assert!(tops(&mounts, &ContainerMounts::default(), Path::new("/b/rootfs"), 0, &HashSet::new()).is_empty());
    }
}
