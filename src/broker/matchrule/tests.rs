use super::*;

fn p(s: &str) -> MatchRule {
    match MatchRule::parse(s) {
        Ok(r) => r,
        Err(e) => panic!("{s:?} should parse: {}", e.0),
    }
}

fn bad(s: &str) -> String {
    match MatchRule::parse(s) {
        Ok(r) => panic!("{s:?} should be refused, got {r:?}"),
        Err(e) => e.0,
    }
}

fn args(r: &MatchRule) -> Vec<(u8, ArgMatch)> {
    r.args.clone()
}

fn s(v: &str) -> ArgMatch {
    ArgMatch::Str(v.to_string())
}

fn roundtrip(r: &MatchRule) {
    let text = r.to_string();
    assert_eq!(&p(&text), r, "round trip through {text:?}");
    // The canonical form is a fixed point.
    assert_eq!(p(&text).to_string(), text);
}

// ---------------------------------------------------------------- parsing

#[test]
fn empty_and_blank_rules() {
    assert_eq!(p(""), MatchRule::default());
    assert_eq!(p("    \t"), MatchRule::default());
    assert_eq!(p(" \r\n"), MatchRule::default());
    assert_eq!(MatchRule::default().to_string(), "");
}

#[test]
fn full_rule() {
    let r = p("type='signal',sender='org.freedesktop.DBus',interface='org.freedesktop.DBus',member='Foo',path='/bar/foo',destination=':452345.34',arg2='bar'");
    assert_eq!(r.msg_type, Some(MsgType::Signal));
    assert_eq!(r.sender.as_deref(), Some("org.freedesktop.DBus"));
    assert_eq!(r.interface.as_deref(), Some("org.freedesktop.DBus"));
    assert_eq!(r.member.as_deref(), Some("Foo"));
    assert_eq!(r.path.as_deref(), Some("/bar/foo"));
    assert_eq!(r.destination.as_deref(), Some(":452345.34"));
    assert_eq!(args(&r), vec![(2, s("bar"))]);
    assert!(!r.eavesdrop);
    roundtrip(&r);
}

#[test]
fn all_types() {
    for (name, t) in [
        ("signal", MsgType::Signal),
        ("method_call", MsgType::MethodCall),
        ("method_return", MsgType::MethodReturn),
        ("error", MsgType::Error),
    ] {
        assert_eq!(p(&format!("type='{name}'")).msg_type, Some(t));
        assert_eq!(p(&format!("type={name}")).msg_type, Some(t));
        assert_eq!(t.as_str(), name);
        assert_eq!(MsgType::from_code(t.code()), Some(t));
    }
    assert_eq!(MsgType::from_code(0), None);
    assert_eq!(MsgType::from_code(5), None);
    assert!(bad("type='chouin'").contains("Invalid message type (chouin)"));
    bad("type='Signal'");
    bad("type=''");
    bad("type='signal '");
}

#[test]
fn unquoted_and_mixed_values() {
    assert_eq!(p("member=escape").member.as_deref(), Some("escape"));
    assert_eq!(p("member=ice'cream'").member.as_deref(), Some("icecream"));
    assert_eq!(p("member=escape"), p("member='escape'"));
    assert_eq!(p("member=ice'cream'"), p("member=icecream"));
    assert_eq!(
        p("arg0='comma,type=comma',type=signal"),
        p("type=signal,arg0='comma,type=comma'")
    );
    assert_eq!(
        args(&p("arg0='comma,type=comma'")),
        vec![(0, s("comma,type=comma"))]
    );
}

#[test]
fn spec_quoting_examples() {
    // arg0=''\''' is a lone apostrophe, arg1='\' a lone backslash,
    // arg2=',' a comma, arg3='\\' two backslashes.
    let r = p(r"arg0=''\''',arg1='\',arg2=',',arg3='\\'");
    assert_eq!(
        args(&r),
        vec![(0, s("'")), (1, s("\\")), (2, s(",")), (3, s("\\\\"))]
    );
    roundtrip(&r);

    assert_eq!(args(&p(r"arg0=\'")), vec![(0, s("'"))]);
    assert_eq!(args(&p(r"arg3=\\")), vec![(3, s("\\\\"))]);
    assert_eq!(
        args(&p(r"arg0=\',arg3=\\")),
        vec![(0, s("'")), (3, s("\\\\"))]
    );
    assert_eq!(args(&p(r"arg0='a'\''b'")), vec![(0, s("a'b"))]);
    assert_eq!(args(&p(r"arg0=escap\e")), vec![(0, s(r"escap\e"))]);
    assert_eq!(p(r"arg0=escap\e"), p(r"arg0='escap\e'"));
    assert_eq!(p(r"arg0=Time: 8 o\'clock"), p(r"arg0='Time: 8 o'\''clock'"));
    assert_eq!(
        args(&p(r"arg0=Time: 8 o\'clock")),
        vec![(0, s("Time: 8 o'clock"))]
    );
    // A trailing lone backslash is kept.
    assert_eq!(args(&p(r"arg0=a\")), vec![(0, s("a\\"))]);
    // Empty values are allowed for args.
    assert_eq!(args(&p("arg0=''")), vec![(0, s(""))]);
    assert_eq!(args(&p("arg0=")), vec![(0, s(""))]);
    assert_eq!(args(&p("arg0=,arg1=x")), vec![(0, s("")), (1, s("x"))]);
}

#[test]
fn backslash_comma_is_not_a_separator() {
    // dbus-daemon's tokenizer keeps a backslash together with the byte after
    // it, so `\,` does not end the value (the spec text suggests otherwise;
    // we follow the reference implementation).
    let r = p(r"arg0=\',arg1=\,arg2=',',arg3=\\");
    assert_eq!(
        args(&r),
        vec![(0, s("'")), (1, s(r"\,arg2=,")), (3, s("\\\\"))]
    );
    roundtrip(&r);
}

#[test]
fn apostrophe_inside_quotes_cannot_be_escaped() {
    // '\'' inside quotes: backslash is literal, then the quote closes, then a
    // new quote opens and is never closed.
    assert_eq!(
        bad(r"arg0='\''"),
        "Unbalanced quotation marks in match rule"
    );
    assert_eq!(bad("arg0='abc"), "Unbalanced quotation marks in match rule");
    assert_eq!(bad("member='x"), "Unbalanced quotation marks in match rule");
}

#[test]
fn whitespace_handling() {
    // libdbus: blanks before a key and between key and '=' are skipped, but
    // blanks after '=' or after a value are part of the value.
    assert!(bad("type='signal' ,member='Foo'").contains("Invalid message type (signal )"));
    assert!(bad("type= 'signal'").contains("Invalid message type ( signal)"));
    assert_eq!(args(&p("arg0=  'x' ")), vec![(0, s("  x "))]);
    let r = p("  type  ='signal',\tmember\n\r='Foo'");
    assert_eq!(r.msg_type, Some(MsgType::Signal));
    assert_eq!(r.member.as_deref(), Some("Foo"));
    // Trailing whitespace after the final comma is fine.
    assert_eq!(p("type='signal', ").msg_type, Some(MsgType::Signal));
    // Blanks inside quotes are kept.
    assert_eq!(args(&p("arg0=' a b '")), vec![(0, s(" a b "))]);
    // Unquoted inner blanks are kept too.
    assert_eq!(args(&p("arg0=a b")), vec![(0, s("a b"))]);
}

#[test]
fn key_without_equals() {
    let msg = "Match rule has a key with no subsequent '=' character";
    assert_eq!(bad("type"), msg);
    assert_eq!(bad("type 'signal'"), msg);
    assert_eq!(bad("type='signal',member"), msg);
    assert_eq!(bad("arg 1='x'"), msg);
}

#[test]
fn leading_equals_is_an_empty_rule() {
    // dbus-daemon treats a token starting with '=' as an empty key and never
    // advances, so the whole rule reads as empty.
    assert_eq!(p("=foo"), MatchRule::default());
    assert_eq!(p("  ='signal'"), MatchRule::default());
}

#[test]
fn stray_commas() {
    assert!(bad("type='signal',,member='x'").contains("Unknown key \",member\""));
    assert!(bad(",type='signal'").contains("Unknown key \",type\""));
    // A trailing comma is fine.
    assert_eq!(p("type='signal',").msg_type, Some(MsgType::Signal));
}

#[test]
fn unknown_keys() {
    assert_eq!(bad("blah='signal'"), "Unknown key \"blah\" in match rule");
    bad("service='youpi'");
    bad("Type='signal'");
    bad("path_namespac='/a'");
}

#[test]
fn duplicates() {
    assert_eq!(
        bad("type='signal',type='method_call'"),
        "Key type specified twice in match rule\n"
    );
    bad("sender='a.b',sender='a.b'");
    bad("interface='a.b',interface='a.c'");
    bad("member='a',member='b'");
    bad("destination=':1.1',destination=':1.2'");
    assert_eq!(
        bad("path='/foo',path='/bar'"),
        "path or path_namespace specified twice in match rule\n"
    );
    assert_eq!(
        bad("path='/foo',path_namespace='/foo'"),
        "path or path_namespace specified twice in match rule\n"
    );
    bad("path_namespace='/foo',path='/foo'");
    bad("path_namespace='/a',path_namespace='/b'");
    assert_eq!(
        bad("arg0='foo',arg0='bar'"),
        "Argument arg0 matched more than once in match rule\n"
    );
    bad("arg3='foo',arg3='bar'");
    bad("arg30='foo',arg30='bar'");
    // argN and argNpath share the slot.
    bad("arg1='foo',arg1path='/bar'");
    bad("arg0namespace='a',arg0='b'");
    bad("arg0path='/a',arg0namespace='a'");
}

#[test]
fn eavesdrop() {
    assert!(p("eavesdrop='true'").eavesdrop);
    assert!(p("eavesdrop=true").eavesdrop);
    assert!(!p("eavesdrop='false'").eavesdrop);
    assert_eq!(p("eavesdrop='false'"), MatchRule::default());
    // dbus-daemon accepts eavesdrop more than once; the last one wins.
    assert!(!p("eavesdrop='true',eavesdrop='false'").eavesdrop);
    assert!(p("eavesdrop='false',eavesdrop='true'").eavesdrop);
    assert_eq!(
        bad("eavesdrop='yes'"),
        "eavesdrop='yes' is invalid, it should be 'true' or 'false'\n"
    );
    bad("eavesdrop='TRUE'");
    bad("eavesdrop=''");
    assert_eq!(p("eavesdrop='true'").to_string(), "eavesdrop='true'");
    assert_eq!(
        p("eavesdrop='false',type=signal").to_string(),
        "type='signal'"
    );
}

#[test]
fn sender_validation() {
    for ok in [
        "org.freedesktop.DBus",
        ":1.42",
        ":452345.34",
        "a.b",
        "a-b._c.d9",
        "_a.-b",
        ":1",
        ":",
        ":.1",
        ":-.-",
    ] {
        assert_eq!(
            p(&format!("sender='{ok}'")).sender.as_deref(),
            Some(ok),
            "{ok}"
        );
    }
    for no in [
        "", "a", "a.", ".a", "a..b", "1a.b", "a.1b", "a.b/c", "::1", ":1.", ":1..2", "a.b c", "é.b",
    ] {
        assert_eq!(
            bad(&format!("sender='{no}'")),
            format!("Sender name '{no}' is invalid\n"),
            "{no}"
        );
    }
    let long = format!("a.{}", "b".repeat(253));
    assert_eq!(long.len(), 255);
    p(&format!("sender='{long}'"));
    bad(&format!("sender='{long}b'"));
}

#[test]
fn destination_validation() {
    assert_eq!(p("destination=':1.0'").destination.as_deref(), Some(":1.0"));
    // dbus-daemon accepts any bus name here, not only unique names.
    assert_eq!(
        p("destination='org.example.Foo'").destination.as_deref(),
        Some("org.example.Foo")
    );
    assert_eq!(bad("destination='x'"), "Destination name 'x' is invalid\n");
    bad("destination=''");
}

#[test]
fn interface_validation() {
    assert_eq!(
        p("interface='org.Bar'").interface.as_deref(),
        Some("org.Bar")
    );
    p("interface='_a._b9.C'");
    for no in [
        "",
        "org",
        "abc@def++",
        "a.",
        ".a",
        "a..b",
        "a.9b",
        "a-b.c",
        ":1.2",
    ] {
        assert_eq!(
            bad(&format!("interface='{no}'")),
            format!("Interface name '{no}' is invalid\n")
        );
    }
    let long = format!("a.{}", "b".repeat(253));
    p(&format!("interface='{long}'"));
    bad(&format!("interface='{long}b'"));
}

#[test]
fn member_validation() {
    p("member='NameOwnerChanged'");
    p("member='_x9'");
    for no in ["", "9a", "a.b", "a-b", "a b"] {
        assert_eq!(
            bad(&format!("member='{no}'")),
            format!("Member name '{no}' is invalid\n")
        );
    }
    p(&format!("member='{}'", "m".repeat(255)));
    bad(&format!("member='{}'", "m".repeat(256)));
}

#[test]
fn path_validation() {
    for ok in ["/", "/a", "/a/b_9", "/org/freedesktop/DBus"] {
        assert_eq!(p(&format!("path='{ok}'")).path.as_deref(), Some(ok));
        assert_eq!(
            p(&format!("path_namespace='{ok}'"))
                .path_namespace
                .as_deref(),
            Some(ok)
        );
    }
    for no in ["", "a", "/a/", "//", "/a//b", "/a-b", "/a.b"] {
        assert_eq!(
            bad(&format!("path='{no}'")),
            format!("Path '{no}' is invalid\n")
        );
        bad(&format!("path_namespace='{no}'"));
    }
    // Trailing / was in the initial proposal for path_namespace but is refused.
    bad("path_namespace='/foo/'");
}

#[test]
fn arg_keys() {
    assert_eq!(args(&p("arg0='foo'")), vec![(0, s("foo"))]);
    assert_eq!(args(&p("arg63='x'")), vec![(63, s("x"))]);
    assert_eq!(
        args(&p("arg5path='/a/'")),
        vec![(5, ArgMatch::Path("/a/".into()))]
    );
    assert_eq!(
        args(&p("arg63path='x'")),
        vec![(63, ArgMatch::Path("x".into()))]
    );
    // argNpath values are not validated.
    assert_eq!(
        args(&p("arg0path=''")),
        vec![(0, ArgMatch::Path(String::new()))]
    );
    assert_eq!(
        args(&p("arg0namespace='com.example'")),
        vec![(0, ArgMatch::Namespace("com.example".into()))]
    );
    assert_eq!(
        bad("arg64='x'"),
        "Key 'arg64' in match rule has arg number 64 but the maximum is 63.\n"
    );
    bad("arg64path='x'");
    bad("arg99999999999='x'");
    assert_eq!(
        bad("arg='x'"),
        "Key 'arg' in match rule starts with 'arg' but lacks an arg number. Should be 'arg0' or 'arg7' for example.\n"
    );
    assert_eq!(
        bad("argx='x'"),
        "Key 'argx' in match rule starts with 'arg' but could not parse arg number. Should be 'arg0' or 'arg7' for example.\n"
    );
    bad("argpath='x'");
    assert_eq!(
        bad("arg0junk='x'"),
        "Key 'arg0junk' in match rule contains junk after argument number (0). Only 'arg0path' (for example) or 'arg0namespace' are valid"
    );
    bad("arg1namespace='a'");
    bad("arg0pathx='x'");
    bad("arg0Path='x'");
    bad("arg00namespace='a'");
    // Overflowing numbers fail to parse.
    assert!(bad("arg99999999999999999999999='x'").contains("could not parse"));
}

#[test]
fn arg_numbers_follow_strtoul() {
    // dbus-daemon reads N with strtoul(.., 0).
    assert_eq!(args(&p("arg07='x'")), vec![(7, s("x"))]);
    assert_eq!(args(&p("arg010='x'")), vec![(8, s("x"))]);
    assert_eq!(args(&p("arg0x1f='x'")), vec![(31, s("x"))]);
    assert_eq!(
        args(&p("arg0x3path='x'")),
        vec![(3, ArgMatch::Path("x".into()))]
    );
    assert_eq!(args(&p("arg+2='x'")), vec![(2, s("x"))]);
    assert_eq!(args(&p("arg-0='x'")), vec![(0, s("x"))]);
    assert!(bad("arg-1='x'").contains("has arg number 18446744073709551615 but the maximum is 63"));
    assert!(bad("arg08='x'").contains("junk after argument number (0)"));
    assert!(bad("arg0x='x'").contains("junk after argument number (0)"));
}

#[test]
fn args_are_sorted() {
    let a = p("arg0='foobar',arg1='abcdef',arg2='abcdefghi',arg3='abcdefghi',arg4='abcdefghi'");
    let b = p("arg0='foobar',arg1='abcdef',arg4='abcdefghi',arg3='abcdefghi',arg2='abcdefghi'");
    assert_eq!(a, b);
    let r = p("arg9='x',arg0path='/',arg3='y',arg0x2='z'");
    let idx: Vec<u8> = r.args.iter().map(|(n, _)| *n).collect();
    assert_eq!(idx, vec![0, 2, 3, 9]);
    assert_eq!(r.arg(3), Some(&s("y")));
    assert_eq!(r.arg(4), None);
    assert_eq!(r.to_string(), "arg0path='/',arg2='z',arg3='y',arg9='x'");
}

#[test]
fn arg0namespace_validation() {
    p("arg0namespace='com'");
    p("arg0namespace='com.example.backend1'");
    p("arg0namespace='a-b'");
    p("arg0namespace=':1.2'");
    for no in ["", "com.", ".com", "com..x", "1com", "com.1x", "a/b"] {
        assert_eq!(
            bad(&format!("arg0namespace='{no}'")),
            format!("arg0namespace='{no}' is not a valid prefix of a bus name")
        );
    }
}

#[test]
fn equality_pairs_from_dbus() {
    let pairs = [
        ("type='signal'", "type='signal'"),
        (
            "type='signal',interface='foo.bar'",
            "interface='foo.bar',type='signal'",
        ),
        ("type='signal',member='bar'", "member='bar',type='signal'"),
        (
            "type='method_call',sender=':1.0'",
            "sender=':1.0',type='method_call'",
        ),
        (
            "type='method_call',destination=':1.0'",
            "destination=':1.0',type='method_call'",
        ),
        (
            "type='method_call',path='/foo/bar'",
            "path='/foo/bar',type='method_call'",
        ),
        (
            "type='method_call',arg0='blah'",
            "arg0='blah',type='method_call'",
        ),
        (
            "type='method_call',arg0='boo'",
            "arg0='boo',type='method_call'",
        ),
        (
            "type='method_call',arg0='blah',arg1='baz'",
            "arg0='blah',arg1='baz',type='method_call'",
        ),
        (
            "type='method_call',arg3='foosh'",
            "arg3='foosh',type='method_call'",
        ),
        ("arg3='fool'", "arg3='fool'"),
        ("arg0namespace='fool'", "arg0namespace='fool'"),
        ("member='food'", "member='food'"),
        ("member=escape", "member='escape'"),
        ("member=icecream", "member=ice'cream'"),
        (
            "arg0='comma,type=comma',type=signal",
            "type=signal,arg0='comma,type=comma'",
        ),
        (r"arg0=escap\e", r"arg0='escap\e'"),
        (r"arg0=Time: 8 o\'clock", r"arg0='Time: 8 o'\''clock'"),
    ];
    for (a, b) in pairs {
        let (ra, rb) = (p(a), p(b));
        assert_eq!(ra, rb, "{a} vs {b}");
        roundtrip(&ra);
        assert_eq!(ra.to_string(), rb.to_string());
    }
    // And some that must differ.
    assert_ne!(p("type='signal'"), p("type='method_call'"));
    assert_ne!(p("arg0='a'"), p("arg0path='a'"));
    assert_ne!(p("arg0='a'"), p("arg1='a'"));
    assert_ne!(p("path='/a'"), p("path_namespace='/a'"));
    assert_ne!(p("eavesdrop=true"), p(""));
}

#[test]
fn length_limit() {
    let fill = "a".repeat(MAX_RULE_LENGTH - "arg0=''".len());
    let ok = format!("arg0='{fill}'");
    assert_eq!(ok.len(), MAX_RULE_LENGTH);
    assert_eq!(args(&p(&ok)), vec![(0, s(&fill))]);
    let long = format!("arg0='{fill}a'");
    let e = MatchRule::parse(&long).unwrap_err();
    assert_eq!(e.0, "Match rule text is 1025 bytes, maximum is 1024");
    assert_eq!(e.error_name(), ERROR_LIMITS_EXCEEDED);
    assert_eq!(
        MatchRule::parse("foo='x'").unwrap_err().error_name(),
        ERROR_MATCH_RULE_INVALID
    );
    // Blank padding counts too.
    assert!(MatchRule::parse(&" ".repeat(1025)).is_err());
    p(&" ".repeat(1024));
}

#[test]
fn only_sixteen_tokens_are_read() {
    let keys: Vec<String> = (0..20).map(|i| format!("arg{i}='v{i}'")).collect();
    let r = p(&keys.join(","));
    assert_eq!(r.args.len(), 16);
    assert_eq!(r.args.last().map(|(n, _)| *n), Some(15));
    // Even an invalid 17th key is ignored, as in dbus-daemon.
    let mut sixteen: Vec<String> = (0..16).map(|i| format!("arg{i}='v'")).collect();
    sixteen.push("bogus='x'".to_string());
    assert_eq!(p(&sixteen.join(",")).args.len(), 16);
}

#[test]
fn nul_ends_the_text() {
    assert_eq!(p("type='signal'\0garbage"), p("type='signal'"));
    // The quote is never closed before the NUL.
    assert_eq!(
        bad("arg0='a\0b'"),
        "Unbalanced quotation marks in match rule"
    );
    assert_eq!(args(&p("arg0=a\0b")), vec![(0, s("a"))]);
}

#[test]
fn non_ascii_values() {
    let r = p("arg0='héllo, wörld',arg1=ünï\\'cödé");
    assert_eq!(args(&r), vec![(0, s("héllo, wörld")), (1, s("ünï'cödé"))]);
    roundtrip(&r);
    bad("mémber='x'");
    bad("argé='x'");
}

#[test]
fn never_panics_on_odd_input() {
    let samples = [
        "'",
        "\\",
        "=",
        ",",
        "''",
        "=,=,=",
        "a=",
        "arg",
        "arg0",
        "arg0=",
        "arg0='",
        "arg0=\\",
        "\u{0}",
        "é",
        "arg\u{b}1='x'",
        "arg 0",
        "type=\\'signal\\'",
        "path_namespace=",
        "eavesdrop",
        "arg0namespace=",
        "arg18446744073709551616='x'",
        "arg0x",
        "arg0xffffffffffffffffff='x'",
        "arg-",
        "arg+",
        ",,,,",
        "   =   ",
    ];
    for sample in samples {
        let _ = MatchRule::parse(sample);
    }
    // Every prefix of a busy rule.
    let rule = r"type='signal',sender=':1.2',interface='a.b',member='M',path_namespace='/a',destination=':1.3',arg0=''\''',arg1path='/x/',arg0namespace=x,eavesdrop=true";
    for (i, _) in rule.char_indices() {
        let _ = MatchRule::parse(&rule[..i]);
    }
}

#[test]
fn vertical_tab_in_arg_key() {
    // strtoul skips leading \v and \f even though the tokenizer does not treat
    // them as blanks.
    assert_eq!(args(&p("arg\u{b}1='x'")), vec![(1, s("x"))]);
}

// ---------------------------------------------------------------- display

#[test]
fn display_order_matches_dbus_daemon() {
    let r = p("arg1='b',eavesdrop=true,destination=':1.5',sender='org.x.Y',path='/p',member='M',interface='i.f',type='error',arg0namespace='n'");
    assert_eq!(
        r.to_string(),
        "type='error',interface='i.f',member='M',path='/p',sender='org.x.Y',destination=':1.5',eavesdrop='true',arg0namespace='n',arg1='b'"
    );
    roundtrip(&r);
    let r = p("path_namespace='/a/b',type=method_return");
    assert_eq!(r.to_string(), "type='method_return',path_namespace='/a/b'");
    roundtrip(&r);
}

#[test]
fn display_escapes_apostrophes() {
    let r = p(r"arg0=Time: 8 o\'clock");
    assert_eq!(r.to_string(), r"arg0='Time: 8 o'\''clock'");
    roundtrip(&r);
    let r = p(r"arg0=\'\'");
    assert_eq!(r.to_string(), r"arg0=''\'''\'''");
    roundtrip(&r);
    let r = p(r"arg0='\',arg1=\\");
    assert_eq!(r.to_string(), r"arg0='\',arg1='\\'");
    roundtrip(&r);
}

#[test]
fn display_of_constructed_rules_round_trips() {
    let r = MatchRule {
        msg_type: Some(MsgType::Signal),
        sender: Some(":1.7".into()),
        interface: Some("org.example.Iface".into()),
        member: Some("Changed".into()),
        path: None,
        path_namespace: Some("/".into()),
        destination: Some(":1.8".into()),
        args: vec![
            (0, ArgMatch::Namespace("org.example".into())),
            (1, ArgMatch::Path("/it's/".into())),
            (2, ArgMatch::Str("a,b='c'".into())),
            (63, ArgMatch::Str(String::new())),
        ],
        eavesdrop: true,
    };
    roundtrip(&r);
}

// ---------------------------------------------------------------- matching

#[derive(Default)]
struct Msg {
    msg_type: u8,
    senders: Vec<&'static str>,
    destination: Option<&'static str>,
    path: Option<&'static str>,
    interface: Option<&'static str>,
    member: Option<&'static str>,
    args: Vec<Arg<'static>>,
}

impl MatchSubject for Msg {
    fn msg_type(&self) -> u8 {
        self.msg_type
    }
    fn sender_is(&self, name: &str) -> bool {
        self.senders.contains(&name)
    }
    fn destination(&self) -> Option<&str> {
        self.destination
    }
    fn path(&self) -> Option<&str> {
        self.path
    }
    fn interface(&self) -> Option<&str> {
        self.interface
    }
    fn member(&self) -> Option<&str> {
        self.member
    }
    fn arg(&self, n: u8) -> Option<Arg<'_>> {
        self.args.get(usize::from(n)).copied()
    }
}

fn signal() -> Msg {
    Msg {
        msg_type: 4,
        senders: vec![":1.1", "org.example.Service"],
        destination: None,
        path: Some("/org/example/Obj"),
        interface: Some("org.example.Iface"),
        member: Some("Changed"),
        args: vec![Arg::Str("hello"), Arg::Path("/a/b"), Arg::Other],
    }
}

fn hit(rule: &str, m: &Msg) -> bool {
    p(rule).matches(m)
}

#[test]
fn empty_rule_matches_everything() {
    assert!(hit("", &signal()));
    assert!(hit("", &Msg::default()));
    // eavesdrop is not considered by matches().
    assert!(hit("eavesdrop=true", &signal()));
}

#[test]
fn match_type() {
    let m = signal();
    assert!(hit("type='signal'", &m));
    assert!(!hit("type='method_call'", &m));
    assert!(!hit("type='method_return'", &m));
    assert!(!hit("type='error'", &m));
    let call = Msg {
        msg_type: 1,
        ..signal()
    };
    assert!(hit("type='method_call'", &call));
}

#[test]
fn match_sender() {
    let m = signal();
    assert!(hit("sender=':1.1'", &m));
    assert!(hit("sender='org.example.Service'", &m));
    assert!(!hit("sender=':1.2'", &m));
    assert!(!hit("sender='org.example.Other'", &m));
}

#[test]
fn match_interface_member_path() {
    let m = signal();
    assert!(hit("interface='org.example.Iface'", &m));
    assert!(!hit("interface='org.example.Other'", &m));
    assert!(hit("member='Changed'", &m));
    assert!(!hit("member='changed'", &m));
    assert!(hit("path='/org/example/Obj'", &m));
    assert!(!hit("path='/org/example'", &m));
    assert!(!hit("path='/org/example/Obj/Child'", &m));
    // Absent header fields never match a key.
    let bare = Msg {
        msg_type: 4,
        ..Msg::default()
    };
    assert!(!hit("interface='org.example.Iface'", &bare));
    assert!(!hit("member='Changed'", &bare));
    assert!(!hit("path='/org/example/Obj'", &bare));
    assert!(!hit("path_namespace='/'", &bare));
    assert!(!hit("destination=':1.1'", &bare));
}

#[test]
fn match_path_namespace() {
    let at = |path: &'static str| Msg {
        path: Some(path),
        ..signal()
    };
    let rule = "path_namespace='/com/example/foo'";
    assert!(hit(rule, &at("/com/example/foo")));
    assert!(hit(rule, &at("/com/example/foo/bar")));
    assert!(hit(rule, &at("/com/example/foo/bar/baz")));
    assert!(!hit(rule, &at("/com/example/foobar")));
    assert!(!hit(rule, &at("/com/example")));
    assert!(!hit(rule, &at("/")));
    for path in ["/", "/a", "/a/b/c"] {
        assert!(hit("path_namespace='/'", &at(path)), "{path}");
    }
}

#[test]
fn match_destination() {
    let m = Msg {
        destination: Some(":1.9"),
        ..signal()
    };
    assert!(hit("destination=':1.9'", &m));
    assert!(!hit("destination=':1.8'", &m));
    assert!(!hit("destination=':1.9'", &signal()));
}

#[test]
fn match_plain_args() {
    let m = signal();
    assert!(hit("arg0='hello'", &m));
    assert!(!hit("arg0='hell'", &m));
    assert!(!hit("arg0='hello '", &m));
    // Object paths and other types never match a plain argN.
    assert!(!hit("arg1='/a/b'", &m));
    assert!(!hit("arg2=''", &m));
    // Beyond the body.
    assert!(!hit("arg3=''", &m));
    assert!(!hit("arg63='x'", &m));
    // All keys are ANDed.
    assert!(hit("arg0='hello',arg1path='/a/b'", &m));
    assert!(!hit("arg0='hello',arg1path='/a/c'", &m));
    let empty = Msg {
        args: vec![Arg::Str("")],
        ..signal()
    };
    assert!(hit("arg0=''", &empty));
    assert!(!hit("arg0='x'", &empty));
}

#[test]
fn match_arg_path_spec_table() {
    // From the spec: arg0path='/aa/bb/' matches '/', '/aa/', '/aa/bb/',
    // '/aa/bb/cc/' and '/aa/bb/cc'; not '/aa/b', '/aa' or '/aa/bb'.
    let with = |a: Arg<'static>| Msg {
        args: vec![a],
        ..signal()
    };
    let rule = "arg0path='/aa/bb/'";
    for yes in ["/", "/aa/", "/aa/bb/", "/aa/bb/cc/", "/aa/bb/cc"] {
        assert!(hit(rule, &with(Arg::Str(yes))), "string {yes}");
        assert!(hit(rule, &with(Arg::Path(yes))), "path {yes}");
    }
    for no in ["/aa/b", "/aa", "/aa/bb", "", "/ab/", "/aa/bc/"] {
        assert!(!hit(rule, &with(Arg::Str(no))), "string {no}");
        assert!(!hit(rule, &with(Arg::Path(no))), "path {no}");
    }
    assert!(!hit(rule, &with(Arg::Other)));
    assert!(!hit(
        rule,
        &Msg {
            args: vec![],
            ..signal()
        }
    ));
    // Without a trailing slash only exact equality or a '/'-terminated prefix.
    let rule = "arg0path='/aa/bb'";
    assert!(hit(rule, &with(Arg::Str("/aa/bb"))));
    assert!(hit(rule, &with(Arg::Str("/aa/"))));
    assert!(!hit(rule, &with(Arg::Str("/aa/bb/"))));
    assert!(!hit(rule, &with(Arg::Str("/aa/bb/cc"))));
    // Any strings, not just paths.
    assert!(hit("arg0path='foo/'", &with(Arg::Str("foo/bar"))));
    assert!(hit("arg0path=''", &with(Arg::Str(""))));
    assert!(!hit("arg0path=''", &with(Arg::Str("/"))));
    assert!(hit("arg0path='/'", &with(Arg::Str("/anything/at/all"))));
}

#[test]
fn match_arg0namespace() {
    let with = |a: Arg<'static>| Msg {
        args: vec![a, Arg::Str("x")],
        ..signal()
    };
    let rule = "member='Changed',arg0namespace='com.example.backend1'";
    for yes in [
        "com.example.backend1",
        "com.example.backend1.foo",
        "com.example.backend1.foo.bar",
    ] {
        assert!(hit(rule, &with(Arg::Str(yes))), "{yes}");
    }
    for no in [
        "com.example.backend",
        "com.example.backend10",
        "com.example",
        "com",
        "",
    ] {
        assert!(!hit(rule, &with(Arg::Str(no))), "{no}");
    }
    // Only strings (an object path never matches).
    assert!(!hit("arg0namespace='a'", &with(Arg::Path("a"))));
    assert!(!hit("arg0namespace='a'", &with(Arg::Other)));
    assert!(hit("arg0namespace='com'", &with(Arg::Str("com.x"))));
    assert!(!hit(
        "arg0namespace='a'",
        &Msg {
            args: vec![],
            ..signal()
        }
    ));
}

#[test]
fn match_many_keys() {
    let m = Msg {
        destination: Some(":1.5"),
        ..signal()
    };
    let rule = "type='signal',sender='org.example.Service',interface='org.example.Iface',member='Changed',path_namespace='/org',destination=':1.5',arg0='hello',arg1path='/a/',eavesdrop=true";
    assert!(hit(rule, &m));
    for breaker in [
        "type='error'",
        "sender=':1.2'",
        "interface='org.example.X'",
        "member='X'",
        "path_namespace='/net'",
        "destination=':1.6'",
        "arg0='bye'",
        "arg1path='/b/'",
        "arg2='x'",
    ] {
        let key = breaker.split('=').next().unwrap_or_default();
        let modified: Vec<&str> = rule
            .split(',')
            .filter(|kv| kv.split('=').next() != Some(key))
            .collect();
        let text = format!("{},{}", modified.join(","), breaker);
        assert!(!hit(&text, &m), "{text}");
    }
}

#[test]
fn arg_index_bound() {
    let r = p("arg63='x'");
    let mut args: Vec<Arg<'static>> = vec![Arg::Other; 63];
    args.push(Arg::Str("x"));
    let m = Msg { args, ..signal() };
    assert!(r.matches(&m));
    bad("arg64='x'");
    bad("arg64path='/'");
}

#[test]
fn pseudo_random_inputs_round_trip() {
    // Deterministic xorshift over an alphabet of the interesting characters
    // and key fragments: parse never panics, and whatever parses round-trips.
    const PIECES: &[&str] = &[
        "'",
        "\\",
        ",",
        "=",
        " ",
        "\t",
        "a",
        "b.c",
        "/",
        ":1.2",
        "type",
        "signal",
        "sender",
        "interface",
        "member",
        "path",
        "path_namespace",
        "destination",
        "arg0",
        "arg1path",
        "arg0namespace",
        "arg63",
        "eavesdrop",
        "true",
        "é",
        ".",
        "type='signal'",
        "arg2='x'",
        "member=M",
        "path='/a/b'",
    ];
    let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let mut parsed = 0;
    for _ in 0..20_000 {
        let len = next() % 12;
        let mut text = String::new();
        for _ in 0..len {
            let i = usize::try_from(next() % PIECES.len() as u64).unwrap_or(0);
            text.push_str(PIECES[i]);
        }
        if let Ok(rule) = MatchRule::parse(&text) {
            parsed += 1;
            roundtrip(&rule);
        }
    }
    assert!(parsed > 100, "only {parsed} inputs parsed");
}
