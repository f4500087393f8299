//! A real third-party client library (zbus, blocking API) against the
//! spawned daemon.

use crate::common;

use std::io::{Read, Write};
use std::sync::mpsc;

use common::{Bus, TIMEOUT};
use zbus::blocking::{connection, fdo::DBusProxy, Connection, MessageIterator, Proxy};
use zbus::fdo::RequestNameFlags;
use zbus::names::BusName;
use zbus::zvariant;

const SERVICE: &str = "org.example.BusbarEcho";
const PATH: &str = "/org/example/Echo";
const IFACE: &str = "org.example.Echo";

struct Echo;

#[zbus::interface(name = "org.example.Echo")]
impl Echo {
    fn echo(&self, s: String) -> String {
        s
    }

    /// Reads everything from the passed file descriptor.
    fn read_fd(&self, fd: zvariant::OwnedFd) -> zbus::fdo::Result<String> {
        let fd: std::os::fd::OwnedFd = fd.into();
        let mut f = std::fs::File::from(fd);
        let mut s = String::new();
        f.read_to_string(&mut s)
            .map_err(|e| zbus::fdo::Error::IOError(e.to_string()))?;
        Ok(s)
    }
}

fn connect(bus: &Bus) -> Connection {
    connection::Builder::address(bus.address.as_str())
        .expect("address")
        .build()
        .expect("zbus connect")
}

/// Runs `f` on a thread and waits for it with the test timeout, so that a
/// missing signal fails instead of hanging.
fn within_timeout<T: Send + 'static>(what: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    rx.recv_timeout(TIMEOUT)
        .unwrap_or_else(|_| panic!("{what}: nothing within {TIMEOUT:?}"))
}

#[test]
fn list_names_and_get_id() {
    let bus = Bus::start();
    let conn = connect(&bus);
    let me = conn.unique_name().expect("unique name").to_string();
    assert!(me.starts_with(':'), "{me}");
    let dbus = DBusProxy::new(&conn).unwrap();
    let names: Vec<String> = dbus
        .list_names()
        .unwrap()
        .into_iter()
        .map(|n| n.to_string())
        .collect();
    assert!(names.contains(&me), "{names:?}");
    assert!(
        names.iter().any(|n| n == "org.freedesktop.DBus"),
        "{names:?}"
    );
    let id = dbus.get_id().unwrap().to_string();
    assert_eq!(id.len(), 32, "{id}");
    // The GUID the server gave in the auth OK line is the one in the
    // printed address (zbus checks it too).
    let guid = conn.server_guid().to_string();
    assert!(
        bus.address.contains(&format!("guid={guid}")),
        "{} vs {guid}",
        bus.address
    );
}

#[test]
fn request_name_and_call_a_served_method() {
    let bus = Bus::start();
    let server = connect(&bus);
    server.object_server().at(PATH, Echo).unwrap();
    let dbus = DBusProxy::new(&server).unwrap();
    let reply = dbus
        .request_name(
            SERVICE.try_into().unwrap(),
            RequestNameFlags::DoNotQueue.into(),
        )
        .unwrap();
    assert_eq!(reply, zbus::fdo::RequestNameReply::PrimaryOwner);

    let client = connect(&bus);
    let cdbus = DBusProxy::new(&client).unwrap();
    let owner = cdbus.get_name_owner(SERVICE.try_into().unwrap()).unwrap();
    assert_eq!(owner.as_str(), server.unique_name().unwrap().as_str());

    let msg = client
        .call_method(Some(SERVICE), PATH, Some(IFACE), "Echo", &("hello busbar",))
        .unwrap();
    let got: String = msg.body().deserialize().unwrap();
    assert_eq!(got, "hello busbar");
    assert_eq!(msg.header().sender().unwrap().as_str(), owner.as_str());

    // Through a proxy too, and an error from the service comes back as one.
    let proxy = Proxy::new(&client, SERVICE, PATH, IFACE).unwrap();
    let got: String = proxy.call("Echo", &("again",)).unwrap();
    assert_eq!(got, "again");
    let err = proxy.call::<_, _, String>("NoSuchMethod", &()).unwrap_err();
    match err {
        zbus::Error::MethodError(name, _, _) => {
            assert_eq!(name.as_str(), "org.freedesktop.DBus.Error.UnknownMethod")
        }
        other => panic!("expected a method error, got {other:?}"),
    }

    // A second request for the name from the client, without DO_NOT_QUEUE
    // (zbus's default flags include it): queued behind the server.
    let reply = cdbus
        .request_name(
            SERVICE.try_into().unwrap(),
            RequestNameFlags::AllowReplacement.into(),
        )
        .unwrap();
    assert_eq!(reply, zbus::fdo::RequestNameReply::InQueue);
}

#[test]
fn receive_a_signal_through_a_proxy() {
    let bus = Bus::start();
    let receiver = connect(&bus);
    let sender = connect(&bus);
    let sender_name = sender.unique_name().unwrap().to_string();
    let proxy = Proxy::new(&receiver, sender_name.as_str(), PATH, IFACE).unwrap();
    // receive_signal adds the match rule before it returns.
    let mut signals = proxy.receive_signal("Tick").unwrap();
    sender
        .emit_signal(None::<BusName<'_>>, PATH, IFACE, "Tick", &("tock", 42u32))
        .unwrap();
    let msg = within_timeout("Tick via proxy", move || signals.next());
    let msg = msg.expect("signal stream ended");
    let (s, n): (String, u32) = msg.body().deserialize().unwrap();
    assert_eq!((s.as_str(), n), ("tock", 42));
    assert_eq!(msg.header().sender().unwrap().as_str(), sender_name);
}

#[test]
fn receive_a_signal_with_a_match_rule() {
    let bus = Bus::start();
    let receiver = connect(&bus);
    let sender = connect(&bus);
    let rule = zbus::MatchRule::builder()
        .msg_type(zbus::message::Type::Signal)
        .interface(IFACE)
        .unwrap()
        .member("Tick")
        .unwrap()
        .arg(0, "wanted")
        .unwrap()
        .build();
    // Everything that arrives on the receiver's socket, unfiltered: zbus
    // also filters a match-rule stream on the client side, so that stream
    // alone cannot tell whether the bus applied arg0.
    let all = MessageIterator::from(&receiver);
    let mut it = MessageIterator::for_match_rule(rule, &receiver, None).unwrap();
    // Not matching arg0: filtered by the bus.
    sender
        .emit_signal(None::<BusName<'_>>, PATH, IFACE, "Tick", &("unwanted",))
        .unwrap();
    sender
        .emit_signal(None::<BusName<'_>>, PATH, IFACE, "Tick", &("wanted",))
        .unwrap();
    let msg = within_timeout("Tick via match rule", move || it.next());
    let msg = msg.expect("stream ended").expect("message error");
    let s: String = msg.body().deserialize().unwrap();
    assert_eq!(s, "wanted");
    // The bus keeps one sender's order, so "unwanted" would have come first.
    let ticks = within_timeout("Tick on the socket", move || {
        let mut ticks = Vec::new();
        for m in all {
            let m = m.expect("message error");
            let h = m.header();
            if h.member().is_some_and(|n| n.as_str() == "Tick") {
                let arg: String = m.body().deserialize().unwrap();
                ticks.push(arg.clone());
                if arg == "wanted" {
                    break;
                }
            }
        }
        ticks
    });
    assert_eq!(
        ticks,
        ["wanted"],
        "the bus forwarded a signal arg0 excludes"
    );
}

#[test]
fn pass_a_unix_fd_over_the_bus() {
    let bus = Bus::start();
    let server = connection::Builder::address(bus.address.as_str())
        .unwrap()
        .serve_at(PATH, Echo)
        .unwrap()
        .name(SERVICE)
        .unwrap()
        .build()
        .unwrap();
    let client = connect(&bus);
    let (reader, mut writer) = std::io::pipe().unwrap();
    writer.write_all(b"through the bus").unwrap();
    drop(writer);
    let reader: std::os::fd::OwnedFd = reader.into();
    let msg = client
        .call_method(
            Some(SERVICE),
            PATH,
            Some(IFACE),
            "ReadFd",
            &(zvariant::Fd::from(&reader),),
        )
        .unwrap();
    let got: String = msg.body().deserialize().unwrap();
    assert_eq!(got, "through the bus");
    drop(server);
}
