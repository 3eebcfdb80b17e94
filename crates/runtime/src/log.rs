//! A small logger with runc's two formats. `--log-format json` writes one
//! object per line, `{"level":"error","msg":"...","time":"..."}`, which is
//! what containerd's runc shim parses from log.json.

use std::io::Write;
use std::sync::Mutex;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    Debug,
    Info,
    Warn,
    Error,
}

impl Level {
    fn name(self) -> &'static str {
        match self {
            Level::Debug => "debug",
            Level::Info => "info",
            Level::Warn => "warning",
            Level::Error => "error",
        }
    }
}

struct Logger {
    file: Option<std::fs::File>,
    json: bool,
    min: Level,
}

static LOGGER: Mutex<Option<Logger>> = Mutex::new(None);

/// Sets the destination (a file, or stderr when `None`), the format and
/// whether debug lines are kept.
pub fn init(file: Option<std::fs::File>, json: bool, debug: bool) {
    let min = if debug { Level::Debug } else { Level::Warn };
    *LOGGER.lock().unwrap_or_else(|e| e.into_inner()) = Some(Logger { file, json, min });
}

/// True when debug lines are written.
pub fn debug_enabled() -> bool {
    LOGGER.lock().map(|l| l.as_ref().is_some_and(|l| l.min == Level::Debug)).unwrap_or(false)
}

/// The log file's fd, kept open by a clone that still logs while it closes
/// what it inherited (close-on-exec: the container never gets it).
pub fn file_fd() -> Option<std::os::fd::RawFd> {
    use std::os::fd::AsRawFd;
    LOGGER.lock().ok()?.as_ref()?.file.as_ref().map(|f| f.as_raw_fd())
}

/// True when a log file was given (so errors also go there).
pub fn has_file() -> bool {
    LOGGER.lock().map(|l| l.as_ref().is_some_and(|l| l.file.is_some())).unwrap_or(false)
}

pub fn log(level: Level, msg: &str) {
    let mut g = LOGGER.lock().unwrap_or_else(|e| e.into_inner());
    let Some(l) = g.as_mut() else {
        if level >= Level::Warn {
            eprintln!("{}: {msg}", level.name());
        }
        return;
    };
    if level < l.min {
        return;
    }
    let line = if l.json {
        let mut o = serde_json::Map::new();
        o.insert("level".into(), level.name().into());
        o.insert("msg".into(), msg.into());
        o.insert("time".into(), rfc3339_now().into());
        format!("{}\n", serde_json::Value::Object(o))
    } else {
        format!("time=\"{}\" level={} msg={:?}\n", rfc3339_now(), level.name(), msg)
    };
    match l.file.as_mut() {
        Some(f) => {
            let _ = f.write_all(line.as_bytes());
        }
        None => {
            let _ = std::io::stderr().write_all(line.as_bytes());
        }
    }
}

pub fn debug(msg: &str) {
    log(Level::Debug, msg)
}
pub fn info(msg: &str) {
    log(Level::Info, msg)
}
pub fn warn(msg: &str) {
    log(Level::Warn, msg)
}
pub fn error(msg: &str) {
    log(Level::Error, msg)
}

/// Now, UTC, as RFC 3339 with nanoseconds (`2026-11-29T07:04:42.123456789Z`).
pub fn rfc3339_now() -> String {
    let (secs, nanos) = berth_sys::now_realtime();
    rfc3339(secs, nanos)
}

pub fn rfc3339(secs: i64, nanos: u32) -> String {
    let days = secs.div_euclid(86400);
    let rem = secs.rem_euclid(86400);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719468;
    let era = z.div_euclid(146097);
    let doe = z - era * 146097;
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = if m <= 2 { y + 1 } else { y };
    format!("{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{nanos:09}Z", rem / 3600, rem % 3600 / 60, rem % 60)
}

#[cfg(test)]
mod tests {
    #[test]
    fn formats_rfc3339() {
        assert_eq!(super::rfc3339(0, 0), "1970-01-01T00:00:00.000000000Z");
        assert_eq!(super::rfc3339(1795849482, 5), "2026-11-28T07:04:42.000000005Z");
        assert_eq!(super::rfc3339(951782400, 0), "2000-02-29T00:00:00.000000000Z");
    }
}
