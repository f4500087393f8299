//! DBUS_COOKIE_SHA1 keyring work must not stall the bus (issue 9): creating
//! a key waits up to 8 s for the keyring's lock file, and syncs the file,
//! which busbar did on its event loop.

use crate::common;

use std::io::Write;
use std::os::unix::fs::DirBuilderExt;
use std::time::{Duration, Instant};

use common::*;
use sha1::{Digest, Sha1};

fn unhex(s: &str) -> Vec<u8> {
    (0..s.len() / 2)
        .map(|i| u8::from_str_radix(&s[2 * i..2 * i + 2], 16).unwrap())
        .collect()
}

/// While one client's DBUS_COOKIE_SHA1 handshake waits for a keyring lock
/// that another process holds, other clients are served at once; when the
/// lock goes away, the handshake completes.
///
/// dbus-daemon waits for the lock on its main loop (every client waits
/// with it: another client's authentication timed out in a run against
/// it), so against it only the handshake itself is checked.
#[test]
fn held_keyring_lock_does_not_delay_other_clients() {
    let home = std::env::temp_dir().join(format!("busbar-cookie-home-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&home);
    let keyrings = home.join(".dbus-keyrings");
    std::fs::DirBuilder::new()
        .mode(0o700)
        .recursive(true)
        .create(&keyrings)
        .unwrap();
    // No key yet, so one must be created, under a lock someone else holds.
    let lock = keyrings.join("org_freedesktop_general.lock");
    std::fs::write(&lock, b"").unwrap();
    let bus = Bus::start_with_env(
        "<auth>DBUS_COOKIE_SHA1</auth>",
        &[("HOME", home.as_os_str())],
    );

    let mut slow = Client::connect_raw(&bus);
    slow.set_read_timeout(Some(Duration::from_secs(15)))
        .unwrap();
    let uid = uid().to_string();
    slow.write_all(format!("\0AUTH DBUS_COOKIE_SHA1 {}\r\n", hex(&uid)).as_bytes())
        .unwrap();
    std::thread::sleep(Duration::from_millis(100));

    // dbus-daemon waits for the lock on its main loop, so another client
    // cannot even authenticate meanwhile: checked for busbar only.
    if !is_reference_daemon() {
        let t0 = Instant::now();
        let mut other = Client::connect(&bus);
        other.get_id();
        let waited = t0.elapsed();
        eprintln!("another client's connect + Hello + GetId took {waited:?} during the lock wait");
        assert!(
            waited < Duration::from_millis(1000),
            "another client waited {waited:?} for a keyring lock"
        );
    }

    // The lock goes away: the handshake goes on with a new key.
    std::fs::remove_file(&lock).unwrap();
    let line = read_line(&mut slow);
    let data = line
        .strip_prefix("DATA ")
        .unwrap_or_else(|| panic!("expected DATA, got {line:?}"));
    let challenge = String::from_utf8(unhex(data)).unwrap();
    let parts: Vec<&str> = challenge.split(' ').collect();
    assert_eq!(parts.len(), 3, "{challenge}");
    assert_eq!(parts[0], "org_freedesktop_general");
    let ring = std::fs::read_to_string(keyrings.join("org_freedesktop_general")).unwrap();
    let secret = ring
        .lines()
        .find_map(|l| {
            let f: Vec<&str> = l.split(' ').collect();
            (f.len() == 3 && f[0] == parts[1]).then(|| f[2].to_string())
        })
        .unwrap_or_else(|| panic!("key {} not in {ring}", parts[1]));
    let client_challenge = "0123456789abcdef";
    let mut h = Sha1::new();
    h.update(format!("{}:{client_challenge}:{secret}", parts[2]).as_bytes());
    let digest: String = h.finalize().iter().map(|b| format!("{b:02x}")).collect();
    slow.write_all(format!("DATA {}\r\n", hex(&format!("{client_challenge} {digest}"))).as_bytes())
        .unwrap();
    let line = read_line(&mut slow);
    assert!(line.starts_with("OK "), "expected OK, got {line:?}");
    let _ = std::fs::remove_dir_all(&home);
}
