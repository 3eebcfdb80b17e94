//! Drives containerd's CRI plugin as the kubelet would, for tests/callers/cri:
//! a pod on the node's network and a pod on a CNI bridge, each with a
//! container under a memory limit, through RunPodSandbox, CreateContainer,
//! StartContainer, ExecSync, ContainerStatus, StopContainer,
//! RemoveContainer, StopPodSandbox and RemovePodSandbox. Prints one
//! `ok - ...` or `not ok - ...: why` line per scenario.
//!
//!   berth-cri-client SOCKET BERTH BERTH_ROOT CGROUP_PARENT IMAGE
//!
//! BERTH is the runtime binary the handler runs (its `state` is read under
//! BERTH_ROOT). CGROUP_PARENT is the pods' cgroup parent as the kubelet
//! gives it: a cgroupfs path (`/kubepods/pod1234`) or, under the systemd
//! driver, a slice name (`kubepods-besteffort-pod1234.slice`). Also used by
//! tests/vm/systemd/cri.sh, which sets BERTH_CRI_HOOK (see `hook`).

use k8s_cri::v1 as cri;
use k8s_cri::v1::runtime_service_client::RuntimeServiceClient;
use std::time::{Duration, Instant};
use tonic::transport::{Channel, Endpoint, Uri};

type Client = RuntimeServiceClient<Channel>;

struct Report {
    passed: u32,
    failed: u32,
}

impl Report {
    fn check(&mut self, what: &str, t0: Instant, r: Result<String, String>) -> bool {
        let secs = t0.elapsed().as_secs_f64();
        match r {
            Ok(note) if note.is_empty() => println!("ok - {what} ({secs:.1}s)"),
            Ok(note) => println!("ok - {what}: {note} ({secs:.1}s)"),
            Err(why) => {
                self.failed += 1;
                println!("not ok - {what}: {why}");
                return false;
            }
        }
        self.passed += 1;
        true
    }
}

async fn connect(socket: &str) -> Result<Client, String> {
    let path = socket.to_string();
    let channel = Endpoint::try_from("http://[::]")
        .map_err(|e| e.to_string())?
        .connect_with_connector(tower::service_fn(move |_: Uri| {
            let path = path.clone();
            async move { Ok::<_, std::io::Error>(hyper_util::rt::TokioIo::new(tokio::net::UnixStream::connect(path).await?)) }
        }))
        .await
        .map_err(|e| format!("connect to {socket}: {e}"))?;
    Ok(RuntimeServiceClient::new(channel))
}

fn status(e: tonic::Status) -> String {
    format!("{}: {}", e.code(), e.message().replace('\n', " "))
}

struct Args {
    socket: String,
    berth: String,
    berth_root: String,
    /// BERTH's file name, for the messages
    name: String,
    cgroup_parent: String,
    image: String,
}

fn pod_config(a: &Args, name: &str, node_network: bool) -> cri::PodSandboxConfig {
    let mode = if node_network { cri::NamespaceMode::Node } else { cri::NamespaceMode::Pod };
    cri::PodSandboxConfig {
        metadata: Some(cri::PodSandboxMetadata {
            name: name.into(),
            uid: format!("uid-{name}-{}", std::process::id()),
            namespace: "berth-test".into(),
            attempt: 0,
        }),
        hostname: if node_network { String::new() } else { name.into() },
        linux: Some(cri::LinuxPodSandboxConfig {
            cgroup_parent: a.cgroup_parent.clone(),
            security_context: Some(cri::LinuxSandboxSecurityContext {
                namespace_options: Some(cri::NamespaceOption {
                    network: mode as i32,
                    pid: cri::NamespaceMode::Pod as i32,
                    ipc: cri::NamespaceMode::Pod as i32,
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn container_config(a: &Args, name: &str, memory: i64) -> cri::ContainerConfig {
    cri::ContainerConfig {
        metadata: Some(cri::ContainerMetadata { name: name.into(), attempt: 0 }),
        image: Some(cri::ImageSpec { image: a.image.clone(), ..Default::default() }),
        command: vec!["sh".into(), "-c".into(), "trap 'exit 0' TERM; while :; do sleep 0.2; done".into()],
        linux: Some(cri::LinuxContainerConfig {
            resources: Some(cri::LinuxContainerResources { memory_limit_in_bytes: memory, ..Default::default() }),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// The berth state of container `id`: its status word.
fn berth_status(a: &Args, id: &str) -> String {
    let o = std::process::Command::new(&a.berth).args(["--root", &a.berth_root, "state", id]).output();
    let text = o.map(|o| String::from_utf8_lossy(&o.stdout).into_owned()).unwrap_or_default();
    text.split("\"status\":").nth(1).and_then(|s| s.split('"').nth(1)).unwrap_or("").to_string()
}

/// The memory limit file of container `id` under the cgroup parent.
fn memory_limit(a: &Args, id: &str) -> Option<String> {
    fn walk(d: &std::path::Path, id: &str, depth: u32) -> Option<std::path::PathBuf> {
        for e in std::fs::read_dir(d).ok()?.flatten() {
            let p = e.path();
            if !p.is_dir() {
                continue;
            }
            if p.file_name().is_some_and(|n| n.to_string_lossy().contains(id)) {
                for f in ["memory.limit_in_bytes", "memory.max"] {
                    if p.join(f).exists() {
                        return Some(p.join(f));
                    }
                }
            }
            if depth < 4 {
                if let Some(f) = walk(&p, id, depth + 1) {
                    return Some(f);
                }
            }
        }
        None
    }
    let parent = parent_cgroup_dir(&a.cgroup_parent);
    for base in ["/sys/fs/cgroup/memory", "/sys/fs/cgroup"] {
        if let Some(f) = walk(&std::path::Path::new(base).join(&parent), id, 0) {
            return std::fs::read_to_string(f).ok().map(|s| s.trim().to_string());
        }
    }
    None
}

/// The cgroup directory of a pod cgroup parent, relative to the hierarchy's
/// root. Under the systemd driver the kubelet passes a slice name
/// (`kubepods-besteffort-pod1234.slice`), whose cgroup is the expanded path:
/// every dash-separated prefix is a parent slice
/// (`kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod1234.slice`),
/// and `-.slice` is the root. Anything else is a cgroupfs path.
fn parent_cgroup_dir(parent: &str) -> String {
    let Some(name) = parent.strip_suffix(".slice").filter(|n| !n.contains('/')) else {
        return parent.trim_start_matches('/').to_string();
    };
    if name == "-" {
        return String::new();
    }
    let mut dir = String::new();
    for (i, _) in name.match_indices('-').chain([(name.len(), "")]) {
        if !dir.is_empty() {
            dir.push('/');
        }
        dir.push_str(&name[..i]);
        dir.push_str(".slice");
    }
    dir
}

/// BERTH_CRI_HOOK, when set: a shell command run (as `sh -c HOOK hook
/// CONTAINER_ID POD_ID KIND`) once StartContainer has succeeded, while the
/// container runs, for checks the caller makes itself (its units, say). Its
/// output is printed as it is, and its `ok - `/`not ok - ` lines count as
/// checks.
fn hook(r: &mut Report, id: &str, pod_id: &str, kind: &str) {
    let Ok(cmd) = std::env::var("BERTH_CRI_HOOK") else { return };
    let t = Instant::now();
    let out = std::process::Command::new("sh").args(["-c", &cmd, "hook", id, pod_id, kind]).output();
    match out {
        Err(e) => {
            r.check(&format!("hook ({kind})"), t, Err(format!("cannot run sh: {e}")));
        }
        Ok(o) => {
            print!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr));
            for l in String::from_utf8_lossy(&o.stdout).lines() {
                if l.starts_with("ok - ") {
                    r.passed += 1;
                } else if l.starts_with("not ok - ") {
                    r.failed += 1;
                }
            }
            if !o.status.success() {
                r.check(&format!("hook ({kind})"), t, Err(format!("exit {}", o.status)));
            }
        }
    }
}

/// One pod with one container through its whole life.
async fn pod(c: &mut Client, a: &Args, r: &mut Report, name: &str, node_network: bool) {
    let kind = if node_network { "node network" } else { "CNI bridge" };
    let cfg = pod_config(a, name, node_network);
    let t = Instant::now();
    let pod = c.run_pod_sandbox(cri::RunPodSandboxRequest { config: Some(cfg.clone()), runtime_handler: "berth".into() }).await;
    let pod_id = match pod {
        Ok(p) => p.into_inner().pod_sandbox_id,
        Err(e) => {
            r.check(&format!("RunPodSandbox ({kind}, runtime_handler berth)"), t, Err(status(e)));
            return;
        }
    };
    let st = berth_status(a, &pod_id);
    let mut ip = String::new();
    if !node_network {
        if let Ok(s) = c.pod_sandbox_status(cri::PodSandboxStatusRequest { pod_sandbox_id: pod_id.clone(), verbose: false }).await {
            ip = s.into_inner().status.and_then(|s| s.network).map(|n| n.ip).unwrap_or_default();
        }
    }
    let ok_pod = if st != "running" {
        Err(format!("{} does not run the sandbox {pod_id}: status '{st}'", a.name))
    } else if !node_network && ip.is_empty() {
        Err("the pod got no IP from CNI".into())
    } else {
        Ok(if ip.is_empty() { format!("{} runs the sandbox", a.name) } else { format!("{} runs the sandbox, pod IP {ip}", a.name) })
    };
    if r.check(&format!("RunPodSandbox ({kind}, runtime_handler berth)"), t, ok_pod) {
        container(c, a, r, &pod_id, &cfg, kind, &ip).await;
    }
    let t = Instant::now();
    let res = match c.stop_pod_sandbox(cri::StopPodSandboxRequest { pod_sandbox_id: pod_id.clone() }).await {
        Err(e) => Err(status(e)),
        Ok(_) if !berth_status(a, &pod_id).is_empty() && berth_status(a, &pod_id) != "stopped" => {
            Err(format!("{} still says {}", a.name, berth_status(a, &pod_id)))
        }
        Ok(_) => Ok(String::new()),
    };
    r.check(&format!("StopPodSandbox ({kind})"), t, res);
    let t = Instant::now();
    let res = match c.remove_pod_sandbox(cri::RemovePodSandboxRequest { pod_sandbox_id: pod_id.clone() }).await {
        Err(e) => Err(status(e)),
        Ok(_) if !berth_status(a, &pod_id).is_empty() => Err(format!("{} still has the sandbox {pod_id}", a.name)),
        Ok(_) => Ok(String::new()),
    };
    r.check(&format!("RemovePodSandbox ({kind})"), t, res);
}

async fn container(c: &mut Client, a: &Args, r: &mut Report, pod_id: &str, pod_cfg: &cri::PodSandboxConfig, kind: &str, ip: &str) {
    let t = Instant::now();
    let req = cri::CreateContainerRequest {
        pod_sandbox_id: pod_id.into(),
        config: Some(container_config(a, "app", 64 << 20)),
        sandbox_config: Some(pod_cfg.clone()),
    };
    let id = match c.create_container(req).await {
        Ok(x) => x.into_inner().container_id,
        Err(e) => {
            r.check(&format!("CreateContainer with a memory limit ({kind})"), t, Err(status(e)));
            return;
        }
    };
    r.check(&format!("CreateContainer with a memory limit ({kind})"), t, Ok(String::new()));
    // The runtime makes the container (and its cgroup) at StartContainer.
    let t = Instant::now();
    let started = c.start_container(cri::StartContainerRequest { container_id: id.clone() }).await;
    let res = match &started {
        Err(e) => Err(status(e.clone())),
        Ok(_) => match (berth_status(a, &id).as_str(), memory_limit(a, &id)) {
            ("running", Some(l)) if l == "67108864" => Ok(format!("{} runs it, 64 MiB in its cgroup", a.name)),
            (s, l) => Err(format!("{} status '{s}', memory limit in the cgroup {l:?}", a.name)),
        },
    };
    r.check(&format!("StartContainer ({kind})"), t, res);
    if started.is_ok() {
        hook(r, &id, pod_id, kind);
    }
    let t = Instant::now();
    let res = match c.container_status(cri::ContainerStatusRequest { container_id: id.clone(), verbose: false }).await {
        Err(e) => Err(status(e)),
        Ok(s) => match s.into_inner().status.map(|s| s.state) {
            Some(x) if x == cri::ContainerState::ContainerRunning as i32 => Ok(String::new()),
            x => Err(format!("state {x:?}")),
        },
    };
    r.check(&format!("ContainerStatus says running ({kind})"), t, res);
    let t = Instant::now();
    let probe = if ip.is_empty() { "echo out; exit 3".to_string() } else { format!("ip addr | grep -q 'inet {ip}/' && echo out; exit 3") };
    let res = match c
        .exec_sync(cri::ExecSyncRequest { container_id: id.clone(), cmd: vec!["sh".into(), "-c".into(), probe], timeout: 20 })
        .await
    {
        Err(e) => Err(status(e)),
        Ok(x) => {
            let x = x.into_inner();
            let out = String::from_utf8_lossy(&x.stdout).trim().to_string();
            if x.exit_code == 3 && out == "out" {
                Ok(if ip.is_empty() { "output and exit code 3".into() } else { format!("output, exit code 3, the pod's IP {ip} inside") })
            } else {
                Err(format!("exit {} stdout {out:?} stderr {:?}", x.exit_code, String::from_utf8_lossy(&x.stderr)))
            }
        }
    };
    r.check(&format!("ExecSync ({kind})"), t, res);
    let t = Instant::now();
    let res = match c.stop_container(cri::StopContainerRequest { container_id: id.clone(), timeout: 10 }).await {
        Err(e) => Err(status(e)),
        Ok(_) => match c.container_status(cri::ContainerStatusRequest { container_id: id.clone(), verbose: false }).await {
            Ok(s) => match s.into_inner().status {
                Some(s) if s.state == cri::ContainerState::ContainerExited as i32 && s.exit_code == 0 => {
                    Ok("SIGTERM reached it (exit 0)".into())
                }
                s => Err(format!("after stop: {:?}", s.map(|s| (s.state, s.exit_code)))),
            },
            Err(e) => Err(status(e)),
        },
    };
    r.check(&format!("StopContainer ({kind})"), t, res);
    let t = Instant::now();
    let res = match c.remove_container(cri::RemoveContainerRequest { container_id: id.clone() }).await {
        Err(e) => Err(status(e)),
        Ok(_) if !berth_status(a, &id).is_empty() => Err(format!("{} still has {id}", a.name)),
        Ok(_) => Ok(String::new()),
    };
    r.check(&format!("RemoveContainer ({kind})"), t, res);
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let v: Vec<String> = std::env::args().skip(1).collect();
    let [socket, berth, berth_root, cgroup_parent, image] = v.as_slice() else {
        eprintln!("usage: berth-cri-client SOCKET BERTH BERTH_ROOT CGROUP_PARENT IMAGE");
        std::process::exit(2);
    };
    let a = Args {
        socket: socket.clone(),
        berth: berth.clone(),
        berth_root: berth_root.clone(),
        name: std::path::Path::new(berth).file_name().map_or_else(|| berth.clone(), |n| n.to_string_lossy().into_owned()),
        cgroup_parent: cgroup_parent.clone(),
        image: image.clone(),
    };
    let mut r = Report { passed: 0, failed: 0 };
    let t = Instant::now();
    // The CRI plugin answers once it has loaded (and found its runtimes).
    let mut client = None;
    while t.elapsed() < Duration::from_secs(20) {
        if let Ok(mut c) = connect(&a.socket).await {
            if let Ok(v) = c.version(cri::VersionRequest { version: "v1".into() }).await {
                let v = v.into_inner();
                r.check("Version", t, Ok(format!("{} {} (CRI {})", v.runtime_name, v.runtime_version, v.runtime_api_version)));
                client = Some(c);
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let Some(mut c) = client else {
        r.check("Version", t, Err("the CRI plugin did not answer within 20 s".into()));
        std::process::exit(1);
    };
    pod(&mut c, &a, &mut r, "host-net", true).await;
    pod(&mut c, &a, &mut r, "bridged", false).await;
    std::process::exit(if r.failed == 0 { 0 } else { 1 });
}

#[cfg(test)]
mod tests {
    use super::parent_cgroup_dir;

    #[test]
    fn slice_parents_expand() {
        assert_eq!(
            parent_cgroup_dir("berthcri-besteffort-pod1234.slice"),
            "berthcri.slice/berthcri-besteffort.slice/berthcri-besteffort-pod1234.slice"
        );
        assert_eq!(parent_cgroup_dir("kubepods.slice"), "kubepods.slice");
        assert_eq!(parent_cgroup_dir("-.slice"), "");
    }

    #[test]
    fn cgroupfs_parents_stay() {
        assert_eq!(parent_cgroup_dir("/berth-cri-1234"), "berth-cri-1234");
        assert_eq!(parent_cgroup_dir("/kubepods/besteffort/pod1234"), "kubepods/besteffort/pod1234");
        // a path that merely ends in .slice is a path
        assert_eq!(parent_cgroup_dir("/a.slice/b.slice"), "a.slice/b.slice");
    }
}
