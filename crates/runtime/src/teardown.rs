//! The one way a container ends, for every path (delete, delete --force, a
//! failed create, the end of `run`): signal, wait for the init's exit and for
//! the cgroup to empty on events under one deadline, remove the cgroup, remove
//! the state, run poststop hooks. Each phase is timed.
//!
//! It is idempotent: each phase checks what is left and does only that, so
//! running it again after a crash at any point finishes the job.

use crate::process::{self, Process};
use crate::state::{Container, Record};
use crate::{hooks, log, Result, RuntimeError};
use std::os::fd::{AsFd, OwnedFd};
use std::time::{Duration, Instant};

/// What teardown could not finish.
#[derive(Debug, thiserror::Error)]
pub enum TeardownError {
    /// A process of the container outlived its deadline (`left`: the
    /// processes still there, as "pid N (comm)").
    #[error("{step} before the deadline; still there: {}", if left.is_empty() { "nothing visible".to_string() } else { left.join("; ") })]
    Stuck { step: &'static str, left: Vec<String> },
    /// Copies of the container's mounts live on in other mount namespaces
    /// and could not be detached safely.
    #[error(
        "container {id}: its mounts survive in other mount namespaces and cannot be detached safely: {}; unmount them there (or end those processes) and run delete again",
        holders.iter().map(|h| format!("pid {} ({}) in {} holds {}", h.pid, h.command, h.mount_namespace, h.how)).collect::<Vec<_>>().join("; ")
    )]
    MountsSurvive { id: String, holders: Vec<crate::busy::Holder> },
}

/// Phase durations of one teardown.
#[derive(Debug, Default, Clone)]
pub struct Timings(pub Vec<(&'static str, Duration)>);

impl Timings {
    pub(crate) fn mark(&mut self, phase: &'static str, since: &mut Instant) {
        let now = Instant::now();
        self.0.push((phase, now - *since));
        *since = now;
    }

    pub fn total(&self) -> Duration {
        self.0.iter().map(|(_, d)| *d).sum()
    }

    /// `signal=0.012ms exit=0.300ms ...`
    pub fn line(&self) -> String {
        let mut s: Vec<String> = self.0.iter().map(|(p, d)| format!("{p}={:.3}ms", d.as_secs_f64() * 1e3)).collect();
        s.push(format!("total={:.3}ms", self.total().as_secs_f64() * 1e3));
        s.join(" ")
    }
}

#[derive(Debug)]
pub struct Options {
    /// How long to wait for processes to go away.
    pub deadline: Duration,
    /// Whether to run poststop hooks (not for a create that failed before
    /// the container existed).
    pub poststop: bool,
}

/// When a dead container's cgroup is removed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CgroupReap {
    /// In `delete`, as soon as it is empty.
    Immediate,
    /// By the reaper, in batches that never overlap a berth teardown's
    /// unmounts (and after the writable layer's files are gone).
    Deferred,
    /// Deferred where it helps: cgroup v2 with the memory and io
    /// controllers on a kernel before 7.2 (which drains inodes switching
    /// writeback domains per superblock instead of globally); else immediate.
    Auto,
}

impl CgroupReap {
    pub fn parse(s: &str) -> Option<CgroupReap> {
        match s {
            "immediate" => Some(CgroupReap::Immediate),
            "deferred" => Some(CgroupReap::Deferred),
            "auto" => Some(CgroupReap::Auto),
            _ => None,
        }
    }

    /// Whether `cg` is removed by the reaper.
    pub fn defers(self, cg: &berth_cgroups::Cgroup) -> bool {
        if cg.systemd.is_some() {
            // systemd removes a unit's cgroup when the unit stops; when
            // is not berth's to choose.
            return false;
        }
        let pure_v2 = !cg.dirs.is_empty() && cg.dirs.iter().all(|d| d.v2);
        let release = || std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
        let controllers = || cg.v2_dir().and_then(|d| std::fs::read_to_string(d.path.join("cgroup.controllers")).ok()).unwrap_or_default();
        self.decide(pure_v2, release, controllers)
    }

    /// The decision itself, from the cgroup's layout, the kernel release
    /// and the v2 cgroup's controllers (the last two read only for `auto`).
    pub fn decide(self, pure_v2: bool, release: impl FnOnce() -> String, controllers: impl FnOnce() -> String) -> bool {
        match self {
            CgroupReap::Immediate => false,
            CgroupReap::Deferred => true,
            CgroupReap::Auto => {
                if !pure_v2 || kernel_version(&release()) >= (7, 2) {
                    return false;
                }
                let ctrls = controllers();
                ctrls.split_whitespace().any(|c| c == "memory") && ctrls.split_whitespace().any(|c| c == "io")
            }
        }
    }
}

/// (major, minor) of a kernel release string ("6.18.44-fc", "7.2-rc1");
/// (0, 0) when it has none.
pub fn kernel_version(release: &str) -> (u32, u32) {
    let mut it = release.trim().split(|c: char| !c.is_ascii_digit()).filter_map(|x| x.parse::<u32>().ok());
    (it.next().unwrap_or(0), it.next().unwrap_or(0))
}

static REAP: std::sync::Mutex<CgroupReap> = std::sync::Mutex::new(CgroupReap::Auto);

/// The process-wide cgroup reaping mode (`--cgroup-reap`).
pub fn set_cgroup_reap(m: CgroupReap) {
    *REAP.lock().unwrap_or_else(|e| e.into_inner()) = m;
}

fn cgroup_reap() -> CgroupReap {
    *REAP.lock().unwrap_or_else(|e| e.into_inner())
}

impl Default for Options {
    fn default() -> Self {
        Options { deadline: Duration::from_secs(10), poststop: true }
    }
}

/// Kills whatever is left of the container, releases its cgroup and removes
/// its state. `rec` is `None` when the state file was never written.
pub fn destroy(c: &Container, rec: Option<&Record>, opts: &Options) -> Result<Timings> {
    let mut t = Timings::default();
    let mut since = Instant::now();
    let deadline = since + opts.deadline;
    let root = c.dir.parent().unwrap_or_else(|| std::path::Path::new("/")).to_path_buf();
    let mut job = crate::reaper::Job { id: c.id.clone(), paths: vec![], cgroup: None, queued: log::rfc3339_now() };
    if let Some(rec) = rec {
        let init = rec.init();
        let defer_cgroup = cgroup_reap().defers(&rec.cgroup);
        // In the deferred mode, no cgroup batch runs while this
        // container's mounts go away (with its last process).
        let guard = if defer_cgroup { crate::reaper::unmount_guard(&root) } else { None };
        signal(rec, init.as_ref())?;
        t.mark("signal", &mut since);
        crate::fault("delete:signaled");
        if let Some(p) = &init {
            wait_exit_or_emptied(rec, p, deadline).map_err(|_| stuck(rec, "the container's init did not exit"))?;
        }
        t.mark("exit", &mut since);
        crate::fault("delete:exited");
        wait_empty(rec, init.is_some() && !defer_cgroup, deadline)?;
        drop(guard);
        t.mark("cgroup_empty", &mut since);
        crate::fault("delete:cgroup-empty");
        if release(rec, defer_cgroup, &mut job)? {
            t.mark("cgroup_removed", &mut since);
        }
        crate::fault("delete:cgroup-removed");
        verify_mounts(c, rec)?;
        t.mark("mounts_verified", &mut since);
        if let Some(l) = rec.layer.as_ref().filter(|l| l.keep) {
            log::info(&format!("container {}: its writable layer is kept at {}", c.id, l.dir.join("upper").display()));
        }
        if !job.is_empty() {
            crate::reaper::enqueue(&root, &job)?;
            t.mark("handed_to_reaper", &mut since);
            crate::fault("delete:handed-to-reaper");
        }
    }
    c.remove()?;
    t.mark("state_removed", &mut since);
    if let (Some(rec), true) = (rec, opts.poststop) {
        poststop(rec);
        t.mark("poststop", &mut since);
    }
    log::info(&format!("teardown {}: {}", c.id, t.line()));
    if !job.is_empty() {
        crate::reaper::kick(&root);
    }
    Ok(t)
}

/// Signal: SIGKILL through the init's confirmed pidfd; then every process
/// in the cgroup (those in the host PID namespace, and forks racing the kill).
fn signal(rec: &Record, init: Option<&crate::process::Process>) -> Result<()> {
    if let Some(p) = init {
        let _ = p.signal(libc::SIGKILL);
    }
    if rec.own_pidns && init.is_some() {
        // The init's death makes the kernel kill every other process of
        // its PID namespace, and nothing can fork into a dying one: no
        // cgroup-wide kill is needed, only a thaw of sub-cgroups the
        // container froze itself (v1), so that the kill can land. The
        // wait for the cgroup kills it if anything is left after all.
        rec.cgroup.thaw_all()?;
        Ok(())
    } else if rec.own_pidns && rec.pid > 0 && rec.cgroup.pids().is_empty() {
        // The init of its own PID namespace already exited (the end of
        // `run`, a task deleted after its exit), taking every process of
        // the namespace: an empty cgroup needs no kill (v1's freeze, kill
        // and thaw cost 0.35 ms here). Anything that shows up meanwhile is
        // killed by the wait for the cgroup.
        Ok(())
    } else {
        // A host PID namespace leaves the init's children alive.
        kill_cgroup(rec)
    }
}

/// Waits until no process is left in the cgroup. When the init of its own
/// PID namespace is gone (`init_took_all`), every process of that namespace
/// went with it, so the cgroup is normally empty by now: rmdir then proves
/// it (the kernel refuses to remove a populated cgroup) without listing
/// every hierarchy. Anything left (a process moved in from outside, a
/// sub-cgroup) takes the waiting path.
fn wait_empty(rec: &Record, init_took_all: bool, deadline: Instant) -> Result<()> {
    // A systemd unit's cgroup is systemd's to remove when the unit stops:
    // there the wait is on cgroup.events alone.
    let fast = init_took_all && rec.own_pidns && rec.cgroup.systemd.is_none() && rec.cgroup.try_remove_leaves()?;
    if !fast {
        wait_cgroup_empty(rec, deadline)?;
    }
    Ok(())
}

/// Removes the cgroup now, or hands it to the reaper's next batch (true
/// when it was removed here); the writable layer is always handed over as
/// it is: deleting it now would be metadata work on what may be a loaded
/// filesystem.
fn release(rec: &Record, defer_cgroup: bool, job: &mut crate::reaper::Job) -> Result<bool> {
    if let Some(l) = rec.layer.as_ref().filter(|l| !l.keep) {
        job.paths.push(l.dir.clone());
    }
    if defer_cgroup {
        job.cgroup = Some(rec.cgroup.clone());
        return Ok(false);
    }
    if let Some(unit) = &rec.cgroup.systemd {
        stop_unit(&unit.name);
    }
    // What systemd left (a sub-cgroup the container made, on an older
    // systemd), or the whole directory where systemd could not be asked.
    rec.cgroup.remove()?;
    Ok(true)
}

/// Stops the container's systemd unit (the systemd driver) and resets it
/// if it failed, so that nothing of it stays in systemd's list. The
/// container is already gone (killed, its cgroup empty): a systemd that
/// cannot be asked is a warning, not a reason to keep the state, since
/// systemd stops an emptied scope by itself.
fn stop_unit(unit: &str) {
    let t0 = Instant::now();
    let r = berth_cgroups::systemd::Systemd::connect(berth_sys::getuid()).and_then(|mut sd| sd.stop(unit));
    match r {
        Ok(()) => log::debug(&format!("systemd: unit {unit} stopped in {:.3}ms", t0.elapsed().as_secs_f64() * 1e3)),
        Err(e) => log::warn(&format!("systemd unit {unit} could not be stopped: {e}")),
    }
}

/// Detaches the mounts a container without a mount namespace made in this
/// one; then finds the copies of the container's mounts in other mount
/// namespaces and detaches them there (each a warning naming its holder).
/// A copy that cannot be detached safely fails the teardown, naming it.
fn verify_mounts(c: &Container, rec: &Record) -> Result<()> {
    if let Some(base) = rec.host_mount_base {
        crate::rootfs::detach_host_mounts(&rec.rootfs, base)?;
    }
    let root = c.dir.parent().unwrap_or_else(|| std::path::Path::new("/"));
    crate::reclaim::unmark_container(root, &c.id);
    let found = crate::reclaim::reclaim(&rec.mounts, rec.mount_watermark, &rec.rootfs, root);
    for h in &found.detached {
        log::warn(&format!(
            "container {}: detached a copy of its mounts that pid {} ({}) in {} held: {}",
            c.id, h.pid, h.command, h.mount_namespace, h.how
        ));
    }
    if found.held.is_empty() {
        return Ok(());
    }
    Err(TeardownError::MountsSurvive { id: c.id.clone(), holders: found.held }.into())
}

/// The poststop hooks; a failing one is a warning (runtime-spec).
fn poststop(rec: &Record) {
    if let Some(h) = rec.config.as_ref().and_then(|s| s.hooks.as_ref()) {
        let state = serde_json::to_string(&rec.oci(crate::state::Status::Stopped)).unwrap_or_default();
        for (i, hook) in h.poststop.iter().enumerate() {
            if let Err(e) = hooks::run("poststop", i, hook, &state) {
                log::warn(&e.to_string());
            }
        }
    }
}

/// SIGKILL for every process of the cgroup: cgroup.kill on v2, freeze-kill-thaw on v1.
pub fn kill_cgroup(rec: &Record) -> Result<()> {
    // (Under the v1 freezer nothing can exit or fork meanwhile anyway.)
    rec.cgroup.kill_all(&mut |pids: &[i32]| signal_listed(&rec.cgroup, pids, libc::SIGKILL))?;
    Ok(())
}

/// Sends `sig` to each of `pids` that is in `cg`, only through pidfds:
/// opened for the PIDs, then the cgroup's list read again; a PID still
/// listed after its pidfd was opened is that very process, not a stranger
/// that got its number.
pub fn signal_listed(cg: &berth_cgroups::Cgroup, pids: &[i32], sig: i32) {
    let fds: Vec<(i32, OwnedFd)> = pids.iter().filter_map(|p| berth_sys::pidfd_open(*p).ok().map(|fd| (*p, fd))).collect();
    if fds.is_empty() {
        return;
    }
    let listed = cg.pids();
    for (pid, fd) in &fds {
        if listed.contains(pid) {
            let _ = berth_sys::pidfd_send_signal(fd.as_fd(), sig);
        }
    }
}

fn ms_left(deadline: Instant) -> i32 {
    berth_sys::poll_ms(deadline.saturating_duration_since(Instant::now()))
}

/// Waits until every pidfd is readable (its process exited) or the deadline.
fn wait_exit(fds: &[std::os::fd::BorrowedFd<'_>], deadline: Instant) -> std::result::Result<(), ()> {
    let mut pending: Vec<std::os::fd::BorrowedFd<'_>> = fds.to_vec();
    while !pending.is_empty() {
        let left = ms_left(deadline);
        let r = berth_sys::poll_in(&pending, left).map_err(drop)?;
        if r.iter().all(|x| *x == 0) {
            return Err(());
        }
        pending = pending.into_iter().zip(r).filter(|(_, r)| *r == 0).map(|(f, _)| f).collect();
    }
    Ok(())
}

/// Waits for the init to exit, or, for the init of its own PID namespace,
/// for the cgroup to be emptied, whichever comes first. A dying PID
/// namespace's init only completes its exit once every process of the
/// namespace has been *reaped*, and processes that `exec` put there are
/// reaped by their own parent (a shim, conmon, or the host's PID 1, which
/// may take its time): each has left the cgroup, freed its mounts and
/// namespaces when it exited, so the cgroup's `populated 0` (v2 events,
/// through inotify; the unified hierarchy of a hybrid host has them too)
/// is the end of the container, and waiting further would measure someone
/// else's reaper.
fn wait_exit_or_emptied(rec: &Record, init: &Process, deadline: Instant) -> std::result::Result<(), ()> {
    let events =
        if rec.own_pidns { rec.cgroup.v2_events_file().and_then(|f| berth_sys::inotify_watch(&f, libc::IN_MODIFY).ok()) } else { None };
    let Some(ino) = events else {
        return wait_exit(&[init.pidfd.as_fd()], deadline);
    };
    loop {
        if rec.cgroup.v2_populated() == Some(false) {
            return Ok(());
        }
        let r = berth_sys::poll_in(&[init.pidfd.as_fd(), ino.as_fd()], ms_left(deadline)).map_err(drop)?;
        if r[0] != 0 {
            return Ok(());
        }
        if r.iter().all(|x| *x == 0) {
            return Err(());
        }
        berth_sys::drain(ino.as_fd());
    }
}

/// Waits for the cgroup to have no process: v2 `cgroup.events` through
/// inotify; elsewhere the pidfds of the processes still listed. Each round
/// re-reads the list, so a process that forked before dying is waited for too.
fn wait_cgroup_empty(rec: &Record, deadline: Instant) -> Result<()> {
    let events = rec.cgroup.events_file().and_then(|f| berth_sys::inotify_watch(&f, libc::IN_MODIFY).ok());
    let mut killed = false;
    loop {
        let pids = rec.cgroup.pids();
        if pids.is_empty() {
            return Ok(());
        }
        if Instant::now() >= deadline {
            return Err(stuck(rec, "the container's cgroup did not become empty"));
        }
        if let Some(ino) = &events {
            // Whatever is there was not taken by the init's end (a process
            // moved in from outside its PID namespace): killed once, then
            // its exit waited for.
            if !killed {
                kill_cgroup(rec)?;
                killed = true;
            }
            let _ = berth_sys::poll_in(&[ino.as_fd()], ms_left(deadline).min(1000));
            berth_sys::drain(ino.as_fd());
            continue;
        }
        let fds: Vec<OwnedFd> = pids.iter().filter_map(|p| berth_sys::pidfd_open(*p).ok()).collect();
        if fds.is_empty() {
            // Listed but already gone: the list is being updated.
            std::thread::yield_now();
            continue;
        }
        // Until every one of them has exited (one round, not one per exit).
        let b: Vec<_> = fds.iter().map(|f| f.as_fd()).collect();
        let _ = wait_exit(&b, Instant::now() + deadline.saturating_duration_since(Instant::now()).min(Duration::from_secs(1)));
        // Killed again in case one was created after the first kill.
        if !rec.cgroup.pids().is_empty() {
            kill_cgroup(rec)?;
        }
    }
}

/// A deadline error naming what is stuck.
fn stuck(rec: &Record, what: &'static str) -> RuntimeError {
    let mut pids = rec.cgroup.pids();
    if pids.is_empty() && rec.pid > 0 {
        pids.push(rec.pid);
    }
    let left: Vec<String> = pids.iter().take(10).map(|p| process::describe(*p)).collect();
    TeardownError::Stuck { step: what, left }.into()
}

/// The init, if alive, for callers that want to signal it.
pub fn live_init(rec: &Record) -> Option<Process> {
    rec.init()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kernel_versions_are_read_from_any_release_string() {
        assert_eq!(kernel_version("6.18.44-fc-v657"), (6, 18));
        assert_eq!(kernel_version("7.2-rc1"), (7, 2));
        assert_eq!(kernel_version("6.1.0-27-amd64\n"), (6, 1));
        assert_eq!(kernel_version("7"), (7, 0));
        assert_eq!(kernel_version(""), (0, 0));
        assert_eq!(kernel_version("weird"), (0, 0));
    }

    #[test]
    fn auto_defers_only_on_pure_v2_with_memory_and_io_before_7_2() {
        let memio = || "cpuset cpu io memory pids".to_string();
        let on = |v: &'static str| move || v.to_string();
        assert!(CgroupReap::Auto.decide(true, on("6.18.4"), memio));
        assert!(CgroupReap::Auto.decide(true, on("6.1.0-27-amd64"), memio));
        assert!(!CgroupReap::Auto.decide(true, on("7.2.0"), memio), "7.2 fixed the writeback switch");
        assert!(!CgroupReap::Auto.decide(true, on("8.0"), memio));
        assert!(!CgroupReap::Auto.decide(false, on("6.18"), memio), "v1 and hybrid: immediate");
        assert!(!CgroupReap::Auto.decide(true, on("6.18"), || "cpu memory pids".to_string()), "no io controller");
        assert!(!CgroupReap::Auto.decide(true, on("6.18"), || "io pids".to_string()), "no memory controller");
        assert!(!CgroupReap::Auto.decide(true, on("6.18"), || "memoryx iox".to_string()), "names match whole");
    }

    #[test]
    fn immediate_and_deferred_read_nothing() {
        let never = || -> String { panic!("read for a fixed choice") };
        assert!(!CgroupReap::Immediate.decide(true, never, never));
        assert!(CgroupReap::Deferred.decide(false, never, never));
        assert_eq!(CgroupReap::parse("auto"), Some(CgroupReap::Auto));
        assert_eq!(CgroupReap::parse("Auto"), None);
    }
}
