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

fn clear_environment() {
    let keys: Vec<_> = std::env::vars_os().map(|(k, _)| k).collect();
    for k in keys {
        std::env::remove_var(k);
    }
    std::env::set_var("DBUS_STARTER_ADDRESS", SYSTEM_BUS_ADDRESS);
    std::env::set_var("DBUS_STARTER_BUS_TYPE", "system");
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

fn find_service(cfg: &policy::Config, name: &str) -> Result<policy::ServiceFile, Failure> {
    let file = format!("{name}.service");
    for dir in &cfg.service_dirs {
        let p = dir.join(&file);
        if !p.exists() {
            continue;
        }
        let sf = policy::load_service_file(&p).map_err(|e| {
            Failure(
                code::FILE_INVALID,
                format!("{}: {}", p.display(), e.message),
            )
        })?;
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
    clear_environment();
    if validate_bus_name(name).is_err() || name.starts_with(':') {
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
    let Some(user) = sf.user.clone() else {
        return fail(code::FILE_INVALID, "No \"User\" key in .service file");
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
    if args.len() == 1 && matches!(args[0].as_str(), "--help" | "-h" | "-?") {
        eprintln!("busbar-launch-helper service.to.activate");
        std::process::exit(code::OK);
    }
    if args.len() != 1 {
        eprintln!("busbar-launch-helper service.to.activate");
        std::process::exit(code::INVALID_ARGS);
    }
    match run(&args[0]) {
        Ok(()) => std::process::exit(code::OK),
        Err(Failure(c, msg)) => {
            eprintln!("busbar-launch-helper: {msg}");
            std::process::exit(c);
        }
    }
}
