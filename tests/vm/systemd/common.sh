# /guest/common.sh: what the systemd VM tier's guest scripts share (sourced,
# bash). They run as root in a guest whose PID 1 is systemd 252 on a pure
# cgroup v2 hierarchy (tests/vm/run-systemd boots it).
# shellcheck shell=bash

PASS=0 FAIL=0
T0=$EPOCHREALTIME
begin() { T0=$EPOCHREALTIME; }
since() { awk -v a="$1" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.1f", b - a }'; }
ok() { PASS=$((PASS + 1)); echo "ok - $1 ($(since "$T0")s)"; }
notok() { FAIL=$((FAIL + 1)); echo "not ok - $1: $2"; }
# run CMD...: its stdout and stderr in OUT, its exit code in RC
run() { OUT=$("$@" 2>&1); RC=$?; }
one_line() { tr '\n' '|' <<< "$1" | cut -c1-400; }
# verdict NAME: ok, or not ok with the reasons gathered in the array WHY
verdict() {
    if [ ${#WHY[@]} -eq 0 ]; then ok "$1"; else notok "$1" "$(IFS=';'; echo "${WHY[*]}")"; fi
}
# summary NAME: the part's closing line; exits with its status
summary() { echo "$1: $PASS passed, $FAIL failed"; [ "$FAIL" -eq 0 ]; }

# A busybox root file system for containers: a copy of /guest/busybox-rootfs,
# which the host made from the guest's busybox-static (no registry, no
# network; one cp, where making its 400 links here would be 400 processes,
# seconds under TCG).
make_busybox_rootfs() { mkdir -p "$1" && cp -a /guest/busybox-rootfs/. "$1/"; }

# make_bundle DIR CGROUPS_PATH ARGS_JSON [RESOURCES_JSON]: an OCI bundle in
# DIR (busybox root file system, read-only) from runc's default spec. runc's
# `spec` makes it whatever the runtime under test, so every runtime runs the
# same config.
make_bundle() {
    local d=$1 cg=$2 args=$3 res=${4:-'{}'}
    rm -rf "$d" && mkdir -p "$d" && make_busybox_rootfs "$d/rootfs"
    (cd "$d" && /usr/sbin/runc spec) || return 1
    jq --arg cg "$cg" --argjson args "$args" --argjson res "$res" '
        .process.terminal = false | .process.args = $args | .root.readonly = true
        | .linux.cgroupsPath = $cg | .linux.resources += $res' "$d/config.json" > "$d/config.new" &&
        mv "$d/config.new" "$d/config.json"
}
# set_cgroups_path DIR CGROUPS_PATH: another cgroupsPath in DIR's config
set_cgroups_path() {
    jq --arg cg "$2" '.linux.cgroupsPath = $cg' "$1/config.json" > "$1/config.new" && mv "$1/config.new" "$1/config.json"
}

# prop UNIT PROPERTY: one property of a unit, as systemctl shows it
prop() { systemctl show -P "$2" "$1" 2>/dev/null; }

# cgdir UNIT: the unit's cgroup directory (a path that does not exist when
# systemd gives no ControlGroup, so that checks on it fail rather than look
# at the root cgroup)
cgdir() {
    local cg; cg=$(prop "$1" ControlGroup)
    if [ -n "$cg" ]; then echo "/sys/fs/cgroup$cg"; else echo "/sys/fs/cgroup/no-cgroup-for/$1"; fi
}

# scope_of_pid PID: the .scope unit holding PID (the last *.scope component of
# its cgroup: a runtime may put the process in a child of the scope, as crun
# does with .../container)
scope_of_pid() { sed -n 's/^0:://p' "/proc/$1/cgroup" 2>/dev/null | tr '/' '\n' | grep '\.scope$' | tail -1; }

# check_scope UNIT SLICE PID: appends to WHY what is wrong with UNIT as the
# transient, delegated scope a runtime's systemd driver must make for PID
check_scope() {
    local unit=$1 slice=$2 pid=$3 cg own v
    v=$(prop "$unit" LoadState)
    [ "$v" = loaded ] || { WHY+=("$unit: LoadState '$v'"); return; }
    v=$(prop "$unit" ActiveState); [ "$v" = active ] || WHY+=("$unit: ActiveState '$v'")
    v=$(prop "$unit" Transient); [ "$v" = yes ] || WHY+=("$unit: Transient '$v'")
    # Delegate=yes: systemd leaves the scope's subtree to the runtime (it may
    # make child cgroups and write their files)
    v=$(prop "$unit" Delegate); [ "$v" = yes ] || WHY+=("$unit: Delegate '$v'")
    v=$(prop "$unit" Slice); [ "$v" = "$slice" ] || WHY+=("$unit: Slice '$v', expected $slice")
    cg=$(prop "$unit" ControlGroup)
    [ -n "$cg" ] && [ -d "/sys/fs/cgroup$cg" ] || { WHY+=("$unit: ControlGroup '$cg' has no directory"); return; }
    own=$(sed -n 's/^0:://p' "/proc/$pid/cgroup" 2>/dev/null)
    case $own in "$cg"|"$cg"/*) ;; *) WHY+=("pid $pid is in '$own', not in $unit ($cg)");; esac
}

# unit_gone UNIT CGROUP_DIR [SECONDS]: waits until systemd no longer knows
# UNIT and its cgroup directory is gone; else appends why to WHY. (The scope
# stops when its last process is gone; systemd then collects it.)
unit_gone() {
    local unit=$1 dir=$2 n=$((${3:-5} * 10)) i
    for ((i = 0; i < n; i++)); do
        [ -z "$(systemctl list-units --all --plain --no-legend "$unit" 2>/dev/null)" ] && [ ! -d "$dir" ] && return 0
        sleep 0.1
    done
    [ -n "$(systemctl list-units --all --plain --no-legend "$unit" 2>/dev/null)" ] &&
        WHY+=("$unit still known: $(systemctl list-units --all --plain --no-legend "$unit" | head -1)")
    [ -d "$dir" ] && WHY+=("cgroup $dir left")
    return 1
}

# units_matching PATTERN: the units systemd knows whose name matches
units_matching() { systemctl list-units --all --plain --no-legend "$1" 2>/dev/null | awk '{ print $1 }'; }

# start_containerd DIR SOCKET DISABLED PLUGINS_TOML: a private containerd
# with its root, state and opt under DIR, listening on SOCKET, the plugins
# DISABLED (items of a TOML list) off besides the snapshotters and tracing
# nothing here uses, and PLUGINS_TOML appended; its pid in CPID. Returns 1,
# with the log's tail in OUT, when it does not answer within 15 s.
start_containerd() {
    local dir=$1 sock=$2
    cat > "$dir/config.toml" <<EOF
version = 2
root = "$dir/root"
state = "$dir/state"
disabled_plugins = [$3 "io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.btrfs",
  "io.containerd.snapshotter.v1.devmapper", "io.containerd.snapshotter.v1.zfs",
  "io.containerd.tracing.processor.v1.otlp", "io.containerd.internal.v1.tracing"]

[grpc]
  address = "$sock"
[ttrpc]
  address = "$sock.ttrpc"
[plugins."io.containerd.internal.v1.opt"]
  path = "$dir/opt"

$4
EOF
    containerd --config "$dir/config.toml" > "$dir/containerd.log" 2>&1 &
    CPID=$!
    for _ in $(seq 150); do [ -S "$sock" ] && ctr -a "$sock" version >/dev/null 2>&1 && return 0; sleep 0.1; done
    OUT=$(tail -5 "$dir/containerd.log"); return 1
}
