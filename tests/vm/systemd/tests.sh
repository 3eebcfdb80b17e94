#!/bin/bash
# /guest/tests.sh: berth's test binaries (listed in /guest/tests.list, each
# at the path cargo built it at, as are the testing berth and the enosys
# example they run) with the systemd cgroup driver, one at a time (they share the slices they make), ignored ones included.
# BERTH_TEST_CGROUP_DRIVER=systemd tells the test harness to drive its
# runtime with --systemd-cgroup. When the runtime under test is not berth,
# the runtime-neutral tests run against it (BERTH_TEST_RUNTIME), which
# proves the tests themselves.
set -u
. /guest/common.sh
RT=${1:?usage: tests.sh RUNTIME}
export BERTH_TEST_CGROUP_DRIVER=systemd
# The tests that concern cgroups: the cgroup tests, the systemd driver's
# own, and the lifecycle, exec and crash tests (every fault point of
# create, start, kill and delete, then delete --force) on the driver.
FILTER="cgroups:: systemd_driver:: lifecycle:: exec:: crash::"
[ "$(basename "$RT")" = berth ] || export BERTH_TEST_RUNTIME=$RT
[ -s /guest/tests.list ] || { echo "# no test binaries given"; summary tests-systemd; exit; }
while read -r t; do
    echo "# $t"
    "$t" --include-ignored --test-threads=1 $FILTER > /tmp/test.out 2>&1; rc=$?
    cat /tmp/test.out
    # cargo's closing lines: "test result: ok. 3 passed; 0 failed; ..."
    p=$(awk '/^test result:/ { for (i = 1; i < NF; i++) if ($(i + 1) ~ /^passed/) s += $i } END { print s + 0 }' /tmp/test.out)
    f=$(awk '/^test result:/ { for (i = 1; i < NF; i++) if ($(i + 1) ~ /^failed/) s += $i } END { print s + 0 }' /tmp/test.out)
    PASS=$((PASS + p)); FAIL=$((FAIL + f))
    # a binary that failed without saying which test did (a crash, a panic
    # outside a test): one failure of its own
    if [ $rc -ne 0 ] && [ "$f" -eq 0 ]; then notok "$t" "exit $rc with no failed test counted"; fi
done < /guest/tests.list
summary tests-systemd
