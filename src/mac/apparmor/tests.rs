//! The decision logic of [`super`] against a scripted oracle: what is
//! queried (the exact query bytes dbus-daemon builds), which answers
//! refuse, what complain mode and unconfined labels change, and which
//! records are written with which fields. The kernel side cannot be
//! exercised on a kernel without D-Bus mediation (see the apparmor VM
//! scenario's probe).

use std::cell::RefCell;

use super::*;

/// One scripted answer: mask, query bytes, outcome.
type Answer = (u32, Vec<u8>, Result<(bool, bool), i32>);

/// Answers from a table keyed by (mask, query bytes); records the queries.
struct Script {
    answers: Vec<Answer>,
    asked: RefCell<Vec<(u32, Vec<u8>)>>,
}

impl Script {
    fn new(answers: Vec<Answer>) -> Script {
        Script {
            answers,
            asked: RefCell::new(Vec::new()),
        }
    }
}

impl Oracle for Script {
    fn query(&self, mask: u32, query: &mut Vec<u8>) -> Result<(bool, bool), i32> {
        self.asked.borrow_mut().push((mask, query.clone()));
        for (m, q, a) in &self.answers {
            if *m == mask && q == query {
                return *a;
            }
        }
        panic!(
            "unexpected query {mask:#x} {:?}",
            String::from_utf8_lossy(query)
        );
    }
}

fn con(s: &str) -> Con {
    Con::split(s)
}

#[test]
fn split_matches_aa_splitcon() {
    assert_eq!(
        con("/usr/bin/foo (enforce)"),
        Con {
            label: "/usr/bin/foo".into(),
            mode: Some("enforce".into())
        }
    );
    assert_eq!(
        con("unconfined"),
        Con {
            label: "unconfined".into(),
            mode: None
        }
    );
    assert_eq!(
        con("snap.a.b (complain)\n").mode.as_deref(),
        Some("complain")
    );
    assert!(con("unconfined").is_unconfined());
    assert!(con("foo (unconfined)").is_unconfined());
    assert!(!con("foo (enforce)").is_unconfined());
    assert!(!con("unconfined (enforce)").is_unconfined());
}

#[test]
fn query_bytes_are_dbus_daemons() {
    assert_eq!(
        service_query("p", Some("system"), "org.x"),
        b"\0\0\0\0\0\0p\0\x20system\0org.x".to_vec()
    );
    let m = Msg {
        msg_type: 1,
        path: Some("/a"),
        interface: None,
        member: Some("M"),
        error_name: None,
    };
    assert_eq!(
        message_query("p", None, Some("org.d"), Some("q"), &m),
        b"\0\0\0\0\0\0p\0\x20\0org.d\0q\0/a\0\0M".to_vec()
    );
}

fn party(c: &Con, pid: u32) -> Party<'_> {
    Party {
        con: Some(c),
        pid: Some(pid),
    }
}

#[test]
fn bind_allowed_denied_complain_unconfined_and_errors() {
    let enforce = con("p (enforce)");
    let q = service_query("p", Some("system"), "org.x");
    // Allowed, not audited: no record.
    let o = Script::new(vec![(PERM_BIND, q.clone(), Ok((true, false)))]);
    let mut log = Vec::new();
    assert!(allows_bind(
        &o,
        party(&enforce, 7),
        Some("system"),
        "org.x",
        ":1.1",
        &mut log
    )
    .is_ok());
    assert!(log.is_empty());
    // Denied and audited.
    let o = Script::new(vec![(PERM_BIND, q.clone(), Ok((false, true)))]);
    let e = allows_bind(
        &o,
        party(&enforce, 7),
        Some("system"),
        "org.x",
        ":1.1",
        &mut log,
    )
    .unwrap_err();
    assert_eq!(e.0, "org.freedesktop.DBus.Error.AccessDenied");
    assert_eq!(
        e.1,
        "Connection \":1.1\" is not allowed to own the service \"org.x\" due to AppArmor policy"
    );
    assert_eq!(
        log.pop().unwrap(),
        (
            false,
            "bind".to_string(),
            "bus=\"system\" name=\"org.x\" mask=\"bind\" pid=7 label=\"p\"".to_string()
        )
    );
    // Complain mode: allowed, still logged as the kernel said (DENIED is
    // not what dbus-daemon logs: it logs the final allow).
    let complain = con("p (complain)");
    let o = Script::new(vec![(PERM_BIND, q.clone(), Ok((false, true)))]);
    assert!(allows_bind(
        &o,
        party(&complain, 7),
        Some("system"),
        "org.x",
        ":1.1",
        &mut log
    )
    .is_ok());
    assert!(log.pop().unwrap().0);
    // Unconfined: never queried.
    let unconfined = con("unconfined");
    let o = Script::new(vec![]);
    assert!(allows_bind(
        &o,
        party(&unconfined, 7),
        Some("system"),
        "org.x",
        ":1.1",
        &mut log
    )
    .is_ok());
    assert!(o.asked.borrow().is_empty() && log.is_empty());
    // A failed query refuses with the errno's error and logs info=.
    let o = Script::new(vec![(PERM_BIND, q, Err(libc::EACCES))]);
    let e = allows_bind(
        &o,
        party(&enforce, 7),
        Some("system"),
        "org.x",
        ":1.1",
        &mut log,
    )
    .unwrap_err();
    assert_eq!(e.1, "Failed to query AppArmor policy: Permission denied");
    assert!(log.pop().unwrap().2.contains("info=\"Permission denied\""));
}

fn msg<'a>(t: u8) -> Msg<'a> {
    Msg {
        msg_type: t,
        path: Some("/o"),
        interface: Some("org.i"),
        member: Some("M"),
        error_name: None,
    }
}

struct Case {
    src: &'static str,
    dst: Option<&'static str>,
    send: Option<Result<(bool, bool), i32>>,
    recv: Option<Result<(bool, bool), i32>>,
    t: u8,
    requested_reply: bool,
    want_ok: bool,
    records: usize,
}

fn run(c: &Case) -> (Result<(), Refusal>, Vec<Record>, usize) {
    let src = con(c.src);
    let dst = c.dst.map(con);
    let bus = con("unconfined");
    let m = msg(c.t);
    let dst_label = dst
        .as_ref()
        .map(|d| d.label.as_str())
        .or(Some("unconfined"));
    let mut answers = Vec::new();
    if let Some(a) = c.send {
        answers.push((
            PERM_SEND,
            message_query(&src.label, Some("system"), Some("org.d"), dst_label, &m),
            a,
        ));
    }
    if let Some(a) = c.recv {
        answers.push((
            PERM_RECEIVE,
            message_query(
                dst_label.unwrap_or(""),
                Some("system"),
                Some(":1.5"),
                Some(&src.label),
                &m,
            ),
            a,
        ));
    }
    let o = Script::new(answers);
    let text = || "refused".to_string();
    let s = Send {
        src: party(&src, 10),
        dst: dst.as_ref().map(|d| party(d, 20)),
        bus: &bus,
        activation: false,
        requested_reply: c.requested_reply,
        bustype: Some("system"),
        msg: m,
        destination: "org.d",
        source: ":1.5",
        refusal_text: &text,
    };
    let mut log = Vec::new();
    let r = allows_send(&o, &s, &mut log);
    let n = o.asked.borrow().len();
    (r, log, n)
}

#[test]
fn send_and_receive_table() {
    use policy::msg_type::*;
    let cases = [
        // Both confined, both allowed, not audited.
        Case {
            src: "a (enforce)",
            dst: Some("b (enforce)"),
            send: Some(Ok((true, false))),
            recv: Some(Ok((true, false))),
            t: METHOD_CALL,
            requested_reply: false,
            want_ok: true,
            records: 0,
        },
        // Send denied and audited; receive still asked.
        Case {
            src: "a (enforce)",
            dst: Some("b (enforce)"),
            send: Some(Ok((false, true))),
            recv: Some(Ok((true, false))),
            t: METHOD_CALL,
            requested_reply: false,
            want_ok: false,
            records: 1,
        },
        // Receive denied and audited.
        Case {
            src: "a (enforce)",
            dst: Some("b (enforce)"),
            send: Some(Ok((true, false))),
            recv: Some(Ok((false, true))),
            t: SIGNAL,
            requested_reply: false,
            want_ok: false,
            records: 1,
        },
        // Both audited: two records.
        Case {
            src: "a (enforce)",
            dst: Some("b (enforce)"),
            send: Some(Ok((true, true))),
            recv: Some(Ok((true, true))),
            t: METHOD_CALL,
            requested_reply: false,
            want_ok: true,
            records: 2,
        },
        // Replies and errors are never audited.
        Case {
            src: "a (enforce)",
            dst: Some("b (enforce)"),
            send: Some(Ok((false, true))),
            recv: Some(Ok((true, true))),
            t: METHOD_RETURN,
            requested_reply: false,
            want_ok: false,
            records: 0,
        },
        Case {
            src: "a (enforce)",
            dst: Some("b (enforce)"),
            send: Some(Ok((true, true))),
            recv: Some(Ok((true, true))),
            t: ERROR,
            requested_reply: false,
            want_ok: true,
            records: 0,
        },
        // A requested reply is not queried at all.
        Case {
            src: "a (enforce)",
            dst: Some("b (enforce)"),
            send: None,
            recv: None,
            t: METHOD_RETURN,
            requested_reply: true,
            want_ok: true,
            records: 0,
        },
        // Unconfined sender: only the receiver is asked.
        Case {
            src: "unconfined",
            dst: Some("b (enforce)"),
            send: None,
            recv: Some(Ok((false, true))),
            t: METHOD_CALL,
            requested_reply: false,
            want_ok: false,
            records: 1,
        },
        // Unconfined receiver: only the sender is asked.
        Case {
            src: "a (enforce)",
            dst: Some("unconfined"),
            send: Some(Ok((true, false))),
            recv: None,
            t: METHOD_CALL,
            requested_reply: false,
            want_ok: true,
            records: 0,
        },
        // Complain mode on either side never refuses.
        Case {
            src: "a (complain)",
            dst: Some("b (enforce)"),
            send: Some(Ok((false, true))),
            recv: Some(Ok((true, false))),
            t: METHOD_CALL,
            requested_reply: false,
            want_ok: true,
            records: 1,
        },
        Case {
            src: "a (enforce)",
            dst: Some("b (complain)"),
            send: Some(Ok((true, false))),
            recv: Some(Ok((false, true))),
            t: METHOD_CALL,
            requested_reply: false,
            want_ok: true,
            records: 1,
        },
        // To the driver: the bus is unconfined, only the sender is asked.
        Case {
            src: "a (enforce)",
            dst: None,
            send: Some(Ok((false, false))),
            recv: None,
            t: METHOD_CALL,
            requested_reply: false,
            want_ok: false,
            records: 0,
        },
        // A failed send query: refused, the receiver not asked, both logged.
        Case {
            src: "a (enforce)",
            dst: Some("b (enforce)"),
            send: Some(Err(libc::ENOENT)),
            recv: None,
            t: METHOD_CALL,
            requested_reply: false,
            want_ok: false,
            records: 2,
        },
    ];
    for (i, c) in cases.iter().enumerate() {
        let (r, log, _) = run(c);
        assert_eq!(r.is_ok(), c.want_ok, "case {i}: {r:?}");
        assert_eq!(log.len(), c.records, "case {i}: {log:?}");
    }
}

#[test]
fn send_records_have_dbus_daemons_fields() {
    let c = Case {
        src: "a (enforce)",
        dst: Some("b (enforce)"),
        send: Some(Ok((false, true))),
        recv: Some(Ok((false, true))),
        t: policy::msg_type::METHOD_CALL,
        requested_reply: false,
        want_ok: false,
        records: 2,
    };
    let (r, log, asked) = run(&c);
    assert_eq!(
        r.unwrap_err(),
        ("org.freedesktop.DBus.Error.AccessDenied", "refused".into())
    );
    assert_eq!(asked, 2);
    assert_eq!(
        log[0],
        (
            false,
            "method_call".into(),
            "bus=\"system\" path=\"/o\" interface=\"org.i\" member=\"M\" mask=\"send\" \
             name=\"org.d\" pid=10 label=\"a\" peer_pid=20 peer_label=\"b\""
                .into()
        )
    );
    assert_eq!(
        log[1],
        (
            false,
            "method_call".into(),
            "bus=\"system\" path=\"/o\" interface=\"org.i\" member=\"M\" name=\":1.5\" \
             mask=\"receive\" pid=20 label=\"b\" peer_pid=10 peer_label=\"a\""
                .into()
        )
    );
}

#[test]
fn eavesdrop() {
    let p = con("p (enforce)");
    let q = common_query("p", Some("session"));
    let o = Script::new(vec![(PERM_EAVESDROP, q, Ok((false, true)))]);
    let mut log = Vec::new();
    let e = allows_eavesdrop(&o, party(&p, 3), Some("session"), ":1.9", &mut log).unwrap_err();
    assert_eq!(
        e.1,
        "Connection \":1.9\" is not allowed to eavesdrop due to AppArmor policy"
    );
    assert_eq!(
        log[0].2,
        "bus=\"session\" mask=\"eavesdrop\" pid=3 label=\"p\""
    );
}
