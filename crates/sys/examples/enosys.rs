//! Runs a program under a seccomp filter that makes the named system calls
//! fail with ENOSYS, as on a kernel that lacks them, so that the test suite
//! can drive berth's fallbacks on any kernel (scripts/test's ENOSYS tier):
//!
//!   enosys clone3,openat2,listmount PROGRAM [ARG...]
//!
//! The filter is inherited by every child and across exec. Numbers of the
//! calls this libseccomp does not know by name are the kernel's unified
//! ones (the same on every architecture since 5.1).

use berth_sys::seccomp::{syscall_number, Filter, ATTR_CTL_NNP};
use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::process::ExitCode;

const SCMP_ACT_ALLOW: u32 = 0x7fff_0000;
const SCMP_ACT_ERRNO_ENOSYS: u32 = 0x0005_0000 | 38;

fn number(name: &str) -> Option<i32> {
    syscall_number(name).or(match name {
        "clone3" => Some(435),
        "openat2" => Some(437),
        "statmount" => Some(457),
        "listmount" => Some(458),
        _ => None,
    })
}

fn main() -> ExitCode {
    let args: Vec<std::ffi::OsString> = std::env::args_os().skip(1).collect();
    let [calls, program, ..] = args.as_slice() else {
        eprintln!("usage: enosys SYSCALL[,SYSCALL...] PROGRAM [ARG...]");
        return ExitCode::from(2);
    };
    let run = || -> std::io::Result<std::convert::Infallible> {
        let mut f = Filter::new(SCMP_ACT_ALLOW)?;
        // Root loads it without no_new_privs, so setuid programs in the
        // containers keep working as they do without the filter.
        f.set_attr(ATTR_CTL_NNP, 0)?;
        for name in calls.to_string_lossy().split(',').filter(|n| !n.is_empty()) {
            let nr = number(name).ok_or_else(|| std::io::Error::other(format!("unknown system call {name}")))?;
            f.add_rule(SCMP_ACT_ERRNO_ENOSYS, nr, &[])?;
        }
        f.load()?;
        let argv: Vec<CString> = args[1..].iter().map(|a| CString::new(a.as_bytes())).collect::<Result<_, _>>()?;
        let envp: Vec<CString> =
            std::env::vars_os().map(|(k, v)| CString::new([k.as_bytes(), b"=", v.as_bytes()].concat())).collect::<Result<_, _>>()?;
        let path = CString::new(program.as_bytes())?;
        Err(berth_sys::execve(&path, &argv, &envp))
    };
    match run() {
        Err(e) => {
            eprintln!("enosys: {}: {e}", program.to_string_lossy());
            ExitCode::from(127)
        }
    }
}
