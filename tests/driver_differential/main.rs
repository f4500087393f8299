//! Differential test of the bus driver: the same cases against busbar (or
//! whatever `BUSBAR_TEST_DAEMON` names) and /usr/bin/dbus-daemon, started
//! in the same run, and every outcome must be the same.
//!
//! A case is a short script of calls from a few raw clients (A is the
//! caller, B and C other connections, O an observer subscribed to every
//! signal the bus sends, T/U short-lived connections, M/N monitors). Its
//! outcome is everything every client received, header and body, decoded
//! from the signature, in order. What may legitimately differ between two
//! daemons is normalised in render.rs, each rule explained there:
//!   * unique names by role (":1.7" -> "<B>"), made-up ones by order of
//!     appearance ("<?0>");
//!   * the server GUID -> "<guid>"; the daemon's pid -> "<daemon-pid>", this
//!     process's pid (every client's) -> "<test-pid>";
//!   * serials of messages the bus sends (its own counter) are left out;
//!   * Debug.Stats numbers by shape (key and type, not value);
//!   * dict entries sorted; ListNames/ListActivatableNames sorted (both are
//!     hash-table order in dbus-daemon).
//!
//! Error names and error messages (the body of an error) are compared
//! exactly: dbus-daemon's texts are fixed strings with the arguments
//! substituted, which clients show to users and some tests match.
//!
//! There is no allow-list of differences ([`ALLOWED`] is empty): an entry
//! may only be added where dbus-daemon's behaviour is a documented bug,
//! naming the bug.

#[path = "../common/mod.rs"]
mod common;

mod cases;
mod monitor;
mod render;
mod world;

use std::path::{Path, PathBuf};
use std::time::Instant;

use world::World;

const DBUS_DAEMON: &str = "/usr/bin/dbus-daemon";

/// Cases whose outcomes may differ: (case name, the dbus-daemon bug, by
/// link or issue number). Empty, and should stay so.
const ALLOWED: &[(&str, &str)] = &[];

/// The reference daemon, or None (after saying why) when the test cannot
/// run here; under CI that is a failure, not a skip.
fn reference() -> Option<&'static str> {
    if Path::new(DBUS_DAEMON).exists() {
        return Some(DBUS_DAEMON);
    }
    let why = format!("the driver differential needs {DBUS_DAEMON}");
    assert!(std::env::var_os("CI").is_none(), "{why} (CI is set)");
    use std::io::Write;
    let _ = writeln!(std::io::stderr(), "SKIPPED: {why}");
    None
}

fn service_dir(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("busbar-driverdiff-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).expect("create service dir");
    std::fs::write(
        d.join(format!("{}.service", cases::ACTIVATABLE)),
        format!(
            "[D-BUS Service]\nName={}\nExec=/bin/false\n",
            cases::ACTIVATABLE
        ),
    )
    .expect("write .service file");
    d
}

/// Runs the method-call cases and the monitor scenario against `daemon`.
fn run(daemon: &str, tag: &str) -> Vec<(String, String)> {
    let dir = service_dir(tag);
    let extra = format!("<servicedir>{}</servicedir>", dir.display());
    let mut w = World::start(daemon, &extra);
    cases::run_all(&mut w);
    let mut out = std::mem::take(&mut w.outcomes);
    drop(w);
    let mut m = World::start(daemon, "");
    monitor::run_all(&mut m);
    out.append(&mut m.outcomes);
    let _ = std::fs::remove_dir_all(&dir);
    out
}

fn dump(path: &Path, outcomes: &[(String, String)]) {
    let mut text = String::new();
    for (case, outcome) in outcomes {
        text.push_str(&format!("== {case}\n{outcome}\n"));
    }
    std::fs::write(path, text).expect("write outcomes");
}

#[test]
fn driver_matches_dbus_daemon() {
    let Some(reference) = reference() else {
        return;
    };
    let subject = common::daemon_path();
    let started = Instant::now();
    let (ours, theirs) = std::thread::scope(|s| {
        let a = s.spawn(|| run(&subject, "subject"));
        let b = s.spawn(|| run(reference, "reference"));
        (
            a.join().expect("subject run"),
            b.join().expect("reference run"),
        )
    });
    let names = |v: &[(String, String)]| v.iter().map(|(c, _)| c.clone()).collect::<Vec<_>>();
    assert_eq!(names(&ours), names(&theirs), "the runs ran different cases");
    let mut seen = std::collections::HashSet::new();
    for (c, _) in &ours {
        assert!(seen.insert(c.clone()), "case name {c:?} is not unique");
    }
    let mut mismatches = Vec::new();
    let mut tolerated = Vec::new();
    for ((case, a), (_, b)) in ours.iter().zip(&theirs) {
        if a == b {
            continue;
        }
        match ALLOWED.iter().find(|(c, _)| c == case) {
            Some((_, bug)) => tolerated.push((case, *bug)),
            None => mismatches.push((case, a, b)),
        }
    }
    println!(
        "{} driver cases against {subject} and {reference} in {:.1}s",
        ours.len(),
        started.elapsed().as_secs_f64()
    );
    for (case, bug) in &tolerated {
        println!("allowed difference: {case} ({bug})");
    }
    assert!(ours.len() >= 300, "only {} cases", ours.len());
    if !mismatches.is_empty() {
        let dir = std::env::temp_dir().join(format!("busbar-driverdiff-{}", std::process::id()));
        let _ = std::fs::create_dir_all(&dir);
        dump(&dir.join("subject.txt"), &ours);
        dump(&dir.join("reference.txt"), &theirs);
        for (case, a, b) in &mismatches {
            println!("\nMISMATCH {case}\n--- {subject}\n{a}\n--- {reference}\n{b}");
        }
        panic!(
            "{} of {} cases differ from dbus-daemon (all outcomes in {})",
            mismatches.len(),
            ours.len(),
            dir.display()
        );
    }
}

/// The normalisation must not hide what the test is for: different roles
/// stay different, and a pid that is not a daemon's stays a number.
#[test]
fn normalisation_keeps_roles_apart() {
    let mut n = render::Norm::new(4242, "0123456789abcdef0123456789abcdef".into());
    n.add_role(":1.1", "A");
    n.add_role(":1.10", "B");
    assert_eq!(
        n.apply("s=\":1.1\" s=\":1.10\" ':1.99'. :1.1. 4242 42420 x4242y <0123456789abcdef0123456789abcdef>"),
        "s=\"<A>\" s=\"<B>\" '<?0>'. <A>. <daemon-pid> 42420 x4242y <<guid>>"
    );
    assert_ne!(n.apply("u=:1.1"), n.apply("u=:1.10"));
    // A reply serial equal to the daemon's pid stays a number.
    assert_eq!(
        n.apply("reply_to=4242 u 4242"),
        "reply_to=4242 u <daemon-pid>"
    );
}
