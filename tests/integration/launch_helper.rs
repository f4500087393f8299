//! The setuid launch helper against valid and hostile inputs. It runs as
//! root (not setuid, so the test may name its own configuration through
//! BUSBAR_LAUNCH_HELPER_CONFIG); the checks it makes are the ones a setuid
//! installation relies on.

use crate::common;

use std::path::{Path, PathBuf};
use std::process::Command;

const HELPER: &str = env!("CARGO_BIN_EXE_busbar-launch-helper");

struct Fixture {
    dir: PathBuf,
}

/// Fails under CI (where the tests run as root), otherwise lets the caller
/// skip.
impl Fixture {
    fn new(tag: &str, bus_user: Option<&str>) -> Fixture {
        let dir = std::env::temp_dir().join(format!("busbar-helper-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("services")).unwrap();
        std::fs::create_dir_all(dir.join("services2")).unwrap();
        let user = bus_user
            .map(|u| format!("<user>{u}</user>"))
            .unwrap_or_default();
        let conf = format!(
            "<busconfig><type>system</type>{user}<listen>unix:path={d}/sock</listen>\
             <servicedir>{d}/services</servicedir><servicedir>{d}/services2</servicedir>\
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
    // As dbus-daemon-launch-helper: a wrong argument count prints the
    // usage and exits 0.
    assert_eq!(f.run(&[]), 0, "no argument");
    assert_eq!(f.run(&["a.b", "c.d"]), 0, "two arguments");
    assert_eq!(f.run(&["not-a-name"]), 5);
    assert_eq!(f.run(&["../../etc/passwd"]), 5);
    assert_eq!(f.run(&["/etc/passwd"]), 5);
    // A unique name is a valid bus name with no service file.
    assert_eq!(f.run(&[":1.5"]), 6, "unique names are never activated");
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
    // A missing key is DBUS_ERROR_FAILED in dbus-daemon-launch-helper,
    // which exits with the generic code.
    assert_eq!(f.run(&["org.test.NoUser"]), 1, "User= is required");
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

/// Issue 9: a file that cannot be loaded in an earlier service directory
/// (here: larger than a service file may be) is passed over for the next
/// directory, as dbus-daemon-launch-helper does; it used to be FILE_INVALID.
#[test]
fn oversized_file_in_an_earlier_directory_is_passed_over() {
    if !root() {
        return;
    }
    let f = Fixture::new("oversized", Some("root"));
    let big = format!(
        "[D-BUS Service]\nName=org.test.Big\nExec=/bin/false\nUser=nobody\n#{}\n",
        "x".repeat(2 * 1024 * 1024)
    );
    f.service("org.test.Big.service", &big);
    // Only the earlier directory: nothing loadable, so not found.
    assert_eq!(f.run(&["org.test.Big"]), 6);
    let out = f.dir.join("ran");
    std::fs::write(
        f.dir.join("services2").join("org.test.Big.service"),
        format!(
            "[D-BUS Service]\nName=org.test.Big\nExec=/bin/sh -c 'echo ok > {}'\nUser=root\n",
            out.display()
        ),
    )
    .unwrap();
    assert_eq!(f.run(&["org.test.Big"]), 0);
    assert_eq!(std::fs::read_to_string(&out).unwrap(), "ok\n");
}

/// Runs the helper with exactly `env` as its environment (entries need
/// not contain `=`), with SIGTERM blocked, SIGHUP ignored and one extra
/// descriptor open, as a careless or hostile caller might start it.
fn run_raw(f: &Fixture, name: &str, env: &[&[u8]]) -> (i32, i32) {
    use std::ffi::CString;
    use std::os::fd::AsRawFd;
    use std::os::unix::process::CommandExt;
    let config = format!(
        "BUSBAR_LAUNCH_HELPER_CONFIG={}",
        f.dir.join("system.conf").display()
    );
    let mut envs: Vec<CString> = vec![CString::new(config).unwrap()];
    envs.extend(env.iter().map(|e| CString::new(*e).unwrap()));
    let prog = CString::new(HELPER).unwrap();
    let arg = CString::new(name).unwrap();
    let argv = [prog.as_ptr(), arg.as_ptr(), std::ptr::null()];
    let mut envp: Vec<*const libc::c_char> = envs.iter().map(|e| e.as_ptr()).collect();
    envp.push(std::ptr::null());
    // Addresses, so the hook is Send; they stay valid (see below).
    let (argv_at, envp_at) = (argv.as_ptr() as usize, envp.as_ptr() as usize);
    let marker = f.dir.join("leak-marker");
    std::fs::write(&marker, b"").unwrap();
    let leak = std::fs::File::open(&marker).unwrap();
    let leak_fd = leak.as_raw_fd();
    let mut cmd = Command::new("/bin/false");
    // SAFETY: runs in the forked child before exec; it only makes
    // async-signal-safe calls (fcntl, sigprocmask, signal, execve) on
    // memory prepared before the fork (argv/envp and the CStrings they point
    // into stay alive in the parent until `status` returns).
    unsafe {
        cmd.pre_exec(move || {
            libc::fcntl(leak_fd, libc::F_SETFD, 0);
            let mut set: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut set);
            libc::sigaddset(&mut set, libc::SIGTERM);
            libc::sigprocmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
            libc::signal(libc::SIGHUP, libc::SIG_IGN);
            let argv = argv_at as *const *const libc::c_char;
            libc::execve(*argv, argv, envp_at as *const *const libc::c_char);
            Err(std::io::Error::last_os_error())
        });
    }
    let status = cmd.status().unwrap();
    drop(leak);
    drop((envs, envp, prog, arg));
    (status.code().unwrap_or(-1), leak_fd)
}

/// Issue 9: the helper removed variables one by one, so entries without
/// `=` survived into the service, and an entry `==x` made it panic (exit
/// 101). It must clear the environment whatever it holds. The service must
/// also start with no signal blocked or ignored and no descriptor above 2,
/// whatever state the helper was started in.
#[test]
fn environment_without_equals_signs_is_cleared_and_signals_are_reset() {
    if !root() {
        return;
    }
    let f = Fixture::new("rawenv", Some("root"));
    let out = f.dir.join("out");
    f.service(
        "org.test.Env.service",
        &format!(
            "[D-BUS Service]\nName=org.test.Env\nExec=/bin/sh -c 'env > {o}/env; grep -E \"^Sig(Blk|Ign)\" /proc/self/status > {o}/status; (ls -l /proc/$$/fd) > {o}/fds'\nUser=root\n",
            o = out.display()
        ),
    );
    std::fs::create_dir_all(&out).unwrap();
    let (code, leak_fd) = run_raw(
        &f,
        "org.test.Env",
        &[b"NO_EQUALS_SIGN", b"==x", b"=y", b"SECRET_FROM_CALLER=leak"],
    );
    assert_eq!(code, 0, "helper exit code");
    let env = std::fs::read_to_string(out.join("env")).unwrap();
    for bad in [
        "NO_EQUALS_SIGN",
        "==x",
        "=y",
        "SECRET",
        "BUSBAR_LAUNCH_HELPER_CONFIG",
    ] {
        assert!(!env.contains(bad), "{bad} survived: {env}");
    }
    assert!(env.contains("DBUS_STARTER_BUS_TYPE=system"), "{env}");
    let status = std::fs::read_to_string(out.join("status")).unwrap();
    assert_eq!(
        status,
        "SigBlk:\t0000000000000000\nSigIgn:\t0000000000000000\n"
    );
    let fds = std::fs::read_to_string(out.join("fds")).unwrap();
    assert_eq!(
        fds_above_2(&fds),
        Vec::<String>::new(),
        "fd {leak_fd} was left open for the helper: {fds}"
    );
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
