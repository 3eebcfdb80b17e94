//! The reaper: teardown work that need not hold up `delete`, finished in
//! the background: deleting an ephemeral writable layer (at idle I/O
//! priority, where the disk's scheduler honours it) and, in the deferred
//! cgroup mode, removing dead containers' cgroups in batches.
//!
//! Work is a job file in `<root>/@reaper/` (written with temp + rename on
//! the --root filesystem, never the loaded disk), so it survives berth being
//! killed: any later berth command that finds jobs and no reaper at work
//! starts one, and `berth gc [--wait]` runs it in the foreground. One
//! reaper works at a time (`lock`). Cgroups are removed while holding
//! `umount.lock` exclusively; a teardown in the deferred mode holds it
//! shared while its container's mounts go away, so no batch of cgroup
//! removals overlaps a berth-managed unmount.

use crate::error::Context;
use crate::{log, Result, RuntimeError};
use serde::{Deserialize, Serialize};
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};

/// What `berth gc` could not finish.
#[derive(Debug, thiserror::Error)]
pub enum ReaperError {
    #[error("gc: {left} jobs could not be finished (see berth gc --list and the log)")]
    Unfinished { left: usize },
}

/// Not a valid container ID ('@'), so never mistaken for a container.
const DIR: &str = "@reaper";
/// Dead cgroups are removed in one batch once the oldest has waited this
/// long (ms; `BERTH_REAP_WINDOW_MS`), or once this many are waiting: never
/// more, so they cannot pile up.
const BATCH_WINDOW_MS: u64 = 1000;
const BATCH_MAX: usize = 64;

fn batch_window() -> std::time::Duration {
    let ms = std::env::var("BERTH_REAP_WINDOW_MS").ok().and_then(|v| v.parse().ok()).unwrap_or(BATCH_WINDOW_MS);
    std::time::Duration::from_millis(ms)
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Job {
    /// The container the work is for.
    pub id: String,
    /// Directories to delete (a writable layer).
    #[serde(default)]
    pub paths: Vec<PathBuf>,
    /// The container's (empty) cgroup, removed after `paths` are gone.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cgroup: Option<berth_cgroups::Cgroup>,
    pub queued: String,
}

impl Job {
    pub fn is_empty(&self) -> bool {
        self.paths.is_empty() && self.cgroup.is_none()
    }
}

pub fn dir(root: &Path) -> PathBuf {
    root.join(DIR)
}

fn lock(path: &Path, op: i32) -> Result<Option<OwnedFd>> {
    let fd = berth_sys::openat(None, path, libc::O_RDWR | libc::O_CREAT | libc::O_CLOEXEC, 0o600).ctx_at("open", path)?;
    match berth_sys::flock(fd.as_fd(), op) {
        Ok(()) => Ok(Some(fd)),
        Err(e) if e.raw_os_error() == Some(libc::EWOULDBLOCK) => Ok(None),
        Err(e) => Err(RuntimeError::io_at("lock", path, e)),
    }
}

/// Queues `job` (crash-safe: a complete file or none).
pub fn enqueue(root: &Path, job: &Job) -> Result<()> {
    let d = dir(root);
    std::fs::create_dir_all(&d).ctx_at("create", &d)?;
    let nonce = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0);
    let name = format!("{}.{nonce:x}.json", job.id);
    crate::state::write_atomic(&d.join(&name), &serde_json::to_vec(job).unwrap_or_default())
}

/// The queued jobs, oldest first.
pub fn pending(root: &Path) -> Vec<(PathBuf, Job)> {
    let Ok(rd) = std::fs::read_dir(dir(root)) else { return vec![] };
    let mut files: Vec<PathBuf> = rd.flatten().map(|e| e.path()).filter(|p| p.extension().is_some_and(|x| x == "json")).collect();
    files.sort();
    files.into_iter().filter_map(|f| Some((f.clone(), read_job(&f)?))).collect()
}

fn read_job(f: &Path) -> Option<Job> {
    serde_json::from_slice(&std::fs::read(f).ok()?).ok()
}

/// Writes `job` to `file` (temp + rename), or removes the file once the
/// job has nothing left to do.
fn rewrite(file: &Path, job: &Job) -> Result<()> {
    if job.is_empty() {
        return std::fs::remove_file(file)
            .or_else(|e| if e.kind() == std::io::ErrorKind::NotFound { Ok(()) } else { Err(e) })
            .ctx_at("remove", file);
    }
    crate::state::write_atomic(file, &serde_json::to_vec(job).unwrap_or_default())
}

/// A container is about to be created in a cgroup that a queued job still
/// holds for its batch: one restarted under the same cgroupsPath (podman
/// keeps a container's ID, and so its cgroup, across restarts). That
/// directory is removed now, one rmdir as in the immediate mode, and the
/// job forgets it, so that no batch can remove the new container's cgroup
/// (nor the new container inherit a directory it did not make). Under
/// `umount.lock` shared: a batch re-reads its jobs once it holds it.
pub fn claim_cgroup(root: &Path, cg: &berth_cgroups::Cgroup) -> Result<()> {
    let ours = |j: &Job| j.cgroup.as_ref().is_some_and(|c| c.dirs.iter().any(|x| cg.dirs.iter().any(|d| d.path == x.path)));
    if !pending(root).iter().any(|(_, j)| ours(j)) {
        return Ok(());
    }
    let _u = lock(&dir(root).join("umount.lock"), libc::LOCK_SH)?;
    for (file, mut job) in pending(root).into_iter().filter(|(_, j)| ours(j)) {
        if let Some(old) = job.cgroup.take() {
            old.remove()?;
            log::debug(&format!("container {}'s cgroup, queued for removal, removed now for a new container", job.id));
        }
        rewrite(&file, &job)?;
    }
    Ok(())
}

/// Deletes a directory tree; gone already counts as done.
fn delete_tree(p: &Path) -> std::io::Result<()> {
    match std::fs::remove_dir_all(p) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        r => r,
    }
}

/// Does the queued work until none is left. With `wait` (`gc --wait`),
/// first waits for a reaper at work, and removes waiting cgroups at once
/// instead of at their batch's time; without, returns at once (0) if a
/// reaper is at work. Returns how many jobs were finished.
pub fn drain(root: &Path, wait: bool) -> Result<usize> {
    let d = dir(root);
    if !d.is_dir() {
        return Ok(0);
    }
    let op = libc::LOCK_EX | if wait { 0 } else { libc::LOCK_NB };
    let mut done = 0;
    // Idle I/O class: the deletions yield to everyone else's I/O (on
    // schedulers that honour it, BFQ; elsewhere it changes nothing).
    let _ = berth_sys::ioprio_set(3, 0);
    loop {
        let Some(held) = lock(&d.join("lock"), op)? else { return Ok(done) };
        let before = pending(root).len();
        loop {
            let (n, due) = pass(root, wait)?;
            done += n;
            // Cgroups waiting for their batch: sleep until it is due (new
            // jobs are taken in on the way).
            match due {
                Some(d) => std::thread::sleep(d.min(std::time::Duration::from_millis(50))),
                None => break,
            }
        }
        drop(held);
        // A job queued while the lock was held is seen here (or by the
        // reaper that holds it next).
        let left = pending(root).len();
        if left == 0 || left >= before {
            return Ok(done);
        }
    }
}

/// One pass over the queue: storage first, then the cgroups in one batch
/// when it is due (or `now`). Returns the jobs finished and, if cgroups
/// are left waiting for their batch, how long until it is due.
fn pass(root: &Path, now: bool) -> Result<(usize, Option<std::time::Duration>)> {
    let jobs = pending(root);
    let mut done = 0;
    let mut batch = Vec::new();
    for (file, job) in jobs {
        let mut ok = true;
        for p in &job.paths {
            if let Err(e) = delete_tree(p) {
                log::warn(&format!("reaper: {}: delete {}: {e} (left for a later pass)", job.id, p.display()));
                ok = false;
            }
        }
        if !ok {
            continue;
        }
        if job.cgroup.is_some() {
            batch.push((file, job));
        } else {
            let _ = std::fs::remove_file(&file);
            done += 1;
        }
    }
    if !batch.is_empty() {
        let oldest = batch.iter().filter_map(|(f, _)| std::fs::metadata(f).and_then(|m| m.modified()).ok()).min();
        let age = oldest.and_then(|t| t.elapsed().ok()).unwrap_or_default();
        let window = batch_window();
        if !now && batch.len() < BATCH_MAX && age < window {
            return Ok((done, Some(window - age)));
        }
        if !now {
            wait_for_quiet_mounts();
        }
        // Never while a berth teardown is unmounting (they hold it shared).
        let _u = lock(&dir(root).join("umount.lock"), libc::LOCK_EX)?;
        // Read again under the lock: a create may have claimed a cgroup
        // meanwhile (see `claim_cgroup`).
        let batch: Vec<(PathBuf, Job)> =
            batch.into_iter().filter_map(|(f, _)| Some((f.clone(), read_job(&f)?))).filter(|(_, j)| j.cgroup.is_some()).collect();
        log::debug(&format!("reaper: removing {} cgroups in one batch", batch.len()));
        for (file, job) in batch {
            match job.cgroup.as_ref().map(|c| c.remove()).transpose() {
                Ok(_) => {
                    let _ = std::fs::remove_file(&file);
                    done += 1;
                }
                Err(e) => log::warn(&format!("reaper: {}: {e} (left for a later pass)", job.id)),
            }
        }
    }
    Ok((done, None))
}

/// A batch waits for the mount table to be quiet: no mount or unmount in
/// this mount namespace (the host's, for a reaper started from it) for
/// `BERTH_REAP_QUIET_MS` (50), so that its inode switches do not land
/// amid a run of unmounts (which on kernels before 7.2 each wait for every
/// switch in flight, and under emulation compete with them for CPU); at
/// most 2 s, then it goes anyway (cgroups must not wait without bound).
/// Unmounts in other namespaces are not seen; berth's own are kept out by
/// `umount.lock`.
fn wait_for_quiet_mounts() {
    let quiet = std::env::var("BERTH_REAP_QUIET_MS").ok().and_then(|v| v.parse::<i32>().ok()).unwrap_or(50);
    if quiet <= 0 {
        return;
    }
    let Ok(f) = std::fs::File::open("/proc/self/mounts") else { return };
    let give_up = std::time::Instant::now() + std::time::Duration::from_secs(2);
    while std::time::Instant::now() < give_up {
        // POLLPRI: the namespace's mount table changed since the last poll.
        match berth_sys::poll_for(&[f.as_fd()], libc::POLLPRI, quiet) {
            Ok(r) if r[0] & (libc::POLLPRI | libc::POLLERR) != 0 => continue,
            _ => return,
        }
    }
    log::debug("reaper: the mount table was never quiet for long; removing the batch anyway");
}

/// Held shared by a teardown while its container's mounts go away.
pub fn unmount_guard(root: &Path) -> Option<OwnedFd> {
    let d = dir(root);
    std::fs::create_dir_all(&d).ok()?;
    lock(&d.join("umount.lock"), libc::LOCK_SH).ok().flatten()
}

/// Starts a reaper in the background if work is queued and none is at
/// work: a child of this process in a session of its own, with no stdio
/// (a caller waiting for berth's output must not wait for the reaper).
pub fn kick(root: &Path) {
    let d = dir(root);
    // Every berth command comes here: list, parse nothing.
    let queued = std::fs::read_dir(&d).into_iter().flatten().flatten().any(|e| e.path().extension().is_some_and(|x| x == "json"));
    if !queued {
        return;
    }
    match lock(&d.join("lock"), libc::LOCK_EX | libc::LOCK_NB) {
        Ok(Some(l)) => drop(l),
        _ => return, // one is at work
    }
    if let Ok(berth_sys::Forked::Child) = berth_sys::clone3(berth_sys::Namespaces::empty(), None) {
        // Not `run`'s blocked signals (kept for forwarding): a reaper ends
        // on SIGTERM like any process.
        berth_sys::reset_signals();
        berth_sys::detach_stdio();
        let _ = drain(root, false);
        berth_sys::exit_now(0);
    }
}
