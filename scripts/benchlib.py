"""What berth's benchmarks share: where the binary is, the private mount
namespace every runtime runs in, a work directory with the state roots on
one tmpfs, a busybox bundle, timing, the harness's own endpoint checks, the
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
    layout otherwise, and every runtime gets the same view."""
    if os.environ.get("BERTH_BENCH_INNER") == "1":
        return
    if os.geteuid() != 0:
        raise SystemExit(f"{sys.argv[0]}: run as root")
    if not os.access(BERTH, os.X_OK):
        raise SystemExit(f"{sys.argv[0]}: {BERTH} is missing: cargo build --release")
    os.environ["BERTH_BENCH_INNER"] = "1"
    inner = "umount /sys/fs/cgroup/unified 2>/dev/null; exec python3 \"$0\" \"$@\""
    os.execvp("unshare", ["unshare", "-m", "--propagation", "private", "sh", "-c", inner, sys.argv[0]] + sys.argv[1:])


def need(*programs):
    """Stops at once, naming what is missing (scripts/deps installs it)."""
    missing = [p for p in programs if not shutil.which(p)]
    if missing:
        raise SystemExit(f"{sys.argv[0]}: missing {' '.join(missing)} (scripts/deps installs it)")


PIDS_CG = next((l.split()[4] for l in open("/proc/self/mountinfo") if " - cgroup " in l and "pids" in l.split()[-1].split(",")), None) \
    or next((l.split()[4] for l in open("/proc/self/mountinfo") if " - cgroup2 " in l), None)


class Work:
    """A work directory (on `dir`, default /tmp) with `roots` on a tmpfs;
    `runtimes` maps a name to its binary, whose state lives in roots/NAME.
    Everything is undone at exit, also on an error or a signal."""

    def __init__(self, prefix, runtimes, cgroup_parent, dir=None):
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
        subprocess.run(["mount", "-t", "tmpfs", "bench-roots", self.roots], check=True)

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
        for h in os.listdir("/sys/fs/cgroup"):
            d = os.path.join("/sys/fs/cgroup", h, self.cgroup_parent)
            if os.path.isdir(d) and not os.path.islink(os.path.join("/sys/fs/cgroup", h)):
                for sub in sorted((os.path.join(r, s) for r, ss, _ in os.walk(d) for s in ss), key=len, reverse=True):
                    subprocess.run(["rmdir", sub], stderr=subprocess.DEVNULL)
                subprocess.run(["rmdir", d], stderr=subprocess.DEVNULL)
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


def mounted(paths):
    """Whether any mount namespace (of any process) has a mount at or under
    one of `paths`, or an overlay with a layer there."""
    seen = set()
    for p in os.listdir("/proc"):
        if not p.isdigit():
            continue
        try:
            ns = os.readlink(f"/proc/{p}/ns/mnt")
            if ns in seen:
                continue
            seen.add(ns)
            for l in open(f"/proc/{p}/mountinfo"):
                if any(l.split()[4].startswith(x) or (x + "/") in l for x in paths):
                    return True
        except OSError:
            pass
    return False


def p50(xs):
    return statistics.median(xs)


def p99(xs):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(0.99 * (len(xs) - 1))))]
