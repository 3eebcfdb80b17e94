//! Crash safety: berth killed (SIGKILL) at each fault-injection point of
//! create, start, kill and delete, and at random moments; `delete --force`
//! afterwards must finish the job and leave nothing. Berth-only (fault
//! injection is berth's).
use crate::common::*;
use std::os::unix::process::ExitStatusExt;

#[test]
#[ignore = "needs root"]
fn killed_at_every_fault_point_then_delete_force_leaves_nothing() {
    if berth_only() {
        return;
    }
    needs_fault_injection();
    let mut w = World::new("faults");
    w.config(&["sh", "-c", "sleep 1000 & sleep 1000"], |_| {});
    every_fault_point(&mut w, "immediate");
    // Again with an ephemeral writable layer and the cgroup left to the
    // reaper: whatever the crash, the layer and the cgroup are finished.
    w.config(&["sh", "-c", "echo x > /x; sleep 1000 & sleep 1000"], |c| {
        c["annotations"] = serde_json::json!({"run.berth.layer": "ephemeral"});
    });
    every_fault_point(&mut w, "deferred");
    w.finish();
}

fn every_fault_point(w: &mut World, reap: &str) {
    let bundle = w.bundle.to_string_lossy().into_owned();
    for point in berth_runtime::FAULT_POINTS {
        if *point == "delete:handed-to-reaper" && reap == "immediate" {
            continue; // a plain container gives the reaper nothing
        }
        let id = w.id();
        let steps: [(&str, Vec<&str>); 4] = [
            ("create", vec!["create", "--bundle", &bundle, &id]),
            ("start", vec!["start", &id]),
            ("kill", vec!["kill", &id, "CONT"]),
            ("delete", vec!["delete", "--force", &id]),
        ];
        for (verb, args) in steps {
            let faulted = point.starts_with(&format!("{verb}:"));
            let mut cmd = w.cmd();
            cmd.args(&args).stdout(std::process::Stdio::null()).stderr(std::process::Stdio::null()).env("BERTH_CGROUP_REAP", reap);
            if faulted {
                cmd.env("BERTH_FAULT_INJECT", point);
            }
            let st = cmd.status().unwrap();
            if faulted {
                assert_eq!(st.signal(), Some(9), "{point}: berth should have died there");
                break;
            }
            assert!(st.success(), "{point}: {verb} failed");
        }
        w.ok(&["delete", "--force", &id]);
        let left = w.leftovers(&id);
        assert!(left.is_empty(), "after a crash at {point}: {left:#?}");
        // And again: delete --force is idempotent.
        w.ok(&["delete", "--force", &id]);
    }
}

#[test]
#[ignore = "needs root"]
fn killed_at_random_moments_of_create_then_delete_force_leaves_nothing() {
    let mut w = World::new("randkill");
    w.config(&["sleep", "1000"], |_| {});
    let bundle = w.bundle.to_string_lossy().into_owned();
    let mut seed = u64::from(std::process::id());
    for _ in 0..25 {
        seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        let delay = std::time::Duration::from_micros((seed >> 33) % 12000);
        let id = w.id();
        let mut child = w
            .cmd()
            .args(["create", "--bundle", &bundle, &id])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(delay);
        let _ = child.kill();
        let _ = child.wait();
        w.ok(&["delete", "--force", &id]);
        let left = w.leftovers(&id);
        assert!(left.is_empty(), "after a kill {delay:?} into create: {left:#?}");
    }
    w.finish();
}

#[test]
#[ignore = "needs root"]
fn a_reused_pid_is_never_signalled() {
    // berth runs in a PID namespace of the test's: systemd (which sees the
    // host's PIDs) cannot be told its container's init by number.
    if cgroupfs_only() {
        return;
    }
    let mut w = World::new("pidreuse");
    // No PID namespace of its own: the init's PID is one of a private PID
    // namespace of the test, where ns_last_pid hands it to a stranger.
    w.config(&["sleep", "1000"], |c| {
        c["linux"]["namespaces"] = serde_json::json!([{"type": "mount"}]);
        c.as_object_mut().unwrap().remove("hostname");
    });
    let id = w.id();
    let script = format!(
        r#"set -e
B="{berth} --root {root}{flag}"
$B run --keep --bundle {bundle} {id} &
RUN=$!
i=0; until $B state {id} 2>/dev/null | grep -q running; do i=$((i+1)); [ $i -lt 500 ] || exit 10; sleep 0.01; done
P=$($B state {id} | sed -n 's/.*"pid": \([0-9]*\).*/\1/p')
kill -9 $P
wait $RUN || true
echo $((P - 1)) > /proc/sys/kernel/ns_last_pid
sleep 1000 &
S=$!
[ "$S" = "$P" ] || {{ echo "stranger got $S, not $P"; kill $S; exit 11; }}
if $B kill {id} KILL 2> err; then echo "berth kill succeeded on a dead container"; kill $S; exit 12; fi
grep -q "not running" err || {{ cat err; kill $S; exit 13; }}
kill -0 $S || exit 14
kill $S
$B delete {id}
echo ok"#,
        berth = runtime(),
        root = w.root.display(),
        flag = driver_flag(),
        bundle = w.bundle.display(),
        id = id
    );
    let o = std::process::Command::new("unshare")
        .args(["--pid", "--fork", "--mount-proc", "sh", "-c", &script])
        .current_dir(&w.dir)
        .output()
        .unwrap();
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        o.status.success() && out.trim_end().ends_with("ok"),
        "status {:?} stdout {out} stderr {}",
        o.status,
        String::from_utf8_lossy(&o.stderr)
    );
    w.finish();
}

/// The fault points exist only in a build with the feature (the tests'
/// build; scripts/test passes --features berth/fault-injection).
fn needs_fault_injection() {
    #[cfg(not(feature = "fault-injection"))]
    panic!("this test needs the fault-injection build: cargo test --profile testing --features berth/fault-injection");
}

/// The shipped binary: the release build beside this test build's
/// (target/TRIPLE/release/berth next to target/TRIPLE/testing/berth).
fn shipped_binary() -> std::path::PathBuf {
    let testing = std::path::Path::new(env!("CARGO_BIN_EXE_berth"));
    testing.parent().and_then(|d| d.parent()).map(|d| d.join("release/berth")).unwrap()
}

#[test]
#[ignore = "needs root"]
fn fault_injection_has_no_effect_on_the_shipped_binary() {
    if berth_only() {
        return;
    }
    needs_fault_injection();
    let shipped = shipped_binary();
    assert!(shipped.is_file(), "no shipped binary at {} (cargo build --release first)", shipped.display());
    let mut w = World::new("shippedfault");
    let b = w.bundle.to_string_lossy().into_owned();
    // The test build dies at the point it is told...
    let id = w.id();
    let st = w
        .cmd()
        .env("BERTH_FAULT_INJECT", "create:cloned")
        .args(["create", "--bundle", &b, &id])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .unwrap();
    assert_eq!(st.signal(), Some(9), "the test build ignored BERTH_FAULT_INJECT");
    w.ok(&["delete", "--force", &id]);
    // ...the shipped one does not know the variable.
    let id = w.id();
    let root = w.root.to_string_lossy().into_owned();
    // (stdio on files: the created container keeps it open, a pipe would never end)
    let err = w.dir.join("shipped.err");
    let st = std::process::Command::new(&shipped)
        .env("BERTH_FAULT_INJECT", "create:cloned")
        .args(["--root", &root])
        .args(driver_flag().split_whitespace())
        .args(["create", "--bundle", &b, &id])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(&err).unwrap())
        .status()
        .unwrap();
    assert!(st.success(), "the shipped binary obeyed BERTH_FAULT_INJECT: {st:?} {}", std::fs::read_to_string(&err).unwrap_or_default());
    w.finish();
}
