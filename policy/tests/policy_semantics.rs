//! Policy semantics: precedence, prefixes, requested replies, broadcasts,
//! fds, eavesdropping, user checks, and the shipped configurations.

use std::path::Path;

use policy::{msg_type, LoadOptions, MessageFacts};

fn opts() -> LoadOptions {
    LoadOptions {
        xdg_runtime_dir: Some("/run/user/1000".into()),
        xdg_data_home: None,
        xdg_data_dirs: None,
        home: Some("/home/u".into()),
        selinux_enabled: false,
        selinux_policy_root: None,
        user_id: Box::new(|n| match n {
            "alice" => Some(1000),
            "bob" => Some(1001),
            "root" => Some(0),
            _ => None,
        }),
        group_id: Box::new(|n| (n == "staff").then_some(50)),
    }
}

fn load(body: &str) -> policy::Config {
    let text = format!("<busconfig><listen>unix:path=/x</listen>{body}</busconfig>");
    policy::load_str_with(&text, Path::new("/nonexistent/test.conf"), &opts()).unwrap()
}

fn load_err(body: &str) -> String {
    let text = format!("<busconfig><listen>unix:path=/x</listen>{body}</busconfig>");
    policy::load_str_with(&text, Path::new("/nonexistent/test.conf"), &opts())
        .unwrap_err()
        .to_string()
}

fn call<'a>(dest: &'a str, iface: Option<&'a str>, member: &'a str) -> MessageFacts<'a> {
    MessageFacts {
        msg_type: msg_type::METHOD_CALL,
        path: Some("/"),
        interface: iface,
        member: Some(member),
        destination: Some(dest),
        ..Default::default()
    }
}

fn reply(ty: u8) -> MessageFacts<'static> {
    MessageFacts {
        msg_type: ty,
        destination: Some(":1.1"),
        ..Default::default()
    }
}

#[test]
fn precedence_default_group_user_console_mandatory() {
    let c = load(
        r#"<policy context="default"><deny own="a.b"/></policy>
           <policy context="mandatory"><deny own="m.m"/></policy>
           <policy group="staff"><allow own="a.b"/><allow own="g.g"/><allow own="m.m"/></policy>
           <policy user="alice"><deny own="g.g"/><allow own="u.u"/></policy>
           <policy at_console="true"><allow own="c.c"/><allow own="g.g"/></policy>
           <policy at_console="false"><deny own="u.u"/></policy>"#,
    );
    let p = &c.policy;
    let alice_console = p.for_connection(Some(1000), &[50], true);
    assert!(alice_console.can_own("a.b"));
    assert!(alice_console.can_own("g.g")); // console overrides user
    assert!(alice_console.can_own("u.u"));
    assert!(alice_console.can_own("c.c"));
    assert!(!alice_console.can_own("m.m")); // mandatory wins
    let alice = p.for_connection(Some(1000), &[50], false);
    assert!(!alice.can_own("g.g")); // user overrides group
    assert!(!alice.can_own("u.u")); // at_console=false comes after user
    assert!(!alice.can_own("c.c"));
    let bob = p.for_connection(Some(1001), &[], false);
    assert!(!bob.can_own("a.b"));
    assert!(!bob.can_own("anything"));
    let anon = p.for_connection(None, &[], true);
    assert!(!anon.can_own("c.c")); // no console rules without a uid
}

#[test]
fn unknown_users_and_groups_are_ignored() {
    let c = load(
        r#"<policy user="nosuchuser"><allow own="x.y"/></policy><policy context="default"><allow user="nosuchuser"/></policy>"#,
    );
    assert!(!c
        .policy
        .for_connection(Some(1000), &[], false)
        .can_own("x.y"));
    assert_eq!(c.warnings.len(), 2, "{:?}", c.warnings);
}

#[test]
fn own_prefix_and_wildcard() {
    let c = load(
        r#"<policy context="default"><allow own_prefix="org.example"/><deny own="org.example.No"/></policy>"#,
    );
    let p = c.policy.for_connection(Some(1000), &[], false);
    assert!(p.can_own("org.example"));
    assert!(p.can_own("org.example.Foo.Bar"));
    assert!(!p.can_own("org.examples"));
    assert!(!p.can_own("org.example.No"));
    let c = load(r#"<policy context="default"><deny own="a.b"/><allow own="*"/></policy>"#);
    assert!(c
        .policy
        .for_connection(Some(1000), &[], false)
        .can_own("a.b"));
}

#[test]
fn send_destination_and_prefix() {
    let c = load(
        r#"<policy context="default">
             <allow send_destination="org.example.A"/>
             <allow send_destination_prefix="org.prefix"/>
             <deny send_destination="org.prefix.Secret" send_interface="org.prefix.Admin"/>
           </policy>"#,
    );
    let p = c.policy.for_connection(Some(1000), &[], false);
    let m = call("org.example.A", Some("i.f"), "M");
    assert!(
        p.can_send(&m, &[":1.5", "org.example.A"], false, false)
            .allowed
    );
    assert!(!p.can_send(&m, &[":1.5"], false, false).allowed);
    let m = call("org.prefix.X", Some("i.f"), "M");
    assert!(
        p.can_send(&m, &[":1.6", "org.prefix.X"], false, false)
            .allowed
    );
    assert!(
        p.can_send(&m, &[":1.6", "org.prefix"], false, false)
            .allowed
    );
    assert!(
        !p.can_send(&m, &[":1.6", "org.prefixes"], false, false)
            .allowed
    );
    let m = call("org.prefix.Secret", Some("org.prefix.Admin"), "M");
    let v = p.can_send(&m, &["org.prefix.Secret"], false, false);
    assert!(!v.allowed);
    assert_eq!(v.matched_rules, 2);
    // deny rules with an interface also match messages without one
    let m = call("org.prefix.Secret", None, "M");
    assert!(!p.can_send(&m, &["org.prefix.Secret"], false, false).allowed);
}

#[test]
fn allow_with_interface_needs_interface() {
    let c = load(r#"<policy context="default"><allow send_interface="org.example.I"/></policy>"#);
    let p = c.policy.for_connection(Some(1000), &[], false);
    assert!(
        p.can_send(
            &call("a.b", Some("org.example.I"), "M"),
            &["a.b"],
            false,
            false
        )
        .allowed
    );
    assert!(
        !p.can_send(&call("a.b", None, "M"), &["a.b"], false, false)
            .allowed
    );
    assert!(
        !p.can_send(
            &call("a.b", Some("org.example.J"), "M"),
            &["a.b"],
            false,
            false
        )
        .allowed
    );
}

#[test]
fn requested_reply_semantics() {
    // stock system.conf style
    let c = load(
        r#"<policy context="default">
             <allow send_requested_reply="true" send_type="method_return"/>
             <allow send_requested_reply="true" send_type="error"/>
           </policy>"#,
    );
    let p = c.policy.for_connection(Some(1000), &[], false);
    let r = reply(msg_type::METHOD_RETURN);
    assert!(p.can_send(&r, &[":1.1"], true, false).allowed);
    assert!(!p.can_send(&r, &[":1.1"], false, false).allowed);
    // allow rules without send_requested_reply default to requested replies only
    let c = load(r#"<policy context="default"><allow send_destination="*"/></policy>"#);
    let p = c.policy.for_connection(Some(1000), &[], false);
    assert!(p.can_send(&r, &[":1.1"], true, false).allowed);
    assert!(!p.can_send(&r, &[":1.1"], false, false).allowed);
    // ... unless they also allow eavesdropping, or say requested_reply=false
    for rule in [
        r#"<allow send_destination="*" eavesdrop="true"/>"#,
        r#"<allow send_destination="*" send_requested_reply="false"/>"#,
    ] {
        let c = load(&format!(r#"<policy context="default">{rule}</policy>"#));
        let p = c.policy.for_connection(Some(1000), &[], false);
        assert!(p.can_send(&r, &[":1.1"], false, false).allowed, "{rule}");
    }
    // deny rules default to unrequested replies only
    let c = load(
        r#"<policy context="default"><allow send_requested_reply="false" send_type="*"/><deny send_type="method_return"/></policy>"#,
    );
    let p = c.policy.for_connection(Some(1000), &[], false);
    assert!(p.can_send(&r, &[":1.1"], true, false).allowed);
    assert!(!p.can_send(&r, &[":1.1"], false, false).allowed);
    let c = load(
        r#"<policy context="default"><allow send_requested_reply="false" send_type="*"/><deny send_type="method_return" send_requested_reply="true"/></policy>"#,
    );
    let p = c.policy.for_connection(Some(1000), &[], false);
    assert!(!p.can_send(&r, &[":1.1"], true, false).allowed);
}

#[test]
fn broadcast_rules() {
    let c = load(
        r#"<policy context="default">
             <allow send_type="signal" send_broadcast="true"/>
             <allow send_destination="a.b" send_broadcast="false" send_type="signal"/>
           </policy>"#,
    );
    let p = c.policy.for_connection(Some(1000), &[], false);
    let bcast = MessageFacts {
        msg_type: msg_type::SIGNAL,
        path: Some("/"),
        interface: Some("i.f"),
        member: Some("S"),
        ..Default::default()
    };
    assert!(p.can_send(&bcast, &[":1.9"], false, false).allowed);
    let uni = MessageFacts {
        destination: Some(":1.9"),
        ..bcast
    };
    assert!(!p.can_send(&uni, &[":1.9"], false, false).allowed);
    let uni = MessageFacts {
        destination: Some("a.b"),
        ..bcast
    };
    assert!(p.can_send(&uni, &["a.b"], false, false).allowed);
    assert_eq!(
        load_err(
            r#"<policy context="default"><allow send_broadcast="true" send_destination="x.y"/></policy>"#
        ),
        "Rule with send_broadcast=\"true\" and send_destination=\"x.y\" cannot match anything"
    );
}

#[test]
fn fd_rules_and_log() {
    let c = load(
        r#"<policy context="default">
             <allow send_destination="*"/>
             <deny send_path="/" min_fds="1" log="true"/>
             <allow receive_sender="*"/>
             <deny receive_path="/" max_fds="2" min_fds="2"/>
           </policy>"#,
    );
    let p = c.policy.for_connection(Some(1000), &[], false);
    let mut m = call("a.b", Some("i.f"), "M");
    assert!(p.can_send(&m, &["a.b"], false, false).allowed);
    m.unix_fds = 3;
    let v = p.can_send(&m, &["a.b"], false, false);
    assert!(!v.allowed && v.log);
    assert!(p.can_receive(&m, &[":1.2"], false, false).allowed);
    m.unix_fds = 2;
    assert!(!p.can_receive(&m, &[":1.2"], false, false).allowed);
}

#[test]
fn fd_only_rules_count_as_wildcards_like_dbus() {
    // dbus-daemon's optimisation ignores min_fds/max_fds: this deny drops
    // the allow before it, so fd-less messages match nothing at all.
    let c = load(
        r#"<policy context="default"><allow send_destination="*"/><deny send_destination="*" min_fds="1"/></policy>"#,
    );
    let p = c.policy.for_connection(Some(1000), &[], false);
    let v = p.can_send(&call("a.b", Some("i.f"), "M"), &["a.b"], false, false);
    assert_eq!((v.allowed, v.matched_rules), (false, 0));
}

#[test]
fn receive_and_eavesdrop() {
    let c = load(
        r#"<policy context="default">
             <allow receive_sender="org.example.S"/>
             <deny receive_interface="org.example.Secret" eavesdrop="true"/>
           </policy>"#,
    );
    let p = c.policy.for_connection(Some(1000), &[], false);
    let m = call("x.y", Some("org.example.Secret"), "M");
    assert!(
        p.can_receive(&m, &[":1.3", "org.example.S"], false, false)
            .allowed
    );
    // allow rules without eavesdrop="true" do not apply when eavesdropping
    assert!(
        !p.can_receive(&m, &[":1.3", "org.example.S"], false, true)
            .allowed
    );
    let c = load(
        r#"<policy context="default"><allow eavesdrop="true"/><deny receive_sender="a.b" eavesdrop="true"/></policy>"#,
    );
    let p = c.policy.for_connection(Some(1000), &[], false);
    let m = call("x.y", Some("i.f"), "M");
    assert!(p.can_receive(&m, &["c.d"], false, true).allowed);
    assert!(!p.can_receive(&m, &["a.b"], false, true).allowed);
    assert!(p.can_receive(&m, &["a.b"], false, false).allowed); // deny eavesdrop rule only applies to eavesdropping
}

#[test]
fn wildcard_rules_drop_earlier_ones_for_counting() {
    let c = load(
        r#"<policy context="default">
             <allow send_interface="a.b"/>
             <allow send_interface="a.b"/>
             <deny send_destination="*"/>
             <allow send_interface="a.b"/>
           </policy>"#,
    );
    let p = c.policy.for_connection(Some(1000), &[], false);
    let v = p.can_send(&call("x.y", Some("a.b"), "M"), &["x.y"], false, false);
    assert_eq!(
        v,
        policy::Verdict {
            allowed: true,
            matched_rules: 2,
            log: false
        }
    );
}

#[test]
fn allows_user() {
    let c = load("");
    assert!(c.policy.allows_user_owned_by(1000, &[], Some(1000)));
    assert!(!c.policy.allows_user_owned_by(1001, &[], Some(1000)));
    let c = load(
        r#"<policy context="default"><allow user="*"/><deny group="staff"/></policy><policy context="mandatory"><allow user="alice"/></policy>"#,
    );
    assert!(c.policy.allows_user_owned_by(1001, &[], Some(0)));
    assert!(!c.policy.allows_user_owned_by(1001, &[50], Some(0)));
    assert!(c.policy.allows_user_owned_by(1000, &[50], Some(0)));
    let me = policy::process_uid().unwrap();
    assert!(load("").policy.allows_user(me, &[]));
}

#[test]
fn per_user_rules_cannot_be_user_rules() {
    assert_eq!(
        load_err(r#"<policy user="alice"><allow user="bob"/></policy>"#),
        "<allow> rule cannot be per-user because it has bus-global semantics"
    );
}

#[test]
fn shipped_session_conf() {
    let c = policy::load_str_with(
        policy::SESSION_CONF,
        Path::new("/nonexistent/dbus-1/session.conf"),
        &opts(),
    )
    .unwrap();
    assert_eq!(c.bus_type.as_deref(), Some("session"));
    assert!(c.keep_umask && !c.fork);
    assert_eq!(c.listen, ["unix:tmpdir=/tmp"]);
    assert_eq!(c.auth, ["EXTERNAL"]);
    assert_eq!(
        c.transient_service_dir.as_deref(),
        Some(Path::new("/run/user/1000/dbus-1/services"))
    );
    assert_eq!(
        c.service_dirs[0],
        Path::new("/run/user/1000/dbus-1/services")
    );
    assert!(c
        .service_dirs
        .contains(&"/home/u/.local/share/dbus-1/services".into()));
    assert_eq!(c.limits.max_names_per_connection, 50000);
    assert_eq!(c.limits.max_message_unix_fds, 16);
    let p = c.policy.for_connection(Some(1000), &[], false);
    assert!(p.can_own("org.anything"));
    let m = call("a.b", None, "M");
    assert!(p.can_send(&m, &["a.b"], false, false).allowed);
    assert!(p.can_receive(&m, &[":1.1"], false, true).allowed);
    assert!(
        p.can_send(&reply(msg_type::ERROR), &[":1.1"], false, false)
            .allowed
    );
    let me = policy::process_uid().unwrap();
    assert!(c.policy.allows_user(me, &[]));
}

#[test]
fn shipped_system_conf() {
    let c = policy::load_str_with(
        policy::SYSTEM_CONF,
        Path::new("/nonexistent/dbus-1/system.conf"),
        &opts(),
    )
    .unwrap();
    assert_eq!(c.bus_type.as_deref(), Some("system"));
    assert_eq!(c.user.as_deref(), Some("messagebus"));
    assert!(c.fork && c.syslog);
    assert_eq!(c.pidfile.as_deref(), Some(Path::new("/run/dbus/pid")));
    assert_eq!(
        c.service_helper.as_deref(),
        Some(Path::new("/usr/lib/busbar/busbar-launch-helper"))
    );
    assert_eq!(c.listen, ["unix:path=/run/dbus/system_bus_socket"]);
    assert_eq!(
        c.service_dirs[0],
        Path::new("/usr/local/share/dbus-1/system-services")
    );
    assert_eq!(c.limits, policy::Limits::default());
    let p = c.policy.for_connection(Some(1000), &[], false);
    assert!(!p.can_own("org.anything"));
    assert!(
        !p.can_send(&call("a.b", Some("a.b"), "M"), &["a.b"], false, false)
            .allowed
    );
    let hello = call(
        "org.freedesktop.DBus",
        Some("org.freedesktop.DBus"),
        "Hello",
    );
    assert!(
        p.can_send(&hello, &["org.freedesktop.DBus"], false, false)
            .allowed
    );
    let stats = call(
        "org.freedesktop.DBus",
        Some("org.freedesktop.DBus.Debug.Stats"),
        "GetStats",
    );
    assert!(
        !p.can_send(&stats, &["org.freedesktop.DBus"], false, false)
            .allowed
    );
    let root = c.policy.for_connection(Some(0), &[0], false);
    assert!(
        root.can_send(&stats, &["org.freedesktop.DBus"], false, false)
            .allowed
    );
    assert!(c.policy.allows_user_owned_by(1000, &[], Some(101)));
}

/// dbus-daemon applies requested_reply semantics to any message with a
/// reply serial (bus/policy.c tests dbus_message_get_reply_serial, not the
/// type): an allow rule with the default requested_reply="true" does not
/// let through a signal or method call carrying an unrequested reply serial.
#[test]
fn reply_serial_on_non_reply_messages_is_an_unrequested_reply() {
    let c = load(
        r#"<policy context="default">
             <allow send_type="signal"/>
             <allow send_type="method_call"/>
             <allow receive_type="signal"/>
             <allow send_type="signal" send_interface="i.open" send_requested_reply="false"/>
           </policy>"#,
    );
    let p = c.policy.for_connection(Some(1000), &[], false);
    let sig = MessageFacts {
        msg_type: msg_type::SIGNAL,
        path: Some("/"),
        interface: Some("i.f"),
        member: Some("S"),
        destination: Some(":1.9"),
        ..Default::default()
    };
    assert!(p.can_send(&sig, &[":1.9"], false, false).allowed);
    let with_rs = MessageFacts {
        reply_serial: Some(7),
        ..sig
    };
    let v = p.can_send(&with_rs, &[":1.9"], false, false);
    assert!(!v.allowed);
    assert_eq!(v.matched_rules, 0);
    // ... unless the reply was requested, or the rule says requested_reply="false"
    assert!(p.can_send(&with_rs, &[":1.9"], true, false).allowed);
    let open = MessageFacts {
        interface: Some("i.open"),
        ..with_rs
    };
    assert_eq!(
        p.can_send(&open, &[":1.9"], false, false),
        policy::Verdict {
            allowed: true,
            matched_rules: 1,
            log: false
        }
    );
    assert!(!p.can_receive(&with_rs, &[":1.9"], false, false).allowed);
    let call = MessageFacts {
        msg_type: msg_type::METHOD_CALL,
        reply_serial: Some(7),
        ..sig
    };
    assert!(!p.can_send(&call, &[":1.9"], false, false).allowed);
    // a reply serial of zero is no reply serial (dbus: get_reply_serial != 0)
    let zero = MessageFacts {
        reply_serial: Some(0),
        ..sig
    };
    assert!(p.can_send(&zero, &[":1.9"], false, false).allowed);
}

#[test]
fn needs_names_only_when_a_rule_looks_at_them() {
    let c = load(
        r#"<policy context="default"><allow send_destination="*" eavesdrop="true"/>
           <allow eavesdrop="true"/><allow own="*"/></policy>"#,
    );
    let p = c.policy.for_connection(Some(1000), &[], false);
    assert!(!p.send_needs_names());
    assert!(!p.receive_needs_names());
    // Without names the verdicts are what they are with names.
    let m = call(":1.5", Some("a.B"), "M");
    assert_eq!(
        p.can_send(&m, &[], false, false).allowed,
        p.can_send(&m, &[":1.5", "x.y"], false, false).allowed
    );
    let c = load(
        r#"<policy context="default"><allow send_destination="*"/>
           <deny send_destination="org.x.Y"/></policy>"#,
    );
    let p = c.policy.for_connection(Some(1000), &[], false);
    assert!(p.send_needs_names());
    assert!(!p.receive_needs_names());
    let c = load(
        r#"<policy context="default"><allow receive_sender="*"/></policy>
           <policy user="alice"><deny receive_sender="org.x"/></policy>"#,
    );
    assert!(c
        .policy
        .for_connection(Some(1000), &[], false)
        .receive_needs_names());
    assert!(!c
        .policy
        .for_connection(Some(1001), &[], false)
        .receive_needs_names());
}

/// `<include if_selinux_enabled="yes" selinux_root_relative="yes">` as in
/// Debian's system.conf: skipped without SELinux; with it, read relative to
/// libselinux's policy root (its dbus_contexts `<associate>`s apply); an
/// error when there is no policy root.
#[test]
fn selinux_root_relative_include() {
    let root = std::env::temp_dir().join(format!("busbar-selinux-root-{}", std::process::id()));
    std::fs::create_dir_all(root.join("contexts")).unwrap();
    std::fs::write(
        root.join("contexts/dbus_contexts"),
        "<busconfig><selinux><associate own=\"org.x\" context=\"system_u:object_r:x_t:s0\"/></selinux></busconfig>",
    )
    .unwrap();
    let text = "<busconfig><listen>unix:path=/x</listen><include if_selinux_enabled=\"yes\" selinux_root_relative=\"yes\">contexts/dbus_contexts</include></busconfig>";
    let path = Path::new("/nonexistent/test.conf");
    let off = policy::load_str_with(text, path, &opts()).unwrap();
    assert!(off.selinux_associations.is_empty());
    let mut on = opts();
    on.selinux_enabled = true;
    on.selinux_policy_root = Some(root.clone());
    let cfg = policy::load_str_with(text, path, &on).unwrap();
    assert_eq!(
        cfg.selinux_associations.get("org.x").map(String::as_str),
        Some("system_u:object_r:x_t:s0")
    );
    on.selinux_policy_root = None;
    let e = policy::load_str_with(text, path, &on).unwrap_err();
    assert!(
        e.to_string()
            .contains("Could not determine SELinux policy root for relative inclusion"),
        "{e}"
    );
    let _ = std::fs::remove_dir_all(&root);
}

#[test]
fn same_receive_rules_means_same_receive_verdicts() {
    let c = load(
        r#"<policy context="default"><allow send_destination="*"/><allow receive_type="signal"/></policy>
           <policy user="alice"><deny receive_interface="a.b"/></policy>
           <policy group="staff"><deny receive_path="/" receive_member="M"/></policy>"#,
    );
    let p = &c.policy;
    let alice1 = p.for_connection(Some(1000), &[], false);
    let alice2 = p.for_connection(Some(1000), &[], false);
    let bob = p.for_connection(Some(1001), &[], false);
    let bob_staff = p.for_connection(Some(1001), &[50], false);
    // Two connections of one user share their rules; other users or
    // groups do not.
    assert!(alice1.same_receive_rules(&alice2));
    assert!(!alice1.same_receive_rules(&bob));
    assert!(!bob.same_receive_rules(&bob_staff));
    // And the verdicts the comparison stands for do differ.
    let sig = MessageFacts {
        msg_type: msg_type::SIGNAL,
        path: Some("/"),
        interface: Some("a.b"),
        member: Some("M"),
        ..Default::default()
    };
    assert!(!alice1.can_receive(&sig, &[":1.1"], false, false).allowed);
    assert!(bob.can_receive(&sig, &[":1.1"], false, false).allowed);
    assert!(!bob_staff.can_receive(&sig, &[":1.1"], false, false).allowed);
    // A reload compiles new segments: an old connection's policy no
    // longer compares equal to a new one's.
    let again = load(
        r#"<policy context="default"><allow send_destination="*"/><allow receive_type="signal"/></policy>"#,
    );
    let fresh = again.policy.for_connection(Some(1001), &[], false);
    assert!(!bob.same_receive_rules(&fresh));
}
