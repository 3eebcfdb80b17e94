//! The help pages, laid out as runc's (urfave/cli's): a NAME section whose
//! second line is "PROG - ..." or "PROG COMMAND - ...", then USAGE. PROG is
//! the name berth was invoked by: installed as `runc` (where a caller looks
//! for that binary), it calls itself so, as its help then must.

/// Every command: (name, its arguments, what it does).
pub const COMMANDS: &[(&str, &str, &str)] = &[
    ("checkpoint", "<container-id>", "checkpoint a running container (not supported by berth: no CRIU integration)"),
    ("create", "<container-id>", "create a container"),
    ("delete", "<container-id>", "delete any resources held by the container"),
    ("events", "<container-id>", "display container events such as OOM notifications, cpu, memory, and IO usage statistics"),
    ("exec", "<container-id> <command> [command options]", "execute new process inside the container"),
    ("features", "", "show the enabled features"),
    ("gc", "", "finish the reaper's queued work now (--wait: after the one at work; --list: show it)"),
    ("kill", "<container-id> [signal]", "kill sends the specified signal (default: SIGTERM) to the container's init process"),
    ("list", "", "lists containers started by berth with the given root"),
    ("pause", "<container-id>", "pause suspends all processes inside the container"),
    ("ps", "<container-id> [ps options]", "ps displays the processes running inside a container"),
    ("restore", "<container-id>", "restore a container from a previous checkpoint (not supported by berth: no CRIU integration)"),
    ("resume", "<container-id>", "resumes all processes that have been previously paused"),
    ("run", "<container-id>", "create and run a container"),
    ("spec", "", "create a new specification file"),
    ("start", "<container-id>", "executes the user defined process in a created container"),
    ("state", "<container-id>", "output the state of a container"),
    ("update", "<container-id>", "update container resource constraints"),
    ("why-busy", "<path>", "list every process holding a path (mount, fd, cwd, root, mmap)"),
];

/// The name berth was invoked by (`berth`, or `runc` through a link).
pub fn prog() -> String {
    std::env::args_os()
        .next()
        .and_then(|a| std::path::Path::new(&a).file_name().map(|n| n.to_string_lossy().into_owned()))
        .filter(|n| !n.is_empty())
        .unwrap_or_else(|| "berth".into())
}

/// `--version`: runc's three lines (callers parse them).
pub fn version(prog: &str) -> String {
    let v = env!("CARGO_PKG_VERSION");
    format!("{prog} version {v}\ncommit: berth-{v}\nspec: 1.2.0\n")
}

/// The global help page.
pub fn global(prog: &str) -> String {
    let width = COMMANDS.iter().map(|c| c.0.len()).max().unwrap_or(0);
    let mut s = format!(
        "NAME:\n   {prog} - Open Container Initiative runtime (berth {})\n\nUSAGE:\n   {prog} [global options] command [command options] [arguments...]\n\nCOMMANDS:\n",
        env!("CARGO_PKG_VERSION")
    );
    for (name, _, what) in COMMANDS {
        s += &format!("   {name:width$}  {what}\n");
    }
    s += "   help      show this page, or a command's (help COMMAND, COMMAND -h)\n";
    s += GLOBAL_OPTIONS;
    s
}

/// A command's help page, or None for a command there is none of.
pub fn command(prog: &str, name: &str) -> Option<String> {
    let (name, args, what) = COMMANDS.iter().find(|c| c.0 == name)?;
    Some(format!("NAME:\n   {prog} {name} - {what}\n\nUSAGE:\n   {prog} {name} [command options] {args}\n"))
}

const GLOBAL_OPTIONS: &str = "
GLOBAL OPTIONS:
   --root value        state directory (default: \"/run/berth\")
   --log value         log file (default: stderr)
   --log-format value  text or json (default: \"text\")
   --debug             log debug lines, including teardown phase timings
   --systemd-cgroup    use the systemd cgroup driver (not supported yet)
   --storage value     where ephemeral writable layers live (default: \"/var/lib/berth\", or $BERTH_STORAGE)
   --cgroup-reap value immediate, deferred (batched by the reaper) or auto (default: \"auto\", or $BERTH_CGROUP_REAP)
   --version, -v       print the version
   --help, -h          show help
";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pages_have_runc_s_layout() {
        let g = global("runc");
        let lines: Vec<&str> = g.lines().collect();
        assert_eq!(lines[0], "NAME:");
        assert!(lines[1].starts_with("   runc - Open Container Initiative runtime"), "{}", lines[1]);
        for (name, _, _) in COMMANDS {
            let page = command("runc", name).unwrap();
            let l: Vec<&str> = page.lines().collect();
            assert_eq!(l[0], "NAME:");
            assert!(l[1].starts_with(&format!("   runc {name} - ")), "{}", l[1]);
            assert!(g.contains(&format!("   {name} ")), "{name} missing from the global page");
        }
        assert!(command("runc", "foo").is_none());
        let v = version("runc");
        let l: Vec<&str> = v.lines().collect();
        assert!(l[0].starts_with("runc version ") && l[1].starts_with("commit: ") && l[2].starts_with("spec: "), "{v}");
    }
}
