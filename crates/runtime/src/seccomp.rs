//! linux.seccomp: an OCI profile compiled with libseccomp and loaded as late
//! as possible, so the container's first exec is already filtered.

use crate::Result;
use berth_sys::seccomp::{self as sc, ArgCmp, Filter};
use serde::Deserialize;

/// Why a linux.seccomp profile cannot be loaded.
#[derive(Debug, thiserror::Error)]
pub enum SeccompError {
    #[error("linux.seccomp: {0}")]
    Schema(#[source] serde_json::Error),
    #[error("linux.seccomp: unknown action {0:?}")]
    UnknownAction(String),
    #[error("linux.seccomp: unknown operator {0:?}")]
    UnknownOperator(String),
    #[error("linux.seccomp: unknown architecture {0:?}")]
    UnknownArch(String),
    #[error("linux.seccomp: flag {0:?} is not supported by berth")]
    UnsupportedFlag(String),
    #[error("linux.seccomp: argument index {0} is out of range")]
    ArgIndex(u32),
    #[error("linux.seccomp: SCMP_ACT_NOTIFY needs listenerPath")]
    NotifyWithoutListener,
    #[error("linux.seccomp.listenerPath is not connected")]
    NotConnected,
    /// runc's words.
    #[error("linux.seccomp: SCMP_ACT_NOTIFY cannot be used for the write syscall")]
    NotifyWrite,
    /// libseccomp refused a step (`init`, `architecture x86`, `rule write`...).
    #[error("linux.seccomp: {step}: {source}")]
    Filter { step: String, source: std::io::Error },
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Profile {
    pub default_action: String,
    #[serde(default)]
    pub default_errno_ret: Option<u32>,
    #[serde(default)]
    pub architectures: Vec<String>,
    #[serde(default)]
    pub flags: Vec<String>,
    #[serde(default)]
    pub listener_path: Option<String>,
    #[serde(default)]
    pub listener_metadata: Option<String>,
    #[serde(default)]
    pub syscalls: Vec<Rule>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Rule {
    #[serde(default)]
    pub names: Vec<String>,
    pub action: String,
    #[serde(default)]
    pub errno_ret: Option<u32>,
    #[serde(default)]
    pub args: Vec<Arg>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Arg {
    pub index: u32,
    pub value: u64,
    #[serde(default)]
    pub value_two: u64,
    pub op: String,
}

fn action(name: &str, errno: Option<u32>) -> Result<u32> {
    Ok(match name {
        "SCMP_ACT_KILL" | "SCMP_ACT_KILL_THREAD" => 0x0000_0000,
        "SCMP_ACT_KILL_PROCESS" => 0x8000_0000,
        "SCMP_ACT_TRAP" => 0x0003_0000,
        "SCMP_ACT_ERRNO" => 0x0005_0000 | (errno.unwrap_or(libc::EPERM as u32) & 0xffff),
        "SCMP_ACT_TRACE" => 0x7ff0_0000 | (errno.unwrap_or(libc::EPERM as u32) & 0xffff),
        "SCMP_ACT_LOG" => 0x7ffc_0000,
        "SCMP_ACT_ALLOW" => 0x7fff_0000,
        "SCMP_ACT_NOTIFY" => 0x7fc0_0000,
        _ => return Err(SeccompError::UnknownAction(name.to_string()).into()),
    })
}

fn op(name: &str) -> Result<u32> {
    Ok(match name {
        "SCMP_CMP_NE" => 1,
        "SCMP_CMP_LT" => 2,
        "SCMP_CMP_LE" => 3,
        "SCMP_CMP_EQ" => 4,
        "SCMP_CMP_GE" => 5,
        "SCMP_CMP_GT" => 6,
        "SCMP_CMP_MASKED_EQ" => 7,
        _ => return Err(SeccompError::UnknownOperator(name.to_string()).into()),
    })
}

/// Connects to the seccomp agent at listenerPath (runc's words on failure).
pub fn connect_agent(path: &str) -> Result<std::os::fd::OwnedFd> {
    use crate::error::Context;
    berth_sys::unix_connect(std::path::Path::new(path)).ctx_of("failed to connect with seccomp agent at linux.seccomp.listenerPath", path)
}

/// Loads `f`, and for a profile with SCMP_ACT_NOTIFY hands the notify fd
/// to the agent on `listener` with the state it expects: runtime-spec's
/// containerProcessState ("seccompFd", the process's pid, the profile's
/// listenerMetadata, the container's state).
pub fn load_and_hand_over(prof: &Profile, f: &Filter, listener: Option<&std::os::fd::OwnedFd>, state: &str) -> Result<()> {
    use crate::error::Context;
    use std::os::fd::AsFd;
    f.load().ctx("load the seccomp filter")?;
    if !prof.uses_notify() {
        return Ok(());
    }
    let fd = f.notify_fd().ctx("seccomp notify fd")?;
    let sock = listener.ok_or(SeccompError::NotConnected)?;
    let st: serde_json::Value = serde_json::from_str(state).unwrap_or_default();
    let msg = serde_json::json!({
        "ociVersion": "1.2.0",
        "fds": ["seccompFd"],
        "pid": st.get("pid").cloned().unwrap_or_default(),
        "metadata": prof.listener_metadata.clone().unwrap_or_default(),
        "state": st,
    });
    berth_sys::send_fd(sock.as_fd(), msg.to_string().as_bytes(), fd.as_fd()).ctx("send the seccomp notify fd to listenerPath")
}

impl Profile {
    pub fn parse(v: &serde_json::Value) -> Result<Profile> {
        serde_json::from_value(v.clone()).map_err(|e| SeccompError::Schema(e).into())
    }

    pub fn uses_notify(&self) -> bool {
        self.default_action == "SCMP_ACT_NOTIFY" || self.syscalls.iter().any(|r| r.action == "SCMP_ACT_NOTIFY")
    }

    /// Checks everything that can be checked before the container exists.
    pub fn validate(&self) -> Result<()> {
        self.compile().map(drop)
    }

    /// Builds the libseccomp filter (not yet loaded).
    pub fn compile(&self) -> Result<Filter> {
        let def = action(&self.default_action, self.default_errno_ret)?;
        if self.uses_notify() && self.listener_path.as_deref().unwrap_or("").is_empty() {
            return Err(SeccompError::NotifyWithoutListener.into());
        }
        // berth's own setup writes (the handshake, the exec fifo) after the
        // filter is loaded: a notified write would wait on the agent.
        if self.syscalls.iter().any(|r| r.action == "SCMP_ACT_NOTIFY" && r.names.iter().any(|n| n == "write")) {
            return Err(SeccompError::NotifyWrite.into());
        }
        let e = |what: &str, source: std::io::Error| crate::RuntimeError::Seccomp(SeccompError::Filter { step: what.to_string(), source });
        let mut f = Filter::new(def).map_err(|x| e("init", x))?;
        // The runtime sets no_new_privs itself when the config asks for it.
        f.set_attr(sc::ATTR_CTL_NNP, 0).map_err(|x| e("attribute", x))?;
        for a in &self.architectures {
            let name = a.strip_prefix("SCMP_ARCH_").unwrap_or(a).to_ascii_lowercase();
            let t = sc::arch_token(&name).ok_or_else(|| SeccompError::UnknownArch(a.clone()))?;
            f.add_arch(t).map_err(|x| e(&format!("architecture {a}"), x))?;
        }
        for fl in &self.flags {
            match fl.as_str() {
                "SECCOMP_FILTER_FLAG_TSYNC" => f.set_attr(sc::ATTR_CTL_TSYNC, 1),
                "SECCOMP_FILTER_FLAG_LOG" => f.set_attr(sc::ATTR_CTL_LOG, 1),
                "SECCOMP_FILTER_FLAG_SPEC_ALLOW" => f.set_attr(sc::ATTR_CTL_SSB, 1),
                other => return Err(SeccompError::UnsupportedFlag(other.to_string()).into()),
            }
            .map_err(|x| e(&format!("flag {fl}"), x))?;
        }
        for r in &self.syscalls {
            let act = action(&r.action, r.errno_ret)?;
            if act == def {
                continue; // libseccomp refuses rules that repeat the default
            }
            let mut args = Vec::new();
            for a in &r.args {
                if a.index > 5 {
                    return Err(SeccompError::ArgIndex(a.index).into());
                }
                args.push(ArgCmp { arg: a.index, op: op(&a.op)?, datum_a: a.value, datum_b: a.value_two });
            }
            // Several conditions on one argument mean "any of them" (runc's
            // reading): one rule each. Otherwise all conditions in one rule.
            let mut idx: Vec<u32> = args.iter().map(|a| a.arg).collect();
            idx.sort();
            let repeated = idx.windows(2).any(|w| w[0] == w[1]);
            for name in &r.names {
                let Some(nr) = sc::syscall_number(name) else {
                    crate::log::debug(&format!("linux.seccomp: unknown syscall {name:?} skipped"));
                    continue;
                };
                let res = if repeated {
                    args.iter().try_for_each(|a| f.add_rule(act, nr, std::slice::from_ref(a)))
                } else {
                    f.add_rule(act, nr, &args)
                };
                res.map_err(|x| e(&format!("rule for {name}"), x))?;
            }
        }
        Ok(f)
    }
}
