//! Property tests of every input berth parses: config.json, state files,
//! resources for `update`, signal names and durations. Whatever comes in,
//! the answer is a value or a clear one-line error: never a panic, never a
//! hang. A fixed number of cases each (no root needed); the CLI's argument
//! parser has its own in the berth crate.
use berth_runtime::config::{default_spec_json, Resources, Spec};
use berth_runtime::lifecycle::{parse_duration, parse_signal};
use berth_runtime::state::Record;
use proptest::prelude::*;
use serde_json::Value;
use std::path::Path;

fn cases() -> ProptestConfig {
    ProptestConfig { cases: 600, failure_persistence: None, ..ProptestConfig::default() }
}

/// An error fit for one line of stderr.
fn one_line(e: &impl std::fmt::Display) {
    let m = e.to_string();
    assert!(!m.is_empty(), "empty error");
    assert!(!m.contains('\n'), "multi-line error: {m:?}");
}

/// Any JSON value, a few levels deep, with strings that are hostile as
/// paths and names (NUL, .., very long, unicode).
fn json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>().prop_filter("finite", |f| f.is_finite()).prop_map(Value::from),
        Just(Value::from(u32::MAX)),
        Just(Value::from(-1)),
        prop_oneof![
            Just("".to_string()),
            Just("../../x".to_string()),
            Just("/".to_string()),
            Just("a\0b".to_string()),
            Just("x".repeat(5000)),
            Just("SIGRTMAX+1".to_string()),
            "\\PC{0,20}",
        ]
        .prop_map(Value::from),
    ];
    leaf.prop_recursive(4, 48, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::btree_map("[a-zA-Z]{1,12}", inner, 0..6).prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// Every place in `v` (as JSON pointers), to aim a mutation at.
fn pointers(v: &Value, at: String, out: &mut Vec<String>) {
    out.push(at.clone());
    match v {
        Value::Object(m) => m.iter().for_each(|(k, x)| pointers(x, format!("{at}/{}", k.replace('~', "~0").replace('/', "~1")), out)),
        Value::Array(a) => a.iter().enumerate().for_each(|(i, x)| pointers(x, format!("{at}/{i}"), out)),
        _ => {}
    }
}

/// `base` with up to three of its places replaced by arbitrary values.
fn mutated(base: Value) -> impl Strategy<Value = Value> {
    let mut ptrs = Vec::new();
    pointers(&base, String::new(), &mut ptrs);
    prop::collection::vec((0..ptrs.len(), json()), 1..4).prop_map(move |edits| {
        let mut v = base.clone();
        for (i, new) in edits {
            if let Some(slot) = v.pointer_mut(&ptrs[i]) {
                *slot = new;
            }
        }
        v
    })
}

/// A full config as the tests write it: every section runc's spec has,
/// plus the ones a hostile config would aim at.
fn rich_config() -> Value {
    let mut v = default_spec_json(false);
    // An absolute rootfs that exists, so validation goes past that check.
    v["root"]["path"] = serde_json::json!("/");
    v["hooks"] = serde_json::json!({"prestart": [{"path": "/bin/true", "args": ["true"], "timeout": 5}]});
    v["annotations"] = serde_json::json!({"a": "b"});
    v["linux"]["sysctl"] = serde_json::json!({"net.ipv4.ip_forward": "1"});
    v["linux"]["cgroupsPath"] = serde_json::json!("/berth/x");
    v["linux"]["devices"] = serde_json::json!([{"type": "c", "path": "/dev/fuse", "major": 10, "minor": 229}]);
    v["linux"]["resources"] =
        serde_json::json!({"memory": {"limit": 1048576}, "cpu": {"shares": 2}, "pids": {"limit": 10}, "blockIO": {"weight": 0}});
    v["linux"]["seccomp"] =
        serde_json::json!({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["mkdir"], "action": "SCMP_ACT_ERRNO"}]});
    v
}

#[cfg(test)]
mod properties {
    use super::*;

    proptest! {
        #![proptest_config(cases())]

        #[test]
        fn config_text_never_panics(text in "\\PC{0,200}") {
            if let Err(e) = Spec::parse(&text) {
                one_line(&e);
            }
        }

        #[test]
        fn mutated_configs_parse_and_validate_without_panic(v in mutated(rich_config())) {
            match Spec::parse(&v.to_string()) {
                Err(e) => one_line(&e),
                Ok(spec) => {
                    if let Err(e) = spec.validate(Path::new("/nonexistent-bundle")) {
                        one_line(&e);
                    }
                }
            }
        }

        #[test]
        fn state_files_never_panic(v in mutated(serde_json::json!({
            "id": "x", "bundle": "/b", "rootfs": "/b/rootfs", "pid": 1, "start_time": 1, "created": "t", "owner": "root",
            "annotations": {}, "cgroup": {"dirs": [{"path": "/sys/fs/cgroup/x", "v2": true, "created": true}]},
            "own_pidns": true, "phase": "created", "mount_watermark": 0
        }))) {
            let _ = serde_json::from_str::<Record>(&v.to_string());
        }

        #[test]
        fn state_bytes_never_panic(b in prop::collection::vec(any::<u8>(), 0..300)) {
            let _ = serde_json::from_slice::<Record>(&b);
        }

        #[test]
        fn update_resources_never_panic(v in mutated(serde_json::json!({
            "memory": {"limit": 1, "reservation": 1, "swap": -1}, "cpu": {"shares": 1, "quota": -1, "period": 1, "cpus": "0", "mems": "0"},
            "pids": {"limit": -1}, "blockIO": {"weight": 0, "weightDevice": [{"major": 8, "minor": 0, "weight": 10}]},
            "devices": [{"allow": false, "access": "rwm"}], "unified": {"memory.high": "max"}
        }))) {
            if let Err(e) = serde_json::from_value::<Resources>(v) {
                one_line(&e);
            }
        }

        #[test]
        fn signal_names_never_panic(s in prop_oneof!["\\PC{0,12}", "(SIG)?RT(MIN|MAX)[+-]?[0-9]{0,12}", "-?[0-9]{1,12}"]) {
            match parse_signal(&s) {
                Ok(n) => prop_assert!((0..=64).contains(&n), "{s:?} gave signal {n}"),
                Err(e) => one_line(&e),
            }
        }

        #[test]
        fn durations_never_panic(s in prop_oneof!["\\PC{0,12}", "-?[0-9]{0,40}(\\.[0-9]{0,5})?(e[0-9]{1,3})?(ms|s|m|h)?", Just("nan".into()), Just("inf".into())]) {
            match parse_duration(&s, "--timeout") {
                Ok(d) => prop_assert!(d.as_secs() <= 366 * 86400, "{s:?} gave {d:?}"),
                Err(e) => one_line(&e),
            }
        }
    }

    #[test]
    fn known_hostile_values_are_refused_in_one_line() {
        for s in ["nan", "inf", "-inf", "-1", "1e30", ""] {
            one_line(&parse_duration(s, "--timeout").unwrap_err());
        }
        for s in ["SIGRTMAX+1", "RTMIN+31", "RTMAX-31", "RTMIN-1", "65", "SIGRTMIN+"] {
            one_line(&parse_signal(s).unwrap_err());
        }
        assert_eq!(parse_signal("SIGRTMAX-2").unwrap(), 62);
        assert_eq!(parse_signal("RTMIN+3").unwrap(), 37);
        for text in [
            r#"{"ociVersion":"1.0.0","process":{"user":[],"args":["x"],"cwd":"/"}}"#,
            r#"{"ociVersion":"1.0.0","mounts":[[]]}"#,
            r#"{"ociVersion":"1.0.0","linux":[]}"#,
        ] {
            one_line(&Spec::parse(text).unwrap_err());
        }
        let s = Spec::parse(r#"{"ociVersion":"1.0.0","process":{"args":["x"],"cwd":"/","env":["NOEQUALS"]}}"#).unwrap();
        one_line(&s.validate(Path::new("/")).unwrap_err());
    }
}
