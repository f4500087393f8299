//! Issue 9, "`Replies::peer_gone` scans all pending replies": a connection
//! that goes away with replies pending is handled from its own pending
//! replies (src/broker/replies.rs has the unit test that counts the entries
//! visited). This is the behaviour around it, as dbus-daemon has it: the
//! callers the gone peer owed replies to get NoReply, the replies it was
//! waiting for are forgotten (a late one reaches nobody, and its sender
//! learns the name is gone), and every other connection's pending replies
//! are untouched.

use crate::common;

use std::time::Duration;

use common::*;

/// Receives the next method call (queueing nothing else is expected).
fn next_call(c: &mut Client) -> Msg {
    loop {
        let m = c.recv();
        if m.msg_type == METHOD_CALL {
            return m;
        }
    }
}

/// The method return `from` sends for `call`, flagged as libdbus flags its
/// replies (no reply expected); returns its serial.
fn reply_to(from: &mut Client, call: &Msg) -> u32 {
    let mut r = MsgBuilder::new(METHOD_RETURN, 0)
        .field_u32(F_REPLY_SERIAL, call.serial)
        .field_str(F_DESTINATION, 's', call.sender.as_deref().unwrap_or(""));
    r.flags = NO_REPLY_EXPECTED;
    from.send(r)
}

fn call(c: &mut Client, dest: &str, member: &str) -> u32 {
    c.call(Some(dest), "/", Some("org.example.T"), member, "", vec![])
}

#[test]
fn replies_peer_gone_drops_only_the_gone_peers_replies() {
    let mut bus = Bus::start();
    let mut service = Client::connect(&bus);
    let mut a = Client::connect(&bus);
    let mut c = Client::connect(&bus);
    let mut d = Client::connect(&bus);
    let mut gone = Client::connect(&bus);

    // The peer that leaves waits on the service twice...
    call(&mut gone, &service.unique_name.clone(), "FromGone1");
    call(&mut gone, &service.unique_name.clone(), "FromGone2");
    // ... and owes a reply to a.
    let a_serial = call(&mut a, &gone.unique_name.clone(), "ToGone");
    // Pending between others: c waits on d and on the service.
    let c_to_d = call(&mut c, &d.unique_name.clone(), "CToD");
    let c_to_service = call(&mut c, &service.unique_name.clone(), "CToService");

    let mut at_service = Vec::new();
    for _ in 0..3 {
        at_service.push(next_call(&mut service));
    }
    let at_d = next_call(&mut d);
    assert_eq!(at_d.member.as_deref(), Some("CToD"));
    let at_gone = next_call(&mut gone);
    assert_eq!(at_gone.member.as_deref(), Some("ToGone"));
    let gone_name = gone.unique_name.clone();
    drop(gone);

    // a learns that the reply it waited for will never come.
    let r = a.wait_reply(a_serial);
    assert_eq!(r.msg_type, ERROR, "{r:?}");
    assert_eq!(
        r.error_name.as_deref(),
        Some("org.freedesktop.DBus.Error.NoReply")
    );
    assert_eq!(
        r.arg0_str(),
        "Message recipient disconnected from message bus without replying"
    );

    // The service answers everything, the gone peer's calls first: those
    // replies reach nobody; as dbus-daemon, the bus tells the service the
    // name is gone (ServiceUnknown, although the replies expect no reply).
    let late: Vec<u32> = at_service
        .iter()
        .filter(|m| m.sender.as_deref() == Some(&gone_name))
        .map(|m| reply_to(&mut service, m))
        .collect();
    assert_eq!(late.len(), 2);
    for s in &late {
        let r = service.wait_reply(*s);
        assert_eq!(r.msg_type, ERROR, "{r:?}");
        assert_eq!(
            r.error_name.as_deref(),
            Some("org.freedesktop.DBus.Error.ServiceUnknown"),
            "{r:?}"
        );
        assert_eq!(
            r.arg0_str(),
            format!("The name {gone_name} was not provided by any .service files")
        );
    }
    for m in at_service
        .iter()
        .filter(|m| m.sender.as_deref() != Some(&gone_name))
    {
        assert_eq!(m.member.as_deref(), Some("CToService"));
        reply_to(&mut service, m);
    }
    reply_to(&mut d, &at_d);

    // c's replies, one from each callee, arrive as if nothing had happened.
    for s in [c_to_service, c_to_d] {
        let r = c.wait_reply(s);
        assert_eq!(r.msg_type, METHOD_RETURN, "{r:?}");
    }

    // Nobody got anything else: not the late replies, no other error.
    for x in [&mut service, &mut a, &mut c, &mut d] {
        x.barrier();
        let extra = x.take_pending(|m| m.msg_type != SIGNAL);
        assert!(extra.is_empty(), "{}: unexpected {extra:?}", x.unique_name);
        assert!(
            x.read_msg_within(Duration::from_millis(50)).is_none(),
            "{}: a message after the barrier",
            x.unique_name
        );
    }

    // A later call from a to the service still needs and gets its own reply.
    let s = call(&mut a, &service.unique_name.clone(), "Later");
    let m = next_call(&mut service);
    reply_to(&mut service, &m);
    assert_eq!(a.wait_reply(s).msg_type, METHOD_RETURN);
    assert_bus_healthy(&mut bus, &mut a);
}
