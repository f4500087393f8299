//! The text of log lines, as dbus-daemon writes them: every line of a
//! session bus starts with `[session uid=U pid=P] `, and a peer is
//! described as `uid=U pid=P comm="..."` with at most 50 bytes of its
//! command line, NULs as spaces (a final one dropped) and other unprintable
//! bytes as `?`. Passes against dbus-daemon as well.

use crate::common;

use std::process::Command;
use std::time::{Duration, Instant};

use common::Bus;

fn service_dir(bus_dir: &std::path::Path) -> std::path::PathBuf {
    let dir = bus_dir.join("services");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("org.x.F.service"),
        "[D-BUS Service]\nName=org.x.F\nExec=/bin/false\n",
    )
    .unwrap();
    dir
}

/// Runs a python3-dbus client with `argv0` as its argv[0] (bash's
/// `exec -a`) and the script `c` (in the bus's directory, the working
/// directory), plus `extra` arguments; it calls the activatable org.x.F.
/// (dbus-send would not do: it rewrites its own argv.)
fn client(bus: &Bus, argv0: &str, extra: &[&str]) -> std::process::Output {
    std::fs::write(
        bus.dir.join("c"),
        "import dbus\ndbus.SessionBus().call_blocking('org.x.F', '/', 'x.y', 'Z', '', ())\n",
    )
    .unwrap();
    Command::new("bash")
        .arg("-c")
        .arg(r#"exec -a "$0" /usr/bin/python3 "$@""#)
        .arg(argv0)
        .arg("c")
        .args(extra)
        .current_dir(&bus.dir)
        .env("DBUS_SESSION_BUS_ADDRESS", &bus.address)
        .output()
        .expect("run python3")
}

fn wait_for(bus: &Bus, needle: &str) -> String {
    let end = Instant::now() + Duration::from_secs(10);
    loop {
        let log = bus.stderr_log();
        if log.contains(needle) || Instant::now() > end {
            return log;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn session_lines_carry_the_prefix_and_dbus_daemons_peer_description() {
    // The service directory is only known after the bus dir exists, so
    // point the config at a fixed place under the temp dir.
    let base = std::env::temp_dir().join(format!("busbar-loglines-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&base);
    let dir = service_dir(&base);
    let mut bus = Bus::start_logging(&format!("<servicedir>{}</servicedir>", dir.display()));
    let uid = nix::unistd::getuid().as_raw();
    let prefix = format!("[session uid={uid} pid={}] ", bus.pid());

    // A short command line: NULs are spaces, but the last one is dropped.
    let out = client(&bus, "python3", &[]);
    assert!(!out.status.success(), "the activation must fail: {out:?}");
    let log = wait_for(&bus, "Activated service 'org.x.F' failed");
    let want =
        format!("{prefix}Activating service name='org.x.F' requested by ':1.0' (uid={uid} pid=");
    let line = log
        .lines()
        .find(|l| l.contains(&want))
        .unwrap_or_else(|| panic!("no line with {want:?} in:\n{log}\n{out:?}"));
    assert!(line.ends_with(" comm=\"python3 c\")"), "{line}");
    assert!(
        log.contains(&format!(
            "{prefix}Activated service 'org.x.F' failed: Process org.x.F exited with status 1"
        )),
        "{log}"
    );

    // A long one with a newline and a non-ASCII letter in its argv[0]:
    // 50 bytes, the newline as one '?', the two bytes of 'ï' as two.
    let pad = "A".repeat(60);
    let out = client(&bus, "my\ncl\u{ef}ent", &[&pad]);
    assert!(!out.status.success());
    let log = wait_for(&bus, "requested by ':1.1'");
    let line = log
        .lines()
        .find(|l| l.contains("requested by ':1.1'"))
        .unwrap_or_else(|| panic!("no second activation in:\n{log}"));
    assert!(
        line.ends_with(&format!(" comm=\"my?cl??ent c {}\")", &pad[..37])),
        "{line}"
    );
    assert!(bus.is_alive());
    let _ = std::fs::remove_dir_all(&base);
}
