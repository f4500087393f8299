//! Hostile peers against the real daemon: each test connects a
//! well-behaved client first, then a bad peer that does one bad thing.
//! The bad peer must be disconnected (EOF / ECONNRESET within the timeout),
//! and the good client must still get driver replies from a live daemon.

use crate::common;

use common::*;
use std::net::Shutdown;
use std::os::unix::net::UnixStream;

/// Makes the good client watch for `name` losing its owner.
fn watch_name(good: &mut Client, name: &str) {
    good.add_match(&format!(
        "type='signal',sender='org.freedesktop.DBus',interface='org.freedesktop.DBus',member='NameOwnerChanged',arg0='{name}'"
    ));
}

/// Waits (up to the timeout) for NameOwnerChanged(name, old, "").
fn wait_name_gone(good: &mut Client, name: &str) {
    loop {
        let m = good.recv();
        if m.is_signal(DRIVER, "NameOwnerChanged") {
            let mut r = m.reader();
            let (n, old, new) = (r.string(), r.string(), r.string());
            if n == name {
                assert_eq!(old, name);
                assert_eq!(new, "", "{name} got a new owner?");
                return;
            }
        }
    }
}

/// A bad peer that has said Hello; the good client watches its name.
/// Runs `bad_does` on its socket, then checks the disconnect and the bus.
fn after_hello(extra: &str, what: &str, bad_does: impl FnOnce(&mut Client)) {
    let mut bus = Bus::start_with(extra);
    let mut good = Client::connect(&bus);
    let mut bad = Client::connect(&bus);
    let bad_name = bad.unique_name.clone();
    watch_name(&mut good, &bad_name);
    bad_does(&mut bad);
    expect_disconnect(&mut bad.sock, what);
    wait_name_gone(&mut good, &bad_name);
    assert_bus_healthy(&mut bus, &mut good);
    let names = good.list_names();
    assert!(
        !names.contains(&bad_name),
        "{what}: {bad_name} still listed: {names:?}"
    );
}

/// A bad peer without Hello (raw socket or authenticated only).
fn raw_peer(extra: &str, what: &str, bad_does: impl FnOnce(&Bus) -> UnixStream) {
    let mut bus = Bus::start_with(extra);
    let mut good = Client::connect(&bus);
    let mut sock = bad_does(&bus);
    expect_disconnect(&mut sock, what);
    assert_bus_healthy(&mut bus, &mut good);
}

fn get_id_call() -> MsgBuilder {
    MsgBuilder::method_call(0, Some(DRIVER), DRIVER_PATH, Some(DRIVER), "GetId")
}

#[test]
fn truncated_header_then_close_mid_message() {
    after_hello("", "truncated header", |bad| {
        let mut m = get_id_call();
        m.serial = 100;
        let bytes = m.build();
        // Half of the fixed header, then half-close: the bus sees EOF
        // in the middle of a message.
        bad.send_bytes(&bytes[..10]);
        bad.sock.shutdown(Shutdown::Write).unwrap();
    });
}

#[test]
fn truncated_fields_then_close_mid_message() {
    after_hello("", "truncated header fields", |bad| {
        let mut m = get_id_call();
        m.serial = 100;
        let bytes = m.build();
        bad.send_bytes(&bytes[..bytes.len() - 7]);
        bad.sock.shutdown(Shutdown::Write).unwrap();
    });
}

#[test]
fn truncated_message_then_full_close() {
    // The bad peer closes both directions: nothing to assert on its side,
    // but the bus must drop it (NameOwnerChanged) and keep serving.
    let mut bus = Bus::start();
    let mut good = Client::connect(&bus);
    let mut bad = Client::connect(&bus);
    let bad_name = bad.unique_name.clone();
    watch_name(&mut good, &bad_name);
    let mut m = get_id_call();
    m.serial = 100;
    let bytes = m.build();
    bad.send_bytes(&bytes[..20]);
    drop(bad);
    wait_name_gone(&mut good, &bad_name);
    assert_bus_healthy(&mut bus, &mut good);
}

#[test]
fn invalid_signature_header_field() {
    after_hello("", "signature field \"(\"", |bad| {
        let m = get_id_call().field_str(F_SIGNATURE, 'g', "(");
        bad.send(m);
    });
}

#[test]
fn invalid_utf8_string_in_body() {
    after_hello("", "invalid UTF-8 body string", |bad| {
        let mut w = W::new();
        w.str_bytes(b"org.\xff\xfe.Name");
        let m = MsgBuilder::method_call(0, Some(DRIVER), DRIVER_PATH, Some(DRIVER), "GetNameOwner")
            .body("s", w.buf);
        bad.send(m);
    });
}

#[test]
fn invalid_utf8_string_in_body_to_peer() {
    // Same, but addressed to another connection: the bus must validate
    // bodies it only forwards, and the good client must not see it.
    let mut bus = Bus::start();
    let mut good = Client::connect(&bus);
    let mut bad = Client::connect(&bus);
    let bad_name = bad.unique_name.clone();
    watch_name(&mut good, &bad_name);
    let mut w = W::new();
    w.str_bytes(b"\xc3\x28");
    let dest = good.unique_name.clone();
    bad.send(
        MsgBuilder::method_call(0, Some(&dest), "/x", Some("org.example.X"), "Take")
            .body("s", w.buf),
    );
    expect_disconnect(&mut bad.sock, "invalid UTF-8 to a peer");
    wait_name_gone(&mut good, &bad_name);
    let leaked: Vec<_> = good.take_pending(|m| m.member.as_deref() == Some("Take"));
    assert!(
        leaked.is_empty(),
        "the invalid message was forwarded: {leaked:?}"
    );
    assert_bus_healthy(&mut bus, &mut good);
    assert!(good
        .take_pending(|m| m.member.as_deref() == Some("Take"))
        .is_empty());
}

#[test]
fn message_to_peer_before_hello() {
    let mut bus = Bus::start();
    let mut good = Client::connect(&bus);
    let dest = good.unique_name.clone();
    let mut bad = Client::connect_authed(&bus, false);
    let mut w = W::new();
    w.str("hi");
    bad.send(
        MsgBuilder::method_call(0, Some(&dest), "/x", Some("org.example.X"), "Sneak")
            .body("s", w.buf),
    );
    expect_disconnect(&mut bad.sock, "message to a peer before Hello");
    assert_bus_healthy(&mut bus, &mut good);
    let leaked = good.take_pending(|m| m.member.as_deref() == Some("Sneak"));
    assert!(
        leaked.is_empty(),
        "a pre-Hello message was delivered: {leaked:?}"
    );
}

#[test]
fn driver_call_other_than_hello_before_hello() {
    // dbus-daemon answers AccessDenied (it does not disconnect) when the
    // first call to the driver is not Hello; Hello still works after it.
    let mut bus = Bus::start();
    let mut good = Client::connect(&bus);
    let mut early = Client::connect_authed(&bus, false);
    let r = early.call_driver("ListNames", "", vec![]);
    assert_eq!(r.msg_type, ERROR, "ListNames before Hello: {r:?}");
    assert_eq!(
        r.error_name.as_deref(),
        Some("org.freedesktop.DBus.Error.AccessDenied"),
        "{r:?}"
    );
    assert_bus_healthy(&mut bus, &mut good);
    early.hello();
    assert!(good.list_names().contains(&early.unique_name));
}

#[test]
fn bad_byte_order_marker() {
    after_hello("", "byte-order marker 'X'", |bad| {
        let mut m = get_id_call();
        m.endian = b'X';
        bad.send(m);
    });
}

#[test]
fn bad_protocol_version() {
    after_hello("", "protocol version 2", |bad| {
        let mut m = get_id_call();
        m.version = 2;
        bad.send(m);
    });
}

#[test]
fn body_length_beyond_max_message_size() {
    after_hello(
        r#"<limit name="max_message_size">65536</limit>"#,
        "body length > max_message_size",
        |bad| {
            let mut m = get_id_call();
            m.body_len_override = Some(1 << 20);
            m.serial = 100;
            // Only the header: the bus must reject the frame from its length.
            bad.send_bytes(&m.build());
        },
    );
}

#[test]
fn body_length_beyond_protocol_maximum() {
    after_hello("", "body length > 128 MiB", |bad| {
        let mut m = get_id_call();
        m.body_len_override = Some(0x0800_0001);
        m.serial = 100;
        bad.send_bytes(&m.build());
    });
}

#[test]
fn many_garbage_auth_lines() {
    // Every unknown command gets an ERROR; the peer never authenticates,
    // so the (shortened) auth_timeout closes it.
    let mut bus = Bus::start_with(r#"<limit name="auth_timeout">1000</limit>"#);
    let mut good = Client::connect(&bus);
    let mut sock = Client::connect_raw(&bus);
    write_lenient(&mut sock, b"\0");
    for _ in 0..200 {
        write_lenient(&mut sock, b"GARBAGE\r\n");
    }
    let rest = expect_disconnect(&mut sock, "200 garbage auth lines");
    let text = String::from_utf8_lossy(&rest);
    let lines: Vec<&str> = text.split_terminator("\r\n").collect();
    assert!(!lines.is_empty(), "no reply at all to the garbage");
    assert!(
        lines
            .iter()
            .all(|l| l.starts_with("ERROR") || l.starts_with("REJECTED")),
        "unexpected auth replies: {lines:?}"
    );
    assert_bus_healthy(&mut bus, &mut good);
}

#[test]
fn unauthenticated_peer_is_closed_after_auth_timeout() {
    let mut bus = Bus::start_with(r#"<limit name="auth_timeout">1000</limit>"#);
    let mut good = Client::connect(&bus);
    let mut sock = Client::connect_raw(&bus);
    write_lenient(&mut sock, b"\0AUTH\r\n");
    expect_disconnect(&mut sock, "silent peer past auth_timeout");
    assert_bus_healthy(&mut bus, &mut good);
}

#[test]
fn non_nul_first_byte() {
    raw_peer("", "non-NUL credentials byte", |bus| {
        let mut sock = Client::connect_raw(bus);
        let line = format!(
            "AUTH EXTERNAL {}\r\n",
            uid()
                .to_string()
                .bytes()
                .map(|b| format!("{b:02x}"))
                .collect::<String>()
        );
        write_lenient(&mut sock, line.as_bytes());
        sock
    });
}

#[test]
fn claims_unix_fds_without_sending_any() {
    let mut bus = Bus::start();
    let mut good = Client::connect_fds(&bus);
    let mut bad = Client::connect_fds(&bus);
    let bad_name = bad.unique_name.clone();
    watch_name(&mut good, &bad_name);
    let dest = good.unique_name.clone();
    let mut w = W::new();
    w.u32(0);
    let m = MsgBuilder::method_call(0, Some(&dest), "/x", Some("org.example.X"), "TakeFd")
        .body("h", w.buf)
        .field_u32(F_UNIX_FDS, 1);
    bad.send(m);
    expect_disconnect(&mut bad.sock, "UNIX_FDS=1 without an fd");
    wait_name_gone(&mut good, &bad_name);
    assert_bus_healthy(&mut bus, &mut good);
    let leaked = good.take_pending(|m| m.member.as_deref() == Some("TakeFd"));
    assert!(leaked.is_empty(), "forwarded without its fd: {leaked:?}");
}

#[test]
fn claims_unix_fds_without_negotiating() {
    after_hello("", "UNIX_FDS=1 on a connection without fd passing", |bad| {
        let mut w = W::new();
        w.u32(0);
        let m = MsgBuilder::method_call(0, Some(DRIVER), DRIVER_PATH, Some(DRIVER), "GetId")
            .body("h", w.buf)
            .field_u32(F_UNIX_FDS, 1);
        bad.send(m);
    });
}

#[test]
fn invalid_message_type_zero() {
    after_hello("", "message type 0", |bad| {
        let mut m = get_id_call();
        m.msg_type = 0;
        bad.send(m);
    });
}

#[test]
fn method_call_without_member() {
    after_hello("", "method call without MEMBER", |bad| {
        let m = MsgBuilder::new(METHOD_CALL, 0)
            .field_str(F_PATH, 'o', DRIVER_PATH)
            .field_str(F_DESTINATION, 's', DRIVER);
        bad.send(m);
    });
}

#[test]
fn body_shorter_than_signature() {
    after_hello("", "signature 'su' with a body holding only 's'", |bad| {
        let mut w = W::new();
        w.str("org.example.Name");
        let m = MsgBuilder::method_call(0, Some(DRIVER), DRIVER_PATH, Some(DRIVER), "RequestName")
            .body("su", w.buf);
        bad.send(m);
    });
}
