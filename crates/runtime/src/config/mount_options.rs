//! The mount options of config.json: which are flags, which clear flags,
//! propagation, recursive attributes (mount_setattr), idmaps and
//! berth's own (tmpcopyup), and how a mount's list splits into them.

use crate::Result;
use berth_sys as sys;

const MS_NOSYMFOLLOW: libc::c_ulong = 256;

pub fn propagation_flag(name: &str) -> Option<libc::c_ulong> {
    Some(match name {
        "private" => libc::MS_PRIVATE,
        "rprivate" => libc::MS_PRIVATE | libc::MS_REC,
        "shared" => libc::MS_SHARED,
        "rshared" => libc::MS_SHARED | libc::MS_REC,
        "slave" => libc::MS_SLAVE,
        "rslave" => libc::MS_SLAVE | libc::MS_REC,
        "unbindable" => libc::MS_UNBINDABLE,
        "runbindable" => libc::MS_UNBINDABLE | libc::MS_REC,
        _ => return None,
    })
}

/// (set, clear) for a mount option that is a flag.
fn flag_option(o: &str) -> Option<(libc::c_ulong, libc::c_ulong)> {
    Some(match o {
        "defaults" => (0, 0),
        "ro" => (libc::MS_RDONLY, 0),
        "rw" => (0, libc::MS_RDONLY),
        "nosuid" => (libc::MS_NOSUID, 0),
        "suid" => (0, libc::MS_NOSUID),
        "nodev" => (libc::MS_NODEV, 0),
        "dev" => (0, libc::MS_NODEV),
        "noexec" => (libc::MS_NOEXEC, 0),
        "exec" => (0, libc::MS_NOEXEC),
        "sync" => (libc::MS_SYNCHRONOUS, 0),
        "async" => (0, libc::MS_SYNCHRONOUS),
        "dirsync" => (libc::MS_DIRSYNC, 0),
        "remount" => (libc::MS_REMOUNT, 0),
        "mand" => (libc::MS_MANDLOCK, 0),
        "nomand" => (0, libc::MS_MANDLOCK),
        "atime" => (0, libc::MS_NOATIME),
        "noatime" => (libc::MS_NOATIME, 0),
        "diratime" => (0, libc::MS_NODIRATIME),
        "nodiratime" => (libc::MS_NODIRATIME, 0),
        "relatime" => (libc::MS_RELATIME, 0),
        "norelatime" => (0, libc::MS_RELATIME),
        "strictatime" => (libc::MS_STRICTATIME, 0),
        "nostrictatime" => (0, libc::MS_STRICTATIME),
        "lazytime" => (libc::MS_LAZYTIME, 0),
        "nolazytime" => (0, libc::MS_LAZYTIME),
        "iversion" => (libc::MS_I_VERSION, 0),
        "noiversion" => (0, libc::MS_I_VERSION),
        "silent" => (libc::MS_SILENT, 0),
        "loud" => (0, libc::MS_SILENT),
        "nosymfollow" => (MS_NOSYMFOLLOW, 0),
        "symfollow" => (0, MS_NOSYMFOLLOW),
        "bind" => (libc::MS_BIND, 0),
        "rbind" => (libc::MS_BIND | libc::MS_REC, 0),
        _ => return None,
    })
}

/// Options berth does not implement.
fn unsupported_option(_o: &str) -> bool {
    false
}

/// Recursive mount attributes, applied with mount_setattr(AT_RECURSIVE):
/// (attributes to set, attributes to clear).
fn recursive_option(o: &str) -> Option<(u64, u64)> {
    use sys::*;
    let atime = |mode: u64| (mode, MOUNT_ATTR_ATIME_MASK);
    Some(match o {
        "rro" => (MOUNT_ATTR_RDONLY, 0),
        "rrw" => (0, MOUNT_ATTR_RDONLY),
        "rnosuid" => (MOUNT_ATTR_NOSUID, 0),
        "rsuid" => (0, MOUNT_ATTR_NOSUID),
        "rnodev" => (MOUNT_ATTR_NODEV, 0),
        "rdev" => (0, MOUNT_ATTR_NODEV),
        "rnoexec" => (MOUNT_ATTR_NOEXEC, 0),
        "rexec" => (0, MOUNT_ATTR_NOEXEC),
        "rnodiratime" => (MOUNT_ATTR_NODIRATIME, 0),
        "rdiratime" => (0, MOUNT_ATTR_NODIRATIME),
        "rnosymfollow" => (MOUNT_ATTR_NOSYMFOLLOW, 0),
        "rsymfollow" => (0, MOUNT_ATTR_NOSYMFOLLOW),
        // The atime modes are one field: setting one means clearing the field.
        "rrelatime" | "ratime" | "rnostrictatime" => atime(MOUNT_ATTR_RELATIME),
        "rnoatime" => atime(MOUNT_ATTR_NOATIME),
        "rstrictatime" | "rnorelatime" => atime(MOUNT_ATTR_STRICTATIME),
        _ => return None,
    })
}

pub fn known_mount_option(o: &str) -> bool {
    flag_option(o).is_some()
        || propagation_flag(o).is_some()
        || recursive_option(o).is_some()
        || matches!(o, "idmap" | "ridmap" | "tmpcopyup")
        || unsupported_option(o)
}

/// A mount's options split into flags, clear-flags, propagation and data.
#[derive(Debug, Default)]
pub struct Options {
    pub flags: libc::c_ulong,
    pub clear: libc::c_ulong,
    pub propagation: Vec<libc::c_ulong>,
    pub data: Vec<String>,
    /// Recursive attributes (rro, rnosuid, ...): set and clear.
    pub rec_set: u64,
    pub rec_clr: u64,
    /// `idmap` (false) or `ridmap` (true).
    pub idmap: Option<bool>,
    /// `tmpcopyup`: a tmpfs starts with what the image has at its place.
    pub copy_up: bool,
}

impl Options {
    pub fn recursive_attrs(&self) -> bool {
        self.rec_set != 0 || self.rec_clr != 0
    }
}

pub fn parse_options(opts: &[String]) -> Result<Options> {
    let mut o = Options::default();
    for s in opts {
        if unsupported_option(s) {
            return Err(crate::config::ConfigError::Unsupported { setting: format!("mount option {s:?}") }.into());
        }
        if let Some((set, clear)) = recursive_option(s) {
            o.rec_set = (o.rec_set & !clear) | set;
            o.rec_clr = (o.rec_clr & !set) | clear;
        } else if s == "tmpcopyup" {
            o.copy_up = true;
        } else if s == "idmap" || s == "ridmap" {
            o.idmap = Some(s == "ridmap" || o.idmap == Some(true));
        } else if let Some((set, clear)) = flag_option(s) {
            o.flags = (o.flags & !clear) | set;
            o.clear = (o.clear & !set) | clear;
        } else if let Some(p) = propagation_flag(s) {
            o.propagation.push(p);
        } else {
            o.data.push(s.clone());
        }
    }
    Ok(o)
}
