//! org.freedesktop.DBus.Debug.Stats: the keys dbus-daemon reports and
//! figures that follow what the bus holds.

use crate::common;

use common::*;

const STATS: &str = "org.freedesktop.DBus.Debug.Stats";

fn stats_call(c: &mut Client, member: &str, sig: &str, body: Vec<u8>) -> Msg {
    let mut m = MsgBuilder::method_call(0, Some(DRIVER), DRIVER_PATH, Some(STATS), member);
    if !sig.is_empty() {
        m = m.body(sig, body);
    }
    let serial = c.send(m);
    c.wait_reply(serial)
}

fn value(d: &[(String, String, String)], k: &str) -> String {
    d.iter()
        .find(|(key, _, _)| key == k)
        .map(|(_, _, v)| v.clone())
        .unwrap_or_else(|| panic!("no key {k} in {d:?}"))
}

#[test]
fn get_stats_has_dbus_daemon_keys_and_counts() {
    let bus = Bus::start();
    let mut a = Client::connect(&bus);
    let mut b = Client::connect(&bus);
    a.add_match("type='signal',interface='com.example.Stats'");
    a.add_match("type='signal',member='Two'");
    b.add_match("type='signal'");
    assert_eq!(a.request_name("com.example.Stats", 0), 1);
    let r = stats_call(&mut a, "GetStats", "", Vec::new());
    assert_eq!(r.msg_type, METHOD_RETURN, "{:?}", r.error_name);
    assert_eq!(r.signature, "a{sv}");
    let d = r.reader().dict_sv();
    for k in [
        "Serial",
        "ListMemPoolUsedBytes",
        "ListMemPoolCachedBytes",
        "ListMemPoolAllocatedBytes",
        "ActiveConnections",
        "IncompleteConnections",
        "MatchRules",
        "PeakMatchRules",
        "PeakMatchRulesPerConnection",
        "BusNames",
        "PeakBusNames",
        "PeakBusNamesPerConnection",
    ] {
        value(&d, k);
    }
    assert_eq!(value(&d, "ActiveConnections"), "2");
    assert_eq!(value(&d, "MatchRules"), "3");
    assert_eq!(value(&d, "PeakMatchRulesPerConnection"), "2");
    // Two unique names and one well-known name.
    assert_eq!(value(&d, "BusNames"), "3");
}

#[test]
fn connection_stats_and_match_rules() {
    let bus = Bus::start();
    let mut a = Client::connect(&bus);
    let me = a.unique_name.clone();
    a.add_match("type='signal',interface='com.example.Stats'");
    let mut w = W::new();
    w.str(&me);
    let r = stats_call(&mut a, "GetConnectionStats", "s", w.buf);
    assert_eq!(r.msg_type, METHOD_RETURN, "{:?}", r.error_name);
    let d = r.reader().dict_sv();
    assert_eq!(value(&d, "UniqueName"), me);
    assert_eq!(value(&d, "MatchRules"), "1");
    for k in [
        "Serial",
        "PeakMatchRules",
        "BusNames",
        "PeakBusNames",
        "IncomingMessages",
        "IncomingBytes",
        "IncomingFDs",
        "PeakIncomingBytes",
        "PeakIncomingFDs",
        "OutgoingMessages",
        "OutgoingBytes",
        "OutgoingFDs",
        "PeakOutgoingBytes",
        "PeakOutgoingFDs",
    ] {
        value(&d, k);
    }
    // Queue sizes now (as libdbus reports them): nothing is waiting.
    assert_eq!(value(&d, "IncomingMessages"), "0");
    assert!(value(&d, "PeakIncomingBytes").parse::<u32>().unwrap() > 0);
    // The bus itself has no connection statistics.
    let mut w = W::new();
    w.str(DRIVER);
    let r = stats_call(&mut a, "GetConnectionStats", "s", w.buf);
    assert_eq!(
        r.error_name.as_deref(),
        Some("org.freedesktop.DBus.Error.InvalidArgs")
    );
    let r = stats_call(&mut a, "GetAllMatchRules", "", Vec::new());
    assert_eq!(r.signature, "a{sas}");
    let body = String::from_utf8_lossy(&r.body).into_owned();
    assert!(body.contains(&me), "{body}");
    assert!(body.contains("interface='com.example.Stats'"), "{body}");
}
