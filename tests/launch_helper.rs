//! The setuid launch helper against valid and hostile inputs. It runs as
//! root (not setuid, so the test may name its own configuration through
//! BUSBAR_LAUNCH_HELPER_CONFIG); the checks it makes are the ones a setuid
//! installation relies on.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

const HELPER: &str = env!("CARGO_BIN_EXE_busbar-launch-helper");

struct Fixture {
    dir: PathBuf,
}

impl Fixture {
    fn new(tag: &str, bus_user: Option<&str>) -> Fixture {
        let dir = std::env::temp_dir().join(format!("busbar-helper-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("services")).unwrap();
        let user = bus_user
            .map(|u| format!("<user>{u}</user>"))
            .unwrap_or_default();
        let conf = format!(
            "<busconfig><type>system</type>{user}<listen>unix:path={d}/sock</listen>\
             <servicedir>{d}/services</servicedir>\
             <policy context=\"default\"><allow user=\"*\"/></policy></busconfig>",
            d = dir.display()
        );
        std::fs::write(dir.join("system.conf"), conf).unwrap();
        Fixture { dir }
    }

    fn service(&self, file: &str, body: &str) {
        std::fs::write(self.dir.join("services").join(file), body).unwrap();
    }

    fn run(&self, args: &[&str]) -> i32 {
        let out = Command::new(HELPER)
            .args(args)
            .env("BUSBAR_LAUNCH_HELPER_CONFIG", self.dir.join("system.conf"))
            .env("SECRET_FROM_CALLER", "leak")
            .output()
            .unwrap();
        out.status.code().unwrap_or(-1)
    }
}

impl Drop for Fixture {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn root() -> bool {
    if nix::unistd::geteuid().is_root() {
        true
    } else {
        common::skip_or_fail("the launch helper tests need root");
        false
    }
}

#[test]
fn valid_service_runs_as_its_user_with_a_clean_environment() {
    if !root() {
        return;
    }
    let f = Fixture::new("valid", Some("root"));
    let out: PathBuf = f.dir.join("out");
    std::fs::write(&out, "").unwrap();
    std::fs::set_permissions(&f.dir, std::os::unix::fs::PermissionsExt::from_mode(0o777)).unwrap();
    std::fs::set_permissions(&out, std::os::unix::fs::PermissionsExt::from_mode(0o666)).unwrap();
    f.service(
        "org.test.Good.service",
        &format!(
            "[D-BUS Service]\nName=org.test.Good\nExec=/bin/sh -c 'id -u > {o}; env >> {o}'\nUser=nobody\n",
            o = out.display()
        ),
    );
    assert_eq!(f.run(&["org.test.Good"]), 0);
    let text = std::fs::read_to_string(&out).unwrap();
    let mut lines = text.lines();
    assert_eq!(lines.next(), Some("65534"), "{text}");
    assert!(text.contains("DBUS_STARTER_BUS_TYPE=system"), "{text}");
    assert!(text.contains("DBUS_STARTER_ADDRESS=unix:path=/run/dbus/system_bus_socket"));
    assert!(
        !text.contains("SECRET_FROM_CALLER"),
        "environment leaked: {text}"
    );
}

#[test]
fn hostile_arguments() {
    if !root() {
        return;
    }
    let f = Fixture::new("args", Some("root"));
    assert_eq!(f.run(&[]), 10, "no argument");
    assert_eq!(f.run(&["a.b", "c.d"]), 10, "two arguments");
    assert_eq!(f.run(&["not-a-name"]), 5);
    assert_eq!(f.run(&["../../etc/passwd"]), 5);
    assert_eq!(f.run(&["/etc/passwd"]), 5);
    assert_eq!(f.run(&[":1.5"]), 5, "unique names are never activated");
    assert_eq!(f.run(&[""]), 5);
    let long = format!("a.{}", "b".repeat(300));
    assert_eq!(f.run(&[&long]), 5);
    assert_eq!(f.run(&["org.test.Missing"]), 6);
}

#[test]
fn bad_service_files() {
    if !root() {
        return;
    }
    let f = Fixture::new("files", Some("root"));
    f.service(
        "org.test.Wrong.service",
        "[D-BUS Service]\nName=org.test.Other\nExec=/bin/true\nUser=nobody\n",
    );
    assert_eq!(
        f.run(&["org.test.Wrong"]),
        8,
        "Name= must match the file name"
    );
    f.service(
        "org.test.NoUser.service",
        "[D-BUS Service]\nName=org.test.NoUser\nExec=/bin/true\n",
    );
    assert_ne!(f.run(&["org.test.NoUser"]), 0, "User= is required");
    f.service(
        "org.test.BadUser.service",
        "[D-BUS Service]\nName=org.test.BadUser\nExec=/bin/true\nUser=no-such-user-busbar\n",
    );
    assert_eq!(f.run(&["org.test.BadUser"]), 4);
    f.service(
        "org.test.NoExec.service",
        "[D-BUS Service]\nName=org.test.NoExec\nExec=/nonexistent/program\nUser=nobody\n",
    );
    assert_eq!(f.run(&["org.test.NoExec"]), 9);
    f.service("org.test.Garbage.service", "\u{0}\u{1}garbage[[[\n");
    assert_ne!(f.run(&["org.test.Garbage"]), 0);
}

#[test]
fn wrong_caller_or_config() {
    if !root() {
        return;
    }
    // The bus user is messagebus, but root calls: refused.
    let f = Fixture::new("caller", Some("messagebus"));
    f.service(
        "org.test.Good.service",
        "[D-BUS Service]\nName=org.test.Good\nExec=/bin/true\nUser=nobody\n",
    );
    assert_eq!(f.run(&["org.test.Good"]), 7);
    // No <user> in the configuration: refused.
    let g = Fixture::new("nouser", None);
    assert_eq!(g.run(&["org.test.Good"]), 3);
    // An unreadable configuration is a config error, not a crash.
    let code = Command::new(HELPER)
        .arg("org.test.Good")
        .env(
            "BUSBAR_LAUNCH_HELPER_CONFIG",
            Path::new("/nonexistent/system.conf"),
        )
        .status()
        .unwrap()
        .code();
    assert_eq!(code, Some(3));
}
