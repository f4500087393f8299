//! The README's commands work as a newcomer types them (issue 8, point 7):
//! the run command starts a session bus that answers on the address it
//! prints, and the test command is the one CI runs.
//!
//! These tests run `cargo` on this checkout, so they test busbar whatever
//! `BUSBAR_TEST_DAEMON` says (the README is about busbar); they pass either
//! way.

use crate::common;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{Client, TIMEOUT};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The first command of the ```sh block under the README heading `heading`.
fn readme_command(heading: &str) -> String {
    let readme = std::fs::read_to_string(root().join("README.md")).expect("read README.md");
    let section = readme
        .split("\n## ")
        .find(|s| s.starts_with(heading))
        .unwrap_or_else(|| panic!("README has no section {heading:?}"));
    let block = section
        .split("```sh\n")
        .nth(1)
        .and_then(|b| b.split("```").next())
        .unwrap_or_else(|| panic!("README section {heading:?} has no sh block"));
    block
        .lines()
        .map(str::trim)
        .find(|l| !l.is_empty() && !l.starts_with('#'))
        .expect("a command")
        .to_string()
}

/// The child processes of `pid`, from any of its threads (Linux /proc).
fn children(pid: u32) -> Vec<u32> {
    let tasks = std::fs::read_dir(format!("/proc/{pid}/task")).expect("read /proc task");
    tasks
        .filter_map(Result::ok)
        .filter_map(|t| std::fs::read_to_string(t.path().join("children")).ok())
        .flat_map(|s| {
            s.split_whitespace()
                .filter_map(|p| p.parse().ok())
                .collect::<Vec<u32>>()
        })
        .collect()
}

fn terminate(pid: u32) {
    // SAFETY: kill(2) with a pid we read from our own child's /proc entry.
    unsafe {
        libc::kill(pid as libc::pid_t, libc::SIGTERM);
    }
}

#[test]
fn readme_run_command_starts_a_session_bus() {
    let cmd = readme_command("Run a session bus");
    assert_eq!(cmd, "cargo run --release -- --session --print-address");
    let mut words = cmd.split_whitespace();
    assert_eq!(words.next(), Some("cargo"));
    // The cargo that runs this test, on this checkout, as typed.
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut child = Command::new(cargo)
        .args(words)
        .current_dir(root())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn cargo run");
    let stdout = child.stdout.take().expect("stdout");
    let stderr = child.stderr.take().expect("stderr");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut line = String::new();
        let _ = BufReader::new(stdout).read_line(&mut line);
        let _ = tx.send(line);
    });
    let err_text = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = std::io::Read::read_to_string(&mut BufReader::new(stderr), &mut s);
        s
    });
    // cargo may have to build first.
    let address = rx
        .recv_timeout(Duration::from_secs(600))
        .unwrap_or_default();
    let address = address.trim().to_string();
    // cargo execs the program on Unix; if it ever waits for it instead, the
    // daemon is its child.
    let mut daemon = children(child.id());
    if daemon.is_empty() {
        daemon.push(child.id());
    }
    let result = std::panic::catch_unwind(|| {
        assert!(
            address.starts_with("unix:"),
            "no address printed: {address:?}"
        );
        let mut c = Client::connect_to(&address);
        assert!(c.unique_name.starts_with(":1."), "{}", c.unique_name);
        assert_eq!(c.get_id().len(), 32);
    });
    for &pid in &daemon {
        terminate(pid);
    }
    let deadline = Instant::now() + TIMEOUT;
    let status = loop {
        if let Ok(Some(s)) = child.try_wait() {
            break Some(s);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let err = err_text.join().unwrap_or_default();
    if let Err(e) = result {
        panic!("{e:?}\ncargo's stderr:\n{err}");
    }
    assert!(
        status.is_some(),
        "the daemon (pids {daemon:?}) did not stop on SIGTERM"
    );
    assert!(!err.contains("could not determine which binary"), "{err}");
}

#[test]
fn readme_test_command_is_what_ci_runs() {
    let cmd = readme_command("Run every test");
    assert_eq!(cmd, "./test.sh");
    let script = root().join(cmd.trim_start_matches("./"));
    let mode = std::fs::metadata(&script)
        .unwrap_or_else(|e| panic!("{}: {e}", script.display()))
        .permissions();
    assert!(
        std::os::unix::fs::PermissionsExt::mode(&mode) & 0o111 != 0,
        "{} is not executable",
        script.display()
    );
    let ci = std::fs::read_to_string(root().join(".ci/run")).expect("read .ci/run");
    assert!(
        ci.lines().any(|l| l.trim() == format!("exec {cmd}")),
        ".ci/run does not run {cmd}:\n{ci}"
    );
    assert!(Path::new(&root().join(".ci/run")).exists());
}
