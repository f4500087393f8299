# Sourced by bench scripts: build the helpers and start/stop busbar, dbus-daemon and
# dbus-broker on a private socket. Expects $root (repository), $here (bench/), $tmp (a private
# temp dir) and $busbar (the busbar binary). Sets $address and $daemon_pid.

bench_log() { echo "bench: $*" >&2; }

# Builds bench/libdbus/dbus-client.c into target/bench/dbus-client (installs libdbus-1-dev).
build_dbus_client() {
    dbus_client="$root/target/bench/dbus-client"
    mkdir -p "$root/target/bench"
    if ! pkg-config --exists dbus-1 2>/dev/null; then
        bench_log "installing libdbus-1-dev pkg-config (apt-get)"
        { apt-get install -y -qq libdbus-1-dev pkg-config || { apt-get update -qq && apt-get install -y -qq libdbus-1-dev pkg-config; }; } >"$tmp/apt.log" 2>&1 ||
            { cat "$tmp/apt.log" >&2; return 1; }
    fi
    if [ ! -x "$dbus_client" ] || [ "$here/libdbus/dbus-client.c" -nt "$dbus_client" ]; then
        # shellcheck disable=SC2046
        cc -O2 -Wall -o "$dbus_client" "$here/libdbus/dbus-client.c" $(pkg-config --cflags --libs dbus-1) || return 1
    fi
}

# Builds the dbus-broker controller into target/bench/ (installs dbus-broker libsystemd-dev).
build_broker_ctl() {
    mkdir -p "$root/target/bench"
    broker_ctl="$root/target/bench/dbus-broker-standalone"
    if [ ! -x /usr/bin/dbus-broker ] || ! pkg-config --exists libsystemd 2>/dev/null; then
        bench_log "installing dbus-broker libsystemd-dev (apt-get)"
        { apt-get install -y -qq dbus-broker libsystemd-dev pkg-config || { apt-get update -qq && apt-get install -y -qq dbus-broker libsystemd-dev pkg-config; }; } >"$tmp/apt.log" 2>&1 ||
            { cat "$tmp/apt.log" >&2; return 1; }
    fi
    if [ ! -x "$broker_ctl" ] || [ "$here/broker/dbus-broker-standalone.c" -nt "$broker_ctl" ]; then
        # shellcheck disable=SC2046
        cc -O2 -Wall -o "$broker_ctl" "$here/broker/dbus-broker-standalone.c" $(pkg-config --cflags --libs libsystemd) || return 1
    fi
}

# The config busbar and dbus-daemon run with: $1 = dir, $2 = extra <busconfig> content.
# Limits default to the session bus's generous ones unless $2 overrides them.
write_bench_conf() {
    cat >"$1/bus.conf" <<EOF
<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>session</type>
  <listen>unix:path=$1/bus</listen>
  <auth>EXTERNAL</auth>
  <policy context="default">
    <allow user="*"/>
    <allow send_destination="*" eavesdrop="true"/>
    <allow eavesdrop="true"/>
    <allow own="*"/>
  </policy>
  <limit name="max_completed_connections">100000</limit>
  <limit name="max_incomplete_connections">10000</limit>
  <limit name="max_connections_per_user">100000</limit>
  $2
</busconfig>
EOF
}

# start_bench_daemon NAME DIR [EXTRA_CONF]: sets address and daemon_pid.
start_bench_daemon() {
    local name=$1 dir=$2 extra=${3:-} i
    daemon_pid="" ctl_pid="" address=""
    case "$name" in
        busbar|dbus-daemon)
            local bin=$busbar
            [ "$name" = dbus-daemon ] && bin=/usr/bin/dbus-daemon
            write_bench_conf "$dir" "$extra"
            "$bin" --config-file="$dir/bus.conf" --nofork --print-address=1 >"$dir/addr" 2>"$dir/log" </dev/null &
            daemon_pid=$!
            ;;
        dbus-broker)
            "$broker_ctl" --listen "$dir/bus" ${broker_args:-} >"$dir/addr" 2>"$dir/log" </dev/null &
            ctl_pid=$!
            ;;
    esac
    for i in $(seq 100); do
        if [ "$name" = dbus-broker ]; then
            grep -q '^pid=' "$dir/addr" 2>/dev/null && break
            kill -0 "$ctl_pid" 2>/dev/null || break
        else
            [ -s "$dir/addr" ] && break
            kill -0 "$daemon_pid" 2>/dev/null || break
        fi
        sleep 0.1
    done
    address=$(head -n1 "$dir/addr" 2>/dev/null)
    [ "$name" = dbus-broker ] && daemon_pid=$(sed -n 's/^pid=//p' "$dir/addr")
    chmod 755 "$dir" 2>/dev/null
    [ -n "$address" ] && [ -n "$daemon_pid" ] && kill -0 "$daemon_pid" 2>/dev/null
}

stop_bench_daemon() {
    if [ -n "${ctl_pid:-}" ]; then
        kill "$ctl_pid" 2>/dev/null; wait "$ctl_pid" 2>/dev/null
    elif [ -n "${daemon_pid:-}" ]; then
        kill "$daemon_pid" 2>/dev/null; wait "$daemon_pid" 2>/dev/null
    fi
    daemon_pid="" ctl_pid=""
}
