//! OCI hooks: run with the container's state on stdin, under a timeout.
//! A hook that never reads stdin must not hurt berth (SIGPIPE is ignored
//! and EPIPE tolerated).

use crate::config::Hook;
use crate::{Error, Result};
use std::io::Write;
use std::os::fd::AsFd;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Runs each hook in order; the first failure stops and is returned.
pub fn run_all(kind: &str, hooks: &[Hook], state_json: &str) -> Result<()> {
    for h in hooks {
        run(kind, h, state_json)?;
    }
    Ok(())
}

pub fn run(kind: &str, h: &Hook, state_json: &str) -> Result<()> {
    berth_sys::ignore_sigpipe();
    let mut cmd = Command::new(&h.path);
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
    let hook_err = |why: String| Error::Hook { kind: kind.to_string(), path: h.path.clone(), why };
    let mut child = cmd.spawn().map_err(|e| hook_err(format!("could not start: {e}")))?;
    if let Some(mut stdin) = child.stdin.take() {
        let _ = stdin.write_all(state_json.as_bytes());
    }
    let pidfd = berth_sys::pidfd_open(child.id().cast_signed()).map_err(|e| Error::io(format!("pidfd of {kind} hook"), e))?;
    // A timeout past what an Instant can hold is no deadline at all.
    let deadline = h.timeout.filter(|t| *t > 0).and_then(|t| Instant::now().checked_add(Duration::from_secs(t.unsigned_abs())));
    let ms = deadline.map_or(-1, |d| berth_sys::poll_ms(d.saturating_duration_since(Instant::now())));
    let ready = berth_sys::poll_in(&[pidfd.as_fd()], ms).map_err(|e| Error::io("wait for hook", e))?;
    if ready[0] == 0 {
        let _ = child.kill();
        let _ = child.wait();
        return Err(Error::Timeout(format!("{kind} hook {} did not finish within {} s", h.path, h.timeout.unwrap_or(0))));
    }
    let st = child.wait().map_err(|e| Error::io(format!("wait for {kind} hook"), e))?;
    if !st.success() {
        return Err(hook_err(format!("failed: {st}")));
    }
    Ok(())
}
