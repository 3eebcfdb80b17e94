#!/bin/bash
# /guest/job.sh: the systemd VM tier's driver, run by guest-job.service once
# the guest is up (systemd 252 as PID 1, cgroup v2 only). Its output goes to
# the second serial port, which tests/vm/run-systemd prints.
#
# From /guest/env (the unit's EnvironmentFile):
#   RUNTIME           the runtime under test (/usr/local/bin/berth, /usr/sbin/runc)
#   SYSTEMD_VM_PARTS  which parts run, in order: runc-smoke podman containerd cri bench tests
#                     (and population, on request)
#   BENCH_RUNTIMES    the runtimes the bench (and population) compares
#   BENCH_ROUNDS      its rounds
# Every part prints `ok - ...` / `not ok - ...` lines and closes with
# `NAME: N passed, N failed`; this sums them into `systemd-vm: N passed, N
# failed` and ends with `JOB-EXIT rc`.
exec 2>&1
up() { cut -d' ' -f1 /proc/uptime; }
echo "# job started at uptime $(up)s"
echo "# kernel $(uname -r); PID 1: $(cat /proc/1/comm), $(systemctl --version | head -1)"
echo "# cgroup fs: $(stat -fc %T /sys/fs/cgroup); controllers: $(cat /sys/fs/cgroup/cgroup.controllers)"
echo "# system bus: $(systemctl is-active dbus.service); runtime under test: $RUNTIME ($("$RUNTIME" --version 2>&1 | head -1))"
echo "# parts: $SYSTEMD_VM_PARTS"

pass=0 fail=0 times=""
for part in $SYSTEMD_VM_PARTS; do
    echo "== $part"
    t0=$EPOCHREALTIME
    case $part in
        runc-smoke) cmd=(/guest/runc-smoke.sh "$RUNTIME");;
        podman) cmd=(/guest/podman.sh "$RUNTIME");;
        containerd) cmd=(/guest/containerd.sh "$RUNTIME");;
        cri) cmd=(/guest/cri.sh "$RUNTIME");;
        # shellcheck disable=SC2206 # a list of paths
        bench) cmd=(/guest/bench.sh $BENCH_RUNTIMES);;
        # shellcheck disable=SC2206 # a list of paths
        population) cmd=(/guest/population.sh $BENCH_RUNTIMES);;
        tests) cmd=(/guest/tests.sh "$RUNTIME");;
        *) echo "not ok - part $part: no such part"; fail=$((fail + 1)); continue;;
    esac
    # into a file first, then out: the part's output stays in one piece
    "${cmd[@]}" > /tmp/part.out 2>&1 < /dev/null
    rc=$?
    cat /tmp/part.out
    line=$(grep -E '^[a-z-]+: [0-9]+ passed, [0-9]+ failed$' /tmp/part.out | tail -1)
    p=$(awk '{ print $2 }' <<< "$line"); f=$(awk '{ print $4 }' <<< "$line")
    if [ -z "$line" ]; then
        echo "not ok - part $part: exit $rc without a summary line"; p=0; f=1
    elif [ $rc -ne 0 ] && [ "$f" -eq 0 ]; then
        echo "not ok - part $part: exit $rc though no check failed"; f=1
    fi
    pass=$((pass + p)); fail=$((fail + f))
    s=$(awk -v a="$t0" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.1f", b - a }')
    echo "== $part: ${s}s"
    times+="$(printf '#   %-12s %7ss' "$part" "$s")"$'\n'
done
echo "# wall time per part:"
printf '%s' "$times"
echo "systemd-vm: $pass passed, $fail failed"
rc=0; [ $fail -eq 0 ] && [ $pass -gt 0 ] || rc=1
echo "JOB-EXIT $rc at uptime $(up)s"
