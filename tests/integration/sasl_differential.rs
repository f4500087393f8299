//! Differential test of the SASL handshake: the same byte scripts against
//! busbar (or `BUSBAR_TEST_DAEMON`) and /usr/bin/dbus-daemon, started in
//! the same run; what each daemon writes back (and whether it hangs up)
//! must be the same.
//!
//! tests/integration/sasl_scripts.rs runs libdbus's own scripts against the state
//! machine alone; this covers what those do not, over a real socket:
//! pipelined commands, unknown commands and case, the DATA forms, a second
//! AUTH after REJECTED, CANCEL, ERROR, NEGOTIATE_UNIX_FD before and after
//! authentication, the credentials byte and over-long lines.
//!
//! Normalised: the GUID in OK (random per run) and unique names in the
//! reply to a pipelined Hello (see tests/driver_differential/render.rs).
//! Everything else, including the text of ERROR lines, is compared as sent.
//!
//! Every script runs on its own connection, all at once, and a step ends
//! when the daemon has been silent for [`QUIET`] (or hung up), so the test
//! takes about a second however many scripts there are.

use crate::common;
#[path = "../driver_differential/render.rs"]
#[allow(dead_code)] // the driver differential uses all of it, this test a part
mod render;

use std::io::{ErrorKind, Read, Write};
use std::path::Path;
use std::time::Duration;

use common::{Bus, MsgBuilder, DRIVER, DRIVER_PATH};
use render::{message_line, Norm, Numbers};

const DBUS_DAEMON: &str = "/usr/bin/dbus-daemon";

/// How long a daemon must stay silent before a step's answer is complete.
const QUIET: Duration = Duration::from_millis(400);

/// One step of a script.
enum Step {
    /// Write these bytes, then record what comes back until the daemon is
    /// quiet.
    Send(Vec<u8>),
    /// Write these bytes and go on at once (for splitting a line).
    Part(Vec<u8>),
}

fn hex(s: &str) -> String {
    s.bytes().map(|b| format!("{b:02x}")).collect()
}

fn uid_hex() -> String {
    hex(&common::uid().to_string())
}

fn hello() -> Vec<u8> {
    MsgBuilder::method_call(1, Some(DRIVER), DRIVER_PATH, Some(DRIVER), "Hello").build()
}

/// A call that needs a registered connection (GetId's answer is random
/// per run, ListNames's has every name: this one is stable).
fn name_has_owner_call(serial: u32) -> Vec<u8> {
    let mut w = common::W::new();
    w.str(DRIVER);
    MsgBuilder::method_call(
        serial,
        Some(DRIVER),
        DRIVER_PATH,
        Some(DRIVER),
        "NameHasOwner",
    )
    .body("s", w.buf)
    .build()
}

fn send(s: &str) -> Step {
    Step::Send(s.as_bytes().to_vec())
}

fn cat(parts: &[&[u8]]) -> Vec<u8> {
    parts.concat()
}

/// (name, mechanisms config, steps).
fn scripts() -> Vec<(String, &'static str, Vec<Step>)> {
    let u = uid_hex();
    let other = hex("4242");
    let auth = format!("AUTH EXTERNAL {u}\r\n");
    let mut v: Vec<(String, &'static str, Vec<Step>)> = Vec::new();
    let mut add = |name: &str, cfg: &'static str, steps: Vec<Step>| {
        v.push((name.to_string(), cfg, steps));
    };
    let e = "external";
    let a = "anonymous";
    add(
        "pipelined AUTH + BEGIN + Hello in one write",
        e,
        vec![Step::Send(cat(&[
            b"\0",
            auth.as_bytes(),
            b"BEGIN\r\n",
            &hello(),
        ]))],
    );
    add(
        "pipelined AUTH + NEGOTIATE_UNIX_FD + BEGIN + Hello + NameHasOwner",
        e,
        vec![Step::Send(cat(&[
            b"\0",
            auth.as_bytes(),
            b"NEGOTIATE_UNIX_FD\r\nBEGIN\r\n",
            &hello(),
            &name_has_owner_call(2),
        ]))],
    );
    add(
        "pipelined NameHasOwner before Hello after BEGIN",
        e,
        vec![Step::Send(cat(&[
            b"\0",
            auth.as_bytes(),
            b"BEGIN\r\n",
            &name_has_owner_call(1),
        ]))],
    );
    add(
        "AUTH then BEGIN + Hello in a second write",
        e,
        vec![
            Step::Send(cat(&[b"\0", auth.as_bytes()])),
            Step::Send(cat(&[b"BEGIN\r\n", &hello()])),
        ],
    );
    add(
        "AUTH EXTERNAL without initial response, then empty DATA",
        e,
        vec![
            send("\0AUTH EXTERNAL\r\n"),
            send("DATA\r\n"),
            Step::Send(cat(&[b"BEGIN\r\n", &hello()])),
        ],
    );
    add(
        "AUTH EXTERNAL without initial response, then DATA with the uid",
        e,
        vec![
            send("\0AUTH EXTERNAL\r\n"),
            Step::Send(format!("DATA {u}\r\n").into_bytes()),
            send("BEGIN\r\n"),
        ],
    );
    add(
        "AUTH EXTERNAL without initial response, then DATA with another uid",
        e,
        vec![
            send("\0AUTH EXTERNAL\r\n"),
            Step::Send(format!("DATA {other}\r\n").into_bytes()),
            send("AUTH EXTERNAL\r\n"),
        ],
    );
    add(
        "DATA that is not hex",
        e,
        vec![send("\0AUTH EXTERNAL\r\n"), send("DATA zz\r\n")],
    );
    add(
        "DATA with odd hex",
        e,
        vec![send("\0AUTH EXTERNAL\r\n"), send("DATA 303\r\n")],
    );
    add(
        "DATA with a trailing space",
        e,
        vec![send("\0AUTH EXTERNAL\r\n"), send("DATA \r\n")],
    );
    add(
        "AUTH EXTERNAL with empty initial response",
        e,
        vec![send("\0AUTH EXTERNAL \r\n"), send("BEGIN\r\n")],
    );
    add(
        "AUTH EXTERNAL with an initial response that is not hex",
        e,
        vec![send("\0AUTH EXTERNAL xyz\r\n")],
    );
    add(
        "second AUTH after REJECTED",
        e,
        vec![
            Step::Send(format!("\0AUTH EXTERNAL {other}\r\n").into_bytes()),
            Step::Send(auth.clone().into_bytes()),
            Step::Send(cat(&[b"BEGIN\r\n", &hello()])),
        ],
    );
    add(
        "REJECTED until the daemon gives up",
        e,
        (0..8)
            .map(|i| {
                if i == 0 {
                    Step::Send(format!("\0AUTH EXTERNAL {other}\r\n").into_bytes())
                } else {
                    Step::Send(format!("AUTH EXTERNAL {other}\r\n").into_bytes())
                }
            })
            .collect(),
    );
    add(
        "AUTH with no mechanism lists the mechanisms",
        e,
        vec![send("\0AUTH\r\n")],
    );
    add(
        "AUTH with no mechanism, anonymous allowed",
        a,
        vec![send("\0AUTH\r\n")],
    );
    add(
        "AUTH ANONYMOUS when not allowed",
        e,
        vec![Step::Send(
            format!("\0AUTH ANONYMOUS {}\r\n", hex("trace")).into_bytes(),
        )],
    );
    add(
        "AUTH ANONYMOUS with a trace, then Hello",
        a,
        vec![
            Step::Send(format!("\0AUTH ANONYMOUS {}\r\n", hex("trace")).into_bytes()),
            Step::Send(cat(&[b"BEGIN\r\n", &hello()])),
        ],
    );
    add(
        "AUTH ANONYMOUS without initial response",
        a,
        vec![send("\0AUTH ANONYMOUS\r\n"), send("DATA\r\n")],
    );
    add(
        "AUTH with an unknown mechanism",
        e,
        vec![send("\0AUTH KERBEROS_V4 00\r\n")],
    );
    add(
        "mechanism names are case-sensitive",
        e,
        vec![Step::Send(format!("\0AUTH external {u}\r\n").into_bytes())],
    );
    add(
        "commands are case-sensitive",
        e,
        vec![
            Step::Send(format!("\0auth EXTERNAL {u}\r\n").into_bytes()),
            Step::Send(format!("Auth EXTERNAL {u}\r\n").into_bytes()),
            send("begin\r\n"),
        ],
    );
    add(
        "unknown command before AUTH, then AUTH",
        e,
        vec![send("\0FOO bar\r\n"), Step::Send(auth.clone().into_bytes())],
    );
    add(
        "unknown command after OK",
        e,
        vec![
            Step::Send(cat(&[b"\0", auth.as_bytes()])),
            send("FOO\r\n"),
            send("BEGIN\r\n"),
        ],
    );
    add(
        "empty line",
        e,
        vec![send("\0\r\n"), Step::Send(auth.clone().into_bytes())],
    );
    add(
        "line ended by LF only",
        e,
        vec![
            Step::Send(format!("\0AUTH EXTERNAL {u}\n").into_bytes()),
            send("\r\n"),
        ],
    );
    add(
        "extra spaces between words",
        e,
        vec![Step::Send(
            format!("\0AUTH  EXTERNAL  {u}\r\n").into_bytes(),
        )],
    );
    add(
        "extra argument after the initial response",
        e,
        vec![Step::Send(
            format!("\0AUTH EXTERNAL {u} extra\r\n").into_bytes(),
        )],
    );
    add(
        "tab between words",
        e,
        vec![Step::Send(
            format!("\0AUTH\tEXTERNAL\t{u}\r\n").into_bytes(),
        )],
    );
    add(
        "a line split across writes",
        e,
        vec![
            Step::Part(b"\0AUTH EXT".to_vec()),
            Step::Part(format!("ERNAL {u}\r").into_bytes()),
            send("\nBEGIN\r\n"),
        ],
    );
    add("CANCEL before AUTH", e, vec![send("\0CANCEL\r\n")]);
    add(
        "CANCEL while waiting for DATA, then AUTH",
        e,
        vec![
            send("\0AUTH EXTERNAL\r\n"),
            send("CANCEL\r\n"),
            Step::Send(auth.clone().into_bytes()),
        ],
    );
    add(
        "CANCEL after OK",
        e,
        vec![
            Step::Send(cat(&[b"\0", auth.as_bytes()])),
            send("CANCEL\r\n"),
            send("BEGIN\r\n"),
        ],
    );
    add("ERROR before AUTH", e, vec![send("\0ERROR\r\n")]);
    add(
        "ERROR while waiting for DATA",
        e,
        vec![
            send("\0AUTH EXTERNAL\r\n"),
            send("ERROR \"no data\"\r\n"),
            send("DATA\r\n"),
        ],
    );
    add(
        "ERROR after OK",
        e,
        vec![
            Step::Send(cat(&[b"\0", auth.as_bytes()])),
            send("ERROR\r\n"),
            send("BEGIN\r\n"),
        ],
    );
    add(
        "DATA before AUTH",
        e,
        vec![send("\0DATA 00\r\n"), send("DATA\r\n")],
    );
    add(
        "DATA after OK",
        e,
        vec![Step::Send(cat(&[b"\0", auth.as_bytes()])), send("DATA\r\n")],
    );
    add(
        "AUTH again after OK",
        e,
        vec![
            Step::Send(cat(&[b"\0", auth.as_bytes()])),
            Step::Send(auth.clone().into_bytes()),
            send("BEGIN\r\n"),
        ],
    );
    add(
        "NEGOTIATE_UNIX_FD before AUTH",
        e,
        vec![
            send("\0NEGOTIATE_UNIX_FD\r\n"),
            Step::Send(auth.clone().into_bytes()),
        ],
    );
    add(
        "NEGOTIATE_UNIX_FD while waiting for DATA",
        e,
        vec![send("\0AUTH EXTERNAL\r\n"), send("NEGOTIATE_UNIX_FD\r\n")],
    );
    add(
        "NEGOTIATE_UNIX_FD twice after OK",
        e,
        vec![
            Step::Send(cat(&[b"\0", auth.as_bytes()])),
            send("NEGOTIATE_UNIX_FD\r\n"),
            send("NEGOTIATE_UNIX_FD\r\n"),
            Step::Send(cat(&[b"BEGIN\r\n", &hello()])),
        ],
    );
    add(
        "NEGOTIATE_UNIX_FD with an argument",
        e,
        vec![
            Step::Send(cat(&[b"\0", auth.as_bytes()])),
            send("NEGOTIATE_UNIX_FD please\r\n"),
        ],
    );
    add(
        "server commands sent by the client",
        e,
        vec![
            send("\0OK 1234\r\n"),
            send("REJECTED EXTERNAL\r\n"),
            send("AGREE_UNIX_FD\r\n"),
        ],
    );
    add("BEGIN before AUTH", e, vec![send("\0BEGIN\r\n")]);
    add(
        "BEGIN while waiting for DATA",
        e,
        vec![send("\0AUTH EXTERNAL\r\n"), send("BEGIN\r\n")],
    );
    add(
        "BEGIN with an argument",
        e,
        vec![
            Step::Send(cat(&[b"\0", auth.as_bytes()])),
            Step::Send(cat(&[b"BEGIN now\r\n", &hello()])),
        ],
    );
    add(
        "no credentials byte",
        e,
        vec![Step::Send(auth.clone().into_bytes())],
    );
    add(
        "non-zero credentials byte",
        e,
        vec![Step::Send(cat(&[b"\x01", auth.as_bytes()]))],
    );
    add(
        "NUL inside a line",
        e,
        vec![Step::Send(
            format!("\0AUTH EXTERNAL\0 {u}\r\n").into_bytes(),
        )],
    );
    add(
        "non-ASCII bytes in a line",
        e,
        vec![Step::Send(b"\0AUTH \xc3\xa9\xff\r\n".to_vec())],
    );
    add(
        "a long line (8 KiB)",
        e,
        vec![Step::Send(
            format!("\0AUTH EXTERNAL {}\r\n", "3".repeat(8 * 1024)).into_bytes(),
        )],
    );
    add(
        "a line too long (20 KiB)",
        e,
        vec![Step::Send(
            format!("\0AUTH EXTERNAL {}\r\n", "3".repeat(20 * 1024)).into_bytes(),
        )],
    );
    add(
        "unterminated input past the line limit",
        e,
        vec![Step::Send(
            format!("\0AUTH EXTERNAL {}", "3".repeat(20 * 1024)).into_bytes(),
        )],
    );
    add(
        "garbage after BEGIN",
        e,
        vec![Step::Send(cat(&[
            b"\0",
            auth.as_bytes(),
            b"BEGIN\r\nnot a message at all, not at all\r\n",
        ]))],
    );
    v
}

/// Runs one script on a fresh connection and returns its transcript.
fn run_script(bus: &Bus, steps: &[Step]) -> String {
    let mut sock = common::connect_address(&bus.address).expect("connect");
    sock.set_read_timeout(Some(QUIET)).expect("timeout");
    let mut out = Vec::new();
    let mut closed = false;
    for step in steps {
        let (bytes, wait) = match step {
            Step::Send(b) => (b, true),
            Step::Part(b) => (b, false),
        };
        out.push(format!(
            "> {}",
            String::from_utf8_lossy(bytes).escape_debug()
        ));
        if closed {
            break;
        }
        if let Err(e) = sock.write_all(bytes) {
            out.push(format!("write failed: {:?}", e.kind()));
            closed = true;
            break;
        }
        if !wait {
            continue;
        }
        let mut got = Vec::new();
        let mut buf = [0u8; 65536];
        loop {
            match sock.read(&mut buf) {
                Ok(0) => {
                    closed = true;
                    break;
                }
                Ok(n) => got.extend_from_slice(&buf[..n]),
                Err(e) if e.kind() == ErrorKind::WouldBlock || e.kind() == ErrorKind::TimedOut => {
                    break
                }
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(_) => {
                    closed = true;
                    break;
                }
            }
        }
        describe(&got, &mut out);
        if closed {
            out.push("closed by the daemon".into());
        }
    }
    if !closed {
        out.push("still open".into());
    }
    out.join("\n")
}

/// Splits what a daemon sent into SASL lines and D-Bus messages (both
/// daemons send little-endian messages, which start with 'l'; SASL replies
/// start with an upper-case command).
fn describe(mut got: &[u8], out: &mut Vec<String>) {
    while !got.is_empty() {
        if got[0] == b'l' && got.len() >= 16 {
            let fixed: [u8; 16] = got[..16].try_into().unwrap_or([0; 16]);
            let len = common::frame_len(&fixed);
            if got.len() < len {
                out.push(format!("< partial message of {} bytes", got.len()));
                return;
            }
            let m = common::parse_msg(&got[..len]);
            out.push(format!("< {}", message_line(&m, Numbers::Exact, false)));
            got = &got[len..];
            continue;
        }
        match got.windows(2).position(|w| w == b"\r\n") {
            Some(i) => {
                out.push(format!("< {}", String::from_utf8_lossy(&got[..i])));
                got = &got[i + 2..];
            }
            None => {
                out.push(format!("< unterminated {:?}", String::from_utf8_lossy(got)));
                return;
            }
        }
    }
}

fn config(mechs: &str) -> &'static str {
    match mechs {
        "anonymous" => "<auth>ANONYMOUS</auth><allow_anonymous/>",
        _ => "",
    }
}

/// All scripts against `daemon`, concurrently; transcripts in script order.
fn run_all(daemon: &str) -> Vec<(String, String)> {
    let scripts = scripts();
    let buses: Vec<(&str, Bus)> = ["external", "anonymous"]
        .into_iter()
        .map(|m| (m, Bus::start_daemon(daemon, config(m))))
        .collect();
    let mut norms = Vec::new();
    for (_, bus) in &buses {
        let guid = bus
            .address
            .split(',')
            .find_map(|kv| kv.strip_prefix("guid="))
            .unwrap_or("")
            .to_string();
        norms.push(Norm::new(bus.pid(), guid));
    }
    std::thread::scope(|s| {
        let handles: Vec<_> = scripts
            .iter()
            .map(|(name, cfg, steps)| {
                let i = buses.iter().position(|(m, _)| m == cfg).unwrap_or(0);
                let bus = &buses[i].1;
                let norm = &norms[i];
                s.spawn(move || (name.clone(), norm.apply(&run_script(bus, steps))))
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("script thread"))
            .collect()
    })
}

#[test]
fn sasl_matches_dbus_daemon() {
    if !Path::new(DBUS_DAEMON).exists() {
        let why = format!("the SASL differential needs {DBUS_DAEMON}");
        assert!(std::env::var_os("CI").is_none(), "{why} (CI is set)");
        let _ = writeln!(std::io::stderr(), "SKIPPED: {why}");
        return;
    }
    let subject = common::daemon_path();
    let (ours, theirs) = std::thread::scope(|s| {
        let a = s.spawn(|| run_all(&subject));
        let b = s.spawn(|| run_all(DBUS_DAEMON));
        (a.join().expect("subject"), b.join().expect("reference"))
    });
    let mut bad = 0;
    for ((name, a), (_, b)) in ours.iter().zip(&theirs) {
        if a != b {
            bad += 1;
            println!("\nMISMATCH {name}\n--- {subject}\n{a}\n--- {DBUS_DAEMON}\n{b}");
        }
    }
    println!(
        "{} SASL scripts against {subject} and {DBUS_DAEMON}",
        ours.len()
    );
    assert!(ours.len() >= 50, "only {} scripts", ours.len());
    assert_eq!(bad, 0, "{bad} of {} SASL scripts differ", ours.len());
}
