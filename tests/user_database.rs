//! User database lookups happen off the event loop (issue 9, point 4): a
//! connection whose admission needs the user database (here a connect rule
//! on a group) waits for the worker thread's answer, and is then admitted
//! or refused as the rules say, with what it sent meanwhile handled in
//! order. Root's connection keeps being answered meanwhile.
//!
//! What this does not show: that a *slow* lookup leaves the others
//! unharmed. A FIFO standing in for /etc/group in a mount namespace did not
//! make glibc's getgrouplist wait (it answered from an empty read), so the
//! slowness could not be produced honestly here; the unit tests of
//! src/userdb show that the loop's side never blocks.
//!
//! Runs against dbus-daemon too (it decides the same, on its main loop).

mod common;
mod support;

use std::os::unix::fs::PermissionsExt;
use std::process::{Command, Stdio};

use common::*;
use support::*;

/// Runs dbus-send as uid/gid `id` against the bus; its exit status and
/// stderr.
fn get_id_as(d: &Daemon, id: u32) -> (bool, String) {
    let out = Command::new("/usr/bin/setpriv")
        .arg(format!("--reuid={id}"))
        .arg(format!("--regid={id}"))
        .arg("--clear-groups")
        .args(["/usr/bin/dbus-send", "--session", "--print-reply"])
        .env("DBUS_SESSION_BUS_ADDRESS", &d.address)
        .args([
            "--dest=org.freedesktop.DBus",
            "/org/freedesktop/DBus",
            "org.freedesktop.DBus.GetId",
        ])
        .stdin(Stdio::null())
        .output()
        .expect("spawn dbus-send");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn group_connect_rules_are_decided_after_the_user_database_answers() {
    if uid() != 0 {
        skip_or_fail("needs root (clients of other uids)");
        return;
    }
    for tool in ["/usr/bin/setpriv", "/usr/bin/dbus-send"] {
        if !std::path::Path::new(tool).exists() {
            skip_or_fail(&format!("{tool} is missing"));
            return;
        }
    }
    let dir = TempDir::new("userdb-groups");
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    // uid 1 (daemon) is in group daemon (gid 1), root and uid 2 (bin) are
    // not; the socket's groups are cleared, so only the user database
    // tells that uid 1 is in it.
    let cfg = write_config(
        dir.path(),
        r#"<policy context="default"><allow user="*"/><deny group="daemon"/></policy>"#,
    );
    let mut cmd = daemon_command(&cfg);
    cmd.args(["--nosyslog", "--print-address=1"]);
    let mut d = Daemon::spawn(cmd);
    let mut good = d.client();
    let id = good.get_id();
    for round in 0..2 {
        // The first round misses the cache, the second hits it.
        let (ok, err) = get_id_as(&d, 2);
        assert!(ok, "round {round}: uid 2 was refused: {err}");
        let (ok, err) = get_id_as(&d, 1);
        assert!(!ok, "round {round}: uid 1 (group daemon) got in");
        assert!(
            // Both daemons close the connection after authentication.
            err.contains("Failed to open connection"),
            "round {round}: uid 1 refused how? {err}"
        );
        assert_eq!(good.get_id(), id);
    }
    assert!(d.is_alive());
}
