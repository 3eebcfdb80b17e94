#!/bin/bash
# /guest/containerd.sh RUNTIME: containerd 1.6's runc v2 shim drives RUNTIME
# with the systemd cgroup driver.
#
# A private containerd: its own config, root, state and sockets under
# /var/tmp/ctrd-sd and /run/ctrd-sd. Kubernetes reaches the systemd driver
# through the CRI plugin's runtime options (SystemdCgroup = true, written
# below as a node would have it); ctr does not go through CRI and passes the
# same shim options itself: --runc-binary (BinaryName), --runc-root (Root)
# and --runc-systemd-cgroup (SystemdCgroup), which wants --cgroup as
# slice:prefix:name. So `--cgroup system.slice:ctr:NAME` must become the
# transient unit ctr-NAME.scope.
set -u
. /guest/common.sh
RT=${1:?usage: containerd.sh RUNTIME}
W=/var/tmp/ctrd-sd
RUN=/run/ctrd-sd
SOCK=$RUN/containerd.sock
NS=sd-test
RROOT=$RUN/runtime          # the shim passes --root $RROOT/$NS to the runtime
IMG=localhost/busybox-sd:latest
CPID=
rm -rf "$W" "$RUN" && mkdir -p "$W"/{root,state,opt} "$RUN" "$RROOT"

C() { timeout 60 ctr -a "$SOCK" -n "$NS" "$@"; }
# the options every run takes: the runtime, its root, the systemd driver
O=(--runc-binary "$RT" --runc-root "$RROOT" --runc-systemd-cgroup)
cg() { echo "system.slice:ctr:$1"; }

cleanup() {
    if [ -n "$CPID" ] && kill -0 "$CPID" 2>/dev/null; then
        for t in $(C task ls -q 2>/dev/null); do C task delete -f "$t" >/dev/null 2>&1; done
        for c in $(C container ls -q 2>/dev/null); do C container rm "$c" >/dev/null 2>&1; done
        kill "$CPID"; wait "$CPID" 2>/dev/null
    fi
}
trap cleanup EXIT

# CRI would want CNI and a pause image; ctr needs neither. The runtime
# section is a Kubernetes node's (read by the CRI plugin only).
if ! start_containerd "$W" "$SOCK" '"io.containerd.grpc.v1.cri",' '[plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
  runtime_type = "io.containerd.runc.v2"
  [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
    BinaryName = "'"$RT"'"
    SystemdCgroup = true'; then
    notok "containerd starts" "$(one_line "$OUT")"; summary containerd-systemd; exit
fi
# an OCI archive of busybox, made on the host (tests/callers/oci-image)
if ! run C image import /guest/busybox-oci.tar || ! C image ls -q | grep -qx "$IMG"; then
    notok "image import" "$(one_line "$OUT")"; summary containerd-systemd; exit
fi
echo "# containerd $(containerd --version | awk '{ print $3 }'), runtime $RT"

task_status() { C task ls 2>/dev/null | awk -v t="$1" '$1 == t { print $3 }'; }
task_pid() { C task ls 2>/dev/null | awk -v t="$1" '$1 == t { print $2 }'; }
wait_status() {   # task status [seconds]
    local i
    for ((i = 0; i < ${3:-10} * 10; i++)); do [ "$(task_status "$1")" = "$2" ] && return 0; sleep 0.1; done
    return 1
}

# ---------------------------------------------------------------- run --rm
begin
WHY=()
run C run --rm "${O[@]}" --cgroup "$(cg c-rm)" "$IMG" c-rm sh -c 'echo hello from ctr; exit 3'
[ $RC -eq 3 ] || WHY+=("exit $RC, expected 3")
[ "$OUT" = "hello from ctr" ] || WHY+=("output '$(one_line "$OUT")'")
C container ls -q | grep -qx c-rm && WHY+=("container c-rm left")
unit_gone ctr-c-rm.scope /sys/fs/cgroup/system.slice/ctr-c-rm.scope
verdict "run --rm: output, exit code, no scope left"
C container rm c-rm >/dev/null 2>&1

# ---------------------------------------------------------------- run -d, exec
begin
WHY=()
run C run -d "${O[@]}" --cgroup "$(cg c-d)" "$IMG" c-d sh -c 'trap "exit 0" TERM; while :; do sleep 1 & wait $!; done'
[ $RC -eq 0 ] || WHY+=("run -d exit $RC: $(one_line "$OUT")")
wait_status c-d RUNNING || WHY+=("task not RUNNING: '$(task_status c-d)'")
run C task exec --exec-id e1 c-d sh -c 'echo in exec; exit 5'
[ $RC -eq 5 ] || WHY+=("exec exit $RC, expected 5")
[ "$OUT" = "in exec" ] || WHY+=("exec output '$(one_line "$OUT")'")
verdict "run -d, task exec"

begin
WHY=()
PID=$(task_pid c-d)
UNIT=$(scope_of_pid "$PID")
[ "$UNIT" = ctr-c-d.scope ] || WHY+=("pid $PID is in '$UNIT', expected ctr-c-d.scope")
check_scope ctr-c-d.scope system.slice "$PID"
CG=$(cgdir ctr-c-d.scope)
verdict "the task's scope ctr-c-d.scope: transient, Delegate=yes, in system.slice, holds the task"

begin
WHY=()
run C task kill c-d
[ $RC -eq 0 ] || WHY+=("task kill exit $RC: $(one_line "$OUT")")
wait_status c-d STOPPED || WHY+=("not STOPPED: '$(task_status c-d)'")
run C task delete c-d
[ $RC -eq 0 ] || WHY+=("task delete exit $RC: $(one_line "$OUT")")
[ -z "$(task_status c-d)" ] || WHY+=("task still listed")
unit_gone ctr-c-d.scope "$CG"
[ -e "$RROOT/$NS/c-d" ] && WHY+=("runtime state $RROOT/$NS/c-d left")
kill -0 "$PID" 2>/dev/null && WHY+=("pid $PID still alive")
verdict "task kill (SIGTERM) + task delete: the scope, its cgroup and the state are gone"
C container rm c-d >/dev/null 2>&1

# ---------------------------------------------------------------- memory limit
MEM=$((64 << 20))
begin
WHY=()
run C run -d "${O[@]}" --cgroup "$(cg c-mem)" --memory-limit $MEM "$IMG" c-mem sleep 1000
[ $RC -eq 0 ] || WHY+=("run -d exit $RC: $(one_line "$OUT")")
wait_status c-mem RUNNING || WHY+=("task not RUNNING")
CG=$(cgdir ctr-c-mem.scope)
v=$(prop ctr-c-mem.scope MemoryMax); [ "$v" = $MEM ] || WHY+=("MemoryMax '$v', expected $MEM")
v=$(cat "$CG/memory.max" 2>&1); [ "$v" = $MEM ] || WHY+=("memory.max '$v', expected $MEM")
verdict "--memory-limit: the scope's MemoryMax and memory.max"

begin
WHY=()
run C task kill -s SIGKILL c-mem
[ $RC -eq 0 ] || WHY+=("task kill -s SIGKILL exit $RC: $(one_line "$OUT")")
wait_status c-mem STOPPED || WHY+=("not STOPPED: '$(task_status c-mem)'")
run C task delete c-mem
grep -q 137 <<< "$OUT" || WHY+=("task delete: exit $RC, '$(one_line "$OUT")' (expected exit status 137)")
unit_gone ctr-c-mem.scope "$CG"
verdict "task kill -s SIGKILL + task delete: 137, the scope is gone"
C container rm c-mem >/dev/null 2>&1

# ---------------------------------------------------------------- nothing left
begin
WHY=()
left=$(C task ls -q 2>&1); [ -z "$left" ] || WHY+=("tasks: $(one_line "$left")")
left=$(C container ls -q 2>&1); [ -z "$left" ] || WHY+=("containers: $(one_line "$left")")
left=$(units_matching 'ctr-*'); [ -z "$left" ] || WHY+=("units: $(one_line "$left")")
left=$(ls -d /sys/fs/cgroup/system.slice/ctr-* 2>/dev/null); [ -z "$left" ] || WHY+=("cgroups: $(one_line "$left")")
left=$("$RT" --root "$RROOT/$NS" list -q 2>/dev/null); [ -z "$left" ] || WHY+=("runtime lists: $(one_line "$left")")
left=$(find "$RROOT/$NS" -mindepth 1 -maxdepth 1 2>/dev/null); [ -z "$left" ] || WHY+=("runtime state: $(one_line "$left")")
left=$(pgrep -f "containerd-shim-runc-v2 .*$SOCK" | tr '\n' ' '); [ -z "$left" ] || WHY+=("shims left: $left")
verdict "nothing left (tasks, containers, ctr-* units, cgroups, runtime state, shims)"

summary containerd-systemd
