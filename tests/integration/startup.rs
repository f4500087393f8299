//! Start-up defects from issue 9's review list, each against the real
//! daemon: the pid file (existing file, symlink, mode), a non-UTF-8
//! environment variable, and the --print-address/--print-pid descriptors.
//! (The GUID's getrandom failure cannot be provoked from outside without
//! also breaking std's own start-up; src/guid.rs tests it.)

use crate::common;
use crate::support;

use std::fs;
use std::io::{BufRead, BufReader, Read};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::*;
use support::*;

/// Reads up to `n` lines from `r` within the timeout; says whether it
/// reached end-of-file.
fn read_lines_eof(r: impl Read + Send + 'static, n: usize) -> (Vec<String>, bool) {
    let (tx, rx) = mpsc::channel::<Option<String>>();
    std::thread::spawn(move || {
        let mut b = BufReader::new(r);
        for _ in 0..n {
            let mut line = String::new();
            match b.read_line(&mut line) {
                Ok(0) | Err(_) => {
                    let _ = tx.send(None);
                    return;
                }
                Ok(_) => {
                    if tx.send(Some(line.trim_end().to_string())).is_err() {
                        return;
                    }
                }
            }
        }
    });
    let deadline = Instant::now() + TIMEOUT;
    let mut out = Vec::new();
    while out.len() < n {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(Some(l)) => out.push(l),
            Ok(None) => return (out, true),
            Err(_) => break,
        }
    }
    (out, false)
}

/// Reads `n` lines from `r` within the timeout (fewer if it ends first).
fn read_lines(r: impl Read + Send + 'static, n: usize) -> Vec<String> {
    read_lines_eof(r, n).0
}

/// Runs the daemon to its exit; returns the status and stderr.
fn run_to_exit(mut cmd: Command) -> (Option<i32>, String) {
    let mut child = cmd
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let err = child.stderr.take().unwrap();
    let code = wait_exit(&mut child);
    let mut text = String::new();
    let _ = BufReader::new(err).read_to_string(&mut text);
    (code, text)
}

fn pidfile_config(dir: &Path) -> (std::path::PathBuf, std::path::PathBuf) {
    let pid = dir.join("bus.pid");
    let cfg = write_config(dir, &format!("<pidfile>{}</pidfile>", pid.display()));
    (cfg, pid)
}

#[test]
fn pidfile_that_exists_is_refused() {
    let dir = TempDir::new("pidfile-exists");
    let (cfg, pid) = pidfile_config(dir.path());
    fs::write(&pid, "12345\n").unwrap();
    let mut cmd = daemon_command(&cfg);
    cmd.arg("--print-address=1");
    let (code, err) = run_to_exit(cmd);
    assert_eq!(code, Some(1), "{err}");
    let want = format!(
        "Failed to start message bus: The pid file \"{}\" exists, if the message bus is not running, remove this file",
        pid.display()
    );
    assert!(err.contains(&want), "{err}");
    assert_eq!(fs::read_to_string(&pid).unwrap(), "12345\n");
}

#[test]
fn pidfile_symlink_is_not_followed() {
    let dir = TempDir::new("pidfile-symlink");
    let (cfg, pid) = pidfile_config(dir.path());
    // A dangling link: an exists() check passes, open must not follow it.
    let target = dir.path().join("elsewhere");
    std::os::unix::fs::symlink(&target, &pid).unwrap();
    let (code, err) = run_to_exit(daemon_command(&cfg));
    assert_eq!(code, Some(1), "{err}");
    let want = format!("Failed to open \"{}\": File exists", pid.display());
    assert!(err.contains(&want), "{err}");
    assert!(!target.exists(), "the pid file followed the symlink");
    // A link to an existing file is refused too, and the file untouched.
    // (dbus-daemon unlinks the pid file path when start-up fails, the link
    // it did not create included, so it is made again.)
    fs::write(&target, "precious\n").unwrap();
    let _ = fs::remove_file(&pid);
    std::os::unix::fs::symlink(&target, &pid).unwrap();
    let (code, err) = run_to_exit(daemon_command(&cfg));
    assert_eq!(code, Some(1), "{err}");
    assert_eq!(fs::read_to_string(&target).unwrap(), "precious\n");
}

/// Starts the daemon under `umask`, through sh (which execs it, so the pid
/// is the daemon's).
fn spawn_with_umask(umask: &str, cfg: &Path) -> Daemon {
    let mut cmd = Command::new("/bin/sh");
    cmd.arg("-c")
        .arg(format!("umask {umask}; exec \"$@\""))
        .arg("sh")
        .arg(daemon_path())
        .arg(format!("--config-file={}", cfg.display()))
        .arg("--nofork")
        .arg("--print-address=1")
        .stdin(Stdio::null());
    Daemon::spawn(cmd)
}

fn wait_for_file(p: &Path) {
    let deadline = Instant::now() + TIMEOUT;
    while fs::read_to_string(p).map_or(true, |t| !t.ends_with('\n')) {
        assert!(Instant::now() < deadline, "{} never written", p.display());
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn mode(p: &Path) -> u32 {
    fs::symlink_metadata(p).unwrap().permissions().mode() & 0o7777
}

#[test]
fn pidfile_is_created_with_mode_0644() {
    let dir = TempDir::new("pidfile-mode");
    let (cfg, pid) = pidfile_config(dir.path());
    let d = spawn_with_umask("022", &cfg);
    // The address is printed before the pid file is written.
    wait_for_file(&pid);
    assert_eq!(
        fs::read_to_string(&pid).unwrap(),
        format!("{}\n", d.child.id())
    );
    assert_eq!(mode(&pid), 0o644);
    // A round trip first: dbus-daemon writes its pid file before it
    // handles SIGTERM, and dies without cleaning up if it comes earlier.
    assert_eq!(d.client().get_id().len(), 32);
    drop(d);
    assert!(!pid.exists(), "the pid file was not removed at exit");
    if !is_reference_daemon() {
        // dbus-daemon lets the umask narrow the mode (0600 under 077);
        // busbar's pid file is readable by everyone whatever the umask.
        let d = spawn_with_umask("077", &cfg);
        wait_for_file(&pid);
        assert_eq!(mode(&pid), 0o644);
        drop(d);
    }
}

#[test]
fn non_utf8_environment_variable_reaches_activated_services() {
    let dir = TempDir::new("env-non-utf8");
    let services = dir.path().join("services");
    fs::create_dir_all(&services).unwrap();
    let out = dir.path().join("environ");
    let script = dir.path().join("dump-env");
    fs::write(
        &script,
        format!(
            "#!/bin/sh\ncat /proc/self/environ > {}.tmp\nmv {0}.tmp {0}\n",
            out.display()
        ),
    )
    .unwrap();
    fs::set_permissions(&script, fs::Permissions::from_mode(0o755)).unwrap();
    fs::write(
        services.join("com.example.DumpEnv.service"),
        format!(
            "[D-BUS Service]\nName=com.example.DumpEnv\nExec={}\n",
            script.display()
        ),
    )
    .unwrap();
    let cfg = write_config(
        dir.path(),
        &format!("<servicedir>{}</servicedir>", services.display()),
    );
    let mut cmd = daemon_command(&cfg);
    cmd.arg("--print-address=1")
        .env(
            std::ffi::OsStr::from_bytes(b"BUSBAR_TEST_RAW"),
            std::ffi::OsStr::from_bytes(b"caf\xe9\xff"),
        )
        .stderr(Stdio::null());
    let mut d = Daemon::spawn(cmd);
    let mut c = d.client();
    let mut w = W::new();
    w.str("com.example.DumpEnv").u32(0);
    // The service exits without taking its name; its reply does not
    // matter here, only the environment it was given.
    c.call(
        Some(DRIVER),
        DRIVER_PATH,
        Some(DRIVER),
        "StartServiceByName",
        "su",
        w.buf,
    );
    let deadline = Instant::now() + TIMEOUT;
    while !out.exists() {
        assert!(Instant::now() < deadline, "the service never ran");
        std::thread::sleep(Duration::from_millis(20));
    }
    let env = fs::read(&out).unwrap();
    assert!(
        env.split(|&b| b == 0)
            .any(|e| e == b"BUSBAR_TEST_RAW=caf\xe9\xff"),
        "variable missing or altered in {:?}",
        String::from_utf8_lossy(&env)
    );
    let mut good = d.client();
    assert_eq!(good.get_id().len(), 32);
    assert!(d.is_alive());
}

/// Spawns the daemon through sh with fd 5 redirected to `file`.
fn spawn_with_fd5(cfg: &Path, file: &Path, args: &[&str]) -> Child {
    Command::new("/bin/sh")
        .arg("-c")
        .arg(format!("exec \"$@\" 5>{}", file.display()))
        .arg("sh")
        .arg(daemon_path())
        .arg(format!("--config-file={}", cfg.display()))
        .arg("--nofork")
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn")
}

#[test]
fn print_address_and_pid_to_the_same_fd() {
    // dbus-daemon closes the fd after the address, then fails to write
    // the pid to it (exit 1). busbar does the same without closing the
    // number twice (which could close a socket it opened in between).
    let dir = TempDir::new("print-same-fd");
    let cfg = write_config(dir.path(), "");
    let file = dir.path().join("printed");
    let mut child = spawn_with_fd5(&cfg, &file, &["--print-address=5", "--print-pid=5"]);
    let err = child.stderr.take().unwrap();
    let code = wait_exit(&mut child);
    let mut err_text = String::new();
    let _ = BufReader::new(err).read_to_string(&mut err_text);
    assert_eq!(code, Some(1), "{err_text}");
    assert!(
        err_text.contains("Writing to pipe: Bad file descriptor"),
        "{err_text}"
    );
    let printed = fs::read_to_string(&file).unwrap();
    let lines: Vec<&str> = printed.lines().collect();
    assert_eq!(lines.len(), 1, "{printed:?}");
    assert!(lines[0].starts_with("unix:path="), "{printed:?}");
}

#[test]
fn print_address_and_pid_to_stderr_keeps_it_open() {
    let dir = TempDir::new("print-stderr");
    let cfg = write_config(dir.path(), "");
    let mut cmd = daemon_command(&cfg);
    let mut child = cmd
        .arg("--nosyslog")
        .arg("--print-address=2")
        .arg("--print-pid=2")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    // Log lines (dbus-daemon's start-up warnings) may come in between.
    let all = read_lines(child.stderr.take().unwrap(), 6);
    let lines: Vec<String> = all
        .iter()
        .filter(|l| l.starts_with("unix:") || l.bytes().all(|b| b.is_ascii_digit()))
        .cloned()
        .collect();
    let d = Daemon {
        address: lines.first().cloned().unwrap_or_default(),
        child,
    };
    assert_eq!(lines.len(), 2, "{all:?}");
    assert!(lines[0].starts_with("unix:path="), "{all:?}");
    assert_eq!(lines[1], d.child.id().to_string());
    let mut c = d.client();
    assert_eq!(c.get_id().len(), 32);
}

#[test]
fn print_address_and_pid_to_stdout() {
    let dir = TempDir::new("print-stdout");
    let cfg = write_config(dir.path(), "");
    let mut cmd = daemon_command(&cfg);
    let mut child = cmd
        .arg("--print-address=1")
        .arg("--print-pid=1")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn");
    let lines = read_lines(child.stdout.take().unwrap(), 2);
    let d = Daemon {
        address: lines.first().cloned().unwrap_or_default(),
        child,
    };
    assert_eq!(lines.len(), 2, "{lines:?}");
    assert_eq!(lines[1], d.child.id().to_string());
    let mut c = d.client();
    assert_eq!(c.get_id().len(), 32);
}

#[test]
fn print_address_to_fd_0() {
    // Both daemons point fd 0 at /dev/null first thing, so fd 0 opened for
    // writing is let go at once (the reader sees end-of-file, nothing
    // printed) and the bus runs on; busbar used to take ownership of fd 0
    // and close it, leaving the number free for a socket.
    let dir = TempDir::new("print-fd0");
    let cfg = write_config(dir.path(), "");
    let (r, w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).unwrap();
    let mut cmd = daemon_command(&cfg);
    let mut child = cmd
        .arg("--print-address=0")
        .arg("--print-pid=1")
        .stdin(Stdio::from(w))
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn");
    // The Command holds our copy of the write end.
    drop(cmd);
    let pid = read_lines(child.stdout.take().unwrap(), 1);
    assert_eq!(pid, vec![child.id().to_string()]);
    let (lines, eof) = read_lines_eof(fs::File::from(r), 1);
    assert!(eof && lines.is_empty(), "fd 0 got {lines:?}, eof {eof}");
    let sock = dir.path().join("bus_socket");
    let mut d = Daemon {
        address: format!("unix:path={}", sock.display()),
        child,
    };
    let mut c = d.client();
    assert_eq!(c.get_id().len(), 32);
    assert!(d.is_alive());
}
