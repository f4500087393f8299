//! Re-executing the bus in place (SIGUSR2, org.busbar.Daemon1.Reexec): the
//! binary now at the path the bus was started from replaces this image in
//! the same process, and takes over every connection and all of the bus's
//! state from a snapshot (src/broker/snapshot.rs, doc/state-format.md).
//!
//! Before anything is changed the old image checks that the new binary can
//! take the state (`--print-state-version`: same major, minor not lower)
//! and that the configuration on disk loads. A refusal is one log line
//! starting `Re-exec refused: `; the bus goes on unchanged. So it does when
//! execve itself fails: the fds get their FD_CLOEXEC back.

use std::ffi::{CString, OsString};
use std::io::Read;
use std::os::fd::RawFd;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// Where this bus came from: the binary's path (resolved at start-up) and
/// the command line to run it with again.
#[derive(Debug, Clone)]
pub struct Origin {
    /// The binary's absolute path.
    pub path: PathBuf,
    /// argv[1..] without any `--restore-state=`.
    pub args: Vec<OsString>,
    /// argv[0].
    pub arg0: OsString,
}

static ORIGIN: OnceLock<Option<Origin>> = OnceLock::new();

/// Resolves the binary's path once, at start-up (before --fork changes the
/// working directory): argv[0] when it names a file (made absolute), else
/// the file /proc/self/exe names now. Later the file at that path may be
/// replaced (an upgrade); that new file is what a re-exec runs.
pub fn init() {
    ORIGIN.get_or_init(|| {
        let mut argv = std::env::args_os();
        let arg0 = argv.next()?;
        let args: Vec<OsString> = argv
            .filter(|a| {
                !a.as_bytes()
                    .starts_with(crate::cli::RESTORE_STATE.as_bytes())
            })
            .collect();
        let p = Path::new(&arg0);
        let path = if arg0.as_bytes().contains(&b'/') {
            if p.is_absolute() {
                p.to_path_buf()
            } else {
                std::env::current_dir().ok()?.join(p)
            }
        } else {
            std::fs::read_link("/proc/self/exe").ok()?
        };
        Some(Origin { path, args, arg0 })
    });
}

/// The origin resolved by [`init`].
pub fn origin() -> Option<&'static Origin> {
    ORIGIN.get().and_then(|o| o.as_ref())
}

/// Runs `<path> --print-state-version` and checks its answer against this
/// build's format: same major, minor not lower.
pub fn preflight(path: &Path) -> Result<(u16, u16), String> {
    use std::os::unix::fs::PermissionsExt;
    let meta = std::fs::metadata(path).map_err(|e| format!("{}: {e}", path.display()))?;
    if !meta.is_file() || meta.permissions().mode() & 0o111 == 0 {
        return Err(format!("{} is not an executable file", path.display()));
    }
    if nix::unistd::access(path, nix::unistd::AccessFlags::X_OK).is_err() {
        return Err(format!("{} is not executable", path.display()));
    }
    let mut child = std::process::Command::new(path)
        .arg("--print-state-version")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .env_remove("NOTIFY_SOCKET")
        .spawn()
        .map_err(|e| format!("cannot run {}: {e}", path.display()))?;
    let deadline = Instant::now() + Duration::from_secs(10);
    let status = loop {
        match child.try_wait() {
            Ok(Some(s)) => break s,
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(5)),
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!(
                    "{} --print-state-version did not answer",
                    path.display()
                ));
            }
        }
    };
    let mut out = String::new();
    if let Some(mut o) = child.stdout.take() {
        let _ = o.read_to_string(&mut out);
    }
    if !status.success() {
        return Err(format!(
            "{} --print-state-version failed ({status})",
            path.display()
        ));
    }
    let (major, minor) = out
        .trim()
        .split_once('.')
        .and_then(|(a, b)| Some((a.parse::<u16>().ok()?, b.parse::<u16>().ok()?)))
        .ok_or_else(|| {
            format!(
                "{} --print-state-version printed {:?}, not MAJOR.MINOR",
                path.display(),
                out.trim()
            )
        })?;
    let (my_major, my_minor) = (crate::statefile::MAJOR, crate::statefile::MINOR);
    if major != my_major {
        return Err(format!(
            "{} reads state format {major}.x, this bus writes {my_major}.{my_minor}",
            path.display()
        ));
    }
    if minor < my_minor {
        return Err(format!(
            "{} reads state format up to {major}.{minor}, this bus writes {my_major}.{my_minor}",
            path.display()
        ));
    }
    Ok((major, minor))
}

fn set_cloexec(fd: RawFd, on: bool) -> bool {
    use nix::fcntl::{fcntl, FcntlArg, FdFlag};
    let Ok(bits) = fcntl(fd, FcntlArg::F_GETFD) else {
        return false;
    };
    let mut flags = FdFlag::from_bits_truncate(bits);
    flags.set(FdFlag::FD_CLOEXEC, on);
    fcntl(fd, FcntlArg::F_SETFD(flags)).is_ok()
}

/// Clears FD_CLOEXEC on `fds` and `state_fd` and execs `origin` with
/// `--restore-state=<state_fd>`. Returns only if that failed, with every
/// fd's FD_CLOEXEC set again.
pub fn exec(origin: &Origin, fds: &[RawFd], state_fd: RawFd) -> String {
    let mut cleared = Vec::with_capacity(fds.len() + 1);
    let mut err = None;
    for &fd in fds.iter().chain(std::iter::once(&state_fd)) {
        if set_cloexec(fd, false) {
            cleared.push(fd);
        } else {
            err = Some(format!("fd {fd} is not open"));
            break;
        }
    }
    if err.is_none() {
        let mut argv: Vec<CString> = Vec::with_capacity(origin.args.len() + 2);
        let mut bad = false;
        for a in std::iter::once(&origin.arg0).chain(&origin.args) {
            match CString::new(a.clone().into_vec()) {
                Ok(c) => argv.push(c),
                Err(_) => bad = true,
            }
        }
        argv.extend(CString::new(format!("{}{state_fd}", crate::cli::RESTORE_STATE)).ok());
        let mut env: Vec<CString> = std::env::vars_os()
            .filter_map(|(k, v)| {
                let mut b = k.into_vec();
                b.push(b'=');
                b.extend(v.into_vec());
                CString::new(b).ok()
            })
            .collect();
        if let Some(n) = crate::notify::socket_var() {
            let mut b = b"NOTIFY_SOCKET=".to_vec();
            b.extend(n.as_bytes());
            env.extend(CString::new(b).ok());
        }
        match CString::new(origin.path.as_os_str().as_bytes()) {
            Ok(path) if !bad => {
                crate::log::info(&format!("Re-executing {}", origin.path.display()));
                let e = nix::unistd::execve(&path, &argv, &env);
                err = Some(format!(
                    "execve {}: {}",
                    origin.path.display(),
                    e.map_or_else(|e| e.to_string(), |_| "returned".into())
                ));
            }
            _ => err = Some("the command line cannot be passed to execve".into()),
        }
    }
    for fd in cleared {
        set_cloexec(fd, true);
    }
    err.unwrap_or_default()
}
