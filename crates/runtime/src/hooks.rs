//! OCI hooks: run with the container's state on stdin, under a timeout.
//! A hook that never reads stdin must not hurt berth (SIGPIPE is ignored
//! and EPIPE tolerated).

use crate::config::Hook;
use crate::{Result, RuntimeError};
use std::io::Write;
use std::os::fd::AsFd;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// An OCI hook that could not run, failed or timed out.
#[derive(Debug, thiserror::Error)]
#[error("error running hook #{index} ({kind} {}): {why}", path.display())]
pub struct HookError {
    /// prestart, createRuntime, poststart, poststop...
    pub kind: &'static str,
    /// Its place among the hooks of its kind (runc's "hook #N").
    pub index: usize,
    pub path: std::path::PathBuf,
    pub why: HookFailure,
}

/// How a hook failed.
#[derive(Debug, thiserror::Error)]
pub enum HookFailure {
    #[error("could not start: {0}")]
    Start(#[source] std::io::Error),
    #[error("failed: {}", exit_words(.0))]
    Exit(std::process::ExitStatus),
    #[error("did not finish within {0} s")]
    Timeout(i64),
    #[error("could not be waited for: {0}")]
    Wait(#[source] std::io::Error),
}

/// How a hook ended, in Go's words as runc reports it ("exit status 1",
/// "signal: bad system call").
fn exit_words(st: &std::process::ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    if let Some(c) = st.code() {
        return format!("exit status {c}");
    }
    let sig = st.signal().unwrap_or(0);
    let name = match sig {
        libc::SIGHUP => "hangup",
        libc::SIGINT => "interrupt",
        libc::SIGQUIT => "quit",
        libc::SIGILL => "illegal instruction",
        libc::SIGTRAP => "trace/breakpoint trap",
        libc::SIGABRT => "aborted",
        libc::SIGBUS => "bus error",
        libc::SIGFPE => "floating point exception",
        libc::SIGKILL => "killed",
        libc::SIGSEGV => "segmentation fault",
        libc::SIGPIPE => "broken pipe",
        libc::SIGALRM => "alarm clock",
        libc::SIGTERM => "terminated",
        libc::SIGSYS => "bad system call",
        _ => return format!("signal: {sig}"),
    };
    format!("signal: {name}")
}

/// Runs each hook in order; the first failure stops and is returned.
pub fn run_all(kind: &'static str, hooks: &[Hook], state_json: &str) -> Result<()> {
    run_all_in(kind, hooks, state_json, None)
}

/// Runs each hook in order with `dir` as its working directory (the
/// container's root for createContainer, as runc runs them).
pub fn run_all_in(kind: &'static str, hooks: &[Hook], state_json: &str, dir: Option<&std::path::Path>) -> Result<()> {
    for (i, h) in hooks.iter().enumerate() {
        run_in(kind, i, h, state_json, dir)?;
    }
    Ok(())
}

pub fn run(kind: &'static str, index: usize, h: &Hook, state_json: &str) -> Result<()> {
    run_in(kind, index, h, state_json, None)
}

fn run_in(kind: &'static str, index: usize, h: &Hook, state_json: &str, dir: Option<&std::path::Path>) -> Result<()> {
    berth_sys::ignore_sigpipe();
    let mut cmd = Command::new(&h.path);
    if let Some(d) = dir {
        cmd.current_dir(d);
    }
    if let Some(a0) = h.args.first() {
        use std::os::unix::process::CommandExt;
        cmd.arg0(a0);
        cmd.args(&h.args[1..]);
    }
    cmd.env_clear();
    for e in &h.env {
        if let Some((k, v)) = e.split_once('=') {
            cmd.env(k, v);
        }
    }
    cmd.stdin(Stdio::piped());
    let hook_err = |why| RuntimeError::Hook(HookError { kind, index, path: h.path.clone().into(), why });
    let mut child = cmd.spawn().map_err(|e| hook_err(HookFailure::Start(e)))?;
    if let Some(mut stdin) = child.stdin.take() {
        let _ = stdin.write_all(state_json.as_bytes());
    }
    let pidfd = berth_sys::pidfd_open(child.id().cast_signed()).map_err(|e| hook_err(HookFailure::Wait(e)))?;
    // A timeout past what an Instant can hold is no deadline at all.
    let deadline = h.timeout.filter(|t| *t > 0).and_then(|t| Instant::now().checked_add(Duration::from_secs(t.unsigned_abs())));
    let ms = deadline.map_or(-1, |d| berth_sys::poll_ms(d.saturating_duration_since(Instant::now())));
    let ready = berth_sys::poll_in(&[pidfd.as_fd()], ms).map_err(|e| hook_err(HookFailure::Wait(e)))?;
    if ready[0] == 0 {
        let _ = child.kill();
        let _ = child.wait();
        return Err(hook_err(HookFailure::Timeout(h.timeout.unwrap_or(0))));
    }
    let st = child.wait().map_err(|e| hook_err(HookFailure::Wait(e)))?;
    if !st.success() {
        return Err(hook_err(HookFailure::Exit(st)));
    }
    Ok(())
}
