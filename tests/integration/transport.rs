//! Transport-level behaviours through the raw client: addresses, framing
//! across reads, pipelining, byte order, fd passing, auth corner cases.

use crate::common;

use common::*;
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, OwnedFd};

/// dbus-daemon 1.14.10 (Debian 12) binds `<tmpdir>/dbus-XXXXXXXXXX`, ten
/// letters and digits, as a socket file, and removes it at exit.
#[test]
fn tmpdir_listen_gives_a_socket_file_removed_at_exit() {
    let dir = std::env::temp_dir().join(format!("busbar-itest-tmpdir-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let mut bus = Bus::start_listen(Some(&format!("unix:tmpdir={}", dir.display())), "");
    let prefix = format!("unix:path={}/dbus-", dir.display());
    let rest = bus
        .address
        .strip_prefix(&prefix)
        .unwrap_or_else(|| panic!("{} does not start with {prefix}", bus.address));
    let (name, guid) = rest.split_once(",guid=").expect("a guid");
    assert!(
        name.len() == 10 && name.bytes().all(|c| c.is_ascii_alphanumeric()),
        "{name}"
    );
    assert_eq!(guid.len(), 32);
    let socket = dir.join(format!("dbus-{name}"));
    assert!(socket.exists());
    let mut a = Client::connect(&bus);
    assert_bus_healthy(&mut bus, &mut a);
    drop(a);
    drop(bus);
    assert!(!socket.exists(), "{} left behind", socket.display());
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn dir_listen_gives_a_path_address() {
    let dir = std::env::temp_dir().join(format!("busbar-itest-dir-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let mut bus = Bus::start_listen(Some(&format!("unix:dir={}", dir.display())), "");
    assert!(bus.address.starts_with("unix:path="), "{}", bus.address);
    let mut a = Client::connect(&bus);
    assert_bus_healthy(&mut bus, &mut a);
    drop(a);
    drop(bus);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn message_sent_one_byte_at_a_time() {
    let bus = Bus::start();
    let mut a = Client::connect(&bus);
    let mut m = MsgBuilder::method_call(0, Some(DRIVER), DRIVER_PATH, Some(DRIVER), "GetNameOwner");
    let mut w = W::new();
    w.str(DRIVER);
    m = m.body("s", w.buf);
    m.serial = 77;
    for b in m.build() {
        a.sock.write_all(&[b]).unwrap();
        a.sock.flush().unwrap();
    }
    let r = a.wait_reply(77);
    assert_eq!(r.msg_type, METHOD_RETURN, "{r:?}");
    assert_eq!(r.arg0_str(), DRIVER);
}

#[test]
fn pipelined_calls_in_one_write_are_answered_in_order() {
    let bus = Bus::start();
    let mut a = Client::connect(&bus);
    let mut all = Vec::new();
    for serial in 1000..1100 {
        let mut m = MsgBuilder::method_call(0, Some(DRIVER), DRIVER_PATH, Some(DRIVER), "GetId");
        m.serial = serial;
        all.extend(m.build());
    }
    a.send_bytes(&all);
    for serial in 1000..1100 {
        let r = loop {
            let r = a.read_msg().expect("reply");
            if r.msg_type != SIGNAL {
                break r;
            }
        };
        assert_eq!(r.reply_serial, Some(serial), "{r:?}");
        assert_eq!(r.msg_type, METHOD_RETURN);
    }
}

#[test]
fn big_endian_messages_are_accepted_and_forwarded() {
    let bus = Bus::start();
    let mut a = Client::connect(&bus);
    let mut b = Client::connect(&bus);
    // A big-endian driver call with a string argument.
    let mut w = W {
        be: true,
        ..W::new()
    };
    w.str(&a.unique_name);
    let mut m = MsgBuilder::method_call(
        0,
        Some(DRIVER),
        DRIVER_PATH,
        Some(DRIVER),
        "GetConnectionUnixUser",
    )
    .body("s", w.buf);
    m.endian = b'B';
    let s = a.send(m);
    let r = a.wait_reply(s);
    assert_eq!(r.msg_type, METHOD_RETURN, "{r:?}");
    assert_eq!(r.arg0_u32(), uid());
    // A big-endian call forwarded to a peer arrives intact (in whatever
    // byte order the bus chooses).
    let mut w = W {
        be: true,
        ..W::new()
    };
    w.str("payload").u32(0xdead_beef);
    let dest = b.unique_name.clone();
    let mut m = MsgBuilder::method_call(0, Some(&dest), "/t", Some("org.example.T"), "Take")
        .body("su", w.buf);
    m.endian = b'B';
    m.flags = NO_REPLY_EXPECTED;
    a.send(m);
    let got = loop {
        let m = b.recv();
        if m.member.as_deref() == Some("Take") {
            break m;
        }
    };
    assert_eq!(got.sender.as_deref(), Some(a.unique_name.as_str()));
    assert_eq!(got.signature, "su");
    let mut r = got.reader();
    assert_eq!(r.string(), "payload");
    assert_eq!(r.u32(), 0xdead_beef);
}

#[test]
fn raw_fd_passing_between_peers() {
    let bus = Bus::start();
    let mut a = Client::connect_fds(&bus);
    let mut b = Client::connect_fds(&bus);
    let (reader, mut writer) = std::io::pipe().unwrap();
    writer.write_all(b"fd payload").unwrap();
    drop(writer);
    let reader: OwnedFd = reader.into();
    let mut w = W::new();
    w.u32(0);
    let dest = b.unique_name.clone();
    let mut m = MsgBuilder::method_call(0, Some(&dest), "/t", Some("org.example.T"), "TakeFd")
        .body("h", w.buf)
        .field_u32(F_UNIX_FDS, 1);
    m.serial = a.next_serial();
    send_with_fds(&a.sock, &m.build(), &[reader.as_raw_fd()]).unwrap();
    drop(reader);
    let got = loop {
        let m = b.recv();
        if m.member.as_deref() == Some("TakeFd") {
            break m;
        }
    };
    assert_eq!(got.unix_fds, 1, "{got:?}");
    assert_eq!(got.fds.len(), 1, "the fd did not arrive: {got:?}");
    let mut f = std::fs::File::from(got.fds.into_iter().next().unwrap());
    let mut s = String::new();
    f.read_to_string(&mut s).unwrap();
    assert_eq!(s, "fd payload");
}

#[test]
fn fd_to_a_peer_that_did_not_negotiate_is_refused() {
    let bus = Bus::start();
    let mut a = Client::connect_fds(&bus);
    let b = Client::connect(&bus);
    let (reader, _writer) = std::io::pipe().unwrap();
    let reader: OwnedFd = reader.into();
    let mut w = W::new();
    w.u32(0);
    let mut m = MsgBuilder::method_call(
        0,
        Some(&b.unique_name),
        "/t",
        Some("org.example.T"),
        "TakeFd",
    )
    .body("h", w.buf)
    .field_u32(F_UNIX_FDS, 1);
    m.serial = a.next_serial();
    send_with_fds(&a.sock, &m.build(), &[reader.as_raw_fd()]).unwrap();
    let r = a.wait_reply(m.serial);
    assert_eq!(r.msg_type, ERROR, "{r:?}");
    assert_eq!(
        r.error_name.as_deref(),
        Some("org.freedesktop.DBus.Error.NotSupported"),
        "{r:?}"
    );
}

#[test]
fn auth_external_with_wrong_uid_is_rejected() {
    let bus = Bus::start();
    let mut s = Client::connect_raw(&bus);
    let wrong = (uid() + 12345).to_string();
    let hexed: String = wrong.bytes().map(|b| format!("{b:02x}")).collect();
    s.write_all(format!("\0AUTH EXTERNAL {hexed}\r\n").as_bytes())
        .unwrap();
    let line = read_line(&mut s);
    assert!(line.starts_with("REJECTED"), "{line:?}");
    assert!(line.contains("EXTERNAL"), "{line:?}");
    // Then the right one works on the same connection.
    let hexed: String = uid()
        .to_string()
        .bytes()
        .map(|b| format!("{b:02x}"))
        .collect();
    s.write_all(format!("AUTH EXTERNAL {hexed}\r\n").as_bytes())
        .unwrap();
    let line = read_line(&mut s);
    assert!(line.starts_with("OK "), "{line:?}");
}

#[test]
fn auth_external_without_identity_and_data_exchange() {
    let bus = Bus::start();
    let mut s = Client::connect_raw(&bus);
    s.write_all(b"\0AUTH EXTERNAL\r\n").unwrap();
    let line = read_line(&mut s);
    assert_eq!(line, "DATA", "{line:?}");
    s.write_all(b"DATA\r\n").unwrap();
    let line = read_line(&mut s);
    assert!(line.starts_with("OK "), "{line:?}");
    let guid = &line[3..];
    assert_eq!(guid.len(), 32, "{line:?}");
    assert!(
        bus.address.contains(&format!("guid={guid}")),
        "{} vs {line}",
        bus.address
    );
}

#[test]
fn auth_unsupported_mechanism_lists_the_allowed_ones() {
    let bus = Bus::start();
    let mut s = Client::connect_raw(&bus);
    s.write_all(b"\0AUTH ANONYMOUS\r\n").unwrap();
    let line = read_line(&mut s);
    assert_eq!(line, "REJECTED EXTERNAL");
    s.write_all(b"AUTH\r\n").unwrap();
    let line = read_line(&mut s);
    assert_eq!(line, "REJECTED EXTERNAL");
}

#[test]
fn data_after_begin_in_the_same_write() {
    // AUTH, BEGIN and Hello in one write: the bus must not lose the bytes
    // that follow BEGIN.
    let bus = Bus::start();
    let mut s = Client::connect_raw(&bus);
    let hexed: String = uid()
        .to_string()
        .bytes()
        .map(|b| format!("{b:02x}"))
        .collect();
    let mut all = format!("\0AUTH EXTERNAL {hexed}\r\nBEGIN\r\n").into_bytes();
    let mut m = MsgBuilder::method_call(0, Some(DRIVER), DRIVER_PATH, Some(DRIVER), "Hello");
    m.serial = 1;
    all.extend(m.build());
    s.write_all(&all).unwrap();
    let line = read_line(&mut s);
    assert!(line.starts_with("OK "), "{line:?}");
    let mut c = Client::from_stream(s);
    c.serial = 1;
    let r = c.wait_reply(1);
    assert_eq!(r.msg_type, METHOD_RETURN, "{r:?}");
    assert!(r.arg0_str().starts_with(':'));
}
