# Shared by the caller tests (sourced): results, timing, installs.
# shellcheck shell=bash

PASS=0 FAIL=0
T0=0
since() { awk -v a="$1" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }'; }
begin() { T0=$(date +%s.%N); }
ok() { PASS=$((PASS + 1)); echo "ok - $1 ($(since "$T0")s)"; }
notok() { FAIL=$((FAIL + 1)); echo "not ok - $1: $2"; }
run() { OUT=$("$@" 2>&1); RC=$?; }
one_line() { tr '\n' '|' <<< "$1" | cut -c1-400; }
PTYRUN=$(dirname "${BASH_SOURCE[0]}")/ptyrun

# install_missing NAME PACKAGE...: installs the Debian packages given (from
# the ones a test found missing), or exits 2 naming them.
install_missing() {
    local name=$1; shift
    [ $# -gt 0 ] || return 0
    echo "# installing $*"
    export DEBIAN_FRONTEND=noninteractive
    apt-get install -y --no-install-recommends "$@" >/dev/null 2>&1 ||
        { apt-get update >/dev/null 2>&1 && apt-get install -y --no-install-recommends "$@" >/dev/null; } ||
        { echo "$name: cannot install $*" >&2; exit 2; }
}
