//! Bad input: a clear error, a non-zero exit, and nothing left behind
//! (World::finish checks state, cgroups, mounts and processes).
use crate::common::*;
use serde_json::json;

fn create_fails(w: &mut World) -> String {
    let id = w.id();
    let bundle = w.bundle.to_string_lossy().into_owned();
    w.fails(&["create", "--bundle", &bundle, &id])
}

#[test]
#[ignore = "needs root"]
fn malformed_config_json() {
    let mut w = World::new("badjson");
    std::fs::write(w.bundle.join("config.json"), "{\"ociVersion\": \"1.0.0\", ").unwrap();
    let e = create_fails(&mut w);
    says(&e, "not valid JSON");
    w.finish();
}

#[test]
#[ignore = "needs root"]
fn oci_version_must_be_1_x_and_any_1_x_is_accepted() {
    let mut w = World::new("ociversion");
    w.config(&["true"], |c| c["ociVersion"] = json!("2.0.0"));
    let e = create_fails(&mut w);
    says(&e, "ociVersion");
    w.config(&["true"], |c| c["ociVersion"] = json!("1.0.0-rc5"));
    w.run_ok();
    w.finish();
}

#[test]
#[ignore = "needs root"]
fn missing_rootfs() {
    let mut w = World::new("norootfs");
    w.config(&["true"], |c| c["root"]["path"] = json!("nonexistent"));
    let e = create_fails(&mut w);
    says(&e, "rootfs");
    says(&e, "nonexistent");
    w.finish();
}

#[test]
#[ignore = "needs root"]
fn missing_binary_fails_create() {
    let mut w = World::new("nobinary");
    w.config(&["no-such-binary"], |_| {});
    let e = create_fails(&mut w);
    says(&e, "no-such-binary");
    says(&e, "executable file not found in $PATH");
    // The words podman and Docker map to exit codes 127 and 126, as runc says them.
    w.config(&["/bin/nonexistent"], |_| {});
    let e = create_fails(&mut w);
    says(&e, "stat /bin/nonexistent: no such file or directory");
    w.config(&["/etc"], |_| {});
    let e = create_fails(&mut w);
    says(&e, "permission denied");
    w.finish();
}

#[test]
#[ignore = "needs root"]
fn unsupported_settings_are_named() {
    let mut w = World::new("unsupported");
    w.config(&["true"], |c| c["linux"]["intelRdt"] = json!({"closID": "x"}));
    let e = create_fails(&mut w);
    says(&e, "linux.intelRdt");
    w.config(&["true"], |c| c["process"]["capabilities"]["bounding"] = json!(["CAP_NOT_A_CAP"]));
    let e = create_fails(&mut w);
    says(&e, "CAP_NOT_A_CAP");
    w.finish();
}

#[test]
#[ignore = "needs root"]
fn unknown_properties_are_ignored() {
    let mut w = World::new("unknownprops");
    w.config(&["true"], |c| {
        c["someFutureThing"] = json!({"x": 1});
        c["process"]["futureKnob"] = json!(true);
        c["annotations"] = json!({"org.example.unknown": "yes"});
    });
    w.run_ok();
    w.finish();
}

#[test]
#[ignore = "needs root"]
fn hostile_ids_are_refused_before_anything_is_made() {
    let w = World::new("hostile");
    let long = "a".repeat(256);
    let bundle = w.bundle.to_string_lossy().into_owned();
    for id in ["..", ".", "../x", "/", "a/b", "", "a b", long.as_str()] {
        let e = w.fails(&["create", "--bundle", &bundle, id]);
        if !e.contains("requires the container id") {
            says(&e, "container id");
        }
        let e = w.fails(&["delete", "--force", id]);
        if !e.contains("requires") {
            says(&e, "container id");
        }
    }
    assert!(!w.dir.join("x").exists());
    w.finish();
}

#[test]
#[ignore = "needs root"]
fn a_second_create_with_the_same_id_fails_and_keeps_the_first() {
    let mut w = World::new("dupid");
    w.config(&["sleep", "1000"], |_| {});
    let id = w.create();
    let bundle = w.bundle.to_string_lossy().into_owned();
    let e = w.fails(&["create", "--bundle", &bundle, &id]);
    says(&e, "already exists");
    assert_eq!(w.status(&id), "created");
    w.finish();
}

#[test]
#[ignore = "needs root"]
fn failure_inside_the_container_setup_leaves_nothing() {
    let mut w = World::new("setupfail");
    // A bind mount whose source does not exist fails during setup.
    w.config(&["true"], |c| {
        c["mounts"]
            .as_array_mut()
            .unwrap()
            .push(json!({"destination": "/x", "type": "bind", "source": "/nonexistent/source", "options": ["bind"]}));
    });
    let e = create_fails(&mut w);
    says(&e, "/nonexistent/source");
    w.finish();
}

#[test]
#[ignore = "needs root"]
fn failing_prestart_hook_aborts_and_cleans_up() {
    let mut w = World::new("hookfail");
    w.config(&["true"], |c| {
        c["hooks"] = json!({"createRuntime": [{"path": "/bin/false"}]});
    });
    let e = create_fails(&mut w);
    says(&e, "createRuntime");
    w.finish();
}

#[test]
#[ignore = "needs root"]
fn settings_berth_cannot_honour_here_are_refused_by_name() {
    if berth_only() {
        return;
    }
    let mut w = World::new("refused");
    type Edit = Box<dyn Fn(&mut serde_json::Value)>;
    let cases: Vec<(&str, Edit)> = vec![
        ("linux.netDevices", Box::new(|c| c["linux"]["netDevices"] = json!({"eth9": {"name": "eth0"}}))),
        ("linux.memoryPolicy", Box::new(|c| c["linux"]["memoryPolicy"] = json!({"mode": "MPOL_BIND", "nodes": "0"}))),
        ("process.apparmorProfile", Box::new(|c| c["process"]["apparmorProfile"] = json!("berth-test"))),
        ("process.selinuxLabel", Box::new(|c| c["process"]["selinuxLabel"] = json!("system_u:system_r:container_t:s0"))),
        ("linux.mountLabel", Box::new(|c| c["linux"]["mountLabel"] = json!("system_u:object_r:container_file_t:s0"))),
        ("linux.personality.flags", Box::new(|c| c["linux"]["personality"] = json!({"domain": "LINUX", "flags": ["ADDR_NO_RANDOMIZE"]}))),
        ("unknown namespace type", Box::new(|c| c["linux"]["namespaces"].as_array_mut().unwrap().push(json!({"type": "nope"})))),
    ];
    for (needle, f) in cases {
        w.config(&["true"], |c| f(c));
        let e = create_fails(&mut w);
        says(&e, needle);
    }
    w.finish();
}

#[test]
#[ignore = "needs root"]
fn a_config_json_that_is_a_fifo_fails_at_once() {
    let mut w = World::new("fifoconfig");
    let id = w.id();
    std::fs::remove_file(w.bundle.join("config.json")).unwrap();
    assert!(std::process::Command::new("mkfifo").arg(w.bundle.join("config.json")).status().unwrap().success());
    let bundle = w.bundle.to_string_lossy().into_owned();
    let mut child = w.cmd().args(["create", "--bundle", &bundle, &id]).stderr(std::process::Stdio::piped()).spawn().unwrap();
    let st = wait_within(&mut child, 10).expect("create hung on a FIFO config.json");
    assert!(!st.success());
    let mut err = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut err).unwrap();
    says(&err, "not a regular file");
    std::fs::remove_file(w.bundle.join("config.json")).unwrap();
    w.finish();
}

#[test]
#[ignore = "needs root"]
fn hundreds_of_kilobytes_of_annotations_reach_the_hooks() {
    let mut w = World::new("bigannotations");
    let out = w.dir.join("hook-state");
    let o = out.to_string_lossy().into_owned();
    w.config(&["true"], |c| {
        let big: serde_json::Map<String, serde_json::Value> = (0..300).map(|i| (format!("k{i}"), json!("v".repeat(1000)))).collect();
        c["annotations"] = serde_json::Value::Object(big);
        c["hooks"] = json!({"createContainer": [{"path": "/bin/sh", "args": ["sh", "-c", format!("cat > {o}")]}]});
    });
    w.run_ok();
    let state: serde_json::Value = serde_json::from_slice(&std::fs::read(&out).unwrap()).unwrap();
    assert_eq!(state["annotations"].as_object().unwrap().len(), 300);
    w.finish();
}

#[test]
#[ignore = "needs root"]
fn hostile_values_give_one_line_errors_and_leave_nothing() {
    let mut w = World::new("hostilevalues");
    type Edit = Box<dyn Fn(&mut serde_json::Value)>;
    let cases: Vec<(Edit, &str)> = vec![
        (Box::new(|c| c["process"]["env"] = json!(["PATH=/bin", "NOEQUALS"])), "NOEQUALS"),
        (Box::new(|c| c["process"]["env"] = json!(["PATH=/bin", "A=b\u{0}c"])), "NUL"),
        (Box::new(|c| c["process"]["args"] = json!(["sh", "a\u{0}b"])), "NUL"),
        (Box::new(|c| c["process"]["user"] = json!([])), "process.user"),
        (Box::new(|c| c["mounts"] = json!([[]])), "mounts"),
        (Box::new(|c| c["linux"]["cgroupsPath"] = json!("/berth-tests/a\u{0}b")), "cgroupsPath"),
        (Box::new(|c| c["linux"]["cgroupsPath"] = json!("/cgroup.procs")), "cgroupsPath"),
        (Box::new(|c| c["hostname"] = json!("h".repeat(200_000))), "sethostname"),
    ];
    for (edit, needle) in cases {
        w.config(&["true"], |c| edit(c));
        let (code, _, err) = w.run();
        assert_ne!(code, 0, "accepted: {needle}");
        assert_eq!(err.trim_end().lines().count(), 1, "not one line: {err:.300}");
        assert!(err.len() < 4096, "{} bytes of error", err.len());
        assert!(!err.contains('\0') && !err.contains("panicked"), "{err:.300}");
        says(&err, needle);
    }
    // The CLI's numbers and names.
    for t in ["nan", "inf", "-1", "1e30"] {
        let e = w.fails(&["delete", "--timeout", t, "nosuch"]);
        assert!(!e.contains("panicked"), "{e}");
        says(&e, "--timeout");
    }
    let e = w.fails(&["events", "--interval", "inf", "nosuch"]);
    says(&e, "--interval");
    let e = w.fails(&["kill", "nosuch", "SIGRTMAX+1"]);
    says(&e, "invalid signal");
    w.finish();
}

#[test]
#[ignore = "needs root"]
fn a_kernel_without_pidfd_open_is_refused_in_one_line_and_leaves_nothing() {
    // pidfd_open (Linux 5.3) is what a process's identity rests on: berth
    // has no fallback for it, by design; it says so and stops.
    if berth_only() {
        return;
    }
    let wrapper = enosys_wrapper();
    assert!(wrapper.exists(), "{} is missing (cargo test builds it)", wrapper.display());
    let mut w = World::new("nopidfd");
    w.enosys = Some("pidfd_open".into());
    w.config(&["true"], |_| {});
    let (code, _, err) = w.run();
    assert_ne!(code, 0, "ran without pidfd_open");
    assert_eq!(err.trim_end().lines().count(), 1, "not one line: {err:.300}");
    assert!(err.contains("pidfd") && err.contains("Function not implemented"), "{err}");
    w.enosys = None;
    w.finish();
}
