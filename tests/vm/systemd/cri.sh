#!/bin/bash
# /guest/cri.sh RUNTIME: Kubernetes' path under systemd. containerd 1.6's CRI
# plugin with a runtime handler "berth" (the runc v2 shim, BinaryName
# RUNTIME, SystemdCgroup = true, as a node with the kubelet's systemd cgroup
# driver has it), driven over its gRPC socket by the project's CRI client
# (tests/cri-client, copied in as /guest/berth-cri-client): a pod on the
# node's network and a pod on a CNI bridge, each with a container under a
# 64 MiB memory limit, through their whole life.
#
# The pods' cgroup parent is a slice, as the kubelet gives it:
# berthcri-besteffort-pod<N>.slice, whose cgroup is the expanded
# /berthcri.slice/berthcri-besteffort.slice/berthcri-besteffort-pod<N>.slice.
# The CRI plugin makes every container's cgroupsPath
# <pod slice>:cri-containerd:<id>, which the runtime's systemd driver must
# turn into the transient, delegated unit cri-containerd-<id>.scope in that
# slice; the client checks the limit in the scope's memory.max and, through
# its hook (this script with --hook), the units while the container runs.
# At the end the pod slice is stopped, as the kubelet removes a pod's.
#
# A private containerd: its own config, root, state and sockets under
# /var/tmp/cri-sd and /run/cri-sd, CNI's conf and IPAM data there too. It
# runs in the guest's own namespaces (no tmpfs over /run as tests/callers/cri
# has: the runtime's systemd driver needs the system bus under /run; the
# guest has no network of its own to protect). The pause image and the app
# image (busybox) are OCI archives made on the host (tests/callers/oci-image).
set -u
. /guest/common.sh
W=/var/tmp/cri-sd
RUN=/run/cri-sd
SOCK=$RUN/containerd.sock
RROOT=$RUN/runtime          # the shim passes --root $RROOT/k8s.io to the runtime
BROOT=$RROOT/k8s.io
MEM=$((64 << 20))

# ---------------------------------------------------------------- the hook
# cri.sh --hook CONTAINER_ID POD_ID KIND: run by the client after
# StartContainer, while the container runs; CRI_SD_RT and CRI_SD_SLICE come
# from the part's environment.
if [ "${1:-}" = --hook ]; then
    id=$2 pod=$3 kind=$4
    R() { timeout 30 "$CRI_SD_RT" --root "$BROOT" "$@"; }
    expanded=/berthcri.slice/berthcri-besteffort.slice/$CRI_SD_SLICE
    begin
    WHY=()
    pid=$(R state "$pod" 2>/dev/null | jq -r .pid 2>/dev/null)
    if [ "${pid:-0}" -gt 0 ] 2>/dev/null; then
        u=cri-containerd-$pod.scope
        [ "$(scope_of_pid "$pid")" = "$u" ] || WHY+=("the sandbox's pid $pid is in '$(scope_of_pid "$pid")', expected $u")
        check_scope "$u" "$CRI_SD_SLICE" "$pid"
        v=$(prop "$u" ControlGroup); [ "$v" = "$expanded/$u" ] || WHY+=("$u: ControlGroup '$v', expected $expanded/$u")
    else
        WHY+=("no pid for the sandbox: $(one_line "$(R state "$pod" 2>&1)")")
    fi
    verdict "the sandbox's scope cri-containerd-<pod>.scope: transient, Delegate=yes, in the pod slice ($kind)"
    begin
    WHY=()
    pid=$(R state "$id" 2>/dev/null | jq -r .pid 2>/dev/null)
    u=cri-containerd-$id.scope
    if [ "${pid:-0}" -gt 0 ] 2>/dev/null; then
        [ "$(scope_of_pid "$pid")" = "$u" ] || WHY+=("the container's pid $pid is in '$(scope_of_pid "$pid")', expected $u")
        check_scope "$u" "$CRI_SD_SLICE" "$pid"
        v=$(prop "$u" ControlGroup); [ "$v" = "$expanded/$u" ] || WHY+=("$u: ControlGroup '$v', expected $expanded/$u")
    else
        WHY+=("no pid for the container: $(one_line "$(R state "$id" 2>&1)")")
    fi
    v=$(prop "$u" MemoryMax); [ "$v" = $MEM ] || WHY+=("$u: MemoryMax '$v', expected $MEM")
    v=$(cat "$(cgdir "$u")/memory.max" 2>&1); [ "$v" = $MEM ] || WHY+=("$u: memory.max '$v', expected $MEM")
    verdict "the container's scope cri-containerd-<id>.scope: transient, Delegate=yes, in the pod slice, MemoryMax $MEM ($kind)"
    exit 0
fi

RT=${1:?usage: cri.sh RUNTIME}
CLIENT=/guest/berth-cri-client
SLICE=berthcri-besteffort-pod$$.slice      # the pods' cgroup parent, as the kubelet names it
SLICE_DIR=/sys/fs/cgroup/berthcri.slice/berthcri-besteffort.slice/$SLICE
PAUSE=localhost/pause-sd:latest
APP=localhost/busybox-sd:latest
CPID=
rm -rf "$W" "$RUN" && mkdir -p "$W"/{root,state,opt,cni,cni-data} "$RUN" "$RROOT"

C() { timeout 60 ctr -a "$SOCK" -n k8s.io "$@"; }
cleanup() {
    if [ -n "$CPID" ] && kill -0 "$CPID" 2>/dev/null; then
        for t in $(C task ls -q 2>/dev/null); do C task kill -s KILL "$t" >/dev/null 2>&1; done
        sleep 0.2
        for t in $(C task ls -q 2>/dev/null); do C task delete -f "$t" >/dev/null 2>&1; done
        for c in $(C container ls -q 2>/dev/null); do C container rm "$c" >/dev/null 2>&1; done
        kill "$CPID"; wait "$CPID" 2>/dev/null
    fi
    for id in $("$RT" --root "$BROOT" list -q 2>/dev/null); do "$RT" --root "$BROOT" delete --force "$id" >/dev/null 2>&1; done
    systemctl stop berthcri.slice >/dev/null 2>&1
}
trap cleanup EXIT

[ -x "$CLIENT" ] || { notok "the CRI client" "no $CLIENT (run-systemd copies it in)"; summary cri-systemd; exit; }

cat > "$W/cni/10-berthcri.conflist" <<EOF
{
  "cniVersion": "0.4.0",
  "name": "berthcri",
  "plugins": [
    {"type": "bridge", "bridge": "berthcri0", "isGateway": true, "ipMasq": false,
     "ipam": {"type": "host-local", "ranges": [[{"subnet": "10.88.0.0/24"}]], "dataDir": "$W/cni-data"}}
  ]
}
EOF
# default_runtime_name must name a runtime defined here, or the CRI plugin
# does not load.
PLUGINS=$(cat <<EOF
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "$PAUSE"
  restrict_oom_score_adj = true
  enable_selinux = false
  disable_apparmor = true
  stream_server_address = "127.0.0.1"
  [plugins."io.containerd.grpc.v1.cri".containerd]
    default_runtime_name = "berth"
    snapshotter = "overlayfs"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.berth]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.berth.options]
        BinaryName = "$RT"
        Root = "$RROOT"
        SystemdCgroup = true
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "$W/cni"
    max_conf_num = 1
EOF
)
if ! start_containerd "$W" "$SOCK" "" "$PLUGINS"; then
    notok "containerd starts" "$(one_line "$OUT")"; summary cri-systemd; exit
fi
for i in /guest/pause-oci.tar /guest/busybox-oci.tar; do
    if ! run C image import "$i"; then notok "image import $i" "$(one_line "$OUT")"; summary cri-systemd; exit; fi
done
echo "# containerd $(containerd --version | awk '{ print $3 }') with its CRI plugin, runtime $RT, pod cgroup parent $SLICE"

# ---------------------------------------------------------------- the client
export CRI_SD_RT=$RT CRI_SD_SLICE=$SLICE
export BERTH_CRI_HOOK='/guest/cri.sh --hook "$@"'
timeout 300 "$CLIENT" "$SOCK" "$RT" "$BROOT" "$SLICE" "$APP" > "$W/client.out" 2>&1
crc=$?
cat "$W/client.out"
PASS=$((PASS + $(grep -c '^ok ' "$W/client.out")))
FAIL=$((FAIL + $(grep -c '^not ok ' "$W/client.out")))
if ! grep -q 'RemovePodSandbox (CNI bridge)' "$W/client.out"; then
    notok "the CRI client ran to its end" "exit $crc: $(one_line "$(tail -3 "$W/client.out")")"
fi
if grep -q '^not ok ' "$W/client.out"; then
    grep -i -E 'level=(error|warning)' "$W/containerd.log" | tail -10 | sed 's/^/#   /'
fi

# ---------------------------------------------------------------- nothing left
begin
WHY=()
left=$(C task ls -q 2>&1); [ -z "$left" ] || WHY+=("tasks: $(one_line "$left")")
left=$(C container ls -q 2>&1); [ -z "$left" ] || WHY+=("containers: $(one_line "$left")")
left=$(C snapshot ls 2>/dev/null | awk 'NR > 1 && $3 == "Active"'); [ -z "$left" ] || WHY+=("active snapshots: $(one_line "$left")")
left=$(units_matching 'cri-containerd-*'); [ -z "$left" ] || WHY+=("units: $(one_line "$left")")
left=$(find "$SLICE_DIR" -mindepth 1 -type d 2>/dev/null); [ -z "$left" ] || WHY+=("cgroups under the pod slice: $(one_line "$left")")
left=$("$RT" --root "$BROOT" list -q 2>/dev/null); [ -z "$left" ] || WHY+=("runtime lists: $(one_line "$left")")
left=$(find "$BROOT" -mindepth 1 -maxdepth 1 2>/dev/null); [ -z "$left" ] || WHY+=("runtime state: $(one_line "$left")")
left=$(pgrep -f "containerd-shim.*$SOCK" | tr '\n' ' '); [ -z "$left" ] || WHY+=("shims left: $left")
left=$(grep -l -F -e "$W/state/" -e "$W/root/io.containerd.snapshotter.v1.overlayfs/snapshots/" \
       /proc/[0-9]*/mountinfo 2>/dev/null | cut -d/ -f3 | tr '\n' ' ')
[ -z "$left" ] || WHY+=("mounts left in the mount namespace of pids: $left")
left=$(ls /run/netns 2>/dev/null | grep '^cni-'); [ -z "$left" ] || WHY+=("network namespaces: $(one_line "$left")")
left=$(find "$W/cni-data" -type f ! -name 'last_reserved_ip*' ! -name lock 2>/dev/null)
[ -z "$left" ] || WHY+=("IP leases: $(one_line "$left")")
verdict "nothing left (tasks, containers, snapshots, cri-containerd-* units, cgroups, runtime state, shims, mounts, netns, IP leases)"

# The kubelet stops a removed pod's slice; then neither it nor its cgroup is there.
begin
WHY=()
run systemctl stop "$SLICE"
[ $RC -eq 0 ] || WHY+=("systemctl stop exit $RC: $(one_line "$OUT")")
unit_gone "$SLICE" "$SLICE_DIR"
verdict "systemctl stop $SLICE (as the kubelet): the slice and its cgroup are gone"

summary cri-systemd
