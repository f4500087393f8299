//! What a monitor (BecomeMonitor) sees, message by message, while
//! connections come and go and names are requested, queued, replaced and
//! released.
//!
//! After each step the observer broadcasts a "Sentinel" signal carrying the
//! step number; the monitor's record of the step is every message up to
//! that signal. Steps run one after another, each waiting for its replies
//! (and disconnections for the observer's NameOwnerChanged), so the order
//! in which the bus handles them is fixed.

use super::common::{MsgBuilder, DRIVER, DRIVER_PATH, W};
use super::world::{World, OBSERVER_RULE};

const MONITORING: &str = "org.freedesktop.DBus.Monitoring";

fn become_monitor(w: &mut World, role: &str, rules: &[&str]) {
    let mut b = W::new();
    b.str_array(rules).u32(0);
    let s = w.call_full(
        role,
        Some(DRIVER),
        DRIVER_PATH,
        Some(MONITORING),
        "BecomeMonitor",
        "asu",
        b.buf,
        0,
    );
    w.await_reply(role, s);
    // a monitor may not send, so it no longer takes part in barriers
    w.set_unregistered(role);
}

/// Broadcasts sentinel `k` from O and records what each monitor in
/// `monitors` receives up to it.
fn sentinel(w: &mut World, k: u32, monitors: &[&str]) {
    w.settle();
    let mut b = W::new();
    b.u32(k);
    let m = MsgBuilder::signal(0, "/org/example", "org.example.Diff", "Sentinel").body("u", b.buf);
    w.send("O", m);
    for mon in monitors {
        w.read_until(mon, |m| {
            m.member.as_deref() == Some("Sentinel") && m.reader().u32() == k
        });
    }
}

fn request(w: &mut World, role: &str, name: &str, flags: u32) {
    let s = w.request(role, name, flags);
    w.await_reply(role, s);
}

fn release(w: &mut World, role: &str, name: &str) {
    let s = w.call_s(role, "ReleaseName", name);
    w.await_reply(role, s);
}

/// Runs the monitor scenario on `w` (a fresh bus).
pub fn run_all(w: &mut World) {
    w.case("monitor: observer connects", |w| {
        w.connect("O");
        w.learn_bus_id("O");
        let s = w.call_s("O", "AddMatch", OBSERVER_RULE);
        w.await_reply("O", s);
    });
    w.case("monitor: BecomeMonitor", |w| {
        w.connect("M");
        request(w, "M", "org.example.mon.Owned", 0);
        become_monitor(w, "M", &[]);
        sentinel(w, 1, &["M"]);
    });
    w.case("monitor: connect and Hello", |w| {
        w.connect("A");
        sentinel(w, 2, &["M"]);
    });
    w.case("monitor: RequestName", |w| {
        request(w, "A", "org.example.mon.X", 0);
        request(w, "A", "org.example.mon.X", 0);
        sentinel(w, 3, &["M"]);
    });
    w.case("monitor: queueing", |w| {
        w.connect("B");
        request(w, "B", "org.example.mon.X", 0);
        request(w, "B", "org.example.mon.X", 4);
        sentinel(w, 4, &["M"]);
    });
    w.case("monitor: ReleaseName hands over to the queue", |w| {
        release(w, "A", "org.example.mon.X");
        release(w, "A", "org.example.mon.X");
        sentinel(w, 5, &["M"]);
    });
    w.case("monitor: replacement", |w| {
        request(w, "B", "org.example.mon.Y", 1);
        request(w, "A", "org.example.mon.Y", 2);
        sentinel(w, 6, &["M"]);
    });
    w.case("monitor: replacement refused", |w| {
        request(w, "B", "org.example.mon.Z", 0);
        request(w, "A", "org.example.mon.Z", 2);
        request(w, "A", "org.example.mon.Z", 6);
        sentinel(w, 7, &["M"]);
    });
    w.case("monitor: driver errors", |w| {
        request(w, "A", "not a name", 0);
        release(w, "A", "org.example.mon.Nobody");
        let s = w.call("A", "NoSuchMethod", "", vec![]);
        w.await_reply("A", s);
        sentinel(w, 8, &["M"]);
    });
    w.case("monitor: unicast call and reply between peers", |w| {
        let b = w.unique("B");
        let s = w.call_full(
            "A",
            Some(&b),
            "/org/example",
            Some("org.example.I"),
            "M",
            "",
            vec![],
            0,
        );
        w.await_call("B", s);
        let r = MsgBuilder::new(super::common::METHOD_RETURN, 0)
            .field_u32(super::common::F_REPLY_SERIAL, s)
            .field_str(super::common::F_DESTINATION, 's', &w.unique("A"));
        w.send("B", r);
        w.await_reply("A", s);
        sentinel(w, 9, &["M"]);
    });
    w.case("monitor: disconnect while owning and queued", |w| {
        request(w, "A", "org.example.mon.W", 0);
        w.disconnect("A");
        sentinel(w, 10, &["M"]);
    });
    w.case("monitor: a second, filtered monitor", |w| {
        w.connect("N");
        become_monitor(w, "N", &["member='RequestName'", "member='Sentinel'"]);
        sentinel(w, 11, &["M", "N"]);
    });
    w.case("monitor: what the filtered monitor sees", |w| {
        w.connect("C");
        request(w, "C", "org.example.mon.V", 0);
        let s = w.call("C", "GetId", "", vec![]);
        w.await_reply("C", s);
        sentinel(w, 12, &["M", "N"]);
    });
    w.case("monitor: monitor disconnects", |w| {
        w.disconnect("N");
        sentinel(w, 13, &["M"]);
    });
    w.case("monitor: last owner leaves", |w| {
        w.disconnect("B");
        w.disconnect("C");
        sentinel(w, 14, &["M"]);
    });
}
