//! The method-call cases: every method of every driver interface, with
//! edge-case names, every RequestName flag combination against every
//! ownership state, wrong signatures, header flags, unknown members,
//! interfaces and paths, match rules, properties and BecomeMonitor.

use super::common::{DRIVER, DRIVER_PATH, NO_REPLY_EXPECTED, W};
use super::render::Numbers;
use super::world::{World, OBSERVER_RULE};

const NO_AUTO_START: u8 = 0x2;
const PEER: &str = "org.freedesktop.DBus.Peer";
const PROPS: &str = "org.freedesktop.DBus.Properties";
const INTROSPECTABLE: &str = "org.freedesktop.DBus.Introspectable";
const MONITORING: &str = "org.freedesktop.DBus.Monitoring";
const STATS: &str = "org.freedesktop.DBus.Debug.Stats";

/// The activatable service in the test's service directory; its Exec fails.
pub const ACTIVATABLE: &str = "org.example.Activatable";

const WK_SELF: &str = "org.example.OwnedBySelf";
const WK_OTHER: &str = "org.example.OwnedByOther";
const WK_QUEUE: &str = "org.example.Queue";
const WK_NONE: &str = "org.example.NoOwner";

/// Every method of every interface: (interface, member, input signature).
const METHODS: &[(&str, &str, &str)] = &[
    (DRIVER, "Hello", ""),
    (DRIVER, "RequestName", "su"),
    (DRIVER, "ReleaseName", "s"),
    (DRIVER, "StartServiceByName", "su"),
    (DRIVER, "UpdateActivationEnvironment", "a{ss}"),
    (DRIVER, "NameHasOwner", "s"),
    (DRIVER, "ListNames", ""),
    (DRIVER, "ListActivatableNames", ""),
    (DRIVER, "AddMatch", "s"),
    (DRIVER, "RemoveMatch", "s"),
    (DRIVER, "GetNameOwner", "s"),
    (DRIVER, "ListQueuedOwners", "s"),
    (DRIVER, "GetConnectionUnixUser", "s"),
    (DRIVER, "GetConnectionUnixProcessID", "s"),
    (DRIVER, "GetAdtAuditSessionData", "s"),
    (DRIVER, "GetConnectionSELinuxSecurityContext", "s"),
    (DRIVER, "ReloadConfig", ""),
    (DRIVER, "GetId", ""),
    (DRIVER, "GetConnectionCredentials", "s"),
    (PROPS, "Get", "ss"),
    (PROPS, "GetAll", "s"),
    (PROPS, "Set", "ssv"),
    (INTROSPECTABLE, "Introspect", ""),
    (MONITORING, "BecomeMonitor", "asu"),
    (STATS, "GetStats", ""),
    (STATS, "GetConnectionStats", "s"),
    (STATS, "GetAllMatchRules", ""),
    (PEER, "Ping", ""),
    (PEER, "GetMachineId", ""),
];

/// Splits off the first complete type of a signature.
fn first_type(sig: &str) -> Option<(&str, &str)> {
    let b = sig.as_bytes();
    let mut i = 0;
    while b.get(i) == Some(&b'a') {
        i += 1;
    }
    let end = match b.get(i)? {
        b'(' | b'{' => {
            let mut depth = 0;
            let mut j = i;
            loop {
                match b.get(j)? {
                    b'(' | b'{' => depth += 1,
                    b')' | b'}' => {
                        depth -= 1;
                        if depth == 0 {
                            break;
                        }
                    }
                    _ => {}
                }
                j += 1;
            }
            j + 1
        }
        _ => i + 1,
    };
    Some((&sig[..end], &sig[end..]))
}

/// A body of placeholder values for `sig`: strings are a valid name that
/// nobody owns, numbers 0, arrays empty, variants a string.
pub fn dummy(sig: &str) -> Vec<u8> {
    let mut w = W::new();
    let mut s = sig;
    while let Some((t, rest)) = first_type(s) {
        dummy_value(&mut w, t);
        s = rest;
    }
    w.buf
}

fn dummy_value(w: &mut W, t: &str) {
    match t.as_bytes()[0] {
        b'y' => {
            w.u8(0);
        }
        b'b' | b'u' | b'i' | b'h' => {
            w.u32(0);
        }
        b's' => {
            w.str("org.example.Dummy");
        }
        b'o' => {
            w.str("/");
        }
        b'g' => {
            w.sig("");
        }
        b'v' => {
            w.sig("s");
            w.str("org.example.Dummy");
        }
        b'a' => {
            w.u32(0);
            let elem = t.as_bytes().get(1).copied().unwrap_or(b'y');
            if matches!(elem, b'{' | b'(' | b'x' | b't' | b'd') {
                w.align(8);
            }
        }
        b'(' => {
            w.align(8);
            let mut inner = &t[1..t.len() - 1];
            while let Some((one, rest)) = first_type(inner) {
                dummy_value(w, one);
                inner = rest;
            }
        }
        other => panic!("dummy: unsupported type {}", other as char),
    }
}

fn s_body(s: &str) -> Vec<u8> {
    let mut w = W::new();
    w.str(s);
    w.buf
}

fn su_body(s: &str, u: u32) -> Vec<u8> {
    let mut w = W::new();
    w.str(s).u32(u);
    w.buf
}

fn ss_body(a: &str, b: &str) -> Vec<u8> {
    let mut w = W::new();
    w.str(a).str(b);
    w.buf
}

/// The numbers in Debug.Stats replies are compared by shape only; the
/// arrays of ListNames and ListActivatableNames are compared as sets.
fn reply_shape(w: &mut World, iface: &str, member: &str) {
    if iface == STATS && member != "GetAllMatchRules" {
        w.numbers = Numbers::Shape;
    }
    if member == "ListNames" || member == "ListActivatableNames" {
        w.sort = true;
    }
}

/// Setup shared by the cases: the observer O (watching every signal from
/// the bus), A (the caller), B and C (other connections) and the names.
fn setup(w: &mut World) {
    w.case("setup", |w| {
        w.connect("O");
        w.learn_bus_id("O");
        let s = w.call_s("O", "AddMatch", OBSERVER_RULE);
        w.await_reply("O", s);
        for r in ["A", "B", "C"] {
            w.connect(r);
        }
        let s = w.request("A", WK_SELF, 0);
        w.await_reply("A", s);
        let s = w.request("B", WK_OTHER, 0);
        w.await_reply("B", s);
        for r in ["B", "C", "A"] {
            let s = w.request(r, WK_QUEUE, 0);
            w.await_reply(r, s);
        }
        // a connection that has come and gone
        w.connect("T0");
        w.disconnect("T0");
    });
}

/// (label, value) of every name the name methods are called with.
fn names(w: &World) -> Vec<(String, String)> {
    let max_name = format!("a.{}", "b".repeat(253));
    let too_long = format!("a.{}", "b".repeat(254));
    let mut v: Vec<(String, String)> = vec![
        ("bus".into(), DRIVER.into()),
        ("self".into(), w.unique("A")),
        ("other".into(), w.unique("B")),
        ("gone".into(), w.unique_of_role("T0")),
        ("never".into(), ":1.99999".into()),
        ("unique-3-parts".into(), ":1.2.3".into()),
    ];
    for n in [
        WK_SELF,
        WK_OTHER,
        WK_QUEUE,
        WK_NONE,
        ACTIVATABLE,
        "",
        ":",
        ":1",
        ":1.",
        ":.1",
        ":1..2",
        "a",
        ".a.b",
        "a.b.",
        "a..b",
        "1a.b",
        "a.1b",
        "a.b-c",
        "a.b c",
        "a/b.c",
        "a.b\u{e9}",
        "org.freedesktop.dbus",
        "org.freedesktop.DBus.Extra",
    ] {
        v.push((format!("{n:?}"), n.into()));
    }
    v.push(("255-bytes".into(), max_name));
    v.push(("256-bytes".into(), too_long));
    v
}

/// The methods whose one argument is a name, called with every name.
fn name_methods(w: &mut World) {
    let names = names(w);
    let methods: &[(&str, &str)] = &[
        (DRIVER, "NameHasOwner"),
        (DRIVER, "GetNameOwner"),
        (DRIVER, "ListQueuedOwners"),
        (DRIVER, "GetConnectionUnixUser"),
        (DRIVER, "GetConnectionUnixProcessID"),
        (DRIVER, "GetConnectionCredentials"),
        (DRIVER, "GetAdtAuditSessionData"),
        (DRIVER, "GetConnectionSELinuxSecurityContext"),
        (STATS, "GetConnectionStats"),
    ];
    for (iface, member) in methods {
        for (label, name) in &names {
            w.case(&format!("{member}({label})"), |w| {
                reply_shape(w, iface, member);
                let s = w.call_full(
                    "A",
                    Some(DRIVER),
                    DRIVER_PATH,
                    Some(iface),
                    member,
                    "s",
                    s_body(name),
                    0,
                );
                w.await_reply("A", s);
            });
        }
    }
    for (label, name) in &names {
        w.case(&format!("StartServiceByName({label}, 0)"), |w| {
            let s = w.call("A", "StartServiceByName", "su", su_body(name, 0));
            w.await_reply("A", s);
        });
    }
    for (label, name) in &names {
        // Releasing A's own names would change the state later cases use.
        if name == WK_SELF || name == WK_QUEUE {
            continue;
        }
        w.case(&format!("ReleaseName({label})"), |w| {
            let s = w.call_s("A", "ReleaseName", name);
            w.await_reply("A", s);
        });
    }
    for (label, name) in &names {
        if name == WK_QUEUE {
            continue; // DO_NOT_QUEUE would take A out of that queue
        }
        w.case(&format!("RequestName({label}, DO_NOT_QUEUE)"), |w| {
            let s = w.request("A", name, 4);
            w.await_reply("A", s);
            if name != WK_SELF {
                let s = w.call_s("A", "ReleaseName", name);
                w.await_reply("A", s);
            }
        });
    }
}

/// Who holds the name before A asks for it: (label, [(role, flags)]).
const STATES: &[(&str, &[(&str, u32)])] = &[
    ("unowned", &[]),
    ("self-owner", &[("A", 0)]),
    ("self-owner-allow-replacement", &[("A", 1)]),
    ("other-owner", &[("B", 0)]),
    ("other-owner-allow-replacement", &[("B", 1)]),
    ("other-owner, self queued", &[("B", 0), ("A", 0)]),
    (
        "other-owner-allow-replacement, self queued",
        &[("B", 1), ("A", 0)],
    ),
    (
        "other-owner-allow-replacement-do-not-queue, C queued",
        &[("B", 5), ("C", 0)],
    ),
    ("other-owner, C queued", &[("B", 0), ("C", 0)]),
    (
        "other-owner-allow-replacement, self queued allowing replacement",
        &[("B", 1), ("A", 1)],
    ),
];

/// Every combination of RequestName's flags in every ownership state; the
/// queue afterwards, and releasing the name by everyone, are part of the
/// outcome.
fn request_name_matrix(w: &mut World) {
    let flags: Vec<u32> = (0..8).chain([8, 0xffff_ffff]).collect();
    let mut n = 0;
    for (label, setup) in STATES {
        for &f in &flags {
            n += 1;
            let name = format!("org.example.rn.N{n}");
            w.case(&format!("RequestName flags={f:#x} when {label}"), |w| {
                for (role, fl) in setup.iter() {
                    let s = w.request(role, &name, *fl);
                    w.await_reply(role, s);
                }
                let s = w.request("A", &name, f);
                w.await_reply("A", s);
                let s = w.call_s("A", "ListQueuedOwners", &name);
                w.await_reply("A", s);
                for role in ["A", "B", "C"] {
                    let s = w.call_s(role, "ReleaseName", &name);
                    w.await_reply(role, s);
                }
            });
        }
    }
}

/// Each method with no arguments, an extra argument, and the wrong type.
fn wrong_signatures(w: &mut World) {
    for (iface, member, input) in METHODS {
        let wrong = match *input {
            "" => "u".to_string(),
            "su" => "ss".into(),
            "s" => "u".into(),
            "ss" => "su".into(),
            "ssv" => "sss".into(),
            "asu" => "su".into(),
            "a{ss}" => "as".into(),
            other => panic!("no wrong signature for {other}"),
        };
        let extra = format!("{input}s");
        let mut variants = vec![wrong, extra];
        if !input.is_empty() {
            variants.push(String::new());
        }
        for sig in variants {
            // A caller that became a monitor by mistake would change every
            // later case, so BecomeMonitor is tried on a connection of its own.
            let role = if *iface == MONITORING { "T" } else { "A" };
            w.case(&format!("{iface}.{member} with signature {sig:?}"), |w| {
                if role == "T" {
                    w.connect("T");
                }
                let s = w.call_full(
                    role,
                    Some(DRIVER),
                    DRIVER_PATH,
                    Some(iface),
                    member,
                    &sig,
                    dummy(&sig),
                    0,
                );
                w.await_reply(role, s);
                if role == "T" {
                    w.disconnect("T");
                }
            });
        }
    }
}

/// Calls that are answered, answered with an error, or change names, with
/// NO_REPLY_EXPECTED, NO_AUTO_START and both.
fn header_flags(w: &mut World) {
    let calls: Vec<(&str, &str, &str, Vec<u8>)> = vec![
        (DRIVER, "GetId", "", vec![]),
        (DRIVER, "ListNames", "", vec![]),
        (DRIVER, "NameHasOwner", "s", s_body(WK_OTHER)),
        (DRIVER, "GetNameOwner", "s", s_body(WK_NONE)),
        (DRIVER, "GetNameOwner", "s", s_body(WK_OTHER)),
        (DRIVER, "RequestName", "su", su_body("org.example.flags", 0)),
        (DRIVER, "ReleaseName", "s", s_body("org.example.flags")),
        (DRIVER, "AddMatch", "s", s_body("type='nonsense'")),
        (DRIVER, "Hello", "", vec![]),
        (DRIVER, "NoSuchMethod", "", vec![]),
        (DRIVER, "StartServiceByName", "su", su_body(WK_OTHER, 0)),
        (DRIVER, "GetConnectionUnixUser", "s", s_body(WK_SELF)),
        (INTROSPECTABLE, "Introspect", "", vec![]),
        (PEER, "Ping", "", vec![]),
        (PROPS, "Get", "ss", ss_body(DRIVER, "Features")),
        (PROPS, "Get", "ss", ss_body(DRIVER, "NoSuchProperty")),
        (PROPS, "GetAll", "s", s_body(DRIVER)),
        (DRIVER, "AddMatch", "s", s_body("member='FlagsCase'")),
        (DRIVER, "RemoveMatch", "s", s_body("member='FlagsCase'")),
        (DRIVER, "RemoveMatch", "s", s_body("member='FlagsCase'")),
        (DRIVER, "ReloadConfig", "", vec![]),
        (
            DRIVER,
            "UpdateActivationEnvironment",
            "a{ss}",
            dummy("a{ss}"),
        ),
        (DRIVER, "GetConnectionCredentials", "s", s_body(WK_OTHER)),
        (PEER, "GetMachineId", "", vec![]),
        (STATS, "GetStats", "", vec![]),
        (STATS, "GetConnectionStats", "s", s_body(WK_OTHER)),
    ];
    for flags in [
        NO_REPLY_EXPECTED,
        NO_AUTO_START,
        NO_REPLY_EXPECTED | NO_AUTO_START,
    ] {
        for (k, (iface, member, sig, body)) in calls.iter().enumerate() {
            let arg = if body.is_empty() {
                String::new()
            } else {
                super::render::body_text(
                    &super::common::Msg {
                        signature: sig.to_string(),
                        body: body.clone(),
                        ..Default::default()
                    },
                    Numbers::Exact,
                )
            };
            w.case(
                &format!("{iface}.{member}({arg}) #{k} with flags={flags:#x}"),
                |w| {
                    reply_shape(w, iface, member);
                    let s = w.call_full(
                        "A",
                        Some(DRIVER),
                        DRIVER_PATH,
                        Some(iface),
                        member,
                        sig,
                        body.clone(),
                        flags,
                    );
                    if flags & NO_REPLY_EXPECTED == 0 {
                        w.await_reply("A", s);
                    }
                },
            );
        }
    }
}

/// Unknown members and interfaces, no interface, other paths, and the
/// interfaces that exist only at the canonical path.
fn addressing(w: &mut World) {
    let paths = [
        DRIVER_PATH,
        "/",
        "/org",
        "/org/freedesktop",
        "/org/freedesktop/DBus/Sub",
        "/com/example",
    ];
    let calls: &[(Option<&str>, &str, &str)] = &[
        (Some(DRIVER), "GetId", ""),
        (Some(DRIVER), "NoSuchMethod", ""),
        (Some("org.example.NoSuchInterface"), "GetId", ""),
        (None, "GetId", ""),
        (None, "NoSuchMethod", ""),
        (None, "Get", "ss"),
        (None, "Ping", ""),
        (Some(PROPS), "GetAll", "s"),
        (Some(PROPS), "Get", "ss"),
        (Some(INTROSPECTABLE), "Introspect", ""),
        (Some(STATS), "GetStats", ""),
        (Some(STATS), "GetAllMatchRules", ""),
        (Some(PEER), "Ping", ""),
        (Some(PEER), "GetMachineId", ""),
        (Some(PEER), "NoSuchMethod", ""),
    ];
    for path in paths {
        for (iface, member, sig) in calls {
            w.case(
                &format!("{}.{member} at {path}", iface.unwrap_or("(no interface)")),
                |w| {
                    if *iface == Some(STATS) && *member == "GetStats" {
                        w.numbers = Numbers::Shape;
                    }
                    let body = if *sig == "ss" {
                        ss_body(DRIVER, "Features")
                    } else if *sig == "s" {
                        s_body(DRIVER)
                    } else {
                        vec![]
                    };
                    let s = w.call_full("A", Some(DRIVER), path, *iface, member, sig, body, 0);
                    w.await_reply("A", s);
                },
            );
        }
    }
    // BecomeMonitor exists only at the canonical path; on a connection of
    // its own in case it succeeds.
    for path in ["/", "/org/freedesktop/DBus/Sub"] {
        w.case(&format!("BecomeMonitor at {path}"), |w| {
            w.connect("T");
            let mut body = W::new();
            body.str_array(&[]).u32(0);
            let s = w.call_full(
                "T",
                Some(DRIVER),
                path,
                Some(MONITORING),
                "BecomeMonitor",
                "asu",
                body.buf,
                0,
            );
            w.await_reply("T", s);
            w.disconnect("T");
        });
    }
    // Messages to the driver that are not method calls are ignored.
    w.case("signal addressed to the driver", |w| {
        let m = super::common::MsgBuilder::signal(0, "/org/example", "org.example.I", "Sig")
            .field_str(super::common::F_DESTINATION, 's', DRIVER);
        w.send("A", m);
    });
    w.case("method return addressed to the driver", |w| {
        let m = super::common::MsgBuilder::new(super::common::METHOD_RETURN, 0)
            .field_u32(super::common::F_REPLY_SERIAL, 1)
            .field_str(super::common::F_DESTINATION, 's', DRIVER);
        w.send("A", m);
    });
    w.case("error addressed to the driver", |w| {
        let m = super::common::MsgBuilder::new(super::common::ERROR, 0)
            .field_u32(super::common::F_REPLY_SERIAL, 1)
            .field_str(super::common::F_ERROR_NAME, 's', "org.example.Error")
            .field_str(super::common::F_DESTINATION, 's', DRIVER);
        w.send("A", m);
    });
    // Peer methods with no destination are answered by the bus.
    for member in ["Ping", "GetMachineId"] {
        w.case(&format!("Peer.{member} with no destination"), |w| {
            let s = w.call_full("A", None, "/", Some(PEER), member, "", vec![], 0);
            w.await_reply("A", s);
        });
    }
    // Calls to an activatable name and to a name nobody owns, with and
    // without NO_AUTO_START.
    for dest in [ACTIVATABLE, WK_NONE] {
        for flags in [0, NO_AUTO_START] {
            w.case(
                &format!("method call to {dest} with flags={flags:#x}"),
                |w| {
                    let s = w.call_full(
                        "A",
                        Some(dest),
                        "/",
                        Some("org.example.I"),
                        "M",
                        "",
                        vec![],
                        flags,
                    );
                    w.await_reply("A", s);
                },
            );
        }
    }
}

/// Hello again, and calls before Hello.
fn hello(w: &mut World) {
    w.case("Hello twice", |w| {
        let s = w.call("A", "Hello", "", vec![]);
        w.await_reply("A", s);
    });
    for (member, sig, body) in [
        ("GetId", "", vec![]),
        ("RequestName", "su", su_body("org.example.early", 0)),
        ("Hello", "s", s_body("x")),
    ] {
        w.case(&format!("{member}({sig}) before Hello"), |w| {
            w.connect_unregistered("U");
            let s = w.call("U", member, sig, body);
            w.await_reply("U", s);
            w.disconnect("U");
        });
    }
    w.case("Hello then Hello pipelined", |w| {
        w.connect_unregistered("U");
        let s1 = w.call("U", "Hello", "", vec![]);
        let s2 = w.call("U", "Hello", "", vec![]);
        if let Some(u) = w.await_reply_str("U", s1) {
            w.registered_as("U", &u);
        }
        w.await_reply("U", s2);
        w.disconnect("U");
    });
}

/// AddMatch, GetAllMatchRules, and RemoveMatch twice, for valid and invalid
/// rules; and RemoveMatch of rules that differ only in spelling.
fn match_rules(w: &mut World) {
    let long_arg = format!("arg0='{}'", "x".repeat(1000));
    let rules: Vec<String> = [
        "",
        "type='signal'",
        "type='method_call'",
        "type='method_return'",
        "type='error'",
        "type='nonsense'",
        "sender='org.freedesktop.DBus'",
        "sender=':1.99999'",
        "sender='not..valid'",
        "interface='org.example.I'",
        "interface='org'",
        "interface='org.example.'",
        "member='Changed'",
        "member='1bad'",
        "member='a.b'",
        "path='/org/example'",
        "path='/org/example/'",
        "path='not-a-path'",
        "path_namespace='/org/example'",
        "path_namespace='/'",
        "path='/a',path_namespace='/b'",
        "destination=':1.99999'",
        "destination='org.example.X'",
        "arg0='hello'",
        "arg63='x'",
        "arg64='x'",
        "arg0path='/a/'",
        "arg1path='/a/b'",
        "arg0namespace='org.example'",
        "arg0namespace='org..example'",
        "arg0namespace=''",
        "arg1namespace='org.example'",
        "eavesdrop='true'",
        "eavesdrop='false'",
        "eavesdrop='yes'",
        "unknown='x'",
        "type='signal',type='signal'",
        "type='signal',",
        "type='signal' , member='X'",
        "type=signal",
        "type='signal",
        "type",
        "arg0='it'\\''s'",
        "arg0=''",
        "member='Changed',interface='org.example.I',type='signal',path='/org/example'",
    ]
    .iter()
    .map(|s| s.to_string())
    .chain([long_arg])
    .collect();
    for rule in &rules {
        let label: String = rule.chars().take(80).collect();
        w.case(&format!("match rule {label:?}"), |w| {
            let s = w.call_s("A", "AddMatch", rule);
            w.await_reply("A", s);
            let s = w.call_full(
                "A",
                Some(DRIVER),
                DRIVER_PATH,
                Some(STATS),
                "GetAllMatchRules",
                "",
                vec![],
                0,
            );
            w.await_reply("A", s);
            for _ in 0..2 {
                let s = w.call_s("A", "RemoveMatch", rule);
                w.await_reply("A", s);
            }
        });
    }
    for (add, remove) in [
        ("type='signal',member='X'", "member='X',type='signal'"),
        (
            "type='signal',member='X'",
            "type='signal',member='X',member='X'",
        ),
        ("member='X'", "member='X',type='signal'"),
        ("arg0='a'", "arg0='a' "),
        ("type='signal'", "type='signal'"),
    ] {
        w.case(
            &format!("AddMatch({add:?}) then RemoveMatch({remove:?})"),
            |w| {
                let s = w.call_s("A", "AddMatch", add);
                w.await_reply("A", s);
                let s = w.call_s("A", "RemoveMatch", remove);
                w.await_reply("A", s);
                let s = w.call_s("A", "RemoveMatch", add);
                w.await_reply("A", s);
            },
        );
    }
}

/// Properties.Get/GetAll/Set, Introspect and the remaining methods.
fn properties_and_rest(w: &mut World) {
    for (iface, prop) in [
        (DRIVER, "Features"),
        (DRIVER, "Interfaces"),
        (DRIVER, "NoSuchProperty"),
        (DRIVER, ""),
        ("org.example.NoSuchInterface", "Features"),
        ("", "Features"),
        (PEER, "Features"),
        (MONITORING, "Features"),
    ] {
        w.case(&format!("Properties.Get({iface:?}, {prop:?})"), |w| {
            let s = w.call_full(
                "A",
                Some(DRIVER),
                DRIVER_PATH,
                Some(PROPS),
                "Get",
                "ss",
                ss_body(iface, prop),
                0,
            );
            w.await_reply("A", s);
        });
        w.case(
            &format!("Properties.Set({iface:?}, {prop:?}, as [])"),
            |w| {
                let mut b = W::new();
                b.str(iface).str(prop).sig("as").str_array(&[]);
                let s = w.call_full(
                    "A",
                    Some(DRIVER),
                    DRIVER_PATH,
                    Some(PROPS),
                    "Set",
                    "ssv",
                    b.buf,
                    0,
                );
                w.await_reply("A", s);
            },
        );
    }
    for iface in [
        DRIVER,
        "",
        PROPS,
        PEER,
        MONITORING,
        STATS,
        "org.example.NoSuchInterface",
    ] {
        w.case(&format!("Properties.GetAll({iface:?})"), |w| {
            let s = w.call_full(
                "A",
                Some(DRIVER),
                DRIVER_PATH,
                Some(PROPS),
                "GetAll",
                "s",
                s_body(iface),
                0,
            );
            w.await_reply("A", s);
        });
    }
    for (label, member, sig, body) in [
        ("ListNames", "ListNames", "", vec![]),
        ("ListActivatableNames", "ListActivatableNames", "", vec![]),
        ("GetId", "GetId", "", vec![]),
        ("ReloadConfig", "ReloadConfig", "", vec![]),
        (
            "UpdateActivationEnvironment([])",
            "UpdateActivationEnvironment",
            "a{ss}",
            dummy("a{ss}"),
        ),
    ] {
        w.case(label, |w| {
            reply_shape(w, DRIVER, member);
            let s = w.call("A", member, sig, body);
            w.await_reply("A", s);
        });
    }
    for pairs in [
        vec![("BUSBAR_DIFF", "1")],
        vec![("", "x")],
        vec![("A=B", "c")],
        vec![("DBUS_STARTER_ADDRESS", "x")],
        vec![("X", "1"), ("X", "2")],
    ] {
        w.case(&format!("UpdateActivationEnvironment({pairs:?})"), |w| {
            let mut b = W::new();
            b.u32(0);
            let len_at = b.buf.len() - 4;
            b.align(8);
            let start = b.buf.len();
            for (k, v) in &pairs {
                b.align(8);
                b.str(k).str(v);
            }
            let len = (b.buf.len() - start) as u32;
            b.buf[len_at..len_at + 4].copy_from_slice(&len.to_le_bytes());
            let s = w.call("A", "UpdateActivationEnvironment", "a{ss}", b.buf);
            w.await_reply("A", s);
        });
    }
    for member in ["GetStats", "GetAllMatchRules"] {
        w.case(&format!("Debug.Stats.{member}"), |w| {
            reply_shape(w, STATS, member);
            let s = w.call_full(
                "A",
                Some(DRIVER),
                DRIVER_PATH,
                Some(STATS),
                member,
                "",
                vec![],
                0,
            );
            w.await_reply("A", s);
        });
    }
    for path in [
        DRIVER_PATH,
        "/",
        "/org",
        "/org/freedesktop",
        "/org/freedesktop/DBus/Sub",
        "/x",
    ] {
        w.case(&format!("Introspect at {path}"), |w| {
            let s = w.call_full(
                "A",
                Some(DRIVER),
                path,
                Some(INTROSPECTABLE),
                "Introspect",
                "",
                vec![],
                0,
            );
            w.await_reply("A", s);
        });
    }
}

/// BecomeMonitor's arguments, each on a connection of its own (which then
/// leaves the bus); a monitor that owned names gives them up.
fn become_monitor(w: &mut World) {
    let long_rule = format!("arg0='{}'", "x".repeat(1000));
    let cases: Vec<(String, Vec<&str>, u32)> = vec![
        ("no rules".into(), vec![], 0),
        ("flags=1".into(), vec![], 1),
        ("flags=0xffffffff".into(), vec![], 0xffff_ffff),
        ("one rule".into(), vec!["type='signal'"], 0),
        ("two rules".into(), vec!["type='signal'", "member='X'"], 0),
        ("empty rule".into(), vec![""], 0),
        ("invalid rule".into(), vec!["type='nonsense'"], 0),
        (
            "valid then invalid rule".into(),
            vec!["type='signal'", "bad"],
            0,
        ),
        ("eavesdrop=false".into(), vec!["eavesdrop='false'"], 0),
        (
            "sender rule".into(),
            vec!["sender='org.freedesktop.DBus'"],
            0,
        ),
        ("long rule".into(), vec![long_rule.as_str()], 0),
    ];
    for (label, rules, flags) in &cases {
        w.case(&format!("BecomeMonitor({label})"), |w| {
            w.connect("T");
            let s = w.request("T", "org.example.monitor.owned", 0);
            w.await_reply("T", s);
            let mut b = W::new();
            b.str_array(rules).u32(*flags);
            let s = w.call_full(
                "T",
                Some(DRIVER),
                DRIVER_PATH,
                Some(MONITORING),
                "BecomeMonitor",
                "asu",
                b.buf,
                0,
            );
            w.await_reply("T", s);
            let s = w.call_s("A", "NameHasOwner", "org.example.monitor.owned");
            w.await_reply("A", s);
            w.disconnect("T");
        });
    }
}

/// Runs every case on `w`.
pub fn run_all(w: &mut World) {
    setup(w);
    name_methods(w);
    request_name_matrix(w);
    wrong_signatures(w);
    header_flags(w);
    addressing(w);
    hello(w);
    match_rules(w);
    properties_and_rest(w);
    become_monitor(w);
}
