#!/bin/bash
# /guest/bench.sh RUNTIME...: what the systemd driver costs per container,
# runtime against runtime, on the same bundles. Each round, for each runtime
# (the order alternating from round to round):
#   run      `RUNTIME --systemd-cgroup run` of /bin/true in the foreground,
#            until it exits (create, start, wait, delete: the scope is made
#            and stopped over D-Bus)
#   delete   `RUNTIME --systemd-cgroup delete --force` of a running `sleep`
#            (made untimed with run -d)
# cgroupsPath system.slice:bench:<id>. Prints the median and p99 in ms per
# runtime and berth/runc's ratio; asserts nothing about time, only that every
# command succeeded and that no scope is left. BENCH_ROUNDS (default 10).
set -u
. /guest/common.sh
[ $# -gt 0 ] || { echo "usage: bench.sh RUNTIME..." >&2; exit 2; }
ROUNDS=${BENCH_ROUNDS:-10}
B=/var/tmp/bench
RTS=("$@")
make_bundle "$B/true" system.slice:bench:x '["/bin/true"]' && make_bundle "$B/sleep" system.slice:bench:x '["sleep", "1000"]' ||
    { notok "bench bundles" "cannot make them"; summary bench-systemd; exit; }

name() { basename "$1"; }
root() { echo "/run/bench-$(name "$1")"; }
ms() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.3f\n", (b - a) * 1000 }'; }
# a command slower than this has what it said on stderr (its warnings) shown
SLOW_MS=5000
# record FILE T0 T1 WHAT: the command's time into FILE; a slow one is named
record() {
    local m; m=$(ms "$2" "$3")
    echo "$m" >> "$1"
    awk -v m="$m" -v s=$SLOW_MS 'BEGIN { exit !(m > s) }' && echo "# slow: $4 took ${m%.*} ms: $(one_line "$(cat "$B/out")")"
}
declare -A ERR
for rt in "${RTS[@]}"; do : > "$B/run-$(name "$rt").ms"; : > "$B/delete-$(name "$rt").ms"; ERR[$rt]=""; done

one_round() {   # RUNTIME ROUND
    local rt=$1 i=$2 id t0 t1 rc n
    n=$(name "$rt")
    id=r-$n-$i
    set_cgroups_path "$B/true" "system.slice:bench:$id"
    t0=$EPOCHREALTIME
    "$rt" --root "$(root "$rt")" --systemd-cgroup run -b "$B/true" "$id" < /dev/null > "$B/out" 2>&1; rc=$?
    t1=$EPOCHREALTIME
    if [ $rc -eq 0 ]; then record "$B/run-$n.ms" "$t0" "$t1" "$n run $id"; else ERR[$rt]+="run $id: exit $rc $(one_line "$(cat "$B/out")"); "; fi
    id=d-$n-$i
    set_cgroups_path "$B/sleep" "system.slice:bench:$id"
    if "$rt" --root "$(root "$rt")" --systemd-cgroup run -d -b "$B/sleep" "$id" < /dev/null > "$B/out" 2>&1; then
        t0=$EPOCHREALTIME
        "$rt" --root "$(root "$rt")" --systemd-cgroup delete --force "$id" > "$B/out" 2>&1; rc=$?
        t1=$EPOCHREALTIME
        if [ $rc -eq 0 ]; then record "$B/delete-$n.ms" "$t0" "$t1" "$n delete --force $id"; else ERR[$rt]+="delete --force $id: exit $rc $(one_line "$(cat "$B/out")"); "; fi
    else
        ERR[$rt]+="run -d $id: $(one_line "$(cat "$B/out")"); "
    fi
}

for ((i = 1; i <= ROUNDS; i++)); do
    if ((i % 2)); then order=("${RTS[@]}"); else order=(); for ((j = ${#RTS[@]} - 1; j >= 0; j--)); do order+=("${RTS[j]}"); done; fi
    for rt in "${order[@]}"; do one_round "$rt" "$i"; done
done

# median and p99 (nearest rank) of a file of numbers
stats() { sort -n "$1" | awk '{ v[NR] = $1 } END { if (NR == 0) { print "- -"; exit }
    m = (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2
    r = int(0.99 * NR); if (r < 0.99 * NR) r++; printf "%.1f %.1f\n", m, v[r] }'; }
echo "# bench: $ROUNDS rounds, wall ms per command (median, p99)"
for what in run delete; do
    for rt in "${RTS[@]}"; do
        read -r med p99 < <(stats "$B/$what-$(name "$rt").ms")
        printf '#   %-7s %-8s median %8s  p99 %8s  (%d samples)\n' "$what" "$(name "$rt")" "$med" "$p99" "$(wc -l < "$B/$what-$(name "$rt").ms")"
        eval "MED_${what}_$(name "$rt" | tr -c 'a-zA-Z0-9\n' _)=$med"
    done
    b=MED_${what}_berth r=MED_${what}_runc
    if [ -n "${!b:-}" ] && [ -n "${!r:-}" ]; then
        echo "#   $what: berth/runc median ratio $(awk -v a="${!b}" -v b="${!r}" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "-" }')"
    fi
done

# the last scopes may take a moment to be collected
for _ in $(seq 50); do [ -z "$(units_matching 'bench-*')" ] && break; sleep 0.1; done
for rt in "${RTS[@]}"; do
    begin
    WHY=()
    [ -z "${ERR[$rt]}" ] || WHY+=("${ERR[$rt]}")
    left=$(units_matching 'bench-*'); [ -z "$left" ] || WHY+=("units left: $(one_line "$left")")
    left=$("$rt" --root "$(root "$rt")" list -q 2>/dev/null); [ -z "$left" ] || WHY+=("containers left: $(one_line "$left")")
    verdict "bench $(name "$rt"): $ROUNDS rounds of run and delete --force succeeded, nothing left"
done
summary bench-systemd
