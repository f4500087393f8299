//! Runs the SERVER side of libdbus's authentication scripts
//! (`*.auth-script`, as installed by dbus's installed-tests) against
//! `SaslServer`, plus a few scripts of our own in the same notation.
//!
//! The scripts were written for libdbus's DBusAuth, which never sees the
//! credentials NUL byte, so the harness sends it before the first line.

use crate::common;

use std::fs;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use std::rc::Rc;

use busbar::transport::sasl::{mechanism_from_name, SaslConfig, SaslServer, SaslStatus};

const SCRIPT_DIR: &str = "/usr/lib/dbus-1.0/installed-tests/dbus/data/auth";
const GUID: &str = "5fa01f4202cd837709a3274ca0df9d00";

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Reads a possibly quoted argument the way the libdbus script runner does:
/// `'...'` quotes, `\r` `\n` `\\` escapes, unquoted whitespace ends it.
fn unquote(s: &str) -> Vec<u8> {
    let mut out = Vec::new();
    let (mut quoted, mut escaped) = (false, false);
    for b in s.bytes() {
        if escaped {
            out.push(match b {
                b'r' => b'\r',
                b'n' => b'\n',
                b'\\' => b'\\',
                other => panic!("bad escape \\{}", char::from(other)),
            });
            escaped = false;
        } else if b == b'\\' {
            escaped = true;
        } else if quoted {
            if b == b'\'' {
                quoted = false;
            } else {
                out.push(b);
            }
        } else if b == b'\'' {
            quoted = true;
        } else if b == b' ' || b == b'\t' || b == b'\n' {
            break;
        } else {
            out.push(b);
        }
    }
    out
}

fn replace_first(hay: &[u8], needle: &str, with: &str) -> Option<Vec<u8>> {
    let n = needle.as_bytes();
    let at = hay.windows(n.len()).position(|w| w == n)?;
    let mut v = hay[..at].to_vec();
    v.extend_from_slice(with.as_bytes());
    v.extend_from_slice(&hay[at + n.len()..]);
    Some(v)
}

fn my_uid() -> u32 {
    nix::unistd::geteuid().as_raw()
}

fn my_name() -> String {
    nix::unistd::User::from_uid(nix::unistd::geteuid())
        .ok()
        .flatten()
        .map(|u| u.name)
        .expect("current user in user database")
}

/// Substitutes the script placeholders (only the first one found, longest
/// names checked first, like libdbus).
fn substitute(line: Vec<u8>) -> Vec<u8> {
    let root = my_uid() == 0;
    let subs = [
        ("WRONG_USERID_HEX", hex(if root { b"65534" } else { b"0" })),
        ("USERID_HEX", hex(my_uid().to_string().as_bytes())),
        (
            "WRONG_USERNAME_HEX",
            hex(if root { b"nobody" } else { b"root" }),
        ),
        ("USERNAME_HEX", hex(my_name().as_bytes())),
    ];
    for (name, value) in &subs {
        if let Some(v) = replace_first(&line, name, value) {
            return v;
        }
    }
    line
}

struct Run {
    mechanisms: Vec<busbar::transport::sasl::Mechanism>,
    peer_uid: Option<u32>,
    keyring_dir: PathBuf,
    server: Option<SaslServer>,
    sent_nul: bool,
    pending: Vec<u8>,
    from_server: Vec<u8>,
    status: SaslStatus,
    unused: Vec<u8>,
}

impl Run {
    fn server(&mut self) -> &mut SaslServer {
        if self.server.is_none() {
            let cfg = Rc::new(SaslConfig {
                mechanisms: self.mechanisms.clone(),
                allow_anonymous: true,
                guid: GUID.into(),
                unix_fd_possible: true,
            });
            self.server = Some(SaslServer::with_keyring_dir(
                cfg,
                self.peer_uid,
                self.keyring_dir.clone(),
            ));
        }
        self.server.as_mut().unwrap_or_else(|| unreachable!())
    }

    fn send(&mut self, bytes: &[u8]) {
        if !self.sent_nul {
            self.sent_nul = true;
            self.pending.push(0);
        }
        if matches!(self.status, SaslStatus::Authenticated { .. }) {
            self.unused.extend_from_slice(bytes);
            return;
        }
        self.pending.extend_from_slice(bytes);
        let mut out = Vec::new();
        let mut pending = std::mem::take(&mut self.pending);
        let (mut n, mut st) = self.server().feed(&pending, &mut out);
        // A DBUS_COOKIE_SHA1 key lookup runs on a worker thread; the
        // script goes on once it has answered.
        while self.server().waiting_for_keyring() {
            self.server().wait_for_keyring();
            let (more, s) = self.server().feed(&pending[n..], &mut out);
            n += more;
            st = s;
        }
        assert!(n <= pending.len());
        pending.drain(..n);
        self.from_server.extend_from_slice(&out);
        if matches!(st, SaslStatus::Authenticated { .. }) {
            self.unused = std::mem::take(&mut pending);
        }
        self.pending = pending;
        self.status = st;
    }

    fn state_name(&self) -> &'static str {
        match self.status {
            SaslStatus::Continue => "WAITING_FOR_INPUT",
            SaslStatus::Authenticated { .. } => "AUTHENTICATED",
            SaslStatus::Disconnect => "NEED_DISCONNECT",
        }
    }

    fn has_credentials(&self) -> bool {
        self.server
            .as_ref()
            .and_then(SaslServer::authorized_uid)
            .is_some()
    }
}

/// Runs one script. Returns false if it was skipped (CLIENT side).
fn run_script(name: &str, text: &str, keyring_dir: &Path) -> bool {
    let mut run = Run {
        mechanisms: Vec::new(),
        peer_uid: Some(my_uid()),
        keyring_dir: keyring_dir.to_path_buf(),
        server: None,
        sent_nul: false,
        pending: Vec::new(),
        from_server: Vec::new(),
        status: SaslStatus::Continue,
        unused: Vec::new(),
    };
    let mut role_seen = false;
    for (no, raw) in text.lines().enumerate() {
        let line = raw.trim();
        let at = format!("{name}:{}: {line}", no + 1);
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (word, rest) = match line.find([' ', '\t']) {
            Some(i) => (&line[..i], line[i..].trim_start()),
            None => (line, ""),
        };
        match word {
            "CLIENT" => return false,
            "SERVER" => role_seen = true,
            "UNIX_ONLY" => {}
            _ if !role_seen => panic!("{at}: no SERVER/CLIENT line first"),
            "NO_CREDENTIALS" => run.peer_uid = None,
            "ROOT_CREDENTIALS" => run.peer_uid = Some(0),
            "SILLY_CREDENTIALS" => run.peer_uid = Some(4312),
            "ALLOWED_MECHS" => {
                run.mechanisms = rest
                    .split_whitespace()
                    .filter_map(mechanism_from_name)
                    .collect();
            }
            "SEND" => {
                let mut bytes = unquote(rest);
                bytes.extend_from_slice(b"\r\n");
                run.send(&substitute(bytes));
            }
            "EXPECT_COMMAND" => {
                let eol = run.from_server.iter().position(|&b| b == b'\n');
                let eol = eol.unwrap_or_else(|| panic!("{at}: server sent no line"));
                let got: Vec<u8> = run.from_server.drain(..=eol).collect();
                let got = String::from_utf8_lossy(&got).trim_end().to_string();
                let first = got.split([' ', '\t']).next().unwrap_or("");
                assert_eq!(first, rest, "{at}: server sent {got:?}");
            }
            "EXPECT_STATE" => {
                let want = if rest.starts_with("AUTHENTICATED") {
                    "AUTHENTICATED"
                } else {
                    rest
                };
                assert_eq!(run.state_name(), want, "{at}");
                if rest == "AUTHENTICATED_WITH_UNUSED_BYTES" {
                    assert!(!run.unused.is_empty(), "{at}: no unused bytes");
                }
            }
            "EXPECT_UNUSED" => {
                assert_eq!(
                    String::from_utf8_lossy(&run.unused),
                    String::from_utf8_lossy(&unquote(rest)),
                    "{at}"
                );
                run.unused.clear();
            }
            "EXPECT_HAVE_NO_CREDENTIALS" => assert!(!run.has_credentials(), "{at}"),
            "EXPECT_HAVE_SOME_CREDENTIALS" => assert!(run.has_credentials(), "{at}"),
            "EXPECT" => {
                let want = unquote(rest);
                assert!(
                    run.from_server.starts_with(&want),
                    "{at}: have {:?}",
                    String::from_utf8_lossy(&run.from_server)
                );
                run.from_server.drain(..want.len());
            }
            _ => panic!("{at}: unknown directive"),
        }
    }
    assert!(role_seen, "{name}: empty script");
    if matches!(run.status, SaslStatus::Authenticated { .. }) {
        assert!(run.unused.is_empty(), "{name}: unexpected unused bytes");
    }
    assert!(
        run.from_server.is_empty(),
        "{name}: server output not checked: {:?}",
        String::from_utf8_lossy(&run.from_server)
    );
    true
}

fn temp_keyring_dir(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("busbar-sasl-scripts-{tag}-{}", std::process::id()));
    let _ = fs::remove_dir_all(&d);
    fs::DirBuilder::new()
        .mode(0o700)
        .recursive(true)
        .create(&d)
        .expect("temp dir");
    d.join(".dbus-keyrings")
}

#[test]
fn libdbus_server_scripts() {
    let Ok(entries) = fs::read_dir(SCRIPT_DIR) else {
        common::skip_or_fail(&format!("{SCRIPT_DIR} not present (dbus-tests)"));
        return;
    };
    let mut paths: Vec<PathBuf> = entries
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "auth-script"))
        .collect();
    paths.sort();
    let keyrings = temp_keyring_dir("libdbus");
    let (mut ran, mut skipped) = (0, 0);
    for p in &paths {
        let text = fs::read_to_string(p).expect("readable script");
        let name = p
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        if run_script(&name, &text, &keyrings) {
            ran += 1;
        } else {
            skipped += 1;
        }
    }
    eprintln!("ran {ran} SERVER scripts, skipped {skipped} CLIENT scripts");
    assert!(ran > 0 || paths.is_empty());
    let _ = fs::remove_dir_all(keyrings.parent().unwrap_or(&keyrings));
}

/// Our own scripts, in the same notation, so the harness always runs.
const OWN_SCRIPTS: &[(&str, &str)] = &[
    (
        "mechanism-list",
        "SERVER\nALLOWED_MECHS EXTERNAL ANONYMOUS\nSEND 'AUTH'\nEXPECT 'REJECTED EXTERNAL ANONYMOUS\\r\\n'\nEXPECT_STATE WAITING_FOR_INPUT\n",
    ),
    (
        "disallowed-mechanism",
        "SERVER\nALLOWED_MECHS EXTERNAL\nSEND 'AUTH ANONYMOUS'\nEXPECT_COMMAND REJECTED\nSEND 'AUTH DBUS_COOKIE_SHA1 USERNAME_HEX'\nEXPECT 'REJECTED EXTERNAL\\r\\n'\nEXPECT_STATE WAITING_FOR_INPUT\n",
    ),
    (
        "unix-fd-and-trailing-bytes",
        "SERVER\nSEND 'AUTH EXTERNAL USERID_HEX\\r\\nNEGOTIATE_UNIX_FD\\r\\nBEGIN\\r\\nl'\nEXPECT_COMMAND OK\nEXPECT 'AGREE_UNIX_FD\\r\\n'\nEXPECT_STATE AUTHENTICATED_WITH_UNUSED_BYTES\nEXPECT_UNUSED 'l\\r\\n'\nEXPECT_HAVE_SOME_CREDENTIALS\n",
    ),
    (
        "begin-too-early",
        "SERVER\nSEND 'BEGIN'\nEXPECT_STATE NEED_DISCONNECT\n",
    ),
    (
        "wrong-uid",
        "SERVER\nSEND 'AUTH EXTERNAL WRONG_USERID_HEX'\nEXPECT_COMMAND REJECTED\nEXPECT_STATE WAITING_FOR_INPUT\nEXPECT_HAVE_NO_CREDENTIALS\n",
    ),
    (
        "cancel-cookie",
        "SERVER\nSEND 'AUTH DBUS_COOKIE_SHA1 USERNAME_HEX'\nEXPECT_COMMAND DATA\nSEND 'CANCEL'\nEXPECT_COMMAND REJECTED\nSEND 'AUTH EXTERNAL USERID_HEX'\nEXPECT_COMMAND OK\nSEND 'BEGIN'\nEXPECT_STATE AUTHENTICATED\n",
    ),
];

#[test]
fn own_scripts() {
    let keyrings = temp_keyring_dir("own");
    for (name, text) in OWN_SCRIPTS {
        assert!(run_script(name, text, &keyrings), "{name} skipped");
    }
    let _ = fs::remove_dir_all(keyrings.parent().unwrap_or(&keyrings));
}

#[test]
#[should_panic(expected = "server sent")]
fn harness_detects_mismatch() {
    // EXTERNAL only: the keyring directory is never touched.
    let keyrings = PathBuf::from("/nonexistent/busbar-keyrings");
    run_script(
        "mismatch",
        "SERVER\nSEND 'AUTH EXTERNAL WRONG_USERID_HEX'\nEXPECT_COMMAND OK\n",
        &keyrings,
    );
}
