# shellcheck shell=bash
# Helpers for the guest side of compat-tests/vm: sourced by runner before a
# scenario's guest script. Results go to fd 3 (the second serial port, read
# by the host) as lines:
#   PASS <name>                a check passed
#   FAIL <name>: <reason>      a check failed
#   INFO <text>                shown by the host under the last check
# Everything else a scenario prints goes to the journal and the console.

# The daemon under test: busbar or reference (dbus-daemon).
VM_DAEMON=$(cat /etc/busbar-vm/daemon)
VM_SCENARIO=$(cat /etc/busbar-vm/scenario)
export VM_DAEMON VM_SCENARIO
case $VM_DAEMON in
busbar) VM_BUS_EXE=/usr/bin/busbar ;;
reference) VM_BUS_EXE=/usr/bin/dbus-daemon ;;
*) VM_BUS_EXE=unknown ;;
esac
export VM_BUS_EXE

report() { printf '%s\n' "$*" >&3; }
pass() { report "PASS $1"; echo "vm-check: PASS $1"; }
# fail NAME REASON...
fail() {
    local name=$1
    shift
    report "FAIL $name: $*"
    echo "vm-check: FAIL $name: $*"
}
info() {
    local l
    while IFS= read -r l; do report "INFO $l"; done <<<"$*"
}

# check NAME FUNCTION [ARGS...]: run FUNCTION in a subshell with a time
# limit of $CHECK_TIMEOUT seconds (default 120). It passes when FUNCTION
# returns 0; otherwise the last lines it printed are the reason.
check() {
    local name=$1 out rc=0
    shift
    # shellcheck disable=SC2016 # expanded by the inner bash
    out=$(timeout --kill-after=5 "${CHECK_TIMEOUT:-120}" bash -c '
        . /usr/local/lib/busbar-vm/lib.sh 3>/dev/null
        . "$VM_SCENARIO_SCRIPT"
        "$@"' check "$@" 2>&1 3>/dev/null) || rc=$?
    if ((rc == 0)); then
        pass "$name"
    else
        ((rc == 124)) && out+=$'\n'"(timed out after ${CHECK_TIMEOUT:-120}s)"
        fail "$name" "$(tail -n 1 <<<"$out")"
        info "$(tail -n 12 <<<"$out")"
    fi
}

# wait_for SECONDS COMMAND...: retry COMMAND every half second.
wait_for() {
    local deadline=$((SECONDS + $1))
    shift
    until "$@"; do
        ((SECONDS < deadline)) || return 1
        sleep 0.5
    done
}

# as_user USER COMMAND...: run COMMAND as USER with its user bus.
as_user() {
    local user=$1 uid
    shift
    uid=$(id -u "$user")
    runuser -u "$user" -- env XDG_RUNTIME_DIR="/run/user/$uid" \
        DBUS_SESSION_BUS_ADDRESS="unix:path=/run/user/$uid/bus" "$@"
}

# prop UNIT PROPERTY [--user USER]: a unit property's value.
unit_prop() {
    systemctl show -p "$2" --value "$1"
}
user_unit_prop() {
    as_user "$1" systemctl --user show -p "$3" --value "$2"
}

# proc_exe PID / proc_user PID
proc_exe() { readlink "/proc/$1/exe"; }
proc_user() { ps -o user= -p "$1" | tr -d ' '; }

# need "WHAT" EXPECTED ACTUAL: fail with a message unless equal.
need() {
    if [[ $2 != "$3" ]]; then
        echo "$1: expected '$2', got '$3'"
        return 1
    fi
}
