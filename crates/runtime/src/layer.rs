//! Ephemeral writable layers: the container's root is an overlay of a
//! writable directory (in berth's storage, on a real filesystem) over the
//! bundle's rootfs and any further read-only layers, mounted `volatile`
//! inside the container's mount namespace only. Exit therefore costs no
//! sync: the overlay goes away with the namespace, and the directory is
//! handed to the reaper (reaper.rs) to be deleted in the background.
//!
//! Asked for with the annotation `run.berth.layer` (`ephemeral`, or `keep`
//! to keep the writable directory after the container) or `create/run
//! --ephemeral-layer`; `run.berth.layer.lowers` adds read-only layers
//! (':'-separated, uppermost first) under the rootfs.

use crate::config::Spec;
use crate::error::Context;
use crate::Result;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

pub const ANNOTATION: &str = "run.berth.layer";
pub const ANNOTATION_LOWERS: &str = "run.berth.layer.lowers";
pub const DEFAULT_STORAGE: &str = "/var/lib/berth";

/// A container's writable layer, as kept in its state.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Layer {
    /// `<storage>/layers/<id>.<nonce>`, holding `upper` and `work`.
    pub dir: PathBuf,
    /// Read-only layers, uppermost first: the rootfs, then the extra ones.
    pub lowers: Vec<PathBuf>,
    /// Keep `dir` after the container (annotation value `keep`).
    #[serde(default)]
    pub keep: bool,
}

/// The layer the config (or the flag) asks for, not made yet.
pub fn requested(spec: &Spec, flag: bool, storage: &Path, root: &Path, id: &str, rootfs: &Path) -> Result<Option<Layer>> {
    let mode = spec.annotations.get(ANNOTATION).map(String::as_str);
    let keep = match (mode, flag) {
        (None, false) => return Ok(None),
        (None, true) | (Some("ephemeral"), _) => false,
        (Some("keep"), _) => true,
        (Some(other), _) => return Err(crate::config::invalid(ANNOTATION, format!("{other:?} is neither \"ephemeral\" nor \"keep\""))),
    };
    if !storage.is_absolute() {
        return Err(crate::config::invalid("--storage", format!("{} must be an absolute path", storage.display())));
    }
    let mut lowers = vec![rootfs.to_path_buf()];
    if let Some(extra) = spec.annotations.get(ANNOTATION_LOWERS).filter(|s| !s.is_empty()) {
        for l in extra.split(':') {
            let p = PathBuf::from(l);
            if !p.is_absolute() || !p.is_dir() {
                return Err(crate::config::invalid(ANNOTATION_LOWERS, format!("{l:?} is not an absolute path to a directory")));
            }
            lowers.push(p);
        }
    }
    for p in &lowers {
        let s = p.to_string_lossy();
        if s.contains(',') || s.contains(':') || s.contains('\\') {
            return Err(crate::config::invalid(
                ANNOTATION,
                format!("the path {s:?} has a character overlayfs options cannot carry (, : \\)"),
            ));
        }
    }
    // Never on the filesystem of --root (a tmpfs on real hosts: the layer
    // would live in memory and vanish at reboot under berth's feet).
    std::fs::create_dir_all(storage.join("layers")).ctx_at("create storage", storage)?;
    {
        use std::os::unix::fs::MetadataExt;
        let a = std::fs::metadata(storage).ctx_at("storage", storage)?;
        let b = std::fs::metadata(root).ctx_at("root", root)?;
        if a.dev() == b.dev() && sys_is_tmpfs(root) {
            return Err(crate::config::invalid(
                "--storage",
                format!("{} is on the tmpfs of --root {}: the writable layer needs a real filesystem", storage.display(), root.display()),
            ));
        }
    }
    let nonce = format!("{:x}", std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0));
    let dir = storage.join("layers").join(format!("{id}.{nonce}"));
    let s = dir.to_string_lossy();
    if s.contains(',') || s.contains(':') {
        return Err(crate::config::invalid("--storage", format!("{}: overlayfs options cannot carry this path", storage.display())));
    }
    Ok(Some(Layer { dir, lowers, keep }))
}

fn sys_is_tmpfs(p: &Path) -> bool {
    berth_sys::statfs_type(p).map(|t| t == 0x0102_1994).unwrap_or(false)
}

impl Layer {
    /// Makes the writable and work directories.
    pub fn make(&self) -> Result<()> {
        for d in ["upper", "work"] {
            std::fs::create_dir_all(self.dir.join(d)).ctx_at("create", self.dir.join(d))?;
        }
        Ok(())
    }

    /// The overlay's mount data.
    pub fn mount_data(&self) -> String {
        let lower: Vec<String> = self.lowers.iter().map(|p| p.to_string_lossy().into_owned()).collect();
        format!(
            "lowerdir={},upperdir={},workdir={},volatile",
            lower.join(":"),
            self.dir.join("upper").display(),
            self.dir.join("work").display()
        )
    }
}
