//! .service files from the dbus installed-tests data, and Exec splitting.

use std::path::Path;

const DATA: &str = "/usr/lib/dbus-1.0/installed-tests/dbus/data";

fn files(sub: &str) -> Option<Vec<std::path::PathBuf>> {
    let dir = Path::new(DATA).join(sub);
    let Ok(rd) = std::fs::read_dir(&dir) else {
        eprintln!("skipping: {} is missing", dir.display());
        return None;
    };
    let mut v: Vec<_> = rd
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "service"))
        .collect();
    v.sort();
    Some(v)
}

#[test]
fn valid_service_files() {
    for (sub, system) in [
        ("valid-service-files", false),
        ("valid-service-files-system", true),
    ] {
        let Some(files) = files(sub) else { return };
        assert!(!files.is_empty());
        for f in files {
            let s =
                policy::load_service_file(&f).unwrap_or_else(|e| panic!("{}: {e}", f.display()));
            assert!(
                s.name.starts_with("org.freedesktop.DBus.TestSuite"),
                "{}",
                s.name
            );
            let argv = policy::split_exec(&s.exec);
            if s.name.ends_with("ShellEchoServiceFail") {
                assert_eq!(argv, Err(policy::ShellError::UnclosedQuotes));
            } else if s.name.ends_with("ShellEchoServiceSuccess") {
                let argv = argv.unwrap();
                assert_eq!(
                    argv[1..],
                    ["-test", "that", "we get", "back", "--what", "we put in"]
                );
            } else {
                let argv = argv.unwrap_or_else(|e| panic!("{}: {e}", f.display()));
                assert!(!argv.is_empty() && argv[0].starts_with('/'), "{argv:?}");
            }
            if system {
                s.check_system().unwrap();
            }
        }
    }
}

#[test]
fn invalid_system_service_files() {
    let Some(files) = files("invalid-service-files-system") else {
        return;
    };
    assert_eq!(files.len(), 3);
    for f in files {
        let name = f.file_name().unwrap().to_str().unwrap().to_owned();
        let err = policy::load_service_file(&f)
            .and_then(|s| s.check_system())
            .unwrap_err();
        let key = if name.contains("NoExec") {
            "Exec"
        } else if name.contains("NoService") {
            "Name"
        } else {
            "User"
        };
        assert_eq!(err.missing_key, Some(key), "{name}");
        assert_eq!(
            err.to_string(),
            format!("No \"{key}\" key in .service file")
        );
    }
}
