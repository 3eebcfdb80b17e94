#!/bin/bash
# /guest/population.sh RUNTIME...: what `delete --force` of one container
# costs while K other idle containers run, on Debian's 6.1 kernel (no
# listmount: berth's check for copies of a container's mounts walks the
# namespaces of the processes in /proc there). For each K of POP_K (commas or spaces; default
# "0 50 150"), K others are started (spread over the runtimes, untimed),
# then POP_ROUNDS (default 5) rounds, the runtimes alternating, each time
# `delete --force` of a freshly started `sleep` is timed. cgroupfs driver,
# cgroupsPath /pop/<id>, the rootfs a bind mount made before (as a caller's). Prints the median per runtime and K, and each
# runtime's median over its own at the first K; asserts nothing about time,
# only that every command succeeded and nothing was left.
set -u
. /guest/common.sh
[ $# -gt 0 ] || { echo "usage: population.sh RUNTIME..." >&2; exit 2; }
ROUNDS=${POP_ROUNDS:-5}
B=/var/tmp/population
RTS=("$@")
make_bundle "$B/sleep" /pop/x '["sleep", "100000"]' || { notok "population bundle" "cannot make it"; summary population; exit; }
# The rootfs a mount of the caller's, as podman's overlay and containerd's
# snapshot are: what berth looks for copies of at delete.
mount --bind "$B/sleep/rootfs" "$B/sleep/rootfs" || { notok "population rootfs mount" "mount --bind failed"; summary population; exit; }
name() { basename "$1"; }
root() { echo "/run/pop-$(name "$1")"; }
ms() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.3f\n", (b - a) * 1000 }'; }
median() { sort -n | awk '{ v[NR] = $1 } END { if (NR == 0) { print "-"; exit } printf "%.1f\n", (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
start() {   # RUNTIME ID
    set_cgroups_path "$B/sleep" "/pop/$2"
    "$1" --root "$(root "$1")" run -d -b "$B/sleep" "$2" < /dev/null > "$B/out" 2>&1
}
ERRS=0
declare -A FIRST
begin
echo "# population: kernel $(uname -r); $ROUNDS rounds per K, alternating $(for r in "${RTS[@]}"; do name "$r"; done | tr '\n' ' ')"
for K in $(tr , " " <<< "${POP_K:-0 50 150}"); do
    K=${K//[^0-9]/}
    others=()
    for ((i = 0; i < K; i++)); do
        rt=${RTS[i % ${#RTS[@]}]}
        if start "$rt" "o-$K-$i"; then others+=("$rt o-$K-$i"); else ERRS=$((ERRS + 1)); echo "# start o-$K-$i: $(one_line "$(cat "$B/out")")"; fi
    done
    for rt in "${RTS[@]}"; do : > "$B/$(name "$rt").ms"; done
    for ((r = 1; r <= ROUNDS; r++)); do
        if ((r % 2)); then order=("${RTS[@]}"); else order=(); for ((j = ${#RTS[@]} - 1; j >= 0; j--)); do order+=("${RTS[j]}"); done; fi
        for rt in "${order[@]}"; do
            id=d-$K-$r-$(name "$rt")
            start "$rt" "$id" || { ERRS=$((ERRS + 1)); echo "# start $id: $(one_line "$(cat "$B/out")")"; continue; }
            t0=$EPOCHREALTIME
            "$rt" --root "$(root "$rt")" delete --force "$id" > "$B/out" 2>&1; rc=$?
            t1=$EPOCHREALTIME
            if [ $rc -eq 0 ]; then ms "$t0" "$t1" >> "$B/$(name "$rt").ms"; else ERRS=$((ERRS + 1)); echo "# delete $id: $(one_line "$(cat "$B/out")")"; fi
        done
    done
    for rt in "${RTS[@]}"; do
        n=$(name "$rt"); m=$(median < "$B/$n.ms")
        [ -n "${FIRST[$n]:-}" ] || FIRST[$n]=$m
        echo "#   K=$K $n delete --force median ${m} ms ($(wc -l < "$B/$n.ms") samples; $(awk -v a="$m" -v b="${FIRST[$n]}" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "-" }')x its own at the first K)"
    done
    for o in "${others[@]}"; do set -- $o; "$1" --root "$(root "$1")" delete --force "$2" > /dev/null 2>&1 || ERRS=$((ERRS + 1)); done
done
if [ $ERRS -eq 0 ]; then ok "population: every command succeeded"; else notok "population: every command succeeded" "$ERRS failed"; fi
WHY=()
# berth hands emptied cgroups to its reaper on this kernel (cgroup v2 with
# memory and io before 7.2): its batches are waited for first.
for rt in "${RTS[@]}"; do [ "$(name "$rt")" = berth ] && "$rt" --root "$(root "$rt")" gc --wait > /dev/null 2>&1; done
for rt in "${RTS[@]}"; do
    left=$("$rt" --root "$(root "$rt")" list -q 2>/dev/null); [ -z "$left" ] || WHY+=("$(name "$rt") still lists $(one_line "$left")")
done
left=$(find /sys/fs/cgroup/pop -mindepth 1 -type d 2>/dev/null); [ -z "$left" ] || WHY+=("cgroups left: $(one_line "$left")")
umount "$B/sleep/rootfs"
grep -q " $B/sleep/rootfs" /proc/[0-9]*/mountinfo 2>/dev/null && WHY+=("mounts of the bundle left")
verdict "population: nothing left"
rmdir /sys/fs/cgroup/pop 2>/dev/null
summary population
