//! Capabilities, rlimits, user identity and no_new_privs for the container's
//! process.

use crate::config::names::{cap_number, last_cap, rlimit_number, CAPS};
use crate::config::{Capabilities, Process};
use crate::error::Context;
use crate::Result;

fn mask(names: &[String]) -> u64 {
    names.iter().filter_map(|n| cap_number(n)).fold(0, |m, c| m | (1u64 << c))
}

/// Sets the rlimits of this process (before anything else can fail on them).
pub fn set_rlimits(p: &Process) -> Result<()> {
    for r in &p.rlimits {
        let n = rlimit_number(&r.kind).unwrap_or(-1);
        berth_sys::setrlimit(n, r.soft, r.hard).ctx_of("setrlimit", format_args!("{} soft {} hard {}", r.kind, r.soft, r.hard))?;
    }
    Ok(())
}

/// Applies process.scheduler and process.ioPriority to this process (before
/// capabilities go: a real-time policy needs CAP_SYS_NICE). Both are
/// inherited by the exec'd program.
pub fn set_scheduling(p: &Process) -> Result<()> {
    if let Some(s) = &p.scheduler {
        let attr = s.kernel()?;
        if let Err(e) = berth_sys::sched_setattr(&attr) {
            let hint = if e.raw_os_error() == Some(libc::EPERM) && matches!(attr.policy, 1 | 2) {
                " (a real-time policy also needs realtime runtime in the container's cpu cgroup: linux.resources.cpu.realtimeRuntime)"
            } else {
                ""
            };
            return Err(crate::config::invalid("process.scheduler", format!("sched_setattr {}: {e}{hint}", s.policy)));
        }
    }
    if let Some(io) = &p.io_priority {
        let (class, level) = io.kernel()?;
        berth_sys::ioprio_set(class, level).ctx_of("process.ioPriority: ioprio_set", format_args!("{} {}", io.class, io.priority))?;
    }
    Ok(())
}

/// Drops the bounding set to `caps.bounding` (needs CAP_SETPCAP, so before
/// switching user).
pub fn drop_bounding(caps: Option<&Capabilities>) -> Result<()> {
    let keep = caps.map(|c| mask(&c.bounding)).unwrap_or(0);
    for c in 0..=last_cap() {
        if keep & (1 << c) == 0 {
            berth_sys::capbset_drop(c).ctx_of("drop from the bounding set", CAPS.get(c as usize).unwrap_or(&"?"))?;
        }
    }
    Ok(())
}

/// Switches to the configured user keeping capabilities across the switch,
/// then sets effective/permitted/inheritable and the ambient set.
pub fn switch_user_and_caps(p: &Process) -> Result<()> {
    let u = &p.user;
    // Checked here too: exec's --user and --process reach this without config validation.
    for (what, id) in [("uid", u.uid), ("gid", u.gid)].into_iter().chain(u.additional_gids.iter().map(|g| ("additional gid", *g))) {
        crate::config::check_id(what, id)?;
    }
    berth_sys::set_keepcaps(true).ctx("prctl(PR_SET_KEEPCAPS)")?;
    let mut groups = u.additional_gids.clone();
    if groups.is_empty() && u.gid == 0 {
        groups.clear();
    }
    // setgroups is denied in a user namespace whose setgroups file says deny.
    if let Err(e) = berth_sys::setgroups(&groups) {
        if !(groups.is_empty() && e.raw_os_error() == Some(libc::EPERM)) {
            return Err(crate::RuntimeError::Io { step: "setgroups", on: crate::error::Subject::Groups(groups.clone()), source: e });
        }
    }
    berth_sys::setresgid(u.gid).ctx_of("setgid", u.gid)?;
    berth_sys::setresuid(u.uid).ctx_of("setuid", u.uid)?;
    berth_sys::set_keepcaps(false).ctx("prctl(PR_SET_KEEPCAPS)")?;
    let (eff, perm, inh, amb) = match &p.capabilities {
        Some(c) => (mask(&c.effective), mask(&c.permitted), mask(&c.inheritable), mask(&c.ambient)),
        None => (0, 0, 0, 0),
    };
    berth_sys::capset(berth_sys::CapSets { effective: eff, permitted: perm, inheritable: inh }).ctx("capset")?;
    for c in 0..=last_cap() {
        if amb & (1 << c) != 0 {
            // An ambient capability must be permitted and inheritable; the
            // kernel refuses it otherwise, and runc then only warns.
            if let Err(e) = berth_sys::cap_ambient_raise(c) {
                crate::log::debug(&format!("cannot raise ambient capability {}: {e}", CAPS.get(c as usize).unwrap_or(&"?")));
            }
        }
    }
    Ok(())
}

pub fn no_new_privs() -> Result<()> {
    berth_sys::set_no_new_privs().ctx("prctl(PR_SET_NO_NEW_PRIVS)")
}
