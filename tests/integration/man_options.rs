//! man/busbar.1 and the command line must not drift apart: every option the
//! manual documents (OPTIONS and SYNOPSIS) is accepted by `busbar`, in every
//! spelling the manual gives, and every option in busbar's usage message is
//! documented.

use crate::common;

use std::collections::BTreeSet;
use std::process::Command;

const MAN: &str = include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/man/busbar.1"));
const PROBE_CONF: &str = "/nonexistent/busbar-man-options-probe.conf";

/// Splits roff macro arguments (double quotes group words).
fn roff_args(s: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let (mut quoted, mut any) = (false, false);
    for c in s.chars() {
        match c {
            '"' => {
                quoted = !quoted;
                any = true;
            }
            ' ' | '\t' if !quoted => {
                if any {
                    out.push(std::mem::take(&mut cur));
                    any = false;
                }
            }
            _ => {
                cur.push(c);
                any = true;
            }
        }
    }
    if any {
        out.push(cur);
    }
    out
}

/// Plain text of a roff fragment: `\-` is `-`, font changes vanish.
fn unescape(s: &str) -> String {
    let mut out = String::new();
    let mut it = s.chars().peekable();
    while let Some(c) = it.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match it.next() {
            Some('f') => {
                // \fB, \fI, \fR, \fP; \f(XX and \f[XX] are not used here.
                it.next();
            }
            Some('&') => {}
            Some(other) => out.push(other),
            None => {}
        }
    }
    out
}

/// The text a font macro line (.B, .BI, .BR, .OP, ...) prints: arguments
/// are joined without spaces, except for .B/.I/.OP, which join with spaces.
fn macro_text(line: &str) -> Option<String> {
    let (name, rest) = line.split_once(' ').unwrap_or((line, ""));
    let args = roff_args(rest);
    let sep = match name {
        ".B" | ".I" | ".OP" => " ",
        ".BI" | ".BR" | ".IB" | ".IR" | ".RB" | ".RI" => "",
        _ => return None,
    };
    Some(unescape(&args.join(sep)))
}

/// Lines of section `name` (between `.SH name` and the next `.SH`).
fn section<'a>(name: &str) -> Vec<&'a str> {
    let mut lines = MAN.lines().skip_while(|l| {
        l.trim_end() != format!(".SH {name}") && l.trim_end() != format!(".SH \"{name}\"")
    });
    assert!(lines.next().is_some(), "man/busbar.1 has no {name} section");
    lines.take_while(|l| !l.starts_with(".SH")).collect()
}

/// The option tags of OPTIONS: the line after each `.TP` / `.TQ`, e.g.
/// "--config-file=FILE", "--config-file FILE", "--print-pid[=DESCRIPTOR]".
fn documented_tags() -> Vec<String> {
    let lines = section("OPTIONS");
    let mut tags = Vec::new();
    for (i, l) in lines.iter().enumerate() {
        if (l.starts_with(".TP") || l.starts_with(".TQ")) && i + 1 < lines.len() {
            let tag = macro_text(lines[i + 1])
                .unwrap_or_else(|| panic!("OPTIONS: unexpected tag line {:?}", lines[i + 1]));
            tags.push(tag);
        }
    }
    tags
}

/// `--name` words of a text.
fn option_names(text: &str) -> BTreeSet<String> {
    text.split(|c: char| !(c.is_ascii_alphanumeric() || c == '-'))
        .filter(|w| w.starts_with("--") && w.len() > 2)
        .map(str::to_string)
        .collect()
}

/// Every command line a tag describes, placeholders filled in:
/// "--print-pid[=DESCRIPTOR]" gives ["--print-pid"] and ["--print-pid=1"].
fn spellings(tag: &str) -> Vec<Vec<String>> {
    let forms = match (tag.find('['), tag.rfind(']')) {
        (Some(a), Some(b)) if a < b => vec![
            format!("{}{}", &tag[..a], &tag[b + 1..]),
            format!("{}{}{}", &tag[..a], &tag[a + 1..b], &tag[b + 1..]),
        ],
        _ => vec![tag.to_string()],
    };
    let fill = |w: &str| -> String {
        let (head, ph) = match w.split_once('=') {
            Some((h, p)) => (format!("{h}="), p),
            None => (String::new(), w),
        };
        let value = match ph {
            "FILE" => PROBE_CONF,
            "ADDRESS" => "unix:tmpdir=/tmp",
            "DESCRIPTOR" => "1",
            _ => return w.to_string(),
        };
        format!("{head}{value}")
    };
    forms
        .iter()
        .map(|f| f.split_whitespace().map(fill).collect())
        .collect()
}

fn busbar(args: &[String]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_busbar"))
        .args(args)
        .env_remove("NOTIFY_SOCKET")
        .env_remove("LISTEN_FDS")
        .output()
        .expect("run busbar");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The options in busbar's usage message (printed for --help, exit 1).
fn usage_options() -> BTreeSet<String> {
    let (code, _, err) = busbar(&["--help".to_string()]);
    assert_eq!(code, 1, "busbar --help: {err}");
    assert!(err.starts_with("busbar ["), "no usage message: {err:?}");
    option_names(&err)
}

#[test]
fn parser_sees_the_options() {
    let tags = documented_tags();
    assert!(
        tags.len() >= 17,
        "only {} option tags in OPTIONS: {tags:?}",
        tags.len()
    );
    let names: BTreeSet<String> = tags.iter().flat_map(|t| option_names(t)).collect();
    for o in [
        "--session",
        "--config-file",
        "--print-address",
        "--check-config",
    ] {
        assert!(names.contains(o), "{o} missing from {names:?}");
    }
    assert_eq!(
        spellings("--print-pid[=DESCRIPTOR]"),
        vec![
            vec!["--print-pid".to_string()],
            vec!["--print-pid=1".to_string()]
        ]
    );
    assert_eq!(
        spellings("--config-file FILE"),
        vec![vec!["--config-file".to_string(), PROBE_CONF.to_string()]]
    );
    // A bogus option is rejected with the usage message: the probe below can fail.
    let (code, _, err) = busbar(&[format!("--check-config={PROBE_CONF}"), "--bogus".into()]);
    assert_eq!(code, 1);
    assert!(err.starts_with("busbar ["), "{err}");
}

#[test]
fn documented_options_are_the_usage_options() {
    let usage = usage_options();
    let options: BTreeSet<String> = documented_tags()
        .iter()
        .flat_map(|t| option_names(t))
        .collect();
    let synopsis: BTreeSet<String> = section("SYNOPSIS")
        .iter()
        .filter_map(|l| macro_text(l))
        .flat_map(|t| option_names(&t))
        .collect();
    let undocumented: Vec<_> = usage.difference(&options).collect();
    let unknown: Vec<_> = options.difference(&usage).collect();
    assert!(
        undocumented.is_empty() && unknown.is_empty(),
        "man/busbar.1 OPTIONS vs `busbar --help`: not documented: {undocumented:?}; \
         not in the usage message: {unknown:?}"
    );
    assert_eq!(synopsis, usage, "man/busbar.1 SYNOPSIS vs `busbar --help`");
}

#[test]
fn every_documented_spelling_is_accepted() {
    let mut failures = Vec::new();
    for tag in documented_tags() {
        for spelling in spellings(&tag) {
            // --check-config stops busbar before it starts a bus; options
            // that only print (--version, --introspect) exit 0 first.
            let mut args = vec![format!("--check-config={PROBE_CONF}")];
            args.extend(spelling.iter().cloned());
            let (code, out, err) = busbar(&args);
            let printed = code == 0 && !out.is_empty() && err.is_empty();
            let config_error = code == 1 && err.starts_with(&format!("{PROBE_CONF}:"));
            if !(printed || config_error) {
                failures.push(format!("{args:?}: exit {code}, stderr {err:?}"));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "options documented in man/busbar.1 that busbar rejects:\n{}",
        failures.join("\n")
    );
}

/// `mandoc -T lint -W warning` finds nothing in the man pages (a real
/// `.TH` date, no empty blocks, ...). test.sh's deps stage installs mandoc.
#[test]
fn man_pages_lint_clean() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("man");
    let mut pages: Vec<_> = std::fs::read_dir(&dir)
        .expect("read man/")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .collect();
    pages.sort();
    assert!(pages.len() >= 2, "man pages: {pages:?}");
    let out = match Command::new("mandoc")
        .args(["-T", "lint", "-W", "warning"])
        .args(&pages)
        .output()
    {
        Ok(o) => o,
        Err(e) => return common::skip_or_fail(&format!("mandoc not runnable: {e}")),
    };
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success() && text.trim().is_empty(),
        "mandoc lint:\n{text}"
    );
}
