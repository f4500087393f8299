//! Service activation, as dbus-daemon does it (bus/activation.c):
//! auto-start and StartServiceByName, messages held in order until the name
//! is owned, direct exec with the activation environment (or the setuid
//! helper on the system bus), systemd activation through
//! org.freedesktop.systemd1.Activator, and failures and timeouts reported to
//! every waiting caller.

pub mod spawn;
mod watch;

use std::ffi::OsString;
use std::time::{Duration, Instant};

use crate::broker::activation::{Held, Pending};
use crate::broker::bus::{Bus, DBUS_NAME, DBUS_PATH};
use crate::broker::peer::{Inbound, OutMsg};
use crate::broker::security::{Denied, View};
use crate::driver::{build, errors, Reply};
use crate::wire::header::Header;
use crate::wire::marshal::Writer;

pub use crate::broker::activation::Activation;
pub use crate::broker::services::Index;
pub use watch::DirWatch;

/// The systemd manager's bus name.
pub const SYSTEMD_NAME: &str = "org.freedesktop.systemd1";

fn denied(name: &'static str, text: impl Into<String>) -> Denied {
    Denied {
        name,
        text: text.into(),
    }
}

/// The service directories to watch.
pub fn service_dirs(bus: &Bus) -> Vec<std::path::PathBuf> {
    bus.config().service_dirs.clone()
}

/// A watched service directory changed: rebuild the index.
pub fn dirs_modified(bus: &mut Bus) {
    rescan(bus);
}

fn rescan(bus: &mut Bus) {
    let cfg = bus.config().clone();
    bus.activation_mut().index =
        Index::scan(&cfg.service_dirs, cfg.transient_service_dir.as_deref());
}

fn refresh_if_stale(bus: &mut Bus) {
    if bus.activation_mut().index.stale() {
        rescan(bus);
    }
}

/// Called once at start-up: create the transient service directory, copy
/// the environment and index service directories.
pub fn startup(bus: &mut Bus) {
    if let Some(d) = bus.config().transient_service_dir.clone() {
        if let Err(e) = std::fs::create_dir_all(&d) {
            crate::log::warning(&format!(
                "Unable to create transient service directory {}: {e}",
                d.display()
            ));
        }
    }
    // vars_os: vars() panics on a variable that is not UTF-8.
    bus.activation_mut().env = std::env::vars_os().collect();
    rescan(bus);
}

/// The configuration was reloaded: re-read service directories.
pub fn reload(bus: &mut Bus) {
    if let Some(d) = bus.config().transient_service_dir.clone() {
        let _ = std::fs::create_dir_all(&d);
    }
    bus.activation_mut().dirs_changed = true;
    rescan(bus);
}

/// Names that have a service file.
pub fn activatable_names(bus: &mut Bus) -> Vec<String> {
    refresh_if_stale(bus);
    bus.activation_mut().index.names()
}

/// UpdateActivationEnvironment.
pub fn update_environment(bus: &mut Bus, vars: Vec<(String, String)>) -> Result<(), Denied> {
    if bus.config().service_helper.is_some() {
        return Err(denied(
            errors::ACCESS_DENIED,
            "Cannot change activation environment on a system bus.",
        ));
    }
    for (k, v) in &vars {
        set_env(&mut bus.activation_mut().env, k, v);
    }
    if bus.systemd_activation() {
        // Forward to systemd as Manager.SetEnvironment(as).
        let mut w = Writer::new();
        let a = w.begin_array(4);
        for (k, v) in &vars {
            w.string(&format!("{k}={v}"));
        }
        w.end_array(a);
        let serial = bus.next_serial();
        match bus.lookup(SYSTEMD_NAME) {
            Some(id) => {
                let dest = bus.unique_name(id);
                let bytes = build::method_call(
                    serial,
                    dest.as_deref().unwrap_or(SYSTEMD_NAME),
                    "/org/freedesktop/systemd1",
                    "org.freedesktop.systemd1.Manager",
                    "SetEnvironment",
                    "as",
                    w.as_bytes(),
                );
                bus.send_from_driver_checked(id, bytes);
            }
            None => {
                let bytes = build::method_call(
                    serial,
                    SYSTEMD_NAME,
                    "/org/freedesktop/systemd1",
                    "org.freedesktop.systemd1.Manager",
                    "SetEnvironment",
                    "as",
                    w.as_bytes(),
                );
                let out = OutMsg {
                    head: crate::transport::pool::Pooled::new(bytes),
                    body: None,
                };
                capture_driver(bus, &out, None);
                activate(bus, None, SYSTEMD_NAME, Held::Driver { out })?;
            }
        }
    }
    Ok(())
}

fn set_env(env: &mut Vec<(OsString, OsString)>, k: &str, v: &str) {
    if let Some(e) = env.iter_mut().find(|(ek, _)| ek == k) {
        e.1 = v.into();
    } else {
        env.push((k.into(), v.into()));
    }
}

fn capture_driver(bus: &mut Bus, out: &OutMsg, to: Option<u64>) {
    if !bus.has_monitors() {
        return;
    }
    let head = out.head.clone();
    if let Ok(h) = Header::parse(&head, 0) {
        bus.capture(None, to, out, View::new(&h, &head));
    }
}

/// Auto-start for a method call from `sid` to the unowned `name`. Err is
/// the error to send back (ServiceUnknown when nothing provides `name`).
pub fn auto_start(
    bus: &mut Bus,
    sid: u64,
    name: &str,
    inb: crate::broker::peer::Shared,
    out: OutMsg,
) -> Result<(), Denied> {
    activate(
        bus,
        Some(sid),
        name,
        Held::Call {
            sender: sid,
            inb,
            out,
        },
    )
    .map(drop)
}

/// StartServiceByName: ServiceUnknown when no .service file provides `name`
/// (even if it has an owner), DBUS_START_REPLY_ALREADY_RUNNING when it is
/// activatable and owned; otherwise the reply comes when the service owns
/// the name (or the activation fails).
pub fn start_service_by_name(
    bus: &mut Bus,
    sid: u64,
    name: &str,
    inb: &Inbound,
) -> Result<Reply, Denied> {
    let held = Held::Start {
        sender: sid,
        serial: inb.header().serial,
    };
    match activate(bus, Some(sid), name, held)? {
        Started::AlreadyRunning => {
            // DBUS_START_REPLY_ALREADY_RUNNING
            let mut w = Writer::new();
            w.u32(2);
            Ok(Reply::Body("u", w.into_bytes()))
        }
        Started::Pending => Ok(Reply::Sent),
    }
}

/// What [`activate`] did with a request.
enum Started {
    /// The request is held until the service owns the name.
    Pending,
    /// StartServiceByName for an activatable name that has an owner already;
    /// nothing was held.
    AlreadyRunning,
}

fn activate(
    bus: &mut Bus,
    requester: Option<u64>,
    name: &str,
    held: Held,
) -> Result<Started, Denied> {
    let limit = bus.config().limits.max_pending_service_starts;
    if bus.activation_mut().n_held as u64 >= limit {
        return Err(denied(
            errors::LIMITS_EXCEEDED,
            format!(
                "The maximum number of pending activations has been reached, activation of {name} failed (max_pending_service_starts={limit})"
            ),
        ));
    }
    let systemd_self = bus.systemd_activation() && name == SYSTEMD_NAME;
    let entry = if systemd_self {
        None
    } else {
        refresh_if_stale(bus);
        if bus.activation_mut().index.get(name).is_none() {
            // A file may have appeared since the last scan.
            rescan(bus);
        }
        match bus.activation_mut().index.get(name) {
            Some(e) => Some(e.clone()),
            None => {
                return Err(denied(
                    errors::SERVICE_UNKNOWN,
                    format!("The name {name} was not provided by any .service files"),
                ))
            }
        }
    };
    if let (Held::Call { sender, inb, .. }, Some(_)) = (&held, &entry) {
        let (sender, inb) = (*sender, inb.clone());
        bus.check_security(Some(sender), None, None, &inb.view(), Some(name))?;
    }
    // Like dbus-daemon, StartServiceByName asks whether the name has an owner
    // only after finding its activation entry: a running service with no
    // .service file (or a unique name, or the bus itself) is ServiceUnknown.
    // An auto-start never gets here for an owned name.
    if matches!(held, Held::Start { .. }) && bus.lookup(name).is_some() {
        return Ok(Started::AlreadyRunning);
    }
    if let Some(p) = bus.activation_mut().pending.get_mut(name) {
        p.held.push(held);
        bus.activation_mut().n_held += 1;
        return Ok(Started::Pending);
    }
    let timeout = Duration::from_millis(bus.config().limits.service_start_timeout);
    bus.activation_mut().pending.insert(
        name.to_string(),
        Pending {
            held: vec![held],
            deadline: Instant::now() + timeout,
            exec: entry.as_ref().map(|e| e.exec.clone()),
            systemd_service: entry.as_ref().and_then(|e| e.systemd_service.clone()),
            pid: None,
        },
    );
    bus.activation_mut().n_held += 1;
    if systemd_self {
        // Wait for systemd to connect.
        return Ok(Started::Pending);
    }
    let Some(entry) = entry else {
        return Ok(Started::Pending);
    };
    let requester_desc = requester
        .and_then(|r| bus.peer(r))
        .map(|p| format!("'{}' ({})", p.name(), p.loginfo()))
        .unwrap_or_else(|| "the bus".into());
    if bus.systemd_activation() {
        if let Some(unit) = entry.systemd_service.clone() {
            crate::log::info(&format!(
                "Activating via systemd: service name='{name}' unit='{unit}' requested by {requester_desc}"
            ));
            let r = request_from_systemd(bus, &unit);
            if let Err(d) = r {
                remove_pending(bus, name);
                return Err(d);
            }
            return Ok(Started::Pending);
        }
    }
    crate::log::info(&format!(
        "Activating service name='{name}' requested by {requester_desc}"
    ));
    match spawn(bus, name, &entry) {
        Ok(pid) => {
            if let Some(p) = bus.activation_mut().pending.get_mut(name) {
                p.pid = Some(pid);
            }
            Ok(Started::Pending)
        }
        Err(d) => {
            crate::log::info(&format!("Failed to activate service {name}: {}", d.text));
            remove_pending(bus, name);
            Err(d)
        }
    }
}

fn remove_pending(bus: &mut Bus, name: &str) -> Option<Pending> {
    let p = bus.activation_mut().pending.remove(name)?;
    bus.activation_mut().n_held = bus.activation_mut().n_held.saturating_sub(p.held.len());
    Some(p)
}

fn request_from_systemd(bus: &mut Bus, unit: &str) -> Result<(), Denied> {
    let mut w = Writer::new();
    w.string(unit);
    let serial = bus.next_serial();
    let bytes = build::signal(
        serial,
        Some(SYSTEMD_NAME),
        DBUS_PATH,
        "org.freedesktop.systemd1.Activator",
        "ActivationRequest",
        "s",
        w.as_bytes(),
    );
    let out = OutMsg {
        head: crate::transport::pool::Pooled::new(bytes),
        body: None,
    };
    let systemd = bus.lookup(SYSTEMD_NAME);
    capture_driver(bus, &out, systemd);
    match systemd {
        Some(id) => {
            deliver_from_driver(bus, id, &out);
            Ok(())
        }
        None => activate(bus, None, SYSTEMD_NAME, Held::Driver { out }).map(drop),
    }
}

fn deliver_from_driver(bus: &mut Bus, to: u64, out: &OutMsg) {
    let head = out.head.clone();
    let Ok(h) = Header::parse(&head, 0) else {
        return;
    };
    let v = View::new(&h, &head);
    match bus.check_security(None, Some(to), Some(to), &v, None) {
        Ok(()) => bus.deliver(to, out.clone()),
        Err(d) => bus.capture_error_reply(None, &h, d.name, &d.text),
    }
}

/// Where busbar's own launch helper is installed.
pub const OWN_HELPER: &str = "/usr/lib/busbar/busbar-launch-helper";

/// The helper to run: the configured one when it exists; otherwise (for
/// example a system.conf naming dbus-daemon's helper on a machine without
/// the dbus package) busbar's own, installed or next to the busbar binary.
fn resolve_helper(configured: &std::path::Path) -> std::path::PathBuf {
    if configured.exists() {
        return configured.to_path_buf();
    }
    let own = std::path::Path::new(OWN_HELPER);
    if own.exists() {
        return own.to_path_buf();
    }
    std::env::current_exe()
        .ok()
        .and_then(|e| e.parent().map(|d| d.join("busbar-launch-helper")))
        .filter(|p| p.exists())
        .unwrap_or_else(|| configured.to_path_buf())
}

fn spawn(bus: &mut Bus, name: &str, entry: &policy::ServiceFile) -> Result<i32, Denied> {
    let command = match &bus.config().service_helper {
        Some(helper) => {
            if entry.user.is_none() {
                return Err(denied(
                    errors::SPAWN_FILE_INVALID,
                    "Cannot do system-bus activation with no user\n",
                ));
            }
            vec![
                resolve_helper(helper).to_string_lossy().into_owned(),
                name.to_string(),
            ]
        }
        None => policy::split_exec(&entry.exec).map_err(|e| {
            denied(
                errors::SPAWN_EXEC_FAILED,
                format!("Failed to parse Exec line of {name}: {e:?}"),
            )
        })?,
    };
    let Some((prog, args)) = command.split_first() else {
        return Err(denied(
            errors::SPAWN_EXEC_FAILED,
            format!("Empty Exec line for {name}"),
        ));
    };
    let mut env = bus.activation_mut().env.clone();
    set_env(&mut env, "DBUS_STARTER_ADDRESS", bus.address());
    if let Some(t) = bus.config().bus_type.clone() {
        set_env(&mut env, "DBUS_STARTER_BUS_TYPE", &t);
        match t.as_str() {
            "session" => set_env(&mut env, "DBUS_SESSION_BUS_ADDRESS", bus.address()),
            "system" => set_env(&mut env, "DBUS_SYSTEM_BUS_ADDRESS", bus.address()),
            _ => {}
        }
    }
    let mut cmd = std::process::Command::new(prog);
    cmd.args(args)
        .env_clear()
        .envs(env)
        .stdin(std::process::Stdio::null());
    // SAFETY: the hook runs in the forked child before exec and makes only
    // async-signal-safe calls (sigaction, sigprocmask, close_range/fcntl);
    // it allocates nothing and takes no lock.
    unsafe {
        std::os::unix::process::CommandExt::pre_exec(&mut cmd, spawn::reset_in_child);
    }
    match cmd.spawn() {
        Ok(child) => Ok(child.id() as i32),
        Err(e) => Err(denied(
            errors::SPAWN_EXEC_FAILED,
            format!("Failed to execute program {name}: {e}"),
        )),
    }
}

/// A name got a new owner by RequestName: StartServiceByName callers get
/// their reply, then held calls go to the owner in the order they came.
pub fn name_acquired(bus: &mut Bus, name: &str) {
    let Some(p) = remove_pending(bus, name) else {
        return;
    };
    crate::log::info(&format!("Successfully activated service '{name}'"));
    let Some(owner) = bus.lookup(name) else {
        return;
    };
    for h in &p.held {
        if let Held::Start { sender, serial } = h {
            if bus.has_peer(*sender) {
                let dest = bus.unique_name(*sender);
                let mut w = Writer::new();
                w.u32(1); // DBUS_START_REPLY_SUCCESS
                let s = bus.next_serial();
                let bytes = build::method_return(s, *serial, dest.as_deref(), "u", w.as_bytes());
                bus.send_from_driver(*sender, bytes);
            }
        }
    }
    for h in p.held {
        match h {
            Held::Call { sender, inb, out } => {
                if !bus.peer(sender).is_some_and(|p| p.is_active()) {
                    continue;
                }
                bus.deliver_to_owner(sender, owner, &inb, &out);
            }
            Held::Driver { out } => deliver_from_driver(bus, owner, &out),
            Held::Start { .. } => {}
        }
    }
}

fn fail(bus: &mut Bus, name: &str, err_name: &str, text: &str) {
    let Some(p) = remove_pending(bus, name) else {
        return;
    };
    crate::log::info(&format!("Activated service '{name}' failed: {text}"));
    for h in p.held {
        match h {
            Held::Call { sender, inb, .. } => {
                if bus.has_peer(sender) {
                    bus.send_error(sender, inb.header(), err_name, text);
                }
            }
            Held::Start { sender, serial } => {
                if bus.has_peer(sender) {
                    bus.send_error_serial(sender, serial, err_name, text);
                }
            }
            Held::Driver { .. } => {}
        }
    }
}

/// org.freedesktop.systemd1.Activator.ActivationFailure from `sid`.
pub fn systemd_failure(bus: &mut Bus, sid: u64, inb: &Inbound) {
    let uid = bus.peer(sid).and_then(|p| p.auth_uid);
    let privileged = uid.is_some_and(|u| u == 0 || u == nix::unistd::geteuid().as_raw());
    if !privileged {
        bus.send_error(
            sid,
            inb.header(),
            errors::ACCESS_DENIED,
            "rejected attempt to call ActivationFailure by an unprivileged connection",
        );
        return;
    }
    if bus.lookup(SYSTEMD_NAME) != Some(sid) {
        let who = bus
            .peer(sid)
            .map(|p| format!("{} ({})", p.name(), p.loginfo()))
            .unwrap_or_default();
        crate::log::security(&format!(
            "Ignoring forged ActivationFailure message from connection {who}"
        ));
        return;
    }
    if !bus.systemd_activation() {
        crate::log::warning(
            "Ignoring unexpected ActivationFailure message while not using systemd activation",
        );
        return;
    }
    let mut r = crate::wire::marshal::Reader::new(inb.body(), inb.header().endian());
    let (Ok(unit), Ok(code), Ok(text)) = (r.string(), r.string(), r.string()) else {
        return;
    };
    crate::log::info(&format!(
        "Activation via systemd failed for unit '{unit}': {text}"
    ));
    let names: Vec<String> = bus
        .activation_mut()
        .pending
        .iter()
        .filter(|(_, p)| p.systemd_service.as_deref() == Some(unit))
        .map(|(n, _)| n.clone())
        .collect();
    let code = code.to_string();
    let text = text.to_string();
    for n in names {
        fail(bus, &n, &code, &text);
    }
}

/// SIGCHLD: reap children; a service that exits non-zero (or is killed)
/// before owning its name fails its activation.
pub fn reap_children(bus: &mut Bus) {
    use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
    loop {
        let status = match waitpid(None, Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::StillAlive) | Err(_) => break,
            Ok(s) => s,
        };
        let (pid, err) = match status {
            WaitStatus::Exited(pid, 0) => (pid, None),
            WaitStatus::Exited(pid, code) => (pid, Some((false, code))),
            WaitStatus::Signaled(pid, sig, _) => (pid, Some((true, sig as i32))),
            _ => continue,
        };
        let Some((name, exec)) = bus
            .activation()
            .pending
            .iter()
            .find(|(_, p)| p.pid == Some(pid.as_raw()))
            .map(|(n, p)| (n.clone(), p.exec.clone()))
        else {
            continue;
        };
        let Some((signaled, code)) = err else {
            // The launcher exited 0 without taking its name (yet): it is
            // gone, so the timeout must not kill its PID, which the kernel
            // may already have given to another process.
            if let Some(p) = bus.activation_mut().pending.get_mut(&name) {
                p.pid = None;
            }
            continue;
        };
        let (ename, text) = if bus.config().service_helper.is_some() && !signaled {
            helper_exit_error(code)
        } else if signaled {
            (
                errors::SPAWN_CHILD_SIGNALED,
                format!("Process {name} received signal {code}"),
            )
        } else {
            (
                errors::SPAWN_CHILD_EXITED,
                format!("Process {name} exited with status {code}"),
            )
        };
        // Everything waiting on the same Exec line fails too.
        let same: Vec<String> = bus
            .activation()
            .pending
            .iter()
            .filter(|(n, p)| **n != name && p.exec.is_some() && p.exec == exec)
            .map(|(n, _)| n.clone())
            .collect();
        for n in same {
            fail(bus, &n, ename, &text);
        }
        fail(bus, &name, ename, &text);
    }
}

/// Maps the launch helper's exit codes to errors, as dbus-daemon does.
fn helper_exit_error(code: i32) -> (&'static str, String) {
    use crate::activation::exit_codes::*;
    match code {
        CONFIG_INVALID => (
            "org.freedesktop.DBus.Error.Spawn.ConfigInvalid",
            "Invalid configuration (missing or empty <user>?)".into(),
        ),
        NO_MEMORY => (
            "org.freedesktop.DBus.Error.NoMemory",
            "Launcher could not run (out of memory)".into(),
        ),
        SETUP_FAILED => (
            "org.freedesktop.DBus.Error.Spawn.FailedToSetup",
            "Failed to setup environment correctly".into(),
        ),
        NAME_INVALID => (
            "org.freedesktop.DBus.Error.Spawn.ServiceNotValid",
            "Bus name is not valid or missing".into(),
        ),
        SERVICE_NOT_FOUND => (
            errors::SPAWN_SERVICE_NOT_FOUND,
            "Bus name not found in system service directory".into(),
        ),
        PERMISSIONS_INVALID => (
            errors::SPAWN_PERMISSIONS_INVALID,
            "The permission of the setuid helper is not correct".into(),
        ),
        FILE_INVALID => (
            errors::SPAWN_PERMISSIONS_INVALID,
            "The service file is incorrect or does not have all required attributes".into(),
        ),
        EXEC_FAILED => (
            errors::SPAWN_EXEC_FAILED,
            "Cannot launch daemon, file not found or permissions invalid".into(),
        ),
        INVALID_ARGS => (
            errors::INVALID_ARGS,
            "Invalid arguments to command line".into(),
        ),
        CHILD_SIGNALED => (
            errors::SPAWN_CHILD_SIGNALED,
            "Launched child was signaled, it probably crashed".into(),
        ),
        _ => (
            errors::SPAWN_CHILD_EXITED,
            format!("Launch helper exited with unknown return code {code}"),
        ),
    }
}

/// The launch helper's exit codes (shared with src/bin/busbar-launch-helper.rs).
pub mod exit_codes {
    /// Success.
    pub const OK: i32 = 0;
    /// Generic failure.
    pub const GENERIC_FAILURE: i32 = 1;
    /// Out of memory.
    pub const NO_MEMORY: i32 = 2;
    /// Config invalid.
    pub const CONFIG_INVALID: i32 = 3;
    /// Environment setup failed.
    pub const SETUP_FAILED: i32 = 4;
    /// Bus name invalid.
    pub const NAME_INVALID: i32 = 5;
    /// No service file for the name.
    pub const SERVICE_NOT_FOUND: i32 = 6;
    /// The helper's own permissions are wrong.
    pub const PERMISSIONS_INVALID: i32 = 7;
    /// The service file is invalid.
    pub const FILE_INVALID: i32 = 8;
    /// exec failed.
    pub const EXEC_FAILED: i32 = 9;
    /// Bad arguments.
    pub const INVALID_ARGS: i32 = 10;
    /// The child was killed by a signal.
    pub const CHILD_SIGNALED: i32 = 11;
}

/// Fires activation timeouts.
pub fn timers(bus: &mut Bus, now: Instant) {
    let expired: Vec<(String, Option<i32>)> = bus
        .activation_mut()
        .pending
        .iter()
        .filter(|(_, p)| p.deadline <= now)
        .map(|(n, p)| (n.clone(), p.pid))
        .collect();
    let ms = bus.config().limits.service_start_timeout;
    for (name, pid) in expired {
        if let Some(pid) = pid {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
        let text = format!(
            "Failed to activate service '{name}': timed out (service_start_timeout={ms}ms)"
        );
        crate::log::warning(&text);
        fail(bus, &name, errors::TIMED_OUT, &text);
    }
}

/// Whether a name is being activated (for tests and stats).
pub fn is_pending(bus: &Bus, name: &str) -> bool {
    name != DBUS_NAME && bus.activation().pending.contains_key(name)
}
