"""What berth's benchmarks share: where the binary is, the private mount
namespace every runtime runs in, a work directory with the state roots on
one tmpfs (or on the work directory's disk), a busybox bundle (or one
bundle directory per container over a shared root filesystem), starting a
container and waiting until it has settled, timing, the harness's own
endpoint checks (cgroup, init, processes, mounts, listed containers), the
summary statistics, and a cleanup that runs however the bench ends (an
error, Ctrl-C, SIGTERM): containers deleted, fio ended, tmpfs unmounted,
cgroup parents and the work directory removed.

Benchmarks print figures and assert nothing. Nothing here installs
anything: scripts/deps does that beforehand.
"""
import atexit, json, os, shutil, signal, statistics, subprocess, sys, tempfile, time

HERE = os.path.dirname(os.path.abspath(__file__))


def tuple_():
    """The host's target tuple, where cargo puts berth (target/<tuple>/release)."""
    return subprocess.run([os.path.join(HERE, "tuple")], check=True, capture_output=True, text=True).stdout.strip()


BERTH = os.path.abspath(os.path.join(HERE, "..", "target", tuple_(), "release", "berth"))


def private_namespace():
    """Re-executes the calling script in a private mount namespace where
    /sys/fs/cgroup/unified is unmounted: crun 1.8 refuses this host's hybrid
    layout otherwise, and every runtime gets the same view. An empty tmpfs
    of the namespace's own takes its place: crun still makes a directory
    (with a cgroup.procs file) there for each container and leaves it, and
    on the host's /sys/fs/cgroup tmpfs that would stay, hidden under the
    cgroup2 mount."""
    if os.environ.get("BERTH_BENCH_INNER") == "1":
        return
    if os.geteuid() != 0:
        raise SystemExit(f"{sys.argv[0]}: run as root")
    if not os.access(BERTH, os.X_OK):
        raise SystemExit(f"{sys.argv[0]}: {BERTH} is missing: cargo build --release")
    os.environ["BERTH_BENCH_INNER"] = "1"
    inner = ("if umount /sys/fs/cgroup/unified 2>/dev/null; then"
             " mount -t tmpfs -o mode=755 berth-bench-unified /sys/fs/cgroup/unified || exit 1; fi;"
             " exec python3 \"$0\" \"$@\"")
    os.execvp("unshare", ["unshare", "-m", "--propagation", "private", "sh", "-c", inner, sys.argv[0]] + sys.argv[1:])


def need(*programs):
    """Stops at once, naming what is missing (scripts/deps installs it)."""
    missing = [p for p in programs if not shutil.which(p)]
    if missing:
        raise SystemExit(f"{sys.argv[0]}: missing {' '.join(missing)} (scripts/deps installs it)")


PIDS_CG = next((l.split()[4] for l in open("/proc/self/mountinfo") if " - cgroup " in l and "pids" in l.split()[-1].split(",")), None) \
    or next((l.split()[4] for l in open("/proc/self/mountinfo") if " - cgroup2 " in l), None)


def fs_of(path):
    """The mount point and filesystem type `path` lives on (in this namespace)."""
    path = os.path.realpath(path)
    best = ("/", "?")
    for l in open("/proc/self/mountinfo"):
        f = l.split()
        mp, fstype = f[4], f[f.index("-") + 1]
        if (path == mp or path.startswith(mp.rstrip("/") + "/")) and len(mp) >= len(best[0]):
            best = (mp, fstype)
    return best


def hierarchies():
    """The cgroup hierarchies mounted under /sys/fs/cgroup (not the tmpfs
    private_namespace put on unified/)."""
    mounts = {l.split()[4] for l in open("/proc/self/mountinfo") if l.split(" - ", 1)[1].startswith(("cgroup ", "cgroup2 "))}
    return [os.path.join("/sys/fs/cgroup", h) for h in sorted(os.listdir("/sys/fs/cgroup"))
            if os.path.join("/sys/fs/cgroup", h) in mounts and not os.path.islink(os.path.join("/sys/fs/cgroup", h))]


def cgroups_under(parent):
    """The cgroups left under `parent` in any hierarchy: {relative path: [hierarchies]}."""
    left = {}
    for hp in hierarchies():
        for r, ss, _ in os.walk(os.path.join(hp, parent)):
            for sub in ss:
                left.setdefault(os.path.relpath(os.path.join(r, sub), os.path.join(hp, parent)), []).append(os.path.basename(hp))
    return left


def remove_cgroups(parent, with_parent=True):
    """Removes the (empty) cgroups under `parent` in every hierarchy, deepest
    first, and `parent` itself with `with_parent`."""
    for sub, hs in sorted(cgroups_under(parent).items(), key=lambda x: len(x[0]), reverse=True):
        for h in hs:
            subprocess.run(["rmdir", os.path.join("/sys/fs/cgroup", h, parent, sub)], stderr=subprocess.DEVNULL)
    for hp in hierarchies() if with_parent else ():
        if os.path.isdir(os.path.join(hp, parent)):
            subprocess.run(["rmdir", os.path.join(hp, parent)], stderr=subprocess.DEVNULL)


class Work:
    """A work directory (on `dir`, default /tmp) with `roots` on a tmpfs, or
    with `roots_on_disk` a plain directory on the work directory's disk;
    `runtimes` maps a name to its binary, whose state lives in roots/NAME.
    Everything is undone at exit, also on an error or a signal."""

    def __init__(self, prefix, runtimes, cgroup_parent, dir=None, roots_on_disk=False):
        self.dir = tempfile.mkdtemp(prefix=prefix, dir=dir)
        self.roots = os.path.join(self.dir, "roots")
        self.runtimes = runtimes
        self.cgroup_parent = cgroup_parent
        self.procs = []  # background load (fio), ended first
        self.done = False
        os.makedirs(self.roots)
        atexit.register(self.cleanup)
        for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(s, self._signalled)
        if not roots_on_disk:
            subprocess.run(["mount", "-t", "tmpfs", "bench-roots", self.roots], check=True)

    def where_roots(self):
        """Where the state roots live, for a bench's header."""
        mp, fstype = fs_of(self.roots)
        return "roots on tmpfs" if fstype == "tmpfs" else f"roots on disk ({fstype} at {mp}: {self.roots})"

    def _signalled(self, sig, _frame):
        self.cleanup()
        raise SystemExit(128 + sig)

    def root(self, name):
        return os.path.join(self.roots, name)

    def background(self, cmd):
        """Starts a load in a session of its own; ended (by its group) at cleanup."""
        p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        self.procs.append(p)
        return p

    def cleanup(self):
        if self.done:
            return
        self.done = True
        for p in self.procs:
            try:
                os.killpg(p.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            p.wait()
        for name, rt in self.runtimes.items():
            root = self.root(name)
            if not rt or not os.path.isdir(root):
                continue
            for cid in os.listdir(root):
                if not cid.startswith((".", "@")) and os.path.isdir(os.path.join(root, cid)):
                    subprocess.run([rt, "--root", root, "delete", "--force", cid], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            if os.path.basename(rt) == "berth" or rt == BERTH:
                subprocess.run([rt, "--root", root, "gc", "--wait"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        # Whatever is still mounted under the work directory (the roots'
        # tmpfs, an overlay the harness made), deepest first, before any
        # file under it is removed.
        here = [l.split()[4] for l in open("/proc/self/mountinfo") if l.split()[4].startswith(self.dir + "/")]
        for m in sorted(here, key=len, reverse=True):
            subprocess.run(["umount", "-l", m], stderr=subprocess.DEVNULL)
        remove_cgroups(self.cgroup_parent)
        shutil.rmtree(self.dir, ignore_errors=True)


def busybox_tree(path, applets, dirs=()):
    """A root filesystem of Debian's static busybox and the given applets."""
    os.makedirs(os.path.join(path, "bin"))
    for d in dirs:
        os.makedirs(os.path.join(path, d))
    shutil.copy("/bin/busybox", os.path.join(path, "bin", "busybox"))
    for a in applets:
        os.symlink("busybox", os.path.join(path, "bin", a))


def base_config(bundle):
    """`berth spec`'s config, made acceptable to every runtime measured here."""
    subprocess.run([BERTH, "spec", "--bundle", bundle], check=True)
    cfg = json.load(open(os.path.join(bundle, "config.json")))
    cfg["ociVersion"] = "1.0.2"  # crun 1.8 knows no later version
    cfg["process"]["terminal"] = False
    cfg["process"].pop("rlimits", None)  # no CAP_SYS_RESOURCE here to raise hard limits
    return cfg


def bundle_for(path, cfg, rootfs, args, cgroups_path, mounted=False):
    """A bundle directory of its own at `path`: `cfg` with `args`, its own
    cgroupsPath, and `rootfs` (shared by many containers, absolute) read-only.
    With `mounted`, the rootfs is a bind of it at `path`/rootfs, made here
    before create as podman mounts its overlay (undo with `unmount_rootfs`)."""
    c = json.loads(json.dumps(cfg))
    c["process"]["args"] = args
    os.makedirs(path)
    if mounted:
        own = os.path.join(path, "rootfs")
        os.makedirs(own)
        subprocess.run(["mount", "--bind", rootfs, own], check=True)
        rootfs = own
    c["root"] = {"path": os.path.abspath(rootfs), "readonly": True}
    c["linux"]["cgroupsPath"] = cgroups_path
    with open(os.path.join(path, "config.json"), "w") as f:
        json.dump(c, f)
    return path


def unmount_rootfs(bundle):
    """Undoes `bundle_for(..., mounted=True)`: the caller's unmount."""
    subprocess.run(["umount", os.path.join(bundle, "rootfs")], stderr=subprocess.DEVNULL)


def settled(path, want):
    """Every process of the cgroup exists and sleeps, and there are `want`."""
    pids = cgroup_procs(path)
    if pids is None or len(pids) < want:
        return False
    for p in pids:
        try:
            if open(f"/proc/{p}/stat").read().rsplit(") ", 1)[1][0] != "S":
                return False
        except OSError:
            return False
    return True


def state_pid(base, cid):
    out = subprocess.run(base + ["state", cid], check=True, capture_output=True).stdout
    return json.loads(out)["pid"]


class Failed(Exception):
    """A runtime's command failed; the message ends with its stderr."""


def start(base, bundle, cid, cgroups_path, want=1, asleep=True, timeout=10):
    """`run -d` of a container (base: the runtime and its --root), then waits
    (up to `timeout` s) until its pids cgroup has `want` processes, all
    asleep with `asleep`; its init PID. A failure of the runtime raises
    Failed. (Its stderr goes to a file: the container inherits it, and a
    pipe would stay open as long as the container runs.)"""
    with tempfile.TemporaryFile() as e:
        rc = subprocess.run(base + ["run", "-d", "--bundle", bundle, cid], stdin=subprocess.DEVNULL,
                            stdout=subprocess.DEVNULL, stderr=e).returncode
        if rc != 0:
            e.seek(0)
            raise Failed(f"{cid}: run -d: exit {rc}: {e.read().decode(errors='replace').strip()}")
    cgdir = PIDS_CG + cgroups_path
    t_end = time.time() + timeout
    while time.time() < t_end and not (settled(cgdir, want) if asleep else len(cgroup_procs(cgdir) or []) >= want):
        time.sleep(0.005)
    return state_pid(base, cid)


def mnt_ns(pid):
    try:
        return os.readlink(f"/proc/{pid}/ns/mnt")
    except OSError:
        return None


def left_after_delete(cgroups_path, pid, paths, skip_ns=()):
    """What of a container is still there once its delete returned: its pids
    cgroup, its init, a mount at or under one of `paths` in the namespace of
    any process (but those in `skip_ns`: other containers' on the same
    rootfs)."""
    return [what for what, left in (
        ("cgroup", os.path.exists(PIDS_CG + cgroups_path)),
        ("init", pid > 0 and alive(pid)),
        ("mount", mounted(paths, skip_ns))) if left]


def listed(base):
    """The ids `list -q` shows (base: the runtime and its --root); Failed if it fails."""
    r = subprocess.run(base + ["list", "-q"], stdin=subprocess.DEVNULL, capture_output=True, text=True)
    if r.returncode != 0:
        raise Failed(f"list: exit {r.returncode}: {r.stderr.strip()}")
    return r.stdout.split()


def rooted_in(rootfs):
    """The processes whose root directory is `rootfs` (a container's on it)."""
    st = os.stat(rootfs)
    pids = []
    for p in os.listdir("/proc"):
        if p.isdigit():
            try:
                s = os.stat(f"/proc/{p}/root")
                if (s.st_dev, s.st_ino) == (st.st_dev, st.st_ino) and alive(p):
                    pids.append(int(p))
            except OSError:
                pass
    return pids


def timed(cmd, work_dir, rss=False):
    """Runs `cmd` with stdio on /dev/null; its wall time in ms, and with
    `rss` its peak RSS in MiB under GNU time. A failure stops the bench."""
    errf = os.path.join(work_dir, "stderr")
    rssf = os.path.join(work_dir, "rss")
    pre = ["/usr/bin/time", "-f", "%M", "-o", rssf] if rss else []
    with open(errf, "wb") as e:
        t0 = time.perf_counter()
        pid = os.posix_spawn(pre[0] if pre else cmd[0], pre + cmd, os.environ, file_actions=[
            (os.POSIX_SPAWN_OPEN, 0, "/dev/null", os.O_RDONLY, 0),
            (os.POSIX_SPAWN_OPEN, 1, "/dev/null", os.O_WRONLY, 0),
            (os.POSIX_SPAWN_DUP2, e.fileno(), 2)])
        _, status = os.waitpid(pid, 0)
        dt = time.perf_counter() - t0
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"{cmd}: failed: {open(errf).read()}")
    return dt * 1e3, (float(open(rssf).read().split()[-1]) / 1024.0 if pre else 0.0)


def alive(pid):
    try:
        return open(f"/proc/{pid}/stat").read().rsplit(") ", 1)[1][0] != "Z"
    except OSError:
        return False


def cgroup_procs(path):
    try:
        return open(os.path.join(path, "cgroup.procs")).read().split()
    except OSError:
        return None


def mounted(paths, skip_ns=()):
    """Whether any mount namespace (of any process), but those in `skip_ns`,
    has a mount at or under one of `paths`, or an overlay with a layer there."""
    seen = set(skip_ns)
    for p in os.listdir("/proc"):
        if not p.isdigit():
            continue
        try:
            ns = os.readlink(f"/proc/{p}/ns/mnt")
            if ns in seen:
                continue
            seen.add(ns)
            for l in open(f"/proc/{p}/mountinfo"):
                # The mount point, or an overlay's layers (its options);
                # not the root field (another bind of the same directory).
                mp, post = l.split()[4], l.split(" - ", 1)[-1]
                if any(mp == x or mp.startswith(x + "/") or (x + "/") in post for x in paths):
                    return True
        except OSError:
            pass
    return False


def p50(xs):
    return statistics.median(xs)


def p99(xs):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(0.99 * (len(xs) - 1))))]
