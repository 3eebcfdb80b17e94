//! runc-style argument parsing: global options, a command, its options (in
//! any of `--name value`, `--name=value`, `-name value`), then positionals.

use berth_runtime::RuntimeError;
use std::path::PathBuf;

pub struct Args {
    rest: Vec<String>,
}

pub struct Global {
    pub root: PathBuf,
    pub log: Option<PathBuf>,
    pub log_format: String,
    pub debug: bool,
    pub systemd_cgroup: bool,
    pub version: bool,
    pub help: bool,
    /// Where ephemeral writable layers live (--storage).
    pub storage: PathBuf,
    /// --cgroup-reap immediate|deferred|auto.
    pub cgroup_reap: String,
}

fn strip(tok: &str) -> Option<&str> {
    tok.strip_prefix("--").or_else(|| tok.strip_prefix('-')).filter(|s| !s.is_empty())
}

impl Global {
    /// Consumes the options before the command.
    pub fn parse(a: &mut Args) -> Result<Global, RuntimeError> {
        let mut g = Global {
            root: PathBuf::from("/run/berth"),
            log: None,
            log_format: "text".into(),
            debug: false,
            systemd_cgroup: false,
            version: false,
            help: false,
            storage: std::env::var_os("BERTH_STORAGE").map(PathBuf::from).unwrap_or_else(|| PathBuf::from("/var/lib/berth")),
            cgroup_reap: std::env::var("BERTH_CGROUP_REAP").unwrap_or_else(|_| "auto".into()),
        };
        while let Some(tok) = a.rest.first().cloned() {
            let Some(body) = strip(&tok) else { break };
            a.rest.remove(0);
            let (name, inline) = match body.split_once('=') {
                Some((n, v)) => (n, Some(v.to_string())),
                None => (body, None),
            };
            let value = |a: &mut Args| -> Result<String, RuntimeError> {
                if let Some(v) = inline.clone() {
                    return Ok(v);
                }
                if a.rest.is_empty() {
                    return Err(RuntimeError::Usage(format!("flag needs an argument: -{name}")));
                }
                Ok(a.rest.remove(0))
            };
            match name {
                "root" => g.root = PathBuf::from(value(a)?),
                "storage" => g.storage = PathBuf::from(value(a)?),
                "cgroup-reap" => g.cgroup_reap = value(a)?,
                "log" => g.log = Some(PathBuf::from(value(a)?)),
                "log-format" => {
                    g.log_format = value(a)?;
                    if g.log_format != "text" && g.log_format != "json" {
                        return Err(RuntimeError::Usage(format!("invalid log-format: {}", g.log_format)));
                    }
                }
                "debug" => g.debug = inline.as_deref() != Some("false"),
                "systemd-cgroup" => g.systemd_cgroup = inline.as_deref() != Some("false"),
                // Accepted for runc compatibility; they change nothing here.
                "rootless" | "criu" => {
                    value(a)?;
                }
                "version" | "v" => g.version = true,
                "help" | "h" => g.help = true,
                _ => return Err(RuntimeError::Usage(format!("flag provided but not defined: -{name}"))),
            }
        }
        Ok(g)
    }
}

impl Args {
    pub fn new(v: Vec<String>) -> Args {
        Args { rest: v }
    }

    fn find(&self, names: &[&str]) -> Option<(usize, Option<String>)> {
        for (i, t) in self.rest.iter().enumerate() {
            if t == "--" {
                return None;
            }
            let Some(body) = strip(t) else { continue };
            let (n, v) = match body.split_once('=') {
                Some((n, v)) => (n, Some(v.to_string())),
                None => (body, None),
            };
            if names.contains(&n) {
                return Some((i, v));
            }
        }
        None
    }

    /// An option with a value, removed from the arguments.
    pub fn value(&mut self, names: &[&str]) -> Result<Option<String>, RuntimeError> {
        let Some((i, inline)) = self.find(names) else { return Ok(None) };
        self.rest.remove(i);
        if let Some(v) = inline {
            return Ok(Some(v));
        }
        if i >= self.rest.len() {
            return Err(RuntimeError::Usage(format!("flag needs an argument: -{}", names[0])));
        }
        Ok(Some(self.rest.remove(i)))
    }

    /// A boolean option, removed from the arguments.
    pub fn flag(&mut self, names: &[&str]) -> bool {
        match self.find(names) {
            Some((i, v)) => {
                self.rest.remove(i);
                v.as_deref() != Some("false")
            }
            None => false,
        }
    }

    /// Cuts the arguments after the first positional one (the ID) and
    /// returns what follows, untouched (`ps ID -e -x`: ps's own options,
    /// as Go's flag parsing stops at the first positional). `with_value`
    /// names the options whose value is the next argument.
    pub fn split_after_positional(&mut self, with_value: &[&str]) -> Vec<String> {
        let mut i = 0;
        while i < self.rest.len() {
            let t = &self.rest[i];
            if t == "--" {
                i += 1;
                break;
            }
            match strip(t) {
                Some(b) if with_value.contains(&b) => i += 2,
                Some(_) => i += 1,
                None => {
                    i += 1;
                    break;
                }
            }
        }
        self.rest.split_off(i.min(self.rest.len()))
    }

    /// The next positional argument (the command, an ID, a signal).
    pub fn next_positional(&mut self) -> Option<String> {
        let i = self.rest.iter().position(|t| strip(t).is_none() || t == "-")?;
        Some(self.rest.remove(i))
    }

    fn reject_options(&self) -> Result<(), RuntimeError> {
        for t in &self.rest {
            if t == "--" {
                break;
            }
            if let Some(b) = strip(t) {
                return Err(RuntimeError::Usage(format!("flag provided but not defined: -{}", b.split('=').next().unwrap_or(b))));
            }
        }
        Ok(())
    }

    /// The container ID: the first positional, after every option was taken.
    pub fn id(&mut self) -> Result<String, RuntimeError> {
        self.reject_options()?;
        self.rest.retain(|t| t != "--");
        if self.rest.is_empty() {
            return Err(RuntimeError::Usage("this command requires the container id as its argument".into()));
        }
        Ok(self.rest.remove(0))
    }

    /// Whether `--help`/`-h` was given to the command (for `exec`, only
    /// before anything else: what follows the ID is the process' own).
    pub fn asks_help(&self, cmd: &str) -> bool {
        let is_help = |t: &String| matches!(t.as_str(), "--help" | "-help" | "-h" | "--h");
        if cmd == "exec" {
            return self.rest.first().is_some_and(is_help);
        }
        self.rest.iter().take_while(|t| *t != "--").any(is_help)
    }

    /// Everything left, in order (for `exec`, whose command follows the ID).
    pub fn rest(&mut self) -> Vec<String> {
        std::mem::take(&mut self.rest)
    }

    /// Fails on anything left that was not understood.
    pub fn done(&self) -> Result<(), RuntimeError> {
        self.reject_options()?;
        if let Some(t) = self.rest.first() {
            return Err(RuntimeError::Usage(format!("unexpected argument {t:?}")));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Tokens a caller (or a fuzzer) may pass: runc's flags in every form,
    /// values that are hostile as numbers, paths and IDs.
    fn token() -> impl Strategy<Value = String> {
        prop_oneof![
            Just("--root".to_string()),
            Just("-root".to_string()),
            Just("--log".to_string()),
            Just("--log-format=json".to_string()),
            Just("--debug=false".to_string()),
            Just("--".to_string()),
            Just("-".to_string()),
            Just("--timeout".to_string()),
            Just("--force".to_string()),
            Just("--bundle=".to_string()),
            Just("=".to_string()),
            Just("--=x".to_string()),
            Just("../x".to_string()),
            Just("a\0b".to_string()),
            Just("1e30".to_string()),
            "\\PC{0,10}",
            "--?[a-z-]{0,12}(=\\PC{0,6})?",
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 600, failure_persistence: None, ..ProptestConfig::default() })]

        #[test]
        fn any_argv_parses_or_fails_in_one_line(argv in prop::collection::vec(token(), 0..10)) {
            let mut a = Args::new(argv);
            let check = |r: Result<(), RuntimeError>| if let Err(e) = r { assert!(!e.to_string().contains('\n')) };
            match Global::parse(&mut a) {
                Err(e) => check(Err(e)),
                Ok(_) => {
                    let _ = a.next_positional();
                    let _ = a.asks_help("exec");
                    check(a.value(&["timeout", "t"]).map(drop));
                    let _ = a.flag(&["force", "f"]);
                    check(a.value(&["bundle", "b"]).map(drop));
                    check(a.id().map(drop));
                    check(a.done());
                }
            }
        }
    }
}
