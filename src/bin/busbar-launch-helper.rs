//! busbar-launch-helper: the setuid-root program the system bus runs to
//! start an activatable service as the user its .service file names (the
//! counterpart of dbus-daemon-launch-helper, with the same exit codes).
//!
//! It trusts nothing it is given: the environment is cleared first, the only
//! argument is validated as a bus name, the configuration is the fixed
//! system configuration, the caller must be the bus's own user, the service
//! file must be `<name>.service` in a system service directory with a
//! matching Name= and a User=, and the program is exec'd directly (no shell)
//! after dropping to that user.

use std::ffi::CString;
use std::path::{Path, PathBuf};

use busbar::activation::exit_codes as code;
use busbar::wire::names::validate_bus_name;

/// The address activated system services are told to use.
const SYSTEM_BUS_ADDRESS: &str = "unix:path=/run/dbus/system_bus_socket";

/// A failure: an exit code and a message for stderr.
struct Failure(i32, String);

fn fail<T>(c: i32, msg: impl Into<String>) -> Result<T, Failure> {
    Err(Failure(c, msg.into()))
}

/// The configuration file: the fixed system configuration, unless this
/// process is not setuid (real uid == effective uid), in which case a test
/// may name another one — that grants nothing the caller does not have.
fn config_path() -> Option<PathBuf> {
    let not_setuid = nix::unistd::getuid() == nix::unistd::geteuid()
        && nix::unistd::getgid() == nix::unistd::getegid();
    if not_setuid {
        if let Some(p) = std::env::var_os("BUSBAR_LAUNCH_HELPER_CONFIG") {
            return Some(PathBuf::from(p));
        }
    }
    let p = Path::new(busbar::config::SYSTEM_CONF);
    p.exists().then(|| p.to_path_buf())
}

/// Empties the environment with clearenv(3), then sets the two variables a
/// system service is started with. Removing variables one by one misses
/// entries without `=` (the caller controls envp, which need not be
/// well-formed), and std's parsing of an entry such as `==x` made
/// `remove_var` panic.
fn clear_environment() -> Result<(), Failure> {
    // SAFETY: this program is single-threaded, so nothing reads or writes
    // the environment concurrently; no pointer into the old environment
    // (from getenv or std::env) is held across the call: the configuration
    // path was copied into an owned PathBuf before.
    if unsafe { libc::clearenv() } != 0 {
        return fail(code::SETUP_FAILED, "could not clear environment");
    }
    std::env::set_var("DBUS_STARTER_ADDRESS", SYSTEM_BUS_ADDRESS);
    std::env::set_var("DBUS_STARTER_BUS_TYPE", "system");
    Ok(())
}

/// The service starts with no signal blocked, every signal at its default
/// disposition and no descriptor above 2, whoever started this helper
/// (dbus-daemon hands its children that state; busbar's own spawn does
/// too, this makes it independent of the caller).
fn reset_process_state() -> Result<(), Failure> {
    busbar::activation::spawn::reset_in_child()
        .map_err(|e| Failure(code::SETUP_FAILED, format!("could not reset signals: {e}")))
}

fn load_config(path: Option<&Path>) -> Result<policy::Config, Failure> {
    let opts = policy::LoadOptions::default();
    let r = match path {
        Some(p) => policy::load_file_with(p, &opts),
        None => policy::load_str_with(
            policy::SYSTEM_CONF,
            Path::new(busbar::config::SYSTEM_CONF),
            &opts,
        ),
    };
    r.map_err(|e| Failure(code::CONFIG_INVALID, format!("invalid configuration: {e}")))
}

fn check_permissions(bus_user: &str) -> Result<(), Failure> {
    let Ok(Some(pw)) = nix::unistd::User::from_name(bus_user) else {
        return fail(
            code::PERMISSIONS_INVALID,
            format!("cannot find user '{bus_user}'"),
        );
    };
    if pw.uid != nix::unistd::getuid() {
        return fail(
            code::PERMISSIONS_INVALID,
            format!("not invoked from user '{bus_user}'"),
        );
    }
    if !nix::unistd::geteuid().is_root() {
        return fail(code::PERMISSIONS_INVALID, "not setuid root");
    }
    Ok(())
}

/// The service file for `name`: the first `<name>.service` in the service
/// directories that can be loaded. As dbus-daemon-launch-helper, a file that
/// cannot be loaded (missing, too large, not UTF-8, bad syntax) is passed
/// over for the next directory; a file that loads but lacks a key it needs
/// is a generic failure (exit 1), and a Name= that differs is FILE_INVALID.
fn find_service(cfg: &policy::Config, name: &str) -> Result<policy::ServiceFile, Failure> {
    // A unique name never has a service file. dbus-daemon-launch-helper
    // looks for `:1.5.service` and fails with SERVICE_NOT_FOUND; this gives
    // the same code without touching the file system for such a name.
    if name.starts_with(':') {
        return fail(
            code::SERVICE_NOT_FOUND,
            format!("The name {name} was not provided by any .service files"),
        );
    }
    let file = format!("{name}.service");
    for dir in &cfg.service_dirs {
        let p = dir.join(&file);
        let sf = match policy::load_service_file(&p) {
            Ok(sf) => sf,
            Err(e) if e.missing_key.is_some() => {
                return fail(
                    code::GENERIC_FAILURE,
                    format!("{}: {}", p.display(), e.message),
                )
            }
            Err(_) => continue,
        };
        if sf.name != name {
            return fail(
                code::FILE_INVALID,
                format!("Service '{}' does not match expected value", sf.name),
            );
        }
        return Ok(sf);
    }
    fail(
        code::SERVICE_NOT_FOUND,
        format!("The name {name} was not provided by any .service files"),
    )
}

fn switch_user(user: &str) -> Result<(), Failure> {
    let Ok(Some(pw)) = nix::unistd::User::from_name(user) else {
        return fail(code::SETUP_FAILED, format!("cannot find user '{user}'"));
    };
    let cname =
        CString::new(user).map_err(|_| Failure(code::SETUP_FAILED, "bad user name".into()))?;
    nix::unistd::initgroups(&cname, pw.gid).map_err(|e| {
        Failure(
            code::SETUP_FAILED,
            format!("could not initialize groups: {e}"),
        )
    })?;
    nix::unistd::setgid(pw.gid).map_err(|e| {
        Failure(
            code::SETUP_FAILED,
            format!("cannot setgid group {}: {e}", pw.gid),
        )
    })?;
    nix::unistd::setuid(pw.uid).map_err(|e| {
        Failure(
            code::SETUP_FAILED,
            format!("cannot setuid user {}: {e}", pw.uid),
        )
    })?;
    Ok(())
}

fn run(name: &str) -> Result<(), Failure> {
    let config = config_path();
    clear_environment()?;
    reset_process_state()?;
    if validate_bus_name(name).is_err() {
        return fail(
            code::NAME_INVALID,
            format!("bus name '{name}' is not a valid bus name"),
        );
    }
    let cfg = load_config(config.as_deref())?;
    let Some(bus_user) = cfg.user.clone() else {
        return fail(code::CONFIG_INVALID, "could not get user from config file");
    };
    check_permissions(&bus_user)?;
    let sf = find_service(&cfg, name)?;
    // dbus-daemon-launch-helper: a missing key is DBUS_ERROR_FAILED, which
    // becomes the generic exit code.
    let Some(user) = sf.user.clone() else {
        return fail(code::GENERIC_FAILURE, "No \"User\" key in .service file");
    };
    let argv = policy::split_exec(&sf.exec)
        .map_err(|e| Failure(code::FILE_INVALID, format!("bad Exec line: {e:?}")))?;
    // Best effort, as dbus-daemon-launch-helper: the service should not
    // inherit the bus's protection from the OOM killer.
    let _ = std::fs::write("/proc/self/oom_score_adj", "0");
    switch_user(&user)?;
    let cargs: Vec<CString> = argv
        .iter()
        .map(|a| CString::new(a.as_str()))
        .collect::<Result<_, _>>()
        .map_err(|_| Failure(code::FILE_INVALID, "Exec line contains NUL".into()))?;
    let Some(prog) = cargs.first() else {
        return fail(code::FILE_INVALID, "empty Exec line");
    };
    let err = nix::unistd::execv(prog, &cargs).err();
    fail(
        code::EXEC_FAILED,
        format!(
            "Failed to exec: {}: {}",
            argv[0],
            err.map_or_else(String::new, |e| e.to_string())
        ),
    )
}

fn main() {
    let args: Vec<String> = std::env::args_os()
        .skip(1)
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
    // As dbus-daemon-launch-helper: a wrong number of arguments (or a help
    // option) prints the usage and exits 0.
    if args.len() != 1 || matches!(args[0].as_str(), "--help" | "-h" | "-?") {
        eprintln!("busbar-launch-helper service.to.activate");
        std::process::exit(code::OK);
    }
    match run(&args[0]) {
        Ok(()) => std::process::exit(code::OK),
        Err(Failure(c, msg)) => {
            eprintln!("busbar-launch-helper: {msg}");
            std::process::exit(c);
        }
    }
}
