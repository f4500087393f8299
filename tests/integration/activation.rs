//! Activation outcomes a client sees: direct activation failures and
//! timeouts, and system-bus activation through busbar-launch-helper (its
//! exit codes mapped to dbus-daemon's errors, and a service it starts).

use crate::common;

use std::fs;
use std::path::Path;

use common::*;

fn start_service(c: &mut Client, name: &str) -> Msg {
    let mut w = W::new();
    w.str(name).u32(0);
    c.call_driver("StartServiceByName", "su", w.buf)
}

fn service_file(dir: &Path, name: &str, exec: &str, user: Option<&str>) {
    let user = user.map(|u| format!("User={u}\n")).unwrap_or_default();
    fs::write(
        dir.join(format!("{name}.service")),
        format!("[D-BUS Service]\nName={name}\nExec={exec}\n{user}"),
    )
    .unwrap();
}

fn session_bus_with_services(extra: &str) -> (Bus, std::path::PathBuf) {
    // The service dir is created before the daemon reads its config.
    let dir = std::env::temp_dir().join(format!(
        "busbar-act-{}-{}",
        std::process::id(),
        rand_suffix()
    ));
    fs::create_dir_all(&dir).unwrap();
    let bus = Bus::start_with(&format!(
        "<servicedir>{}</servicedir>{extra}",
        dir.display()
    ));
    (bus, dir)
}

fn rand_suffix() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    N.fetch_add(1, Ordering::SeqCst)
}

#[test]
fn child_exit_and_exec_failure_reach_the_caller() {
    let (bus, dir) = session_bus_with_services("");
    service_file(&dir, "com.example.Exits", "/bin/sh -c 'exit 3'", None);
    service_file(
        &dir,
        "com.example.Missing",
        "/nonexistent/busbar-test-program",
        None,
    );
    let mut c = Client::connect(&bus);
    let r = start_service(&mut c, "com.example.Exits");
    assert_eq!(
        r.error_name.as_deref(),
        Some("org.freedesktop.DBus.Error.Spawn.ChildExited")
    );
    assert!(
        r.arg0_str().contains("exited with status 3"),
        "{}",
        r.arg0_str()
    );
    let r = start_service(&mut c, "com.example.Missing");
    assert_eq!(
        r.error_name.as_deref(),
        Some("org.freedesktop.DBus.Error.Spawn.ExecFailed")
    );
    let r = start_service(&mut c, "com.example.NotThere");
    assert_eq!(
        r.error_name.as_deref(),
        Some("org.freedesktop.DBus.Error.ServiceUnknown")
    );
    let _ = fs::remove_dir_all(&dir);
}

#[test]
fn a_service_that_never_takes_its_name_times_out() {
    let (bus, dir) = session_bus_with_services("<limit name=\"service_start_timeout\">300</limit>");
    service_file(&dir, "com.example.Sleepy", "/bin/sleep 30", None);
    let mut c = Client::connect(&bus);
    // An auto-started call waits with the StartServiceByName call; both fail.
    let call = MsgBuilder::method_call(
        0,
        Some("com.example.Sleepy"),
        "/",
        Some("com.example.Sleepy"),
        "Hi",
    );
    let serial = c.send(call);
    let r = start_service(&mut c, "com.example.Sleepy");
    assert_eq!(
        r.error_name.as_deref(),
        Some("org.freedesktop.DBus.Error.TimedOut")
    );
    let r2 = c.wait_reply(serial);
    assert_eq!(
        r2.error_name.as_deref(),
        Some("org.freedesktop.DBus.Error.TimedOut")
    );
    let _ = fs::remove_dir_all(&dir);
}

/// A system-like bus (run by root as root) whose activation goes through
/// the launch helper, which reads the same configuration file.
fn system_bus_with_helper(tag: &str) -> Option<(Bus, std::path::PathBuf)> {
    if !nix::unistd::geteuid().is_root() {
        skip_or_fail("system-bus activation needs root");
        return None;
    }
    let dir = std::env::temp_dir().join(format!("busbar-sysact-{tag}-{}", std::process::id()));
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir).unwrap();
    let helper = env!("CARGO_BIN_EXE_busbar-launch-helper");
    let extra = format!(
        "<user>root</user><servicehelper>{helper}</servicehelper><servicedir>{}</servicedir>\
         <policy context=\"default\"><allow user=\"*\"/></policy>",
        dir.display()
    );
    // The helper is not setuid here, so it may be pointed at the test's
    // configuration; it inherits the variable through the daemon.
    let bus = Bus::start_with_config_env(&extra, "BUSBAR_LAUNCH_HELPER_CONFIG");
    Some((bus, dir))
}

#[test]
fn launch_helper_exit_codes_become_dbus_errors() {
    let Some((bus, dir)) = system_bus_with_helper("codes") else {
        return;
    };
    service_file(
        &dir,
        "com.example.NoSuchUser",
        "/bin/true",
        Some("no-such-user-busbar"),
    );
    service_file(
        &dir,
        "com.example.NoExec",
        "/nonexistent/program",
        Some("nobody"),
    );
    service_file(&dir, "com.example.NoUser", "/bin/true", None);
    let mut c = Client::connect(&bus);
    let r = start_service(&mut c, "com.example.NoSuchUser");
    assert_eq!(
        r.error_name.as_deref(),
        Some("org.freedesktop.DBus.Error.Spawn.FailedToSetup"),
        "{}",
        r.arg0_str()
    );
    let r = start_service(&mut c, "com.example.NoExec");
    assert_eq!(
        r.error_name.as_deref(),
        Some("org.freedesktop.DBus.Error.Spawn.ExecFailed"),
        "{}",
        r.arg0_str()
    );
    let r = start_service(&mut c, "com.example.NoUser");
    assert_eq!(
        r.error_name.as_deref(),
        Some("org.freedesktop.DBus.Error.Spawn.FileInvalid"),
        "{}",
        r.arg0_str()
    );
    let _ = fs::remove_dir_all(&dir);
}

#[test]
fn launch_helper_starts_a_service_as_its_user() {
    let Some((bus, dir)) = system_bus_with_helper("ok") else {
        return;
    };
    let py = Path::new("/usr/bin/python3");
    let has_dbus = std::process::Command::new(py)
        .args(["-c", "import dbus"])
        .status()
        .is_ok_and(|s| s.success());
    if !has_dbus {
        skip_or_fail("/usr/bin/python3 with python3-dbus is needed for the service");
        let _ = fs::remove_dir_all(&dir);
        return;
    }
    // The helper tells services the system bus address; this service reads
    // the test bus's address from a file instead.
    fs::write(dir.join("address"), &bus.address).unwrap();
    let script = dir.join("service.py");
    fs::write(
        &script,
        format!(
            r#"import os, dbus
bus = dbus.bus.BusConnection(open("{d}/address").read().strip())
open("{d}/started", "w").write("%d %s" % (os.getuid(), os.environ.get("DBUS_STARTER_BUS_TYPE", "")))
bus.request_name("com.example.Helped")
import time; time.sleep(30)
"#,
            d = dir.display()
        ),
    )
    .unwrap();
    // nobody must be able to read the script and its directory.
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(&dir, fs::Permissions::from_mode(0o777)).unwrap();
    fs::set_permissions(&script, fs::Permissions::from_mode(0o644)).unwrap();
    service_file(
        &dir,
        "com.example.Helped",
        &format!("/usr/bin/python3 {}", script.display()),
        Some("nobody"),
    );
    let mut c = Client::connect(&bus);
    let r = start_service(&mut c, "com.example.Helped");
    assert_eq!(
        r.msg_type,
        METHOD_RETURN,
        "{:?}: {}",
        r.error_name,
        if r.msg_type == ERROR {
            r.arg0_str()
        } else {
            String::new()
        }
    );
    assert_eq!(r.arg0_u32(), 1, "DBUS_START_REPLY_SUCCESS");
    let started = fs::read_to_string(dir.join("started")).unwrap();
    assert_eq!(started, "65534 system");
    let r = start_service(&mut c, "com.example.Helped");
    assert_eq!(r.arg0_u32(), 2, "DBUS_START_REPLY_ALREADY_RUNNING");
    // Stop the service (it is nobody's child we wait for).
    let _ = std::process::Command::new("pkill")
        .args(["-f", &script.display().to_string()])
        .status();
    let _ = fs::remove_dir_all(&dir);
}

#[test]
fn service_file_changes_are_seen_without_a_reload() {
    let (bus, dir) = session_bus_with_services("");
    service_file(&dir, "com.example.Edited", "/bin/sh -c 'exit 3'", None);
    let mut c = Client::connect(&bus);
    let r = start_service(&mut c, "com.example.Edited");
    assert!(r.arg0_str().contains("status 3"), "{}", r.arg0_str());
    // Rewrite the same file in place: the directory itself does not change,
    // so only a watch on it (inotify) notices.
    let path = dir.join("com.example.Edited.service");
    let mut f = fs::OpenOptions::new()
        .write(true)
        .truncate(true)
        .open(&path)
        .unwrap();
    std::io::Write::write_all(
        &mut f,
        b"[D-BUS Service]\nName=com.example.Edited\nExec=/bin/sh -c 'exit 4'\n",
    )
    .unwrap();
    drop(f);
    let deadline = std::time::Instant::now() + TIMEOUT;
    loop {
        let r = start_service(&mut c, "com.example.Edited");
        if r.arg0_str().contains("status 4") {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "edit not seen: {}",
            r.arg0_str()
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    // A new file shows up in ListActivatableNames.
    service_file(&dir, "com.example.Added", "/bin/true", None);
    let deadline = std::time::Instant::now() + TIMEOUT;
    loop {
        let names = c
            .call_driver("ListActivatableNames", "", Vec::new())
            .reader()
            .str_array();
        if names.iter().any(|n| n == "com.example.Added") {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "new file not seen");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let _ = fs::remove_dir_all(&dir);
}

/// Issue 9: the daemon blocks SIGHUP, SIGINT, SIGTERM and SIGCHLD for its
/// signalfd, and activated services inherited that mask, so `kill` and the
/// shutdown SIGTERM did nothing to them; and descriptors the daemon
/// inherited leaked into every service. dbus-daemon's services start with
/// nothing blocked and only fds 0-2 (and with its ignored signals still
/// ignored, which busbar does not copy).
#[test]
fn activated_service_starts_with_no_blocked_signals_and_no_inherited_fds() {
    use std::os::fd::AsRawFd;
    // A descriptor the daemon inherits: open without close-on-exec while
    // the daemon is spawned.
    let marker = std::env::temp_dir().join(format!("busbar-leak-marker-{}", std::process::id()));
    fs::write(&marker, b"").unwrap();
    let leak = fs::File::open(&marker).unwrap();
    let leak_fd = leak.as_raw_fd();
    // SAFETY: F_SETFD on a descriptor this test owns; only its flags change.
    assert_eq!(unsafe { libc::fcntl(leak_fd, libc::F_SETFD, 0) }, 0);
    let (bus, dir) = session_bus_with_services("");
    drop(leak);
    assert!(
        Path::new(&format!("/proc/{}/fd/{leak_fd}", bus.pid())).exists(),
        "the daemon should have inherited fd {leak_fd}"
    );
    let out = dir.join("out");
    fs::create_dir_all(&out).unwrap();
    // grep reads its own status: it inherits the service's mask and
    // dispositions, while the shell's own mask is briefly full while it
    // waits for a child (dash blocks everything around sigsuspend).
    service_file(
        &dir,
        "com.example.Inspect",
        &format!(
            "/bin/sh -c 'grep -E \"^Sig(Blk|Ign)\" /proc/self/status > {o}/status; (ls -l /proc/$$/fd) > {o}/fds; exit 3'",
            o = out.display()
        ),
        None,
    );
    let mut c = Client::connect(&bus);
    let r = start_service(&mut c, "com.example.Inspect");
    assert_eq!(
        r.error_name.as_deref(),
        Some("org.freedesktop.DBus.Error.Spawn.ChildExited")
    );
    let status = fs::read_to_string(out.join("status")).unwrap();
    let mut lines = status.lines();
    assert_eq!(
        lines.next(),
        Some("SigBlk:\t0000000000000000"),
        "signals blocked in an activated service"
    );
    // dbus-daemon leaves the signals it ignores itself (SIGPIPE, and
    // glibc's 32 and 33 if its parent ignored them) ignored in its
    // services; issue 9 asks busbar for default dispositions.
    if !is_reference_daemon() {
        assert_eq!(
            lines.next(),
            Some("SigIgn:\t0000000000000000"),
            "signals ignored in an activated service"
        );
    }
    let fds = fs::read_to_string(out.join("fds")).unwrap();
    assert_eq!(
        fds_above_2(&fds),
        Vec::<String>::new(),
        "open fds of an activated service: {fds}"
    );
    let _ = fs::remove_file(&marker);
    let _ = fs::remove_dir_all(&dir);
}

/// Makes the next process the kernel creates get `pid`, by setting
/// ns_last_pid and forking until it works (other processes may take it
/// first). Returns the child, or None if it cannot be done here.
fn process_with_pid(pid: i32) -> Option<std::process::Child> {
    for _ in 0..1000 {
        if fs::write("/proc/sys/kernel/ns_last_pid", (pid - 1).to_string()).is_err() {
            return None;
        }
        let mut child = std::process::Command::new("/bin/sleep")
            .arg("30")
            .spawn()
            .ok()?;
        if child.id() as i32 == pid {
            return Some(child);
        }
        let _ = child.kill();
        let _ = child.wait();
    }
    None
}

/// Issue 9: a launcher that exits 0 without taking its name kept its PID in
/// the activation state, and the timeout SIGKILLed that PID, which by then
/// could belong to another process. Here the PID is given to another
/// process on purpose; it must survive the timeout.
#[test]
fn reaped_launcher_pid_is_not_killed_at_the_activation_timeout() {
    if !Path::new("/proc/sys/kernel/ns_last_pid").exists() || !nix::unistd::geteuid().is_root() {
        common::skip_or_fail("recycling a PID needs root and /proc/sys/kernel/ns_last_pid");
        return;
    }
    let (bus, dir) =
        session_bus_with_services("<limit name=\"service_start_timeout\">1500</limit>");
    let pidfile = dir.join("launcher.pid");
    service_file(
        &dir,
        "com.example.Quits",
        &format!("/bin/sh -c 'echo $$ > {}'", pidfile.display()),
        None,
    );
    let mut c = Client::connect(&bus);
    let mut w = W::new();
    w.str("com.example.Quits").u32(0);
    let serial = c.call(
        Some(DRIVER),
        DRIVER_PATH,
        Some(DRIVER),
        "StartServiceByName",
        "su",
        w.buf,
    );
    // Wait for the launcher to have run, exited and been reaped.
    let deadline = std::time::Instant::now() + TIMEOUT;
    let pid: i32 = loop {
        if let Some(p) = fs::read_to_string(&pidfile)
            .ok()
            .and_then(|s| s.trim().parse().ok())
        {
            if !Path::new(&format!("/proc/{p}")).exists() {
                break p;
            }
        }
        assert!(
            std::time::Instant::now() < deadline,
            "launcher never ran or was never reaped"
        );
        std::thread::sleep(std::time::Duration::from_millis(10));
    };
    let Some(mut other) = process_with_pid(pid) else {
        common::skip_or_fail("could not give the launcher's PID to another process");
        return;
    };
    let r = c.wait_reply(serial);
    assert_eq!(
        r.error_name.as_deref(),
        Some("org.freedesktop.DBus.Error.TimedOut"),
        "{}",
        r.arg0_str()
    );
    std::thread::sleep(std::time::Duration::from_millis(100));
    let alive = matches!(other.try_wait(), Ok(None));
    let _ = other.kill();
    let _ = other.wait();
    // dbus-daemon 1.14 has this defect itself (its babysitter keeps the
    // grandchild's PID and kills it at the timeout): checked for busbar only.
    if is_reference_daemon() {
        eprintln!("reference daemon: the recycled PID {pid} survived: {alive}");
    } else {
        assert!(
            alive,
            "the process now holding the launcher's old PID {pid} was killed"
        );
    }
    let _ = fs::remove_dir_all(&dir);
}

/// The descriptors above 2 in an `ls -l /proc/PID/fd` listing, as
/// "fd -> target", leaving out copies of fds 0-2: dash keeps a copy of one
/// of them as fd 10. The leaked descriptor is a marker file, so it cannot
/// hide among those.
fn fds_above_2(listing: &str) -> Vec<String> {
    let fds: Vec<(u32, &str)> = listing
        .lines()
        .filter_map(|l| {
            let (left, target) = l.split_once(" -> ")?;
            let fd: u32 = left.split_whitespace().last()?.parse().ok()?;
            Some((fd, target))
        })
        .collect();
    let std: Vec<&str> = fds.iter().filter(|f| f.0 <= 2).map(|f| f.1).collect();
    fds.iter()
        .filter(|(fd, target)| *fd > 2 && !std.contains(target))
        .map(|(fd, target)| format!("{fd} -> {target}"))
        .collect()
}
