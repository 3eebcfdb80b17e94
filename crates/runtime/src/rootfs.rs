//! The container's root filesystem, built inside its new mount namespace:
//! mounts from config.json, /dev, the console, pivot_root, masked and
//! read-only paths.
//!
//! Every destination is resolved inside the rootfs with
//! `openat2(RESOLVE_IN_ROOT)`, so a symlink in the rootfs that points out
//! (`/etc -> /host/etc`, `../../..`) resolves inside it. The mount then goes
//! onto the opened fd through `/proc/self/fd/N`, never through a path that
//! could be swapped.

use crate::config::mount_options::{parse_options, propagation_flag, Options};
use crate::config::{Mount, Spec};
use crate::error::Context;
use crate::{Result, RuntimeError};
use berth_sys as sys;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::path::{Component, Path, PathBuf};

/// A step on the container's root that is neither a config error nor a
/// plain I/O failure.
#[derive(Debug, thiserror::Error)]
pub enum RootfsError {
    /// Something keeps mounting on the rootfs while it is detached.
    #[error("{}: mounts keep appearing on the rootfs", rootfs.display())]
    MountsKeepAppearing { rootfs: PathBuf },
}

/// What the container setup needs besides the config.
#[derive(Debug)]
pub struct Plan<'a> {
    pub spec: &'a Spec,
    pub rootfs: &'a Path,
    pub cgroup: &'a berth_cgroups::Cgroup,
    pub cgroup_layout: &'a berth_cgroups::Layout,
    pub userns: bool,
    pub new_cgroupns: bool,
    pub no_pivot: bool,
    /// Detached idmapped mounts made by the parent, by index in `mounts`.
    pub idmapped: &'a [(usize, OwnedFd)],
    /// The ephemeral writable layer's overlay mount data: mounted over the
    /// rootfs in this namespace only, instead of binding the rootfs.
    pub layer: Option<&'a str>,
    /// No mount namespace of its own: the mounts are made in the caller's
    /// namespace, on a bind of the rootfs that teardown detaches whole, and
    /// the process is chrooted (no pivot_root, no propagation changed).
    pub host_ns: bool,
}

/// The rootfs, opened once; paths inside it resolve with RESOLVE_IN_ROOT.
#[derive(Debug)]
pub struct Root {
    pub fd: OwnedFd,
}

fn rel(p: &str) -> PathBuf {
    let mut out = PathBuf::new();
    for c in Path::new(p).components() {
        if let Component::Normal(n) = c {
            out.push(n)
        }
    }
    out
}

impl Root {
    pub fn open(path: &Path) -> Result<Root> {
        let fd = sys::openat(None, path, libc::O_PATH | libc::O_DIRECTORY, 0).ctx_at("open rootfs", path)?;
        Ok(Root { fd })
    }

    /// Opens `p` inside the root (O_PATH).
    pub fn open_in(&self, p: &Path, flags: i32) -> std::io::Result<OwnedFd> {
        sys::openat2(self.fd.as_fd(), p, flags, 0, sys::RESOLVE_IN_ROOT | sys::RESOLVE_NO_MAGICLINKS)
    }

    /// Resolves `p` inside the root component by component, following
    /// symlinks the way RESOLVE_IN_ROOT does (absolute targets and `..`
    /// stop at the root), but also through dangling links, so that the
    /// missing parts can then be created where the link points.
    pub fn resolve(&self, p: &Path) -> Result<PathBuf> {
        use std::collections::VecDeque;
        use std::ffi::OsString;
        let parts = |p: &Path| -> VecDeque<OsString> {
            p.components()
                .filter_map(|c| match c {
                    Component::Normal(n) => Some(n.to_os_string()),
                    Component::ParentDir => Some(OsString::from("..")),
                    _ => None,
                })
                .collect()
        };
        let mut todo = parts(p);
        let mut cur = PathBuf::new();
        let mut links = 0;
        while let Some(c) = todo.pop_front() {
            if c == ".." {
                cur.pop();
                continue;
            }
            let dir = if cur.as_os_str().is_empty() { Path::new(".") } else { cur.as_path() };
            let target = match self.open_in(dir, libc::O_PATH | libc::O_DIRECTORY) {
                Ok(d) => std::fs::read_link(sys::fd_path(d.as_fd()).join(&c)).ok(),
                Err(_) => None, // a missing directory holds no symlink
            };
            match target {
                Some(t) => {
                    links += 1;
                    if links > 40 {
                        return Err(crate::config::invalid(
                            "root.path",
                            format!("too many symlinks resolving /{} in the rootfs", p.display()),
                        ));
                    }
                    if t.is_absolute() {
                        cur = PathBuf::new();
                    }
                    let mut next = parts(&t);
                    next.extend(todo);
                    todo = next;
                }
                None => cur.push(c),
            }
        }
        Ok(cur)
    }

    /// Creates every missing directory of `p` inside the root, then opens it.
    pub fn mkdir_all(&self, p: &Path, mode: u32) -> Result<OwnedFd> {
        let p = self.resolve(p)?;
        let mut cur = PathBuf::new();
        let mut dir = self.open_in(Path::new("."), libc::O_PATH | libc::O_DIRECTORY).ctx("open rootfs")?;
        for c in p.components() {
            let Component::Normal(name) = c else { continue };
            cur.push(name);
            dir = match self.open_in(&cur, libc::O_PATH | libc::O_DIRECTORY) {
                Ok(d) => d,
                Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {
                    // Created through the parent's fd, then reopened with
                    // RESOLVE_IN_ROOT: a link swapped in meanwhile stays inside.
                    let parent = self
                        .open_in(
                            cur.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or_else(|| Path::new(".")),
                            libc::O_RDONLY | libc::O_DIRECTORY,
                        )
                        .map_err(|e| RuntimeError::io_at("open", Path::new("/").join(&cur), e))?;
                    match sys::mkdirat(parent.as_fd(), Path::new(name), mode) {
                        Ok(()) => {}
                        Err(e) if e.raw_os_error() == Some(libc::EEXIST) => {}
                        Err(e) => return Err(RuntimeError::io_at("mkdir in the rootfs", Path::new("/").join(&cur), e)),
                    }
                    self.open_in(&cur, libc::O_PATH | libc::O_DIRECTORY)
                        .map_err(|e| RuntimeError::io_at("open in the rootfs", Path::new("/").join(&cur), e))?
                }
                Err(e) => return Err(RuntimeError::io_at("open in the rootfs", Path::new("/").join(&cur), e)),
            };
        }
        Ok(dir)
    }

    /// Creates a file `p` (and its parents) inside the root unless it exists; opens it.
    pub fn mkfile(&self, p: &Path) -> Result<OwnedFd> {
        if let Ok(fd) = self.open_in(p, libc::O_PATH) {
            return Ok(fd);
        }
        let p = self.resolve(p)?;
        let parent = p.parent().unwrap_or_else(|| Path::new(""));
        let name = p.file_name().ok_or_else(|| crate::config::invalid("mounts", format!("bad path {}", p.display())))?;
        let pd = self.mkdir_all(parent, 0o755)?;
        let pd = sys::openat(Some(pd.as_fd()), Path::new("."), libc::O_RDONLY | libc::O_DIRECTORY, 0).ctx("reopen dir")?;
        match sys::mknodat(pd.as_fd(), Path::new(name), libc::S_IFREG | 0o644, 0) {
            Ok(()) => {}
            Err(e) if e.raw_os_error() == Some(libc::EEXIST) => {}
            Err(e) => return Err(RuntimeError::io_at("create in the rootfs", Path::new("/").join(&p), e)),
        }
        self.open_in(&p, libc::O_PATH).map_err(|e| RuntimeError::io_at("open in the rootfs", Path::new("/").join(&p), e))
    }
}

fn mount_at(
    src: Option<&Path>,
    target: BorrowedFd<'_>,
    fstype: Option<&str>,
    flags: libc::c_ulong,
    data: Option<&str>,
) -> std::io::Result<()> {
    sys::mount(src, &sys::fd_path(target), fstype, flags, data)
}

/// Remounts a bind mount with `flags`, keeping the flags the kernel locks
/// in a user namespace (nosuid, nodev, noexec, ro, atime) when it insists.
fn remount_bind(target: BorrowedFd<'_>, flags: libc::c_ulong) -> std::io::Result<()> {
    let path = sys::fd_path(target);
    let base = libc::MS_BIND | libc::MS_REMOUNT;
    match sys::mount(None, &path, None, base | flags, None) {
        Err(e) if e.raw_os_error() == Some(libc::EPERM) => {
            let st = sys::statvfs_flags(&path)?;
            let mut keep = 0;
            for (s, m) in [
                (libc::ST_NOSUID, libc::MS_NOSUID),
                (libc::ST_NODEV, libc::MS_NODEV),
                (libc::ST_NOEXEC, libc::MS_NOEXEC),
                (libc::ST_RDONLY, libc::MS_RDONLY),
                (libc::ST_NOATIME, libc::MS_NOATIME),
                (libc::ST_NODIRATIME, libc::MS_NODIRATIME),
                (libc::ST_RELATIME, libc::MS_RELATIME),
            ] {
                if st & s != 0 {
                    keep |= m;
                }
            }
            sys::mount(None, &path, None, base | flags | keep, None)
        }
        r => r,
    }
}

/// Builds the rootfs and switches into it. Runs in the container's new mount
/// namespace, before the user switch. Returns the pty master when the process
/// has a terminal (to be sent over the console socket).
pub fn setup(plan: &Plan<'_>) -> Result<Option<(OwnedFd, OwnedFd)>> {
    let spec = plan.spec;
    let l = spec.linux();
    if plan.host_ns {
        if plan.layer.is_some() {
            return Err(crate::config::invalid(
                crate::layer::ANNOTATION,
                "an ephemeral layer needs a mount namespace of the container's own",
            ));
        }
    } else {
        // Nothing done here may propagate back to the host.
        let root_prop = l.rootfs_propagation.as_deref().and_then(propagation_flag).unwrap_or(libc::MS_SLAVE | libc::MS_REC);
        sys::mount(None, Path::new("/"), None, root_prop | libc::MS_REC, None).ctx("make / a slave mount")?;
        make_parent_private(plan.rootfs, l.rootfs_propagation.is_some())?;
    }
    match plan.layer {
        // volatile: no sync of the upper filesystem when it is unmounted.
        Some(data) => sys::mount(Some(Path::new("overlay")), plan.rootfs, Some("overlay"), 0, Some(data))
            .ctx_at("mount the ephemeral layer on", plan.rootfs)?,
        None => sys::mount(Some(plan.rootfs), plan.rootfs, None, libc::MS_BIND | libc::MS_REC, None).ctx_at("bind rootfs", plan.rootfs)?,
    }
    let root = Root::open(plan.rootfs)?;

    let dev_is_bind = spec.mounts.iter().any(|m| m.destination == "/dev" && m.options.iter().any(|o| o == "bind" || o == "rbind"));
    for (i, m) in spec.mounts.iter().enumerate() {
        let idmapped = plan.idmapped.iter().find(|(j, _)| *j == i).map(|(_, fd)| fd.as_fd());
        mount_one(plan, &root, m, idmapped)?;
    }
    if !dev_is_bind {
        setup_dev(plan, &root)?;
    }
    let pty = if spec.process.as_ref().is_some_and(|p| p.terminal) { Some(console(plan, &root)?) } else { None };
    // A read-only /dev (runc issue 3248) is mounted writable for the
    // devices, the symlinks and /dev/pts to be made in it, then made
    // read-only with the rest of its flags.
    if let Some(m) = spec.mounts.iter().find(|m| m.destination == "/dev" && m.kind.as_deref() == Some("tmpfs")) {
        let o = parse_options(&m.options)?;
        if o.flags & libc::MS_RDONLY != 0 {
            let t = root.open_in(Path::new("dev"), libc::O_PATH | libc::O_DIRECTORY).ctx("open /dev")?;
            remount_bind(t.as_fd(), o.flags & !(libc::MS_REMOUNT | libc::MS_BIND | libc::MS_REC)).ctx("make /dev read-only")?;
        }
    }

    if plan.host_ns {
        // The caller's namespace stays as it is: only a chroot.
        std::env::set_current_dir(plan.rootfs).ctx_at("chdir", plan.rootfs)?;
        sys::chroot(Path::new(".")).ctx("chroot")?;
        std::env::set_current_dir("/").ctx("chdir /")?;
        return Ok(pty);
    }
    if plan.no_pivot {
        move_root(plan.rootfs)?;
    } else {
        pivot(plan.rootfs)?;
    }
    if let Some(prop) = l.rootfs_propagation.as_deref().and_then(propagation_flag) {
        sys::mount(None, Path::new("/"), None, prop, None).ctx("set rootfsPropagation")?;
    }
    Ok(pty)
}

/// Without pivot_root the rest of the namespace stays below the chroot, and
/// the kernel lets a process mount a new procfs or sysfs where a full one
/// (its root mounted, nothing locked over it) is in the namespace: the
/// host's /proc copy would do, and expose what maskedPaths hide. Every full
/// procfs and sysfs outside the rootfs is detached here (in this namespace
/// only: made a slave first), or covered by an empty read-only tmpfs where
/// it cannot be detached.
fn hide_full_pseudo_filesystems(rootfs: &Path) -> Result<()> {
    let text = std::fs::read_to_string("/proc/self/mountinfo").ctx("read mountinfo")?;
    let mut full: Vec<PathBuf> = sys::mountinfo::parse(&text)
        .into_iter()
        .filter(|m| m.root == "/" && matches!(m.fs_type.as_str(), "proc" | "sysfs") && !m.mount_point.starts_with(rootfs))
        .map(|m| m.mount_point)
        .collect();
    // Deepest first: a detached parent takes its children along.
    full.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
    for p in full {
        match sys::mount(None, &p, None, libc::MS_SLAVE | libc::MS_REC, None) {
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => continue, // went with a parent
            r => r.ctx_at("make a slave before hiding it", &p)?,
        }
        if sys::umount2(&p, libc::MNT_DETACH).is_err() {
            sys::mount(Some(Path::new("tmpfs")), &p, Some("tmpfs"), libc::MS_RDONLY, Some("size=0")).ctx_at("cover", &p)?;
        }
    }
    Ok(())
}

/// After pivot: sysctls, then masked and read-only paths, then a read-only root.
pub fn finish(spec: &Spec) -> Result<()> {
    let l = spec.linux();
    if !l.sysctl.is_empty() {
        let proc = ProcHandle::open()?;
        for (k, v) in &l.sysctl {
            proc.write(&PathBuf::from("sys").join(k.replace('.', "/")), v).ctx_of("set sysctl", k)?;
        }
    }
    let root = Root::open(Path::new("/"))?;
    for p in &l.readonly_paths {
        let r = rel(p);
        let Some(fd) = open_listed_path(&root, &r, "readonlyPaths", p)? else { continue };
        let path = sys::fd_path(fd.as_fd());
        sys::mount(Some(&path), &path, None, libc::MS_BIND | libc::MS_REC, None).ctx_of("bind readonly path", p)?;
        let fd = root.open_in(&r, libc::O_PATH | libc::O_NOFOLLOW).ctx_of("reopen readonly path", p)?;
        remount_bind(fd.as_fd(), libc::MS_RDONLY | libc::MS_REC | libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC)
            .or_else(|_| remount_bind(fd.as_fd(), libc::MS_RDONLY | libc::MS_REC))
            .ctx_at("make read-only", p)?;
    }
    // Files are masked with the container's /dev/null, once it is checked
    // to be the null device: an image whose /dev/null is a symlink or a
    // file of its own would otherwise be bound over them (CVE-2025-31133).
    // Directories are all covered by one empty read-only tmpfs: mounted on
    // the first, bound from it onto the others (a superblock per masked
    // directory made start and stop contend on the kernel's shrinker lock
    // at scale). The source is that tmpfs's root, held by fd, whatever is
    // mounted over its path later.
    let mut null: Option<OwnedFd> = None;
    let mut empty: Option<OwnedFd> = None;
    for p in &l.masked_paths {
        let r = rel(p);
        let Some(fd) = open_listed_path(&root, &r, "maskedPaths", p)? else { continue };
        let st = sys::fstat(fd.as_fd()).ctx_of("stat masked path", p)?;
        if st.st_mode & libc::S_IFMT == libc::S_IFDIR {
            if let Some(src) = &empty {
                mount_at(Some(&sys::fd_path(src.as_fd())), fd.as_fd(), None, libc::MS_BIND, None).ctx_of("mask", p)?;
                continue;
            }
            mount_at(Some(Path::new("tmpfs")), fd.as_fd(), Some("tmpfs"), libc::MS_RDONLY, Some("size=0k")).ctx_of("mask", p)?;
            empty = Some(root.open_in(&r, libc::O_PATH | libc::O_NOFOLLOW | libc::O_DIRECTORY).ctx_of("reopen masked path", p)?);
        } else {
            if null.is_none() {
                null = Some(real_dev_null(&root)?);
            }
            let src = sys::fd_path(null.as_ref().map(|n| n.as_fd()).expect("just set"));
            mount_at(Some(&src), fd.as_fd(), None, libc::MS_BIND, None).ctx_of("mask", p)?;
        }
    }
    if spec.root.as_ref().is_some_and(|r| r.readonly) {
        let fd = root.open_in(Path::new("."), libc::O_PATH).ctx("open /")?;
        remount_bind(fd.as_fd(), libc::MS_RDONLY).ctx("make the root filesystem read-only")?;
    }
    Ok(())
}

/// Opens a path of maskedPaths or readonlyPaths inside the root, with no
/// symlink followed at its last component; `None` when it does not exist.
fn open_listed_path(root: &Root, r: &Path, list: &'static str, p: &str) -> Result<Option<OwnedFd>> {
    let fd = match root.open_in(r, libc::O_PATH | libc::O_NOFOLLOW) {
        Ok(fd) => fd,
        Err(e) if e.raw_os_error() == Some(libc::ENOENT) => return Ok(None),
        Err(e) => return Err(RuntimeError::io_at(list, p, e)),
    };
    if sys::fstat(fd.as_fd()).ctx_at(list, p)?.st_mode & libc::S_IFMT == libc::S_IFLNK {
        return Err(crate::config::invalid(list, format!("{p} is a symlink in the container; refusing to follow it")));
    }
    Ok(Some(fd))
}

/// The container's /dev/null, opened with no symlink followed and checked
/// to be the character device 1:3.
fn real_dev_null(root: &Root) -> Result<OwnedFd> {
    let fd = root.open_in(Path::new("dev/null"), libc::O_PATH | libc::O_NOFOLLOW).ctx("maskedPaths: open /dev/null in the container")?;
    let st = sys::fstat(fd.as_fd()).ctx("maskedPaths: stat /dev/null")?;
    if st.st_mode & libc::S_IFMT != libc::S_IFCHR || Some(st.st_rdev) != sys::makedev(1, 3) {
        return Err(crate::config::invalid(
            "linux.maskedPaths",
            "/dev/null in the container is not the null device (char 1:3); refusing to mask with it",
        ));
    }
    Ok(fd)
}

/// A procfs that berth opened itself, for writes under /proc: a fresh
/// detached instance where the mount API allows one, else the container's
/// /proc checked to be the root of a real procfs mount. Paths under it
/// resolve with no mount crossed and no symlink followed, so neither the
/// image nor a volume mounted over a /proc file can redirect a write (the
/// CVE-2025-52881 class).
#[derive(Debug)]
pub struct ProcHandle(OwnedFd);

impl ProcHandle {
    pub fn open() -> Result<ProcHandle> {
        if let Ok(fd) = sys::fresh_procfs() {
            return Ok(ProcHandle(fd));
        }
        let root = Root::open(Path::new("/"))?;
        let fd = root.open_in(Path::new("proc"), libc::O_PATH | libc::O_DIRECTORY | libc::O_NOFOLLOW).ctx("open /proc")?;
        const PROC_SUPER_MAGIC: i64 = 0x9fa0;
        let real = sys::fstatfs_type(fd.as_fd()).ctx("statfs /proc")? == PROC_SUPER_MAGIC && sys::is_mount_root(fd.as_fd()).unwrap_or(true);
        if !real {
            return Err(crate::config::invalid(
                "linux.sysctl",
                "/proc in the container is not the root of a procfs mount: refusing to write under it",
            ));
        }
        Ok(ProcHandle(fd))
    }

    /// Writes `value` to the file at `rel` under this procfs.
    pub fn write(&self, rel: &Path, value: &str) -> std::io::Result<()> {
        let how = sys::RESOLVE_BENEATH | sys::RESOLVE_NO_XDEV | sys::RESOLVE_NO_SYMLINKS | sys::RESOLVE_NO_MAGICLINKS;
        let fd = sys::openat2(self.0.as_fd(), rel, libc::O_WRONLY | libc::O_NOFOLLOW, 0, how)?;
        std::io::Write::write_all(&mut std::fs::File::from(fd), value.as_bytes())
    }
}

/// pivot_root requires that the rootfs' parent mount is not shared.
fn make_parent_private(rootfs: &Path, always: bool) -> Result<()> {
    let mi = std::fs::read_to_string("/proc/self/mountinfo").ctx("read mountinfo")?;
    let mut best: Option<(PathBuf, bool)> = None;
    for m in sys::mountinfo::parse(&mi) {
        let mp = m.mount_point.clone();
        if rootfs.starts_with(&mp) && best.as_ref().is_none_or(|(b, _)| mp.as_os_str().len() >= b.as_os_str().len()) {
            best = Some((mp, m.group("shared").is_some()));
        }
    }
    if let Some((mp, shared)) = best.filter(|(_, shared)| *shared || always) {
        let _ = shared;
        sys::mount(None, &mp, None, libc::MS_PRIVATE, None).ctx_at("make private", &mp)?;
    }
    Ok(())
}

fn mount_one(plan: &Plan<'_>, root: &Root, m: &Mount, idmapped: Option<BorrowedFd<'_>>) -> Result<()> {
    let dest = rel(&m.destination);
    let kind = m.kind.as_deref().unwrap_or("");
    let o = parse_options(&m.options)?;
    let is_bind = o.flags & libc::MS_BIND != 0 || kind == "bind";
    if kind == "cgroup" {
        return mount_cgroup(plan, root, m, &dest, &o);
    }
    let data = (!o.data.is_empty()).then(|| o.data.join(","));
    let target = if is_bind {
        let src =
            m.source.as_deref().ok_or_else(|| crate::config::invalid("mounts", format!("bind mount {} has no source", m.destination)))?;
        let sp = Path::new(src);
        // A source the parent opened (idmapped, or for a user namespace) is
        // looked at through that fd: the path may be out of reach here.
        let is_dir = match idmapped {
            Some(tree) => sys::fstat(tree).ctx_of("bind mount source", src)?.st_mode & libc::S_IFMT == libc::S_IFDIR,
            None => std::fs::metadata(sp).ctx_of("bind mount source", src)?.is_dir(),
        };
        let target = if is_dir { root.mkdir_all(&dest, 0o755)? } else { root.mkfile(&dest)? };
        match idmapped {
            Some(tree) => sys::move_mount_fd(tree, target.as_fd()).ctx_onto("move the idmapped mount of", src, &m.destination)?,
            None => mount_at(Some(sp), target.as_fd(), None, libc::MS_BIND | (o.flags & libc::MS_REC), None).ctx_onto(
                "bind",
                src,
                &m.destination,
            )?,
        }
        let extra = o.flags & !(libc::MS_BIND | libc::MS_REC | libc::MS_REMOUNT);
        if extra != 0 {
            // Reopen: the fd above names the directory under the new mount.
            let t = root.open_in(&dest, libc::O_PATH).ctx_at("open", &m.destination)?;
            remount_bind(t.as_fd(), extra | (o.flags & libc::MS_REC)).ctx_at("remount with its options", &m.destination)?;
        }
        target
    } else {
        // tmpcopyup: the image's directory, still reachable through this fd
        // once the tmpfs covers it.
        let under = if o.copy_up && kind == "tmpfs" { root.open_in(&dest, libc::O_RDONLY | libc::O_DIRECTORY).ok() } else { None };
        // procfs and sysfs go on a directory of the image, never through a
        // symlink it put there (runc's rule and words).
        if matches!(kind, "proc" | "sysfs") {
            if let Ok(fd) = root.open_in(&dest, libc::O_PATH | libc::O_NOFOLLOW) {
                if sys::fstat(fd.as_fd()).is_ok_and(|st| st.st_mode & libc::S_IFMT == libc::S_IFLNK) {
                    return Err(crate::config::invalid("mounts", format!("filesystem {kind:?} must be mounted on ordinary directory")));
                }
            }
        }
        // A read-only /dev is made read-only once its contents exist (setup).
        let later = if m.destination == "/dev" && kind == "tmpfs" { libc::MS_RDONLY } else { 0 };
        let target = root.mkdir_all(&dest, 0o755)?;
        let src = m.source.as_deref().unwrap_or(kind);
        let fstype = if kind.is_empty() { None } else { Some(kind) };
        let r = mount_at(Some(Path::new(src)), target.as_fd(), fstype, o.flags & !(libc::MS_REMOUNT | later), data.as_deref());
        match r {
            Err(e) if kind == "sysfs" && e.raw_os_error() == Some(libc::EPERM) && plan.userns => {
                // A user namespace without its own network namespace may not
                // mount sysfs: bind the host's, as runc does.
                mount_at(Some(Path::new("/sys")), target.as_fd(), None, libc::MS_BIND | libc::MS_REC, None).ctx("bind /sys")?;
            }
            Err(e) if kind == "mqueue" && e.raw_os_error() == Some(libc::EPERM) && plan.userns => {
                mount_at(Some(Path::new("/dev/mqueue")), target.as_fd(), None, libc::MS_BIND, None).ctx("bind /dev/mqueue")?;
            }
            r => r.ctx_at("mount on", &m.destination)?,
        }
        if let Some(from) = under {
            let to = root.open_in(&dest, libc::O_RDONLY | libc::O_DIRECTORY).ctx_at("open", &m.destination)?;
            copy_tree(&sys::fd_path(from.as_fd()), &sys::fd_path(to.as_fd())).ctx_at("tmpcopyup into", &m.destination)?;
            // The tmpfs root takes the directory's owner and mode too.
            let st = sys::fstat(from.as_fd()).ctx_at("stat", &m.destination)?;
            std::os::unix::fs::chown(sys::fd_path(to.as_fd()), Some(st.st_uid), Some(st.st_gid)).ctx_at("chown", &m.destination)?;
            std::fs::set_permissions(sys::fd_path(to.as_fd()), std::os::unix::fs::PermissionsExt::from_mode(st.st_mode & 0o7777))
                .ctx_at("chmod", &m.destination)?;
        }
        target
    };
    for p in &o.propagation {
        let t = root.open_in(&dest, libc::O_PATH).ctx_at("open", &m.destination)?;
        mount_at(None, t.as_fd(), None, *p, None).ctx_at("set propagation of", &m.destination)?;
    }
    if o.recursive_attrs() {
        let t = root.open_in(&dest, libc::O_PATH).ctx_at("open", &m.destination)?;
        let attr = sys::MountAttr { attr_set: o.rec_set, attr_clr: o.rec_clr, ..Default::default() };
        sys::mount_setattr(t.as_fd(), true, &attr).ctx_at("set recursive mount attributes of", &m.destination)?;
    }
    drop(target);
    Ok(())
}

/// Copies the tree under `from` into `to`, keeping owners, modes and
/// symlinks (never followed), and recreating device nodes and fifos.
fn copy_tree(from: &Path, to: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
    for e in std::fs::read_dir(from)? {
        let e = e?;
        let (src, dst) = (e.path(), to.join(e.file_name()));
        let md = std::fs::symlink_metadata(&src)?;
        let ft = md.file_type();
        if ft.is_symlink() {
            std::os::unix::fs::symlink(std::fs::read_link(&src)?, &dst)?;
        } else if ft.is_dir() {
            std::fs::create_dir(&dst)?;
            copy_tree(&src, &dst)?;
        } else if ft.is_file() {
            std::fs::copy(&src, &dst)?;
        } else if ft.is_socket() {
            continue;
        } else if ft.is_block_device() || ft.is_char_device() || ft.is_fifo() {
            let dir = sys::openat(None, to, libc::O_PATH | libc::O_DIRECTORY, 0)?;
            sys::mknodat(dir.as_fd(), Path::new(&e.file_name()), md.mode(), md.rdev())?;
        }
        std::os::unix::fs::lchown(&dst, Some(md.uid()), Some(md.gid()))?;
        if !ft.is_symlink() {
            std::fs::set_permissions(&dst, std::fs::Permissions::from_mode(md.mode() & 0o7777))?;
        }
    }
    Ok(())
}

/// Detaches what a container without a mount namespace mounted in the
/// caller's namespace: every mount stacked on the rootfs since `base` (the
/// ID of the mount the rootfs was on before create), with all it holds.
/// Mounts older than `base`'s are the caller's and stay.
pub fn detach_host_mounts(rootfs: &Path, base: u64) -> Result<()> {
    for _ in 0..64 {
        match sys::mount_id(rootfs) {
            Ok((unique, id)) if id != base && (!unique || id > base) => {
                sys::umount2(rootfs, libc::MNT_DETACH).ctx_at("detach the container's mounts on", rootfs)?;
            }
            Ok(_) => return Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(RuntimeError::io_at("mount id of", rootfs, e)),
        }
    }
    Err(RootfsError::MountsKeepAppearing { rootfs: rootfs.to_path_buf() }.into())
}

/// The `/proc/PID/uid_map` text of a list of mappings.
pub(crate) fn map_text(maps: &[crate::config::IdMapping]) -> String {
    maps.iter().map(|m| format!("{} {} {}\n", m.container_id, m.host_id, m.size)).collect()
}

/// Idmapped bind mounts, made on the host side before the container's
/// process exists (setting an idmap needs privilege over the filesystem's
/// user namespace, which a process in the container's may not have):
/// a detached copy of each source with the mount's mappings (or, for a
/// bare `idmap` option, the container's), moved into place by the init.
pub fn prepare_idmapped(spec: &Spec) -> Result<Vec<(usize, OwnedFd)>> {
    let mut out = Vec::new();
    let l = spec.linux();
    let new_userns = spec.namespace("user").is_some_and(|n| n.path.as_deref().unwrap_or("").is_empty());
    for (i, m) in spec.mounts.iter().enumerate() {
        let o = parse_options(&m.options)?;
        let has_maps = !m.uid_mappings.is_empty() || !m.gid_mappings.is_empty();
        let is_bind = o.flags & libc::MS_BIND != 0 || m.kind.as_deref() == Some("bind");
        if o.idmap.is_none() && !has_maps {
            // In a new user namespace the container's root may not reach a
            // bind source (a directory only the host's root may search): it
            // is opened here, as the host's root, as runc does, and the
            // child moves that detached copy into place.
            if new_userns && is_bind {
                if let Some(src) = m.source.as_deref() {
                    let tree = sys::open_tree_clone(Path::new(src), o.flags & libc::MS_REC != 0).ctx_onto(
                        "open the bind mount source",
                        src,
                        &m.destination,
                    )?;
                    out.push((i, tree));
                }
            }
            continue;
        }
        let (uids, gids) = if has_maps { (&m.uid_mappings, &m.gid_mappings) } else { (&l.uid_mappings, &l.gid_mappings) };
        if uids.is_empty() || gids.is_empty() {
            return Err(crate::config::invalid(
                "mounts",
                format!(
                    "idmapped mount {}: needs both uidMappings and gidMappings (on the mount, or the container's user namespace mappings)",
                    m.destination
                ),
            ));
        }
        if !is_bind {
            return Err(crate::config::invalid("mounts", format!("idmapped mount {}: only bind mounts can be idmapped", m.destination)));
        }
        let src =
            m.source.as_deref().ok_or_else(|| crate::config::invalid("mounts", format!("bind mount {} has no source", m.destination)))?;
        let recursive_tree = o.flags & libc::MS_REC != 0;
        let tree = sys::open_tree_clone(Path::new(src), recursive_tree).ctx_onto("open_tree for an idmapped mount", src, &m.destination)?;
        let ns = sys::new_userns(&map_text(uids), &map_text(gids)).ctx_at("user namespace for idmapped mount", &m.destination)?;
        let attr =
            sys::MountAttr { attr_set: sys::MOUNT_ATTR_IDMAP, userns_fd: u64::from(ns.as_raw_fd().cast_unsigned()), ..Default::default() };
        sys::mount_setattr(tree.as_fd(), o.idmap == Some(true), &attr).ctx_onto(
            "idmap (the filesystem must support idmapped mounts)",
            src,
            &m.destination,
        )?;
        out.push((i, tree));
    }
    Ok(out)
}

/// A `cgroup` mount: cgroup2 itself in a new cgroup namespace on a v2 host;
/// otherwise a tmpfs with the container's own directory of each hierarchy
/// bound under its controller name, read-only when asked.
fn mount_cgroup(plan: &Plan<'_>, root: &Root, m: &Mount, dest: &Path, o: &Options) -> Result<()> {
    let target = root.mkdir_all(dest, 0o755)?;
    let flags = o.flags & !(libc::MS_BIND | libc::MS_REC | libc::MS_REMOUNT);
    if plan.cgroup_layout.pure_v2() {
        if plan.new_cgroupns {
            return mount_at(Some(Path::new("cgroup2")), target.as_fd(), Some("cgroup2"), flags, None)
                .ctx_at("mount cgroup2 on", &m.destination);
        }
        let d = plan.cgroup.v2_dir().ok_or_else(|| crate::config::invalid("mounts", "a cgroup2 mount needs a cgroup v2 directory"))?;
        mount_at(Some(&d.path), target.as_fd(), None, libc::MS_BIND, None).ctx_onto("bind", &d.path, &m.destination)?;
        let t = root.open_in(dest, libc::O_PATH).ctx("reopen cgroup mount")?;
        return remount_bind(t.as_fd(), flags).ctx_at("remount", &m.destination);
    }
    mount_at(Some(Path::new("tmpfs")), target.as_fd(), Some("tmpfs"), flags & !libc::MS_RDONLY, Some("mode=755"))
        .ctx_at("mount tmpfs on", &m.destination)?;
    for d in &plan.cgroup.dirs {
        let name = if d.v2 {
            "unified".to_string()
        } else {
            d.controllers.iter().map(|c| c.strip_prefix("name=").unwrap_or(c)).collect::<Vec<_>>().join(",")
        };
        let sub = dest.join(&name);
        let t = root.mkdir_all(&sub, 0o755)?;
        mount_at(Some(&d.path), t.as_fd(), None, libc::MS_BIND, None).ctx_onto("bind", &d.path, &sub)?;
        let t = root.open_in(&sub, libc::O_PATH).ctx("reopen cgroup dir")?;
        remount_bind(t.as_fd(), flags | libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC).ctx_at("remount", &sub)?;
        if d.controllers.len() > 1 {
            let dfd = root.open_in(dest, libc::O_RDONLY | libc::O_DIRECTORY).ctx("open cgroup mount")?;
            for c in &d.controllers {
                let _ = sys::symlinkat(Path::new(&name), dfd.as_fd(), Path::new(c));
            }
        }
    }
    if flags & libc::MS_RDONLY != 0 {
        let t = root.open_in(dest, libc::O_PATH).ctx("reopen cgroup mount")?;
        remount_bind(t.as_fd(), flags).ctx_at("remount read-only", &m.destination)?;
    }
    Ok(())
}

const DEFAULT_DEVICES: &[(&str, i64, i64)] =
    &[("null", 1, 3), ("zero", 1, 5), ("full", 1, 7), ("random", 1, 8), ("urandom", 1, 9), ("tty", 5, 0)];

/// A device node to make in the container's /dev.
struct DevNode {
    path: PathBuf,
    kind: u32,
    major: i64,
    minor: i64,
    mode: u32,
    uid: Option<u32>,
    gid: Option<u32>,
}

/// Default devices, linux.devices and the /dev symlinks.
fn setup_dev(plan: &Plan<'_>, root: &Root) -> Result<()> {
    let dev = root.mkdir_all(Path::new("dev"), 0o755)?;
    let devd = sys::openat(Some(dev.as_fd()), Path::new("."), libc::O_RDONLY | libc::O_DIRECTORY, 0).ctx("open /dev")?;
    let mut list: Vec<DevNode> = DEFAULT_DEVICES
        .iter()
        .map(|(n, ma, mi)| DevNode {
            path: PathBuf::from(format!("dev/{n}")),
            kind: libc::S_IFCHR,
            major: *ma,
            minor: *mi,
            mode: 0o666,
            uid: None,
            gid: None,
        })
        .collect();
    for d in &plan.spec.linux().devices {
        let kind = match d.kind.as_str() {
            "b" => libc::S_IFBLK,
            "p" => libc::S_IFIFO,
            _ => libc::S_IFCHR,
        };
        let p = rel(&d.path);
        list.retain(|x| x.path != p);
        list.push(DevNode {
            path: p,
            kind,
            major: d.major,
            minor: d.minor,
            mode: d.file_mode.unwrap_or(0o666) & 0o7777,
            uid: d.uid,
            gid: d.gid,
        });
    }
    for DevNode { path: p, kind, major, minor, mode, uid, gid } in list {
        let parent = root.mkdir_all(p.parent().unwrap_or_else(|| Path::new("dev")), 0o755)?;
        let parent = sys::openat(Some(parent.as_fd()), Path::new("."), libc::O_RDONLY | libc::O_DIRECTORY, 0).ctx("open dev dir")?;
        let name = p.file_name().unwrap_or_default();
        let name = Path::new(name);
        let what = || format!("/{}", p.display());
        if plan.userns {
            // mknod is not allowed in a user namespace: bind the host's node
            // on a file of our own making (whatever the image has there,
            // a symlink above all, is replaced, never followed).
            let host = Path::new("/").join(&p);
            let t = own_node(parent.as_fd(), name, libc::S_IFREG, 0, 0o644).ctx_at("create for the device bind", what())?;
            mount_at(Some(&host), t.as_fd(), None, libc::MS_BIND, None).ctx_at("bind device", &host)?;
            continue;
        }
        let dev =
            u64::try_from(major).ok().zip(u64::try_from(minor).ok()).and_then(|(ma, mi)| sys::makedev(ma, mi)).ok_or_else(|| {
                crate::config::invalid("linux.devices", format!("{}: device number {major}:{minor} out of range", what()))
            })?;
        let fd = own_node(parent.as_fd(), name, kind, dev, mode).ctx_at("mknod", what())?;
        // mknod applies the umask: set the mode explicitly, on the node
        // just checked (the fd's /proc path reaches that inode, no other).
        std::fs::set_permissions(sys::fd_path(fd.as_fd()), std::os::unix::fs::PermissionsExt::from_mode(mode)).ctx_at("chmod", what())?;
        if uid.is_some() || gid.is_some() {
            std::os::unix::fs::chown(sys::fd_path(fd.as_fd()), uid, gid).ctx_at("chown", what())?;
        }
    }
    for (name, target) in
        [("fd", "/proc/self/fd"), ("stdin", "/proc/self/fd/0"), ("stdout", "/proc/self/fd/1"), ("stderr", "/proc/self/fd/2")]
    {
        match sys::symlinkat(Path::new(target), devd.as_fd(), Path::new(name)) {
            Ok(()) => {}
            Err(e) if e.raw_os_error() == Some(libc::EEXIST) => {}
            Err(e) => return Err(RuntimeError::io_at("symlink", Path::new("/dev").join(name), e)),
        }
    }
    if Path::new("/proc/kcore").exists() {
        let _ = sys::symlinkat(Path::new("/proc/kcore"), devd.as_fd(), Path::new("core"));
    }
    // /dev/ptmx points at the container's own devpts instance.
    let has_devpts = plan.spec.mounts.iter().any(|m| m.destination == "/dev/pts");
    if has_devpts {
        if let Ok(fd) = root.open_in(Path::new("dev/ptmx"), libc::O_PATH) {
            drop(fd);
            let _ = std::fs::remove_file(plan.rootfs.join("dev/ptmx"));
        }
        match sys::symlinkat(Path::new("pts/ptmx"), devd.as_fd(), Path::new("ptmx")) {
            Ok(()) => {}
            Err(e) if e.raw_os_error() == Some(libc::EEXIST) => {}
            Err(e) => return Err(RuntimeError::io("symlink /dev/ptmx", e)),
        }
    }
    Ok(())
}

/// Makes `name` in `dir` a node of type `kind` (S_IFCHR, S_IFBLK, S_IFIFO,
/// S_IFREG) and device `dev`, and opens it (O_PATH, no symlink followed).
/// What is there already is kept only if it is exactly that node; anything
/// else the image put there (a symlink, another device, a file) is removed
/// first. The returned fd is checked to be the wanted node.
fn own_node(dir: BorrowedFd<'_>, name: &Path, kind: u32, dev: u64, mode: u32) -> std::io::Result<OwnedFd> {
    let is_it =
        |st: &libc::stat| st.st_mode & libc::S_IFMT == kind && (kind == libc::S_IFREG || kind == libc::S_IFIFO || st.st_rdev == dev);
    match sys::mknodat(dir, name, kind | mode, dev) {
        Ok(()) => {}
        Err(e) if e.raw_os_error() == Some(libc::EEXIST) => {
            let cur = sys::openat(Some(dir), name, libc::O_PATH | libc::O_NOFOLLOW, 0)?;
            if !is_it(&sys::fstat(cur.as_fd())?) {
                sys::unlinkat(dir, name)?;
                sys::mknodat(dir, name, kind | mode, dev)?;
            }
        }
        Err(e) => return Err(e),
    }
    let fd = sys::openat(Some(dir), name, libc::O_PATH | libc::O_NOFOLLOW, 0)?;
    if !is_it(&sys::fstat(fd.as_fd())?) {
        // Swapped between the mknod and the open.
        return Err(std::io::Error::from_raw_os_error(libc::EEXIST));
    }
    Ok(fd)
}

/// Opens a pty in the container's devpts and binds its slave on /dev/console.
fn console(plan: &Plan<'_>, root: &Root) -> Result<(OwnedFd, OwnedFd)> {
    let ptmx = root
        .open_in(Path::new("dev/pts/ptmx"), libc::O_RDWR | libc::O_NOCTTY)
        .ctx("open /dev/pts/ptmx in the container (is /dev/pts mounted?)")?;
    let (master, slave) = sys::open_pty(ptmx).ctx("open pty")?;
    if let Some(sz) = plan.spec.process.as_ref().and_then(|p| p.console_size) {
        sys::set_winsize(master.as_fd(), sz.height, sz.width).ctx("set console size")?;
    }
    // On a file of berth's own: a symlink the image put at /dev/console is
    // replaced, never followed (the CVE-2025-52565 class).
    let dev = root.mkdir_all(Path::new("dev"), 0o755)?;
    let dev = sys::openat(Some(dev.as_fd()), Path::new("."), libc::O_RDONLY | libc::O_DIRECTORY, 0).ctx("open /dev")?;
    let t = own_node(dev.as_fd(), Path::new("console"), libc::S_IFREG, 0, 0o600).ctx("create /dev/console")?;
    mount_at(Some(&sys::fd_path(slave.as_fd())), t.as_fd(), None, libc::MS_BIND, None).ctx("bind the pty on /dev/console")?;
    Ok((master, slave))
}

fn pivot(rootfs: &Path) -> Result<()> {
    let new = sys::openat(None, rootfs, libc::O_RDONLY | libc::O_DIRECTORY, 0).ctx_at("open", rootfs)?;
    sys::fchdir(new.as_fd()).ctx_at("chdir", rootfs)?;
    sys::pivot_root(Path::new("."), Path::new(".")).ctx_at("pivot_root", rootfs)?;
    // The old root is now stacked under "." : keep its unmount from
    // propagating to the host, then detach it.
    sys::mount(None, Path::new("."), None, libc::MS_SLAVE | libc::MS_REC, None).ctx("make the old root a slave")?;
    sys::umount2(Path::new("."), libc::MNT_DETACH).ctx("detach the old root")?;
    std::env::set_current_dir("/").ctx("chdir /")
}

fn move_root(rootfs: &Path) -> Result<()> {
    hide_full_pseudo_filesystems(rootfs)?;
    std::env::set_current_dir(rootfs).ctx_at("chdir", rootfs)?;
    sys::mount(Some(rootfs), Path::new("/"), None, libc::MS_MOVE, None).ctx("move the rootfs to /")?;
    sys::chroot(Path::new(".")).ctx("chroot")?;
    std::env::set_current_dir("/").ctx("chdir /")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_split() {
        let o = parse_options(&["nosuid".into(), "rw".into(), "ro".into(), "mode=755".into(), "rslave".into(), "size=1k".into()]).unwrap();
        assert_eq!(o.flags, libc::MS_NOSUID | libc::MS_RDONLY);
        assert_eq!(o.data, vec!["mode=755", "size=1k"]);
        assert_eq!(o.propagation, vec![libc::MS_SLAVE | libc::MS_REC]);
        assert!(parse_options(&["tmpcopyup".into()]).unwrap().copy_up);
        // Recursive attributes: the atime modes clear the whole atime field.
        let o = parse_options(&["rro".into(), "rnoatime".into(), "rsuid".into(), "ridmap".into()]).unwrap();
        assert_eq!(o.rec_set, sys::MOUNT_ATTR_RDONLY | sys::MOUNT_ATTR_NOATIME);
        assert_eq!(o.rec_clr, sys::MOUNT_ATTR_ATIME_MASK | sys::MOUNT_ATTR_NOSUID);
        assert_eq!(o.idmap, Some(true));
        assert_eq!(o.flags, 0);
    }

    /// A rootfs in a fresh temp dir, removed when dropped.
    struct TempRoot(PathBuf);
    impl TempRoot {
        fn new(name: &str) -> TempRoot {
            let d = std::env::temp_dir().join(format!("berth-resolver-{name}-{}", std::process::id()));
            let _ = std::fs::remove_dir_all(&d);
            std::fs::create_dir_all(d.join("etc")).unwrap();
            TempRoot(d)
        }
        fn link(&self, at: &str, to: &str) {
            std::os::unix::fs::symlink(to, self.0.join(at)).unwrap();
        }
    }
    impl Drop for TempRoot {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    #[test]
    fn resolver_keeps_hostile_symlinks_inside_the_root() {
        let t = TempRoot::new("hostile");
        t.link("abs", "/etc");
        t.link("up", "../../../../../../etc");
        t.link("dangling", "/nowhere/deeper");
        t.link("chain1", "chain2");
        t.link("chain2", "/abs/x");
        let root = Root::open(&t.0).unwrap();
        // Absolute targets and .. stop at the root.
        assert_eq!(root.resolve(Path::new("abs/passwd")).unwrap(), PathBuf::from("etc/passwd"));
        assert_eq!(root.resolve(Path::new("up/passwd")).unwrap(), PathBuf::from("etc/passwd"));
        assert_eq!(root.resolve(Path::new("../../../etc")).unwrap(), PathBuf::from("etc"));
        // A dangling link is followed to where it points, inside.
        assert_eq!(root.resolve(Path::new("dangling/x")).unwrap(), PathBuf::from("nowhere/deeper/x"));
        assert_eq!(root.resolve(Path::new("chain1")).unwrap(), PathBuf::from("etc/x"));
        // Directories made through links land inside the root.
        root.mkdir_all(Path::new("up/made/here"), 0o755).unwrap();
        assert!(t.0.join("etc/made/here").is_dir());
        root.mkdir_all(Path::new("dangling/m"), 0o755).unwrap();
        assert!(t.0.join("nowhere/deeper/m").is_dir());
        root.mkfile(Path::new("abs/file")).unwrap();
        assert!(t.0.join("etc/file").is_file());
    }

    #[test]
    fn resolver_refuses_loops_and_magic_links() {
        let t = TempRoot::new("loops");
        t.link("loop", "loop");
        t.link("ping", "pong");
        t.link("pong", "ping");
        t.link("magic", "/proc/self/root");
        let root = Root::open(&t.0).unwrap();
        root.resolve(Path::new("loop/x")).unwrap_err();
        root.resolve(Path::new("ping")).unwrap_err();
        root.mkdir_all(Path::new("ping/x"), 0o755).unwrap_err();
        // No magic link is followed, inside the root or through it.
        let e = root.open_in(Path::new("magic"), libc::O_PATH).unwrap_err();
        assert!(matches!(e.raw_os_error(), Some(libc::ELOOP) | Some(libc::ENOENT) | Some(libc::EXDEV)), "{e}");
    }

    #[test]
    fn rel_strips_dots_and_root() {
        assert_eq!(rel("/a/../b/./c"), PathBuf::from("a/b/c"));
        assert_eq!(rel("/"), PathBuf::new());
    }
}
