//! Mandatory access control at start-up where no security module mediates
//! D-Bus (this machine's kernel has none): `<apparmor mode="required"/>`
//! refuses to start with dbus-daemon's message and leaves no socket
//! behind; "enabled" and "disabled" start. Passes with `BUSBAR_TEST_DAEMON=/usr/bin/dbus-daemon`.
//! (With AppArmor D-Bus mediation or SELinux in the kernel the expectations
//! differ: the VM scenarios `selinux` and `apparmor` cover those.)

use crate::common;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn lsm_present() -> bool {
    std::path::Path::new("/sys/kernel/security/apparmor/features/dbus").exists()
        || std::path::Path::new("/sys/fs/selinux/enforce").exists()
}

fn config(dir: &std::path::Path, mode: &str) -> std::path::PathBuf {
    let p = dir.join(format!("{mode}.conf"));
    std::fs::write(
        &p,
        format!(
            "<busconfig><type>session</type><auth>EXTERNAL</auth>\
             <listen>unix:tmpdir=/tmp</listen><apparmor mode=\"{mode}\"/>\
             <policy context=\"default\"><allow user=\"*\"/></policy></busconfig>"
        ),
    )
    .expect("write config");
    p
}

/// Starts the daemon: Ok((status, stderr)) when it exited by itself, Err(())
/// when it started (or hung); and whether its socket was left behind.
fn run(mode: &str) -> (Result<(i32, String), ()>, bool) {
    let dir = std::env::temp_dir().join(format!("busbar-mac-{}-{mode}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("mkdir");
    let sock = dir.join("bus");
    let mut child = Command::new(common::daemon_path())
        .arg(format!("--config-file={}", config(&dir, mode).display()))
        .arg(format!("--address=unix:path={}", sock.display()))
        .arg("--nofork")
        .arg("--nopidfile")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn daemon");
    // Started: still running 2 s after its socket appeared (a daemon that
    // binds and then refuses exits at once).
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut bound_at = None;
    let outcome = loop {
        if let Ok(Some(status)) = child.try_wait() {
            let mut err = String::new();
            if let Some(mut e) = child.stderr.take() {
                use std::io::Read;
                let _ = e.read_to_string(&mut err);
            }
            break Ok((status.code().unwrap_or(-1), err));
        }
        if bound_at.is_none() && sock.exists() {
            bound_at = Some(Instant::now());
        }
        let started = bound_at.is_some_and(|t| t.elapsed() > Duration::from_secs(2));
        if started || Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            break Err(());
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let left = sock.exists();
    let _ = std::fs::remove_dir_all(&dir);
    (outcome, left)
}

#[test]
fn apparmor_required_without_kernel_support_refuses_to_start() {
    if lsm_present() {
        common::skip_or_fail("the kernel has SELinux or AppArmor D-Bus mediation");
        return;
    }
    let (outcome, left) = run("required");
    let (code, err) = outcome.expect("the daemon kept running with mode=required");
    assert_eq!(code, 1, "{err}");
    assert!(
        err.lines().any(|l| l
            .ends_with("Failed to start message bus: AppArmor mediation required but not present")),
        "stderr: {err}"
    );
    assert!(!left, "the socket was left behind");
}

#[test]
fn apparmor_enabled_and_disabled_start() {
    if lsm_present() {
        common::skip_or_fail("the kernel has SELinux or AppArmor D-Bus mediation");
        return;
    }
    for mode in ["enabled", "disabled"] {
        let (outcome, _) = run(mode);
        assert!(outcome.is_err(), "mode={mode}: exited: {outcome:?}");
    }
}
