#!/bin/bash
# /guest/podman.sh RUNTIME: podman 4.3 with cgroup_manager = "systemd" (its
# default for root where systemd is PID 1) drives RUNTIME. podman then runs
# the runtime with --systemd-cgroup and cgroupsPath
# machine.slice:libpod:<id>, and the runtime must make libpod-<id>.scope, a
# transient unit with Delegate=yes in machine.slice; conmon gets a scope of
# its own from podman (libpod-conmon-<id>.scope).
#
# podman's configuration, graphroot, runroot and tmp dir are private, under
# /var/tmp/podman-sd. The image is a busybox tarball made here, `podman
# import`ed: no registry. netns = "none": no network, so no CNI plugin,
# bridge or iptables is needed.
set -u
. /guest/common.sh
RT=${1:?usage: podman.sh RUNTIME}
W=/var/tmp/podman-sd
IMG=localhost/busybox-sd:latest
RTNAME=$(basename "$RT")
rm -rf "$W" && mkdir -p "$W"/{graph,run,tmp,net}

cat > "$W/containers.conf" <<EOF
[containers]
netns = "none"

[engine]
cgroup_manager = "systemd"
events_logger = "file"
events_logfile_path = "$W/events.log"
tmp_dir = "$W/tmp"
# podman asks the runtime for JSON errors (--log-format=json) only if its
# binary's name is listed here
runtime_supports_json = ["crun", "runc", "berth"]

[network]
network_config_dir = "$W/net"
EOF
cat > "$W/storage.conf" <<EOF
[storage]
driver = "overlay"
graphroot = "$W/graph"
runroot = "$W/run"
EOF
# conmon inherits these, and so does the `podman container cleanup` it runs
# when a container exits
export CONTAINERS_CONF=$W/containers.conf CONTAINERS_STORAGE_CONF=$W/storage.conf
P() { timeout 120 podman --runtime "$RT" "$@"; }

IDS=()   # every container made here: what must be gone at the end
cleanup() { P rm -af -t 0 >/dev/null 2>&1; }
trap cleanup EXIT

# the container's pid (podman inspect), and its scope unit
cpid() { P inspect -f '{{.State.Pid}}' "$1" 2>/dev/null; }
cstate() { P inspect -f '{{.State.Status}} {{.State.ExitCode}}' "$1" 2>&1; }

if ! tar -C /guest/busybox-rootfs -c . | P import - "$IMG" > "$W/import.log" 2>&1; then
    notok "podman import" "$(one_line "$(cat "$W/import.log")")"; summary podman-systemd; exit
fi
echo "# podman $(podman --version | awk '{ print $3 }'), conmon $(conmon --version | awk 'NR == 1 { print $3 }'), runtime $RT"

# ---------------------------------------------------------------- run --rm
begin
WHY=()
run P run --rm --name p-rm "$IMG" sh -c 'echo hello from podman; exit 3'
[ $RC -eq 3 ] || WHY+=("exit $RC, expected 3")
[ "$OUT" = "hello from podman" ] || WHY+=("output '$(one_line "$OUT")'")
P container exists p-rm && WHY+=("container p-rm still exists")
verdict "run --rm: output and exit code"

# ---------------------------------------------------------------- run -d, exec
# pid 1 has no default action for SIGTERM: the trap makes `stop` end it with 0
LOOP='trap "echo got TERM; exit 0" TERM; echo started; while :; do sleep 1 & wait $!; done'
begin
WHY=()
run P run -d --name p-d "$IMG" sh -c "$LOOP"
ID=$OUT; IDS+=("$ID")
if [ $RC -ne 0 ]; then WHY+=("run -d exit $RC: $(one_line "$OUT")")
else
    for _ in $(seq 30); do [ "$(P logs p-d 2>/dev/null)" = started ] && break; sleep 0.1; done
    [ "$(P logs p-d 2>&1)" = started ] || WHY+=("logs '$(one_line "$(P logs p-d 2>&1)")'")
    run P exec p-d sh -c 'echo in exec; exit 5'
    [ $RC -eq 5 ] || WHY+=("exec exit $RC, expected 5")
    [ "$OUT" = "in exec" ] || WHY+=("exec output '$(one_line "$OUT")'")
fi
verdict "run -d, logs, exec"

begin
WHY=()
PID=$(cpid p-d)
UNIT=$(scope_of_pid "$PID")
[ "$UNIT" = "libpod-$ID.scope" ] || WHY+=("pid $PID is in '$UNIT', expected libpod-$ID.scope")
[ -n "$UNIT" ] && check_scope "$UNIT" machine.slice "$PID"
CGD=$(cgdir "$UNIT")
# podman's own idea of the cgroup is the same
CGP=$(P inspect -f '{{.State.CgroupPath}}' p-d 2>&1)
[ "$CGP" = "$(prop "$UNIT" ControlGroup)" ] || WHY+=("podman inspect CgroupPath '$CGP', the unit's ControlGroup '$(prop "$UNIT" ControlGroup)'")
verdict "the container's scope: transient, Delegate=yes, in machine.slice, holds the container"

begin
WHY=()
run P stop -t 10 p-d
[ $RC -eq 0 ] || WHY+=("stop exit $RC: $(one_line "$OUT")")
S=$(cstate p-d); [ "$S" = "exited 0" ] || WHY+=("state after stop '$S'")
grep -q 'got TERM' <<< "$(P logs p-d 2>&1)" || WHY+=("the container did not see SIGTERM")
[ "$(awk -v t="$(since "$T0")" 'BEGIN { print (t < 8) }')" = 1 ] || WHY+=("took $(since "$T0")s: SIGTERM not delivered?")
[ -n "$UNIT" ] && unit_gone "$UNIT" "$CGD"
verdict "stop: SIGTERM, exit 0, the scope is gone"
P rm p-d >/dev/null 2>&1

# a container that ignores SIGTERM (sleep as pid 1): stop -t 1 must SIGKILL it
begin
WHY=()
run P run -d --name p-k "$IMG" sleep 1000
IDS+=("$OUT")
[ $RC -eq 0 ] || WHY+=("run -d exit $RC: $(one_line "$OUT")")
run P stop -t 1 p-k
[ $RC -eq 0 ] || WHY+=("stop exit $RC: $(one_line "$OUT")")
S=$(cstate p-k); [ "$S" = "exited 137" ] || WHY+=("state after stop '$S', expected exited 137")
verdict "stop of a container that ignores SIGTERM: SIGKILL, 137"
P rm p-k >/dev/null 2>&1

# ---------------------------------------------------------------- limits
MEM=$((64 << 20))
begin
WHY=()
run P run -d --name p-lim -m 64m --pids-limit 50 --cpu-shares 512 "$IMG" sleep 1000
ID=$OUT; IDS+=("$ID")
PID=$(cpid p-lim)
UNIT=$(scope_of_pid "$PID")
CG=$(cgdir "$UNIT")
if [ $RC -ne 0 ]; then WHY+=("run -d exit $RC: $(one_line "$OUT")")
elif [ "$UNIT" != "libpod-$ID.scope" ]; then WHY+=("pid $PID is in '$UNIT', expected libpod-$ID.scope")
else
    # what systemd was told (the unit's properties) and what the kernel
    # enforces (the scope's files) agree
    v=$(prop "$UNIT" MemoryMax); [ "$v" = $MEM ] || WHY+=("MemoryMax '$v', expected $MEM")
    v=$(cat "$CG/memory.max" 2>&1); [ "$v" = $MEM ] || WHY+=("memory.max '$v', expected $MEM")
    v=$(prop "$UNIT" TasksMax); [ "$v" = 50 ] || WHY+=("TasksMax '$v', expected 50")
    v=$(cat "$CG/pids.max" 2>&1); [ "$v" = 50 ] || WHY+=("pids.max '$v', expected 50")
    # 512 shares, half the default: a weight below the default 100
    w=$(cat "$CG/cpu.weight" 2>&1); v=$(prop "$UNIT" CPUWeight)
    [ "$w" -ge 1 ] && [ "$w" -lt 100 ] 2>/dev/null || WHY+=("cpu.weight '$w' for 512 shares")
    [ "$v" = "$w" ] || WHY+=("CPUWeight '$v' but cpu.weight '$w'")
fi
verdict "-m 64m --pids-limit 50 --cpu-shares 512: systemctl show and the scope's files agree"

# ---------------------------------------------------------------- pause
begin
WHY=()
# the container's own cgroup (the scope, or a child of it)
CCG=/sys/fs/cgroup$(sed -n 's/^0:://p' "/proc/$PID/cgroup" 2>/dev/null)
run P pause p-lim
[ $RC -eq 0 ] || WHY+=("pause exit $RC: $(one_line "$OUT")")
S=$(cstate p-lim); [ "${S%% *}" = paused ] || WHY+=("state after pause '$S'")
v=$(cat "$CCG/cgroup.freeze" 2>&1); [ "$v" = 1 ] || WHY+=("cgroup.freeze '$v' after pause")
grep -qx 'frozen 1' "$CCG/cgroup.events" 2>/dev/null || WHY+=("cgroup.events: not frozen after pause")
v=$(prop "$UNIT" ActiveState); [ "$v" = active ] || WHY+=("$UNIT '$v' while paused")
run P unpause p-lim
[ $RC -eq 0 ] || WHY+=("unpause exit $RC: $(one_line "$OUT")")
S=$(cstate p-lim); [ "${S%% *}" = running ] || WHY+=("state after unpause '$S'")
v=$(cat "$CCG/cgroup.freeze" 2>&1); [ "$v" = 0 ] || WHY+=("cgroup.freeze '$v' after unpause")
grep -qx 'frozen 0' "$CCG/cgroup.events" 2>/dev/null || WHY+=("cgroup.events: still frozen after unpause")
verdict "pause/unpause: cgroup.freeze and cgroup.events follow"

# ---------------------------------------------------------------- rm -f
begin
WHY=()
run P rm -f -t 0 p-lim
[ $RC -eq 0 ] || WHY+=("rm -f exit $RC: $(one_line "$OUT")")
P container exists p-lim && WHY+=("container still exists")
unit_gone "$UNIT" "$CG"
"$RT" list -q 2>/dev/null | grep -qx "$ID" && WHY+=("$RTNAME list still has it")
[ -e "/run/$RTNAME/$ID" ] && WHY+=("state /run/$RTNAME/$ID left")
kill -0 "$PID" 2>/dev/null && WHY+=("pid $PID still alive")
verdict "rm -f of a running container: no scope, cgroup, state or process left"

# ---------------------------------------------------------------- nothing left
begin
WHY=()
left=$(P ps -aq 2>&1); [ -z "$left" ] || WHY+=("containers: $(one_line "$left")")
left=$(units_matching 'libpod-*'); [ -z "$left" ] || WHY+=("units: $(one_line "$left")")
left=$(ls -d /sys/fs/cgroup/machine.slice/libpod-* 2>/dev/null); [ -z "$left" ] || WHY+=("cgroups: $(one_line "$left")")
for id in "${IDS[@]}"; do
    [ -n "$id" ] || continue
    "$RT" list -q 2>/dev/null | grep -qx "$id" && WHY+=("$RTNAME still lists $id")
    [ -e "/run/$RTNAME/$id" ] && WHY+=("state /run/$RTNAME/$id left")
done
left=$(pgrep -x conmon | tr '\n' ' '); [ -z "$left" ] || WHY+=("conmon left: $left")
verdict "nothing left (containers, libpod-* units, cgroups, runtime state, conmon)"

summary podman-systemd
