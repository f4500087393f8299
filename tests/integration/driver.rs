//! Driver (org.freedesktop.DBus) behaviours through the raw client.

use crate::common;

use common::*;

const PRIMARY_OWNER: u32 = 1;
const IN_QUEUE: u32 = 2;
const EXISTS: u32 = 3;
const ALREADY_OWNER: u32 = 4;

const ALLOW_REPLACEMENT: u32 = 1;
const REPLACE_EXISTING: u32 = 2;
const DO_NOT_QUEUE: u32 = 4;

const RELEASED: u32 = 1;
const NON_EXISTENT: u32 = 2;
const NOT_OWNER: u32 = 3;

const NAME: &str = "com.example.Queue";

fn queued(c: &mut Client, name: &str) -> Vec<String> {
    let mut w = W::new();
    w.str(name);
    let r = c.call_driver("ListQueuedOwners", "s", w.buf);
    assert_eq!(r.msg_type, METHOD_RETURN, "ListQueuedOwners: {r:?}");
    r.reader().str_array()
}

fn name_owner(c: &mut Client, name: &str) -> Result<String, String> {
    let mut w = W::new();
    w.str(name);
    let r = c.call_driver("GetNameOwner", "s", w.buf);
    match r.msg_type {
        METHOD_RETURN => Ok(r.arg0_str()),
        _ => Err(r.error_name.unwrap_or_default()),
    }
}

fn assert_error(r: &Msg, name: &str) {
    assert_eq!(r.msg_type, ERROR, "expected {name}, got {r:?}");
    assert_eq!(r.error_name.as_deref(), Some(name), "{r:?}");
}

/// The NameOwnerChanged signals now pending for `name`, as (old, new).
fn owner_changes(c: &mut Client, name: &str) -> Vec<(String, String)> {
    c.barrier();
    c.take_pending(|m| m.is_signal(DRIVER, "NameOwnerChanged"))
        .into_iter()
        .filter_map(|m| {
            let mut r = m.reader();
            let n = r.string();
            (n == name).then(|| (r.string(), r.string()))
        })
        .collect()
}

/// The unicast NameAcquired / NameLost signals now pending for `name`.
fn name_signals(c: &mut Client, name: &str) -> Vec<String> {
    c.barrier();
    c.take_pending(|m| m.is_signal(DRIVER, "NameAcquired") || m.is_signal(DRIVER, "NameLost"))
        .into_iter()
        .filter(|m| m.arg0_str() == name)
        .map(|m| m.member.unwrap())
        .collect()
}

fn s(x: &str) -> String {
    x.to_string()
}

#[test]
fn request_name_codes_queueing_and_owner_changes() {
    let bus = Bus::start();
    let mut watcher = Client::connect(&bus);
    watcher.add_match(&format!(
        "type='signal',sender='{DRIVER}',member='NameOwnerChanged',arg0='{NAME}'"
    ));
    let mut a = Client::connect(&bus);
    let mut b = Client::connect(&bus);
    let mut c = Client::connect(&bus);
    let mut d = Client::connect(&bus);
    let (an, bn, cn, dn) = (
        a.unique_name.clone(),
        b.unique_name.clone(),
        c.unique_name.clone(),
        d.unique_name.clone(),
    );

    assert_eq!(
        name_owner(&mut watcher, NAME),
        Err(s("org.freedesktop.DBus.Error.NameHasNoOwner"))
    );
    assert_eq!(a.request_name(NAME, 0), PRIMARY_OWNER);
    assert_eq!(a.request_name(NAME, 0), ALREADY_OWNER);
    assert_eq!(name_signals(&mut a, NAME), vec![s("NameAcquired")]);
    // Taken, and the owner does not allow replacement.
    assert_eq!(b.request_name(NAME, DO_NOT_QUEUE), EXISTS);
    assert_eq!(b.request_name(NAME, 0), IN_QUEUE);
    // REPLACE_EXISTING without the owner's ALLOW_REPLACEMENT queues the
    // caller right behind the primary owner (dbus-daemon's order).
    assert_eq!(c.request_name(NAME, REPLACE_EXISTING), IN_QUEUE);
    assert_eq!(
        queued(&mut watcher, NAME),
        vec![an.clone(), cn.clone(), bn.clone()]
    );
    assert_eq!(name_owner(&mut watcher, NAME), Ok(an.clone()));
    assert_eq!(owner_changes(&mut watcher, NAME), vec![(s(""), an.clone())]);

    // Releasing passes the name to the head of the queue.
    assert_eq!(c.release_name("com.example.NotOwnedByAnyone"), NON_EXISTENT);
    assert_eq!(a.release_name(NAME), RELEASED);
    assert_eq!(a.release_name(NAME), NOT_OWNER);
    assert_eq!(name_signals(&mut a, NAME), vec![s("NameLost")]);
    assert_eq!(name_signals(&mut c, NAME), vec![s("NameAcquired")]);
    assert_eq!(queued(&mut watcher, NAME), vec![cn.clone(), bn.clone()]);
    assert_eq!(
        owner_changes(&mut watcher, NAME),
        vec![(an.clone(), cn.clone())]
    );

    // The owner re-requests with ALLOW_REPLACEMENT: still the owner, now replaceable.
    assert_eq!(c.request_name(NAME, ALLOW_REPLACEMENT), ALREADY_OWNER);
    // Replacing an owner that did not ask for DO_NOT_QUEUE: it stays queued, right after.
    assert_eq!(d.request_name(NAME, REPLACE_EXISTING), PRIMARY_OWNER);
    assert_eq!(name_signals(&mut c, NAME), vec![s("NameLost")]);
    assert_eq!(name_signals(&mut d, NAME), vec![s("NameAcquired")]);
    assert_eq!(
        queued(&mut watcher, NAME),
        vec![dn.clone(), cn.clone(), bn.clone()]
    );
    assert_eq!(
        owner_changes(&mut watcher, NAME),
        vec![(cn.clone(), dn.clone())]
    );

    // d does not allow replacement: b's REPLACE_EXISTING|DO_NOT_QUEUE fails
    // and takes b out of the queue.
    assert_eq!(
        b.request_name(NAME, REPLACE_EXISTING | DO_NOT_QUEUE),
        EXISTS
    );
    assert_eq!(queued(&mut watcher, NAME), vec![dn.clone(), cn.clone()]);

    // The owner disconnecting hands the name on.
    drop(d);
    let changes = {
        // Wait for the change rather than race the disconnect.
        let mut got = Vec::new();
        while got.is_empty() {
            let m = watcher.recv();
            if m.is_signal(DRIVER, "NameOwnerChanged") {
                let mut r = m.reader();
                if r.string() == NAME {
                    got.push((r.string(), r.string()));
                }
            }
        }
        got
    };
    assert_eq!(changes, vec![(dn.clone(), cn.clone())]);
    assert_eq!(queued(&mut watcher, NAME), vec![cn.clone()]);
    assert_eq!(c.release_name(NAME), RELEASED);
    assert_eq!(owner_changes(&mut watcher, NAME), vec![(cn.clone(), s(""))]);
    let mut w = W::new();
    w.str(NAME);
    let r = watcher.call_driver("ListQueuedOwners", "s", w.buf);
    assert_error(&r, "org.freedesktop.DBus.Error.NameHasNoOwner");
}

#[test]
fn replaced_owner_with_do_not_queue_leaves_the_queue() {
    let bus = Bus::start();
    let mut a = Client::connect(&bus);
    let mut b = Client::connect(&bus);
    let bn = b.unique_name.clone();
    assert_eq!(
        a.request_name(NAME, ALLOW_REPLACEMENT | DO_NOT_QUEUE),
        PRIMARY_OWNER
    );
    assert_eq!(b.request_name(NAME, REPLACE_EXISTING), PRIMARY_OWNER);
    assert_eq!(
        name_signals(&mut a, NAME),
        vec![s("NameAcquired"), s("NameLost")]
    );
    assert_eq!(queued(&mut b, NAME), vec![bn]);
}

#[test]
fn request_name_invalid_names() {
    let bus = Bus::start();
    let mut a = Client::connect(&bus);
    for bad in [":1.999", "org.freedesktop.DBus", "no_dots", "a..b", ""] {
        let mut w = W::new();
        w.str(bad).u32(0);
        let r = a.call_driver("RequestName", "su", w.buf);
        assert_eq!(r.msg_type, ERROR, "RequestName({bad:?}) succeeded: {r:?}");
        assert_eq!(
            r.error_name.as_deref(),
            Some("org.freedesktop.DBus.Error.InvalidArgs"),
            "RequestName({bad:?})"
        );
    }
}

#[test]
fn name_owner_changed_for_connect_and_disconnect() {
    let bus = Bus::start();
    let mut watcher = Client::connect(&bus);
    watcher.add_match("type='signal',sender='org.freedesktop.DBus',member='NameOwnerChanged'");
    let x = Client::connect(&bus);
    let xn = x.unique_name.clone();
    assert_eq!(owner_changes(&mut watcher, &xn), vec![(s(""), xn.clone())]);
    drop(x);
    loop {
        let m = watcher.recv();
        if m.is_signal(DRIVER, "NameOwnerChanged") && m.arg0_str() == xn {
            let mut r = m.reader();
            r.string();
            assert_eq!((r.string(), r.string()), (xn.clone(), s("")));
            break;
        }
    }
}

/// Peer `b` sends a `Ping` signal then a method call to `a`; returns how
/// many signals `a` received before the method call.
fn signals_seen(a: &mut Client, b: &mut Client) -> usize {
    b.send(MsgBuilder::signal(
        0,
        "/org/example",
        "org.example.Test",
        "Ping",
    ));
    let dest = a.unique_name.clone();
    let mut call =
        MsgBuilder::method_call(0, Some(&dest), "/", Some("org.example.Test"), "Barrier");
    call.flags = NO_REPLY_EXPECTED;
    b.send(call);
    let mut n = 0;
    loop {
        let m = a.recv();
        if m.is_signal("org.example.Test", "Ping") {
            n += 1;
        } else if m.msg_type == METHOD_CALL && m.member.as_deref() == Some("Barrier") {
            return n;
        }
    }
}

#[test]
fn remove_match_removes_one_of_two_identical_rules() {
    let bus = Bus::start();
    let mut a = Client::connect(&bus);
    let mut b = Client::connect(&bus);
    let rule = "type='signal',interface='org.example.Test',member='Ping'";
    assert_eq!(signals_seen(&mut a, &mut b), 0);
    a.add_match(rule);
    a.add_match(rule);
    assert_eq!(
        signals_seen(&mut a, &mut b),
        1,
        "two identical rules deliver once"
    );
    let r = a.remove_match(rule);
    assert_eq!(r.msg_type, METHOD_RETURN, "{r:?}");
    assert_eq!(
        signals_seen(&mut a, &mut b),
        1,
        "one rule left after the first RemoveMatch"
    );
    let r = a.remove_match(rule);
    assert_eq!(r.msg_type, METHOD_RETURN, "{r:?}");
    assert_eq!(signals_seen(&mut a, &mut b), 0, "no rule left");
    let r = a.remove_match(rule);
    assert_error(&r, "org.freedesktop.DBus.Error.MatchRuleNotFound");
}

#[test]
fn add_match_invalid_rule() {
    let bus = Bus::start();
    let mut a = Client::connect(&bus);
    let mut w = W::new();
    w.str("type='nonsense'");
    let r = a.call_driver("AddMatch", "s", w.buf);
    assert_error(&r, "org.freedesktop.DBus.Error.MatchRuleInvalid");
}

#[test]
fn unknown_method() {
    let bus = Bus::start();
    let mut a = Client::connect(&bus);
    let r = a.call_driver("NoSuchMethod", "", vec![]);
    assert_error(&r, "org.freedesktop.DBus.Error.UnknownMethod");
    let s = a.call(
        Some(DRIVER),
        DRIVER_PATH,
        Some("org.example.NoSuchInterface"),
        "GetId",
        "",
        vec![],
    );
    let r = a.wait_reply(s);
    assert_error(&r, "org.freedesktop.DBus.Error.UnknownInterface");
}

#[test]
fn wrong_signature_is_invalid_args() {
    let bus = Bus::start();
    let mut a = Client::connect(&bus);
    let mut w = W::new();
    w.u32(7);
    let r = a.call_driver("GetNameOwner", "u", w.buf);
    assert_error(&r, "org.freedesktop.DBus.Error.InvalidArgs");
    let mut w = W::new();
    w.str(NAME);
    let r = a.call_driver("RequestName", "s", w.buf);
    assert_error(&r, "org.freedesktop.DBus.Error.InvalidArgs");
    let r = a.call_driver("GetNameOwner", "", vec![]);
    assert_error(&r, "org.freedesktop.DBus.Error.InvalidArgs");
    // The connection stays usable.
    assert_eq!(a.get_id().len(), 32);
}

#[test]
fn connection_credentials_of_self() {
    let bus = Bus::start();
    let mut a = Client::connect(&bus);
    let me = a.unique_name.clone();
    let mut w = W::new();
    w.str(&me);
    let r = a.call_driver("GetConnectionUnixUser", "s", w.buf.clone());
    assert_eq!(r.msg_type, METHOD_RETURN, "{r:?}");
    assert_eq!(r.arg0_u32(), uid());
    let r = a.call_driver("GetConnectionUnixProcessID", "s", w.buf.clone());
    assert_eq!(r.msg_type, METHOD_RETURN, "{r:?}");
    assert_eq!(r.arg0_u32(), std::process::id());
    let r = a.call_driver("GetConnectionCredentials", "s", w.buf.clone());
    assert_eq!(r.msg_type, METHOD_RETURN, "{r:?}");
    assert_eq!(r.signature, "a{sv}");
    let creds = r.reader().dict_sv();
    assert!(
        creds.contains(&(s("UnixUserID"), s("u"), uid().to_string())),
        "{creds:?}"
    );
    assert!(
        creds.contains(&(s("ProcessID"), s("u"), std::process::id().to_string())),
        "{creds:?}"
    );
    // Unknown name.
    let mut w = W::new();
    w.str(":1.9999");
    let r = a.call_driver("GetConnectionUnixUser", "s", w.buf);
    assert_error(&r, "org.freedesktop.DBus.Error.NameHasNoOwner");
}

#[test]
fn introspect_lists_the_driver_interface() {
    let bus = Bus::start();
    let mut a = Client::connect(&bus);
    for path in [DRIVER_PATH, "/"] {
        let s = a.call(
            Some(DRIVER),
            path,
            Some("org.freedesktop.DBus.Introspectable"),
            "Introspect",
            "",
            vec![],
        );
        let r = a.wait_reply(s);
        assert_eq!(r.msg_type, METHOD_RETURN, "{r:?}");
        assert_eq!(r.signature, "s");
        let xml = r.arg0_str();
        assert!(
            xml.contains(r#"<interface name="org.freedesktop.DBus">"#),
            "{path}: {xml}"
        );
        assert!(
            xml.contains(r#"<method name="RequestName">"#),
            "{path}: {xml}"
        );
    }
}

#[test]
fn properties_get_features_and_interfaces() {
    let bus = Bus::start();
    let mut a = Client::connect(&bus);
    let props = Some("org.freedesktop.DBus.Properties");
    for (prop, must_contain) in [
        ("Features", None),
        ("Interfaces", Some("org.freedesktop.DBus.Monitoring")),
    ] {
        let mut w = W::new();
        w.str(DRIVER).str(prop);
        let s = a.call(Some(DRIVER), DRIVER_PATH, props, "Get", "ss", w.buf);
        let r = a.wait_reply(s);
        assert_eq!(r.msg_type, METHOD_RETURN, "Get {prop}: {r:?}");
        assert_eq!(r.signature, "v");
        let (sig, val) = r.reader().variant_simple();
        assert_eq!(sig, "as", "{prop}");
        if let Some(m) = must_contain {
            assert!(val.split(',').any(|x| x == m), "{prop} = {val:?}");
        }
    }
    let mut w = W::new();
    w.str(DRIVER).str("NoSuchProperty");
    let s = a.call(Some(DRIVER), DRIVER_PATH, props, "Get", "ss", w.buf);
    let r = a.wait_reply(s);
    assert_eq!(r.msg_type, ERROR, "{r:?}");
    // GetAll has both.
    let mut w = W::new();
    w.str(DRIVER);
    let s = a.call(Some(DRIVER), DRIVER_PATH, props, "GetAll", "s", w.buf);
    let r = a.wait_reply(s);
    assert_eq!(r.msg_type, METHOD_RETURN, "{r:?}");
    let all = r.reader().dict_sv();
    let keys: Vec<_> = all.iter().map(|(k, _, _)| k.as_str()).collect();
    assert!(
        keys.contains(&"Features") && keys.contains(&"Interfaces"),
        "{keys:?}"
    );
}

#[test]
fn peer_ping_without_destination() {
    let bus = Bus::start();
    let mut a = Client::connect(&bus);
    let s = a.call(
        None,
        "/",
        Some("org.freedesktop.DBus.Peer"),
        "Ping",
        "",
        vec![],
    );
    let r = a.wait_reply(s);
    assert_eq!(r.msg_type, METHOD_RETURN, "{r:?}");
    assert_eq!(r.signature, "");
    let s = a.call(
        None,
        "/",
        Some("org.freedesktop.DBus.Peer"),
        "GetMachineId",
        "",
        vec![],
    );
    let r = a.wait_reply(s);
    assert_eq!(r.msg_type, METHOD_RETURN, "{r:?}");
    assert_eq!(r.arg0_str().len(), 32, "{r:?}");
}

#[test]
fn peer_ping_to_the_driver() {
    let bus = Bus::start();
    let mut a = Client::connect(&bus);
    let s = a.call(
        Some(DRIVER),
        "/",
        Some("org.freedesktop.DBus.Peer"),
        "Ping",
        "",
        vec![],
    );
    let r = a.wait_reply(s);
    assert_eq!(r.msg_type, METHOD_RETURN, "{r:?}");
    assert_eq!(r.sender.as_deref(), Some(DRIVER));
}

#[test]
fn hello_twice_is_an_error() {
    let bus = Bus::start();
    let mut a = Client::connect(&bus);
    let r = a.call_driver("Hello", "", vec![]);
    assert_error(&r, "org.freedesktop.DBus.Error.Failed");
}

#[test]
fn name_has_owner_and_list_activatable() {
    let bus = Bus::start();
    let mut a = Client::connect(&bus);
    let me = a.unique_name.clone();
    for (name, want) in [(me.as_str(), 1), (DRIVER, 1), ("com.example.Nobody", 0)] {
        let mut w = W::new();
        w.str(name);
        let r = a.call_driver("NameHasOwner", "s", w.buf);
        assert_eq!(r.msg_type, METHOD_RETURN, "{r:?}");
        assert_eq!(r.arg0_u32(), want, "NameHasOwner({name})");
    }
    let r = a.call_driver("ListActivatableNames", "", vec![]);
    assert_eq!(r.msg_type, METHOD_RETURN, "{r:?}");
    assert!(r.reader().str_array().iter().any(|n| n == DRIVER));
}

/// Calls to the driver reach eavesdroppers with the bus's SENDER, from the
/// eavesdropper's first eavesdrop rule on: the daemon matches a message
/// against the rules after the driver has handled it, so even the AddMatch
/// that adds the first eavesdrop rule is seen by it (busbar builds that copy
/// only while a monitor or an eavesdrop rule can see it). Checked to fail
/// when the copy is built only for rules that existed before the call.
#[test]
fn eavesdropper_sees_driver_calls_from_its_first_rule() {
    let bus = Bus::start();
    let mut e = Client::connect(&bus);
    let rule =
        "type='method_call',interface='org.freedesktop.DBus',member='AddMatch',eavesdrop=true";
    e.add_match(rule);
    e.barrier();
    let own = e.take_pending(|m| m.member.as_deref() == Some("AddMatch"));
    assert_eq!(own.len(), 1, "its own AddMatch: {own:?}");
    assert_eq!(
        own[0].sender.as_deref(),
        Some(e.unique_name.as_str()),
        "{own:?}"
    );
    let mut other = Client::connect(&bus);
    other.add_match("type='signal',interface='com.example.Nothing'");
    e.barrier();
    let seen = e.take_pending(|m| m.member.as_deref() == Some("AddMatch"));
    assert_eq!(seen.len(), 1, "another's AddMatch: {seen:?}");
    assert_eq!(
        seen[0].sender.as_deref(),
        Some(other.unique_name.as_str()),
        "{seen:?}"
    );
}
