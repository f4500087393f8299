#!/usr/bin/env bash
# ./test.sh: THE test command for busbar (CI runs it through .ci/run).
#
# Stages, in order; the first failing stage stops the run:
#   deps      apt-get install what is missing (only then `apt-get update`);
#             rustup components clippy + rustfmt
#   build     cargo build --release
#   fmt       cargo fmt --all --check, and the same for bench/ and fuzz/ (crates
#             of their own, outside the workspace)
#   clippy    cargo clippy --workspace --all-targets -- -D warnings, and for bench/
#   test      cargo test --workspace --release
#   compat    compat-tests/run     (dbus-tests' daemon tests vs target/release/busbar)
#   test-uring  the test and compat stages again with BUSBAR_IO_BACKEND=uring
#             (the loop's io_uring backend; epoll is the default), so both
#             backends run the whole suite; fails under CI where io_uring
#             is disabled (kernel.io_uring_disabled), skipped elsewhere
#   clients   compat-tests/clients (dbus-send, gdbus, busctl, python3-dbus ... vs busbar)
#   packages  packaging/check-packages (build the .deb, and the .rpm if rpmbuild
#             is installed, from target/release; check their contents)
#   vm        compat-tests/vm/run boot upgrade selinux apparmor (busbar as the
#             system and user bus of Debian 12 guests under qemu: boot, a
#             re-executing package upgrade, SELinux and AppArmor; the base
#             root is cached in /var/cache/busbar-vm)
#
# Knobs:
#   SKIP_DEPS=1               skip the deps stage
#   SKIP_VM=1                 skip the vm stage (refused when CI is set)
#   BUSBAR_TEST_DAEMON=PATH   run the compat stages against PATH instead of
#                             target/release/busbar (to validate the harness)
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
cd "$repo"
# shellcheck source=compat-tests/lib/common.sh
. "$repo/compat-tests/lib/common.sh"

# cargo may live in ~/.cargo/bin without being on PATH (non-login shells).
if ! command -v cargo >/dev/null 2>&1 && [[ -x ${CARGO_HOME:-$HOME/.cargo}/bin/cargo ]]; then
    PATH=${CARGO_HOME:-$HOME/.cargo}/bin:$PATH
fi

daemon=${BUSBAR_TEST_DAEMON:-$repo/target/release/busbar}
stages=() results=() times=()

stage_deps() {
    # dbus-tests: daemon test suite; dbus-daemon: reference daemon and the
    # session.conf busbar falls back to; dbus-bin: dbus-send, dbus-monitor,
    # dbus-run-session; python3-dbus/python3-gi: helper services;
    # libglib2.0-bin: gdbus; systemd: busctl; dbus-broker: second reference;
    # mandoc: tests/integration/man_options.rs lints the man pages; python3-seccomp:
    # tests/integration/io_backend.rs refuses io_uring_setup to a daemon;
    # strace: io_backend counts the daemon's recvmsg calls under io_uring.
    # vm stage: debootstrap (+ keyring) for the guest root, e2fsprogs for
    # mkfs.ext4 -d, qemu-system-x86 to boot it, util-linux for unshare/flock.
    ensure_packages dbus-tests dbus-daemon dbus-bin python3 python3-dbus python3-gi \
        libglib2.0-bin systemd dbus-broker util-linux coreutils mandoc python3-seccomp strace \
        debootstrap debian-archive-keyring e2fsprogs qemu-system-x86
    command -v cargo >/dev/null 2>&1 || die "cargo not found (install a Rust toolchain with rustup)"
    if command -v rustup >/dev/null 2>&1; then
        local installed missing=() c
        installed=$(rustup component list --installed 2>/dev/null || true)
        for c in clippy rustfmt; do
            grep -q "^$c" <<<"$installed" || missing+=("$c")
        done
        if ((${#missing[@]})); then
            echo "rustup component add ${missing[*]}"
            rustup component add "${missing[@]}"
        fi
    fi
    cargo clippy --version >/dev/null 2>&1 || die "cargo clippy unavailable"
    cargo fmt --version >/dev/null 2>&1 || die "cargo fmt unavailable"
}
stage_build() { cargo build --release; }
stage_fmt() {
    cargo fmt --all --check &&
        cargo fmt --check --manifest-path bench/Cargo.toml &&
        cargo fmt --check --manifest-path fuzz/Cargo.toml
}
stage_clippy() {
    cargo clippy --workspace --all-targets -- -D warnings &&
        cargo clippy --release --all-targets --manifest-path bench/Cargo.toml -- -D warnings
}
stage_test() { cargo test --workspace --release; }
stage_compat() { COMPAT_NO_INSTALL=1 "$repo/compat-tests/run" "$daemon"; }
stage_test_uring() {
    local disabled
    disabled=$(cat /proc/sys/kernel/io_uring_disabled 2>/dev/null || echo 0)
    if [[ $disabled != 0 ]]; then
        echo "io_uring is disabled (kernel.io_uring_disabled=$disabled)"
        [[ -z ${CI:-} ]] || return 1
        return 0
    fi
    BUSBAR_IO_BACKEND=uring cargo test --workspace --release &&
        BUSBAR_IO_BACKEND=uring COMPAT_NO_INSTALL=1 "$repo/compat-tests/run" "$daemon"
}
stage_clients() { COMPAT_NO_INSTALL=1 "$repo/compat-tests/clients" "$daemon"; }
stage_packages() {
    if [[ ${SKIP_DEPS:-0} != 1 ]]; then
        ensure_packages dpkg-dev debhelper fakeroot groff
    fi
    command -v rpmbuild >/dev/null 2>&1 ||
        echo "rpmbuild not installed (apt-get install rpm): the .rpm is not built"
    "$repo/packaging/check-packages"
}
stage_vm() {
    if [[ ${SKIP_VM:-0} == 1 ]]; then
        [[ -z ${CI:-} ]] || die "SKIP_VM=1 is not allowed when CI is set"
        echo "SKIP_VM=1: the vm stage is skipped"
        return 0
    fi
    if [[ ${SKIP_DEPS:-0} != 1 ]]; then
        ensure_packages dpkg-dev debhelper fakeroot groff
    fi
    # selinux boots twice under TCG and takes longest: a generous per-boot
    # timeout.
    BUSBAR_VM_TIMEOUT=${BUSBAR_VM_TIMEOUT:-1500} \
        "$repo/compat-tests/vm/run" boot upgrade selinux apparmor
}

summary() {
    local i
    echo
    echo "=== test.sh summary"
    for i in "${!stages[@]}"; do
        printf '  %-8s %-6s %4ss\n' "${stages[$i]}" "${results[$i]}" "${times[$i]}"
    done
}

# run_stage NAME DESCRIPTION FUNCTION
run_stage() {
    local name=$1 desc=$2 start rc=0
    shift 2
    echo
    echo "=== stage $name: $desc"
    start=$SECONDS
    # Subshell: a `die`/`exit` inside a stage ends only that stage.
    ("$@") || rc=$?
    stages+=("$name")
    times+=($((SECONDS - start)))
    if ((rc != 0)); then
        results+=(FAILED)
        summary
        echo
        echo "FAILED at stage '$name' (exit status $rc). Later stages were not run."
        exit 1
    fi
    results+=(ok)
}

if [[ ${SKIP_DEPS:-0} != 1 ]]; then
    run_stage deps "install missing packages and rustup components" stage_deps
fi
run_stage build "cargo build --release" stage_build
run_stage fmt "cargo fmt --check (workspace, bench, fuzz)" stage_fmt
run_stage clippy "cargo clippy -D warnings (workspace, bench)" stage_clippy
run_stage test "cargo test --workspace --release" stage_test
run_stage compat "compat-tests/run $daemon" stage_compat
run_stage test-uring "cargo test --workspace --release + compat-tests/run, BUSBAR_IO_BACKEND=uring" stage_test_uring
run_stage clients "compat-tests/clients $daemon" stage_clients
run_stage packages "packaging/check-packages (.deb, .rpm)" stage_packages
run_stage vm "compat-tests/vm/run boot upgrade selinux apparmor (Debian 12 guests, qemu)" stage_vm
summary
echo
echo "ALL STAGES PASSED"
