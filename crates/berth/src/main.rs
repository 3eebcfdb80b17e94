//! berth: the runc command line over the berth engine. Thin by design:
//! parse, call one lifecycle function, print.
#![forbid(unsafe_code)]

mod args;
mod help;

use args::{Args, Global};
use berth_runtime::lifecycle::{self, CreateOptions};
use berth_runtime::{config, features, log, RuntimeError};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

fn main() {
    let started = std::time::Instant::now();
    let argv: Vec<String> = std::env::args().skip(1).collect();
    // The command, once parsed: it decides the exit code of an error.
    let mut cmd = None;
    let r = real_main(argv, &mut cmd);
    if log::debug_enabled() {
        log::debug(&format!("command took {:.3}ms", started.elapsed().as_secs_f64() * 1e3));
    }
    std::process::exit(match r {
        Ok(code) => code,
        Err(e) => {
            let msg = one_line(&e.to_string());
            if log::has_file() {
                log::error(&msg);
            }
            eprintln!("berth: {msg}");
            match cmd.as_deref() {
                // why-busy: 0 nothing holds it, 1 holders listed, 2 error.
                Some("why-busy") => 2,
                // As runc: exec's own failures are 255, so that they are
                // told from the exit statuses of the process it runs.
                Some("exec") => 255,
                _ => 1,
            }
        }
    });
}

/// An error as one printable line of bounded length: control characters
/// (NUL and newlines from a hostile config among them) escaped, and a huge
/// value cut in its middle.
fn one_line(msg: &str) -> String {
    const MAX: usize = 2048;
    let esc: String = msg.chars().flat_map(|c| if c.is_control() { c.escape_default().collect::<Vec<_>>() } else { vec![c] }).collect();
    if esc.chars().count() <= MAX {
        return esc;
    }
    let head: String = esc.chars().take(MAX / 2).collect();
    let tail: String = esc.chars().rev().take(MAX / 4).collect::<Vec<_>>().into_iter().rev().collect();
    format!("{head}... ({} characters left out) ...{tail}", esc.chars().count() - MAX / 2 - MAX / 4)
}

fn real_main(argv: Vec<String>, parsed: &mut Option<String>) -> Result<i32, RuntimeError> {
    let mut a = Args::new(argv);
    let g = Global::parse(&mut a)?;
    let file = match &g.log {
        Some(p) => {
            Some(std::fs::OpenOptions::new().create(true).append(true).open(p).map_err(|e| RuntimeError::io_at("open log file", p, e))?)
        }
        None => None,
    };
    log::init(file, g.log_format == "json", g.debug);
    let prog = help::prog();
    if g.version {
        print!("{}", help::version(&prog));
        return Ok(0);
    }
    let Some(cmd) = a.next_positional() else {
        print!("{}", help::global(&prog));
        return Ok(if g.help { 0 } else { 1 });
    };
    *parsed = Some(cmd.clone());
    if a.asks_help(&cmd) {
        // runc's answers: a page per command, an error for anything else.
        return match help::command(&prog, &cmd) {
            Some(page) => {
                print!("{page}");
                Ok(0)
            }
            None => Err(RuntimeError::Usage(format!("No help topic for '{cmd}'"))),
        };
    }
    // The commands that start processes in a container run from a copy of
    // berth that the container cannot write to (CVE-2019-5736): before
    // they touch anything.
    if matches!(cmd.as_str(), "create" | "run" | "exec") {
        berth_runtime::exe::ensure_protected()?;
    }
    // A process is known by its pidfd: without pidfd_open no container
    // can be told from a reused PID, so nothing is done at all.
    if !matches!(cmd.as_str(), "spec" | "features" | "version") {
        berth_runtime::process::check_pidfd()?;
    }
    let root = g.root.clone();
    let reap = berth_runtime::teardown::CgroupReap::parse(&g.cgroup_reap)
        .ok_or_else(|| RuntimeError::Usage(format!("--cgroup-reap {:?}: immediate, deferred or auto", g.cgroup_reap)))?;
    berth_runtime::teardown::set_cgroup_reap(reap);
    // Work a killed berth left to the reaper is picked up by the next command.
    if cmd != "gc" {
        berth_runtime::reaper::kick(&root);
    }
    match cmd.as_str() {
        "create" | "run" => cmd_create_or_run(&cmd, &mut a, &g, root),
        "start" => {
            let id = a.id()?;
            lifecycle::start(&root, &id)?;
            Ok(0)
        }
        "state" => {
            let id = a.id()?;
            println!("{}", lifecycle::state(&root, &id)?);
            Ok(0)
        }
        "kill" => {
            let all = a.flag(&["all", "a"]);
            let id = a.id()?;
            let sig = a.next_positional().unwrap_or_else(|| "SIGTERM".into());
            a.done()?;
            lifecycle::kill(&root, &id, lifecycle::parse_signal(&sig)?, all)?;
            Ok(0)
        }
        "delete" => {
            let force = a.flag(&["force", "f"]);
            let timeout =
                a.value(&["timeout"])?.map(|v| lifecycle::parse_duration(&v, "--timeout")).transpose()?.unwrap_or(Duration::from_secs(10));
            let id = a.id()?;
            match lifecycle::delete(&root, &id, force, timeout) {
                Ok(_) => Ok(0),
                // `delete --force` of a container that does not exist succeeds.
                Err(RuntimeError::NotExist { .. }) if force => Ok(0),
                Err(e) => Err(e),
            }
        }
        "pause" | "resume" => {
            let id = a.id()?;
            lifecycle::set_paused(&root, &id, cmd == "pause")?;
            Ok(0)
        }
        "list" => {
            let format = a.value(&["format", "f"])?.unwrap_or_else(|| "table".into());
            let quiet = a.flag(&["quiet", "q"]);
            a.done()?;
            list(&root, &format, quiet)?;
            Ok(0)
        }
        "spec" => cmd_spec(&mut a),
        "features" => {
            a.done()?;
            println!("{}", serde_json::to_string_pretty(&features::features()).unwrap_or_default());
            Ok(0)
        }
        "events" => {
            let once = a.flag(&["stats"]);
            let interval = a.value(&["interval"])?.unwrap_or_else(|| "5s".into());
            let id = a.id()?;
            let every = lifecycle::parse_duration(&interval, "--interval")?.max(Duration::from_millis(1));
            berth_runtime::events::events(&root, &id, once, every, &mut std::io::stdout())?;
            Ok(0)
        }
        "update" => cmd_update(&mut a, &root),
        "ps" => cmd_ps(&mut a, &root),
        "exec" => {
            let (o, _) = exec_options(root, a.rest())?;
            berth_runtime::exec::exec(&o)
        }
        "why-busy" => cmd_why_busy(&mut a, &root),
        "gc" => cmd_gc(&mut a, &root),
        "help" => match a.next_positional() {
            Some(c) => {
                print!("{}", help::command(&prog, &c).ok_or_else(|| RuntimeError::Usage(format!("No help topic for '{c}'")))?);
                Ok(0)
            }
            None => {
                print!("{}", help::global(&prog));
                Ok(0)
            }
        },
        other => Err(RuntimeError::Usage(format!("unknown command {other:?}; see berth --help"))),
    }
}

/// A size as runc's flags take it (go-units' RAMInBytes): a number with an
/// optional binary unit, k/m/g/t/p, upper or lower case, with or without a
/// trailing b ("50M", "1.5g", "512kb", "1024"); -1 for "unlimited".
fn parse_size(v: &str) -> Option<i64> {
    if v == "-1" {
        return Some(-1);
    }
    let t = v.trim();
    let lower = t.to_ascii_lowercase();
    let body = lower.strip_suffix('b').unwrap_or(&lower);
    let (num, shift) = match body.chars().last()? {
        'k' => (&body[..body.len() - 1], 10u32),
        'm' => (&body[..body.len() - 1], 20),
        'g' => (&body[..body.len() - 1], 30),
        't' => (&body[..body.len() - 1], 40),
        'p' => (&body[..body.len() - 1], 50),
        _ => (body, 0),
    };
    let num = num.trim();
    let unit = 1i64 << shift;
    if let Ok(n) = num.parse::<i64>() {
        return n.checked_mul(unit).filter(|b| *b >= 0);
    }
    // A fraction ("1.5g"): whole bytes, rounded down, as go-units does.
    let (whole, frac) = num.split_once('.')?;
    let whole: i64 = if whole.is_empty() { 0 } else { whole.parse().ok()? };
    let digits = frac.len().min(9);
    let frac_n: i64 = if digits == 0 { 0 } else { frac[..digits].parse().ok()? };
    let scale = 10i64.checked_pow(u32::try_from(digits).ok()?)?;
    whole.checked_mul(unit)?.checked_add(frac_n.checked_mul(unit)? / scale).filter(|b| *b >= 0)
}

/// `create` and `run`.
fn cmd_create_or_run(cmd: &str, a: &mut Args, g: &Global, root: PathBuf) -> Result<i32, RuntimeError> {
    let bundle = a.value(&["bundle", "b"])?.map(PathBuf::from);
    let console_socket = a.value(&["console-socket"])?.map(|p| absolute(Path::new(&p)));
    let pid_file = a.value(&["pid-file"])?.map(PathBuf::from);
    let pidfd_socket = a.value(&["pidfd-socket"])?.map(|p| absolute(Path::new(&p)));
    let preserve_fds = a
        .value(&["preserve-fds"])?
        .map(|v| v.parse::<u32>())
        .transpose()
        .map_err(|_| RuntimeError::Usage("--preserve-fds takes a number".into()))?
        .unwrap_or(0);
    let no_pivot = a.flag(&["no-pivot"]);
    let no_new_keyring = a.flag(&["no-new-keyring"]);
    let ephemeral_layer = a.flag(&["ephemeral-layer"]);
    let (detach, keep) = if cmd == "run" { (a.flag(&["detach", "d"]), a.flag(&["keep"])) } else { (false, false) };
    let id = a.id()?;
    let bundle = bundle.unwrap_or_else(|| PathBuf::from("."));
    let pid_file = pid_file.map(|p| absolute(&p));
    let storage = g.storage.clone();
    let o = CreateOptions {
        root,
        id,
        bundle,
        pid_file,
        console_socket,
        pidfd_socket,
        preserve_fds,
        no_pivot,
        no_new_keyring,
        ephemeral_layer,
        storage,
        foreground: false,
        systemd_cgroup: g.systemd_cgroup,
    };
    if cmd == "create" {
        lifecycle::create(&o)?;
        Ok(0)
    } else {
        lifecycle::run(&o, detach, keep)
    }
}

/// `spec`.
fn cmd_spec(a: &mut Args) -> Result<i32, RuntimeError> {
    let bundle = a.value(&["bundle", "b"])?.map(PathBuf::from).unwrap_or_else(|| PathBuf::from("."));
    let rootless = a.flag(&["rootless"]);
    a.done()?;
    let path = bundle.join("config.json");
    if path.exists() {
        return Err(RuntimeError::Usage("File config.json exists. Remove it first".into()));
    }
    let text = serde_json::to_string_pretty(&config::default_spec_json(rootless)).unwrap_or_default();
    std::fs::write(&path, text + "\n").map_err(|e| RuntimeError::io_at("write", &path, e))?;
    Ok(0)
}

/// `update`.
fn cmd_update(a: &mut Args, root: &Path) -> Result<i32, RuntimeError> {
    let mut r: serde_json::Value = match a.value(&["resources", "r"])? {
        Some(f) => {
            let text = if f == "-" {
                std::io::read_to_string(std::io::stdin()).map_err(|e| RuntimeError::io("read resources from stdin", e))?
            } else {
                std::fs::read_to_string(&f).map_err(|e| RuntimeError::io_at("read", &f, e))?
            };
            serde_json::from_str(&text).map_err(|source| berth_runtime::config::ConfigError::Schema { at: "resources".into(), source })?
        }
        None => serde_json::json!({}),
    };
    // runc's individual flags, each onto its place in the resources; the
    // memory ones take sizes as runc does ("50M", "1g", "-1").
    let num = |v: &str, flag: &str| v.parse::<i64>().map_err(|_| RuntimeError::Usage(format!("--{flag} takes a number")));
    let size = |v: &str, flag: &str| parse_size(v).ok_or_else(|| RuntimeError::Usage(format!("--{flag}: invalid size {v:?}")));
    let flags: &[(&[&str], &str, &str, bool)] = &[
        (&["memory"], "memory", "limit", true),
        (&["memory-reservation"], "memory", "reservation", true),
        (&["memory-swap"], "memory", "swap", true),
        (&["kernel-memory"], "memory", "kernel", true),
        (&["kernel-memory-tcp"], "memory", "kernelTCP", true),
        (&["cpu-share", "cpu-shares"], "cpu", "shares", false),
        (&["cpu-quota"], "cpu", "quota", false),
        (&["cpu-period"], "cpu", "period", false),
        (&["cpu-rt-runtime"], "cpu", "realtimeRuntime", false),
        (&["cpu-rt-period"], "cpu", "realtimePeriod", false),
        (&["pids-limit"], "pids", "limit", false),
        (&["blkio-weight"], "blockIO", "weight", false),
    ];
    for (names, group, key, is_size) in flags {
        if let Some(v) = a.value(names)? {
            r[*group][*key] = serde_json::json!(if *is_size { size(&v, names[0])? } else { num(&v, names[0])? });
        }
    }
    // runc's rule: an unlimited memory without a swap given means
    // unlimited swap too (a limited memsw would refuse it).
    if r["memory"]["limit"] == -1 && r["memory"].get("swap").is_none() {
        r["memory"]["swap"] = serde_json::json!(-1);
    }
    for (flag, key) in [("cpuset-cpus", "cpus"), ("cpuset-mems", "mems")] {
        if let Some(v) = a.value(&[flag])? {
            r["cpu"][key] = serde_json::json!(v);
        }
    }
    for flag in ["l3-cache-schema", "mem-bw-schema"] {
        if a.value(&[flag])?.is_some() {
            return Err(RuntimeError::Usage(format!("--{flag}: linux.intelRdt is not supported by berth")));
        }
    }
    let id = a.id()?;
    let res: berth_runtime::config::Resources =
        serde_json::from_value(r).map_err(|source| berth_runtime::config::ConfigError::Schema { at: "resources".into(), source })?;
    lifecycle::update(root, &id, &res)?;
    Ok(0)
}

/// `ps`.
fn cmd_ps(a: &mut Args, root: &Path) -> Result<i32, RuntimeError> {
    let ps_args = a.split_after_positional(&["format", "f"]);
    let format = a.value(&["format", "f"])?.unwrap_or_else(|| "table".into());
    let id = a.id()?;
    let pids = lifecycle::pids(root, &id)?;
    match format.as_str() {
        "json" => println!("{}", serde_json::to_string(&pids).unwrap_or_default()),
        "table" => {
            // runc's way: the host's ps, its lines kept for our PIDs.
            let args = if ps_args.is_empty() { vec!["-ef".to_string()] } else { ps_args };
            let out = std::process::Command::new("ps").args(&args).output().map_err(|e| RuntimeError::io("run ps", e))?;
            let text = String::from_utf8_lossy(&out.stdout);
            let mut lines = text.lines();
            let header = lines.next().unwrap_or("");
            let col = header
                .split_whitespace()
                .position(|c| c == "PID")
                .ok_or_else(|| RuntimeError::Usage("ps output has no PID column".into()))?;
            println!("{header}");
            for l in lines {
                if l.split_whitespace().nth(col).and_then(|p| p.parse::<i32>().ok()).is_some_and(|p| pids.contains(&p)) {
                    println!("{l}");
                }
            }
        }
        f => return Err(RuntimeError::Usage(format!("invalid format option {f:?}"))),
    }
    Ok(0)
}

/// `why-busy`.
fn cmd_why_busy(a: &mut Args, root: &Path) -> Result<i32, RuntimeError> {
    let format = a.value(&["format", "f"])?.unwrap_or_else(|| "table".into());
    let path = a.next_positional().ok_or_else(|| RuntimeError::Usage("why-busy requires a PATH".into()))?;
    a.done()?;
    let path = std::fs::canonicalize(&path).map_err(|e| RuntimeError::io_at("why-busy", &path, e))?;
    let mut holders = berth_runtime::busy::holders(&path);
    lifecycle::attribute(&mut holders, root);
    if format == "json" {
        println!("{}", serde_json::to_string_pretty(&holders).unwrap_or_default());
    } else {
        for h in &holders {
            println!("{}\t{}\t{}\t{}\t{}", h.pid, h.command, h.mount_namespace, h.how, h.container.as_deref().unwrap_or("-"));
        }
    }
    Ok(if holders.is_empty() { 0 } else { 1 })
}

/// `gc`.
fn cmd_gc(a: &mut Args, root: &Path) -> Result<i32, RuntimeError> {
    let wait = a.flag(&["wait"]);
    let list = a.flag(&["list"]);
    a.done()?;
    if list {
        let jobs: Vec<serde_json::Value> = berth_runtime::reaper::pending(root)
            .into_iter()
            .map(|(f, j)| serde_json::json!({"file": f, "id": j.id, "paths": j.paths, "cgroup": j.cgroup.map(|c| c.dirs.into_iter().map(|d| d.path).collect::<Vec<_>>()), "queued": j.queued}))
            .collect();
        println!("{}", serde_json::to_string_pretty(&jobs).unwrap_or_default());
        return Ok(0);
    }
    let n = berth_runtime::reaper::drain(root, wait)?;
    let left = berth_runtime::reaper::pending(root).len();
    log::debug(&format!("gc: {n} jobs done, {left} left"));
    if left > 0 && wait {
        return Err(berth_runtime::reaper::ReaperError::Unfinished { left }.into());
    }
    Ok(0)
}

/// runc's `exec` options: all before the container ID; the command after it.
fn exec_options(root: PathBuf, toks: Vec<String>) -> Result<(berth_runtime::exec::ExecOptions, ()), RuntimeError> {
    let mut o = berth_runtime::exec::ExecOptions { root, ..Default::default() };
    let mut it = toks.into_iter().peekable();
    let usage = |m: &str| RuntimeError::Usage(m.to_string());
    while let Some(t) = it.peek().cloned() {
        let Some(body) = t.strip_prefix("--").or_else(|| t.strip_prefix('-')).filter(|b| !b.is_empty()) else { break };
        it.next();
        let (name, inline) = match body.split_once('=') {
            Some((n, v)) => (n.to_string(), Some(v.to_string())),
            None => (body.to_string(), None),
        };
        let mut val = || inline.clone().or_else(|| it.next()).ok_or_else(|| usage(&format!("flag needs an argument: -{name}")));
        match name.as_str() {
            "process" | "p" => {
                let f = val()?;
                let text = std::fs::read_to_string(&f).map_err(|e| RuntimeError::io_at("read", &f, e))?;
                o.process = Some(
                    serde_json::from_str(&text)
                        .map_err(|e| RuntimeError::Config(berth_runtime::config::ConfigError::Schema { at: f.clone(), source: e }))?,
                );
            }
            "tty" | "t" => o.tty = inline.as_deref() != Some("false"),
            "console-socket" => o.console_socket = Some(PathBuf::from(val()?)),
            "detach" | "d" => o.detach = inline.as_deref() != Some("false"),
            "pid-file" => o.pid_file = Some(absolute(Path::new(&val()?))),
            "cwd" => o.cwd = Some(val()?),
            "env" | "e" => o.env.push(val()?),
            "user" | "u" => {
                let v = val()?;
                let (u, g) = match v.split_once(':') {
                    Some((u, g)) => (u.to_string(), Some(g.to_string())),
                    None => (v, None),
                };
                let num = |s: &str| s.parse::<u32>().map_err(|_| usage(&format!("--user takes uid[:gid] as numbers, not {s:?}")));
                o.user = Some((num(&u)?, g.as_deref().map(num).transpose()?));
            }
            "additional-gids" | "g" => o.additional_gids.push(val()?.parse().map_err(|_| usage("--additional-gids takes a number"))?),
            "cap" | "c" => o.caps.push(val()?),
            "no-new-privs" => o.no_new_privs = inline.as_deref() != Some("false"),
            "preserve-fds" => o.preserve_fds = val()?.parse().map_err(|_| usage("--preserve-fds takes a number"))?,
            "ignore-paused" => o.ignore_paused = inline.as_deref() != Some("false"),
            "pidfd-socket" => o.pidfd_socket = Some(absolute(Path::new(&val()?))),
            "cgroup" => o.cgroups.push(val()?),
            "apparmor" | "process-label" => {
                return Err(RuntimeError::Usage(format!("exec --{name} is not supported by berth yet")));
            }
            other => return Err(usage(&format!("flag provided but not defined: -{other}"))),
        }
    }
    o.id = it.next().ok_or_else(|| usage("exec requires the container id as its argument"))?;
    o.args = it.collect();
    Ok((o, ()))
}

fn absolute(p: &Path) -> PathBuf {
    if p.is_absolute() {
        p.to_path_buf()
    } else {
        std::env::current_dir().map(|d| d.join(p)).unwrap_or_else(|_| p.to_path_buf())
    }
}

fn list(root: &Path, format: &str, quiet: bool) -> Result<(), RuntimeError> {
    let items = lifecycle::list(root)?;
    let mut out = std::io::stdout().lock();
    if quiet {
        for i in &items {
            let _ = writeln!(out, "{}", i.record.id);
        }
        return Ok(());
    }
    match format {
        "json" => {
            // Serialized from the struct, in runc's field order (through a
            // serde_json::Value the keys would come out sorted).
            static NO_ANNOTATIONS: std::collections::BTreeMap<String, String> = std::collections::BTreeMap::new();
            let v: Vec<_> = items
                .iter()
                .map(|i| {
                    let mut st = i.record.oci(i.status);
                    st.annotations = &NO_ANNOTATIONS;
                    st
                })
                .collect();
            let _ = writeln!(out, "{}", if v.is_empty() { "null".to_string() } else { serde_json::to_string(&v).unwrap_or_default() });
        }
        "table" => {
            let mut rows = vec![["ID", "PID", "STATUS", "BUNDLE", "CREATED", "OWNER"].map(String::from).to_vec()];
            for i in &items {
                let pid = if i.status == berth_runtime::state::Status::Stopped { 0 } else { i.record.pid };
                rows.push(vec![
                    i.record.id.clone(),
                    pid.to_string(),
                    i.status.as_str().to_string(),
                    i.record.bundle.display().to_string(),
                    i.record.created.clone(),
                    i.record.owner.clone(),
                ]);
            }
            // Columns as Go's tabwriter(minwidth 12, padding 3) lays them out.
            let mut w = [0usize; 6];
            for r in &rows {
                for (i, c) in r.iter().enumerate() {
                    w[i] = w[i].max((c.len() + 3).max(12));
                }
            }
            for r in &rows {
                let mut line = String::new();
                for (i, c) in r.iter().enumerate() {
                    if i == r.len() - 1 {
                        line += c;
                    } else {
                        line += &format!("{c:<width$}", width = w[i]);
                    }
                }
                let _ = writeln!(out, "{line}");
            }
        }
        f => return Err(RuntimeError::Usage(format!("invalid format option {f:?}"))),
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::parse_size;

    #[test]
    fn sizes_as_runc_reads_them() {
        for (s, n) in [
            ("1024", 1024),
            ("50M", 52_428_800),
            ("50m", 52_428_800),
            ("512kb", 524_288),
            ("1g", 1 << 30),
            ("1.5G", 3 << 29),
            ("-1", -1),
            ("0", 0),
            ("2T", 2 << 40),
        ] {
            assert_eq!(parse_size(s), Some(n), "{s}");
        }
        for s in ["", "x", "M", "-2", "1.2.3", "9999999999P", "1e3", "-5m"] {
            assert_eq!(parse_size(s), None, "{s}");
        }
    }
}
