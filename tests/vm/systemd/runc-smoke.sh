#!/bin/bash
# /guest/runc-smoke.sh RUNTIME: the runtime's own command line with its
# systemd cgroup driver, no engine in between: `RUNTIME --systemd-cgroup run
# -d` with cgroupsPath system.slice:runc:test1, which the driver must turn
# into the transient unit runc-test1.scope (slice:prefix:name ->
# <slice>/<prefix>-<name>.scope, as runc does).
set -u
. /guest/common.sh
RT=${1:?usage: runc-smoke.sh RUNTIME}
ROOT=/run/smoke-$(basename "$RT")
B=/var/tmp/smoke
UNIT=runc-test1.scope
R() { timeout 60 "$RT" --root "$ROOT" --systemd-cgroup "$@"; }
cleanup() { R delete --force test1 >/dev/null 2>&1; }
trap cleanup EXIT
echo "# $($RT --version 2>&1 | head -1) at $RT"

MEM=$((64 << 20))
make_bundle "$B" system.slice:runc:test1 '["sh", "-c", "echo container up; exec sleep 1000"]' \
    "{\"memory\": {\"limit\": $MEM}, \"pids\": {\"limit\": 50}, \"cpu\": {\"shares\": 512}}" ||
    { notok "bundle" "cannot make $B"; summary runc-smoke; exit; }

begin
WHY=()
# -d: stdio must not be ours (the container keeps it), so into a file
R run -d -b "$B" test1 < /dev/null > /tmp/smoke.out 2>&1; RC=$?
PID=$(R state test1 2>/dev/null | jq -r .pid 2>/dev/null)
sleep 0.3
if [ $RC -ne 0 ]; then WHY+=("run -d exit $RC: $(one_line "$(cat /tmp/smoke.out)")")
elif ! [ "${PID:-0}" -gt 0 ] 2>/dev/null; then WHY+=("state gives no pid: $(one_line "$(R state test1 2>&1)")")
else
    grep -qx 'container up' /tmp/smoke.out || WHY+=("container output '$(one_line "$(cat /tmp/smoke.out)")'")
    [ "$(scope_of_pid "$PID")" = "$UNIT" ] || WHY+=("pid $PID is in $(sed -n 's/^0:://p' /proc/$PID/cgroup), not in $UNIT")
    check_scope "$UNIT" system.slice "$PID"
fi
verdict "run -d makes $UNIT: transient, Delegate=yes, in system.slice, holds the container"
CG=$(cgdir $UNIT)

begin
WHY=()
if [ ! -d "$CG" ]; then WHY+=("no scope cgroup")
else
    # what systemd was told (the unit's properties) and what the kernel enforces (the files) agree
    v=$(prop $UNIT MemoryMax); [ "$v" = $MEM ] || WHY+=("MemoryMax '$v', expected $MEM")
    v=$(cat "$CG/memory.max"); [ "$v" = $MEM ] || WHY+=("memory.max '$v', expected $MEM")
    v=$(prop $UNIT TasksMax); [ "$v" = 50 ] || WHY+=("TasksMax '$v', expected 50")
    v=$(cat "$CG/pids.max"); [ "$v" = 50 ] || WHY+=("pids.max '$v', expected 50")
    # shares 512 is half the default 1024: the weight must be below the
    # default 100 (runc 1.1 maps it to 20, later runtimes to other values)
    w=$(cat "$CG/cpu.weight"); v=$(prop $UNIT CPUWeight)
    [ "$w" -ge 1 ] && [ "$w" -lt 100 ] 2>/dev/null || WHY+=("cpu.weight '$w' for 512 shares")
    [ "$v" = "$w" ] || WHY+=("CPUWeight '$v' but cpu.weight '$w'")
fi
verdict "limits reach the scope: MemoryMax and memory.max, TasksMax and pids.max, CPUWeight and cpu.weight"

begin
WHY=()
run R exec test1 sh -c 'echo exec ok; exit 7'
[ $RC -eq 7 ] || WHY+=("exec exit $RC, expected 7")
[ "$OUT" = "exec ok" ] || WHY+=("exec output '$(one_line "$OUT")'")
verdict "exec into the container"

begin
WHY=()
run R kill test1 KILL
[ $RC -eq 0 ] || WHY+=("kill exit $RC: $(one_line "$OUT")")
for _ in $(seq 50); do [ "$(R state test1 2>/dev/null | jq -r .status)" = stopped ] && break; sleep 0.1; done
run R delete test1
[ $RC -eq 0 ] || WHY+=("delete exit $RC: $(one_line "$OUT")")
unit_gone $UNIT "$CG"
[ -z "$(R list -q 2>/dev/null)" ] || WHY+=("still listed: $(R list -q 2>&1)")
[ ! -e "$ROOT/test1" ] || WHY+=("state $ROOT/test1 left")
kill -0 "$PID" 2>/dev/null && WHY+=("pid $PID still alive")
verdict "kill + delete: the scope, its cgroup and the state are gone"

begin
WHY=()
make_bundle "$B" system.slice:runc:test2 '["sleep", "1000"]' || WHY+=("bundle")
R run -d -b "$B" test2 < /dev/null > /dev/null 2>&1 || WHY+=("run -d test2 failed")
CG2=$(cgdir runc-test2.scope)
[ "$(prop runc-test2.scope ActiveState)" = active ] || WHY+=("runc-test2.scope not active")
run R delete --force test2
[ $RC -eq 0 ] || WHY+=("delete --force exit $RC: $(one_line "$OUT")")
unit_gone runc-test2.scope "$CG2"
[ ! -e "$ROOT/test2" ] || WHY+=("state $ROOT/test2 left")
verdict "delete --force of a running container: its scope is gone"

summary runc-smoke
