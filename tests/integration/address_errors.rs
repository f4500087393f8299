//! `--address=` values as dbus-daemon parses them: the same ones start,
//! and the others fail with the same "Failed to start message bus: ..."
//! text. A differential: each address goes to the daemon under test and to
//! /usr/bin/dbus-daemon in the same run.

use crate::common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

const REFERENCE: &str = "/usr/bin/dbus-daemon";

/// `Ok(transport of the printed address)` if the daemon started, or the
/// reason it gave for not starting.
fn outcome(daemon: &str, address: &str) -> Result<String, String> {
    let mut child = Command::new(daemon)
        .args(["--session", "--nofork", "--nosyslog", "--print-address=1"])
        .arg(format!("--address={address}"))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("spawn {daemon}: {e}"));
    let mut line = String::new();
    let _ = BufReader::new(child.stdout.take().unwrap()).read_line(&mut line);
    let started = !line.trim().is_empty();
    if started {
        // SAFETY: kill(2) on our own unreaped child.
        unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGTERM) };
    }
    let out = child.wait_with_output().expect("wait");
    if started {
        return Ok(line.split(':').next().unwrap_or_default().to_string());
    }
    let err = String::from_utf8_lossy(&out.stderr);
    Err(err
        .lines()
        .find_map(|l| l.split_once("Failed to start message bus: ").map(|x| x.1))
        .unwrap_or("<no reason>")
        .to_string())
}

#[test]
fn addresses_start_or_fail_as_with_dbus_daemon() {
    if !std::path::Path::new(REFERENCE).exists() {
        common::skip_or_fail("no /usr/bin/dbus-daemon to compare with");
        return;
    }
    let dir = std::env::temp_dir().join(format!("busbar-addr-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let d = dir.display();
    let cases = [
        format!("unix:path={d}/a(b"),
        format!("unix:path={d}/a b"),
        format!("unix:path={d}/v=w"),
        format!("unix:path={d}/a%2"),
        format!("unix:path={d}/a%zz"),
        format!("unix:path={d}/a%28b"),
        format!("unix:path={d}/x,"),
        format!("unix:path={d}/q;"),
        format!("unix:path={d}/q;;"),
        format!("unix:,path={d}/z"),
        format!("unix:path={d}/missing%2fdir"),
        format!("unix:dir={d}"),
        format!("unix:tmpdir={d}"),
        "nocolon".into(),
        ";".into(),
        "unix:path".into(),
        "unix:=x".into(),
        "unix:path=".into(),
        ":path=/x".into(),
        "foo:x=y".into(),
    ];
    let daemon = common::daemon_path();
    let mut bad = Vec::new();
    for a in &cases {
        let want = outcome(REFERENCE, a);
        let got = outcome(&daemon, a);
        if want != got {
            bad.push(format!("{a}: dbus-daemon {want:?}, {daemon} {got:?}"));
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
    assert!(bad.is_empty(), "{}", bad.join("\n"));
}
