//! `features`: what berth supports, per runtime-spec features.md. Claims
//! only what works; callers (containerd) decide what to ask for from this.

use serde_json::{json, Value};

/// The seccomp architectures a filter made here can hold: one filter
/// cannot mix byte orders (libseccomp refuses with EDOM), so only those of
/// this machine's.
fn seccomp_archs() -> Vec<&'static str> {
    const LITTLE: &[&str] = &[
        "SCMP_ARCH_AARCH64",
        "SCMP_ARCH_ARM",
        "SCMP_ARCH_MIPSEL",
        "SCMP_ARCH_MIPSEL64",
        "SCMP_ARCH_MIPSEL64N32",
        "SCMP_ARCH_PPC64LE",
        "SCMP_ARCH_RISCV64",
        "SCMP_ARCH_X32",
        "SCMP_ARCH_X86",
        "SCMP_ARCH_X86_64",
    ];
    const BIG: &[&str] = &[
        "SCMP_ARCH_MIPS",
        "SCMP_ARCH_MIPS64",
        "SCMP_ARCH_MIPS64N32",
        "SCMP_ARCH_PPC",
        "SCMP_ARCH_PPC64",
        "SCMP_ARCH_S390",
        "SCMP_ARCH_S390X",
    ];
    if cfg!(target_endian = "little") {
        LITTLE.to_vec()
    } else {
        BIG.to_vec()
    }
}

pub fn features() -> Value {
    let mount_options: Vec<&str> = [
        "async",
        "atime",
        "bind",
        "defaults",
        "dev",
        "diratime",
        "dirsync",
        "exec",
        "iversion",
        "lazytime",
        "loud",
        "mand",
        "noatime",
        "nodev",
        "nodiratime",
        "noexec",
        "noiversion",
        "nolazytime",
        "nomand",
        "norelatime",
        "nostrictatime",
        "nosuid",
        "nosymfollow",
        "private",
        "rbind",
        "relatime",
        "remount",
        "ro",
        "rprivate",
        "rshared",
        "rslave",
        "runbindable",
        "rw",
        "shared",
        "silent",
        "slave",
        "strictatime",
        "suid",
        "symfollow",
        "sync",
        "unbindable",
        // Recursive attributes (mount_setattr) and idmapped bind mounts.
        "ratime",
        "rdev",
        "rdiratime",
        "rexec",
        "rnoatime",
        "rnodev",
        "rnodiratime",
        "rnoexec",
        "rnorelatime",
        "rnostrictatime",
        "rnosuid",
        "rnosymfollow",
        "rrelatime",
        "rro",
        "rrw",
        "rstrictatime",
        "rsuid",
        "rsymfollow",
        "idmap",
        "ridmap",
        "tmpcopyup",
    ]
    .to_vec();
    json!({
        "ociVersionMin": "1.0.0",
        "ociVersionMax": "1.2.0",
        "hooks": ["prestart", "createRuntime", "createContainer", "startContainer", "poststart", "poststop"],
        "mountOptions": mount_options,
        "linux": {
            "namespaces": ["cgroup", "ipc", "mount", "network", "pid", "time", "user", "uts"],
            "capabilities": crate::config::names::cap_names(),
            // systemd: the systemd driver (cgroup v2 hosts); systemdUser is
            // the rootless user manager, which berth does not drive.
            "cgroup": {"v1": true, "v2": true, "systemd": true, "systemdUser": false, "rdma": true},
            "seccomp": {
                "enabled": true,
                "actions": ["SCMP_ACT_ALLOW", "SCMP_ACT_ERRNO", "SCMP_ACT_KILL", "SCMP_ACT_KILL_PROCESS", "SCMP_ACT_KILL_THREAD", "SCMP_ACT_LOG", "SCMP_ACT_NOTIFY", "SCMP_ACT_TRACE", "SCMP_ACT_TRAP"],
                "operators": ["SCMP_CMP_EQ", "SCMP_CMP_GE", "SCMP_CMP_GT", "SCMP_CMP_LE", "SCMP_CMP_LT", "SCMP_CMP_MASKED_EQ", "SCMP_CMP_NE"],
                "archs": seccomp_archs(),
                "knownFlags": ["SECCOMP_FILTER_FLAG_TSYNC", "SECCOMP_FILTER_FLAG_SPEC_ALLOW", "SECCOMP_FILTER_FLAG_LOG"],
                "supportedFlags": ["SECCOMP_FILTER_FLAG_TSYNC", "SECCOMP_FILTER_FLAG_SPEC_ALLOW", "SECCOMP_FILTER_FLAG_LOG"]
            },
            "apparmor": {"enabled": false},
            "selinux": {"enabled": false},
            "intelRdt": {"enabled": false},
            "mountExtensions": {"idmap": {"enabled": true}}
        },
        "annotations": {
            "run.berth.version": env!("CARGO_PKG_VERSION")
        },
        // Annotations that change what the runtime does to the host
        // (runtime-spec 1.2): an engine passes them from untrusted pods
        // only on purpose. Prefixes end with a dot.
        "potentiallyUnsafeConfigAnnotations": ["org.systemd.property.", "run.berth.layer", "run.berth.layer.lowers"]
    })
}
