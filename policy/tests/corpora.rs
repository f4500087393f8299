//! The dbus installed-tests configuration corpora.

use std::path::{Path, PathBuf};

const DATA: &str = "/usr/lib/dbus-1.0/installed-tests/dbus/data";
/// dbus-daemon 1.14's messages for each invalid file (recorded by running it).
const ERRORS_TSV: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/data/invalid-config-errors.tsv"
);

fn data_dir(sub: &str) -> Option<PathBuf> {
    let d = Path::new(DATA).join(sub);
    if d.is_dir() {
        Some(d)
    } else {
        // Outside CI a missing dbus-tests package skips; under CI it fails.
        let why = format!("{} is missing (dbus-tests)", d.display());
        if std::env::var_os("CI").is_some_and(|v| !v.is_empty()) {
            panic!("prerequisite missing, and CI is set: {why}");
        }
        eprintln!("SKIPPED: {why}");
        None
    }
}

fn conf_files(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "conf") && p.is_file())
        .collect();
    v.sort();
    v
}

#[test]
fn valid_config_files_parse() {
    for sub in ["valid-config-files", "valid-config-files-system"] {
        let Some(dir) = data_dir(sub) else { return };
        let files = conf_files(&dir);
        assert!(!files.is_empty());
        for f in files {
            if let Err(e) = policy::load_file(&f) {
                panic!("{}: {e}", f.display());
            }
        }
    }
}

#[test]
fn invalid_config_files_fail_with_dbus_messages() {
    let Some(dir) = data_dir("invalid-config-files") else {
        return;
    };
    let expected = std::fs::read_to_string(ERRORS_TSV).ok();
    let mut checked = 0;
    for f in conf_files(&dir) {
        let err = match policy::load_file(&f) {
            Ok(_) => panic!("{} parsed", f.display()),
            Err(e) => e,
        };
        // Every refusal says where: file and line.
        let located = err.located();
        assert!(
            located.contains(&*f.to_string_lossy())
                && (err.line.is_some() || located.contains(", line ")),
            "no file:line in {located:?}"
        );
        let Some(tsv) = &expected else { continue };
        let name = f.file_name().unwrap().to_str().unwrap();
        let line = tsv
            .lines()
            .find(|l| l.split('\t').next() == Some(name))
            .unwrap_or_else(|| panic!("{name} not in {ERRORS_TSV}"));
        let want = line.split('\t').nth(2).unwrap();
        let want = want
            .strip_prefix("Failed to start message bus: ")
            .unwrap_or(want);
        assert_eq!(err.to_string(), want, "{name}");
        checked += 1;
    }
    if expected.is_some() {
        assert!(checked >= 30, "only {checked} checked");
    }
}

#[test]
fn equivalent_config_files_are_equal() {
    let Some(dir) = data_dir("equiv-config-files") else {
        return;
    };
    let mut groups = 0;
    for sub in std::fs::read_dir(&dir).unwrap() {
        let sub = sub.unwrap().path();
        let files = conf_files(&sub);
        assert!(files.len() >= 2, "{}", sub.display());
        let first = policy::load_file(&files[0]).unwrap();
        for f in &files[1..] {
            let c = policy::load_file(f).unwrap();
            assert_eq!(first, c, "{} vs {}", files[0].display(), f.display());
        }
        groups += 1;
    }
    assert!(groups >= 2);
}
