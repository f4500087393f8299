//! The loop's side of a re-exec: handing the bus over to a new image
//! ([`Loop::reexec`]) and taking it over in the new image
//! ([`run_restored`]). The checks and the exec are in src/reexec.rs.

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::rc::Rc;

use super::{raise_fd_limit, set_log_targets, Loop};
use crate::broker::bus::Bus;
use crate::cli::{ConfigChoice, Options};
use crate::statefile::{ListenerState, Snapshot};
use crate::transport::listener::{Bound, Listener};

impl Loop {
    /// SIGUSR2 or Reexec asked for a re-exec: runs between rounds, when no
    /// message is half dispatched and every queue has been flushed as far
    /// as the sockets take. Returns only if the re-exec was refused or
    /// failed; the bus then goes on unchanged and Reexec callers get
    /// org.freedesktop.DBus.Error.Failed with the reason.
    pub(super) fn reexec(&mut self, bus: &mut Bus) {
        self.reexec_signalled = false;
        let callers = std::mem::take(&mut *self.wiring.reexec_requests.borrow_mut());
        crate::notify::notify("RELOADING=1");
        let err = self.try_reexec(bus, &callers);
        crate::log::warning(&format!("Re-exec refused: {err}"));
        for (sid, serial) in callers {
            if bus.has_peer(sid) {
                bus.send_error_serial(
                    sid,
                    serial,
                    crate::broker::errors::FAILED,
                    &format!("Re-exec refused: {err}"),
                );
            }
        }
        crate::notify::notify("READY=1");
    }

    /// What a re-exec needs before the state is saved: the new image
    /// (found, executable, reading this state format) and a configuration
    /// that loads and whose security modules can start.
    fn reexec_checks(&self) -> Result<&'static crate::reexec::Origin, String> {
        let Some(origin) = crate::reexec::origin() else {
            return Err("the path busbar was started from is not known".into());
        };
        crate::reexec::preflight(&origin.path)?;
        match crate::config::load(&self.wiring.config_source) {
            Err(e) => Err(format!("the configuration does not load: {e}")),
            Ok(cfg) => match crate::mac::check_startable(&cfg) {
                Err(e) => Err(format!(
                    "the configuration's security modules cannot start: {e}"
                )),
                Ok(()) => Ok(origin),
            },
        }
    }

    /// Checks, saves the state and execs; returns why it did not happen.
    fn try_reexec(&mut self, bus: &mut Bus, callers: &[(u64, u32)]) -> String {
        let origin = match self.reexec_checks() {
            Ok(o) => o,
            Err(e) => return e,
        };
        let state = match bus.snapshot() {
            Ok(s) => s,
            Err(e) => return format!("the state cannot be carried over now: {e}"),
        };
        let listeners = self
            .listeners
            .iter()
            .map(|b| {
                let (fd, tcp) = match &b.listener {
                    Listener::Unix(l) => (l.as_raw_fd(), false),
                    Listener::Tcp(l) => (l.as_raw_fd(), true),
                };
                ListenerState {
                    fd,
                    tcp,
                    address: b.address.clone(),
                    cleanup: b.cleanup.clone(),
                }
            })
            .collect();
        let snap = Snapshot {
            listeners,
            pidfile: self.pidfile.clone(),
            reexec_callers: callers.to_vec(),
            bus: state,
        };
        let bytes = match crate::statefile::encode(&snap) {
            Ok(b) => b,
            Err(e) => return e,
        };
        if let Some(p) = std::env::var_os("BUSBAR_STATE_DUMP") {
            // For tests and the committed fixture: the state as written.
            let _ = std::fs::write(p, &bytes);
        }
        let memfd = match crate::statefile::to_memfd(&bytes) {
            Ok(f) => f,
            Err(e) => return e,
        };
        let mut origin = origin.clone();
        if std::env::var_os("BUSBAR_TEST_FAIL_EXEC").is_some() {
            // Test hook: an execve that fails after every check passed.
            origin.path = "/nonexistent/busbar-test-fail-exec".into();
        }
        crate::reexec::exec(&origin, &snap.fds(), memfd.as_raw_fd())
    }

    /// The new image's first act: watch every connection it took over,
    /// write what was queued for them before anything new can be queued,
    /// and give each a turn (input read half-way waits in its buffer).
    fn adopt(&mut self, bus: &mut Bus) {
        let ids: Vec<u64> = bus.peers().map(|p| p.id).collect();
        for &id in &ids {
            let Some(p) = bus.peer_mut(id) else { continue };
            let r = self.io.register_peer(p.stream.raw_fd(), id, false);
            if r.is_err() {
                bus.close(id);
                continue;
            }
            bus.mark_dirty(id);
        }
        self.flush(bus);
        for &id in &ids {
            self.ready.schedule(id, Self::class_of(bus, id));
        }
        self.accept_ready.fill(true);
    }
}

/// Takes over from the previous image: the saved state in fd `fd`, the
/// configuration read from disk again. Nothing is printed, forked or
/// written to the pid file again: the process is the same one.
pub(super) fn run_restored(opts: Options, fd: i32) -> Result<(), String> {
    crate::notify::init();
    let choice = opts.config.clone().unwrap_or(ConfigChoice::Session);
    let bytes = crate::statefile::read_fd(fd)?;
    let snap = crate::statefile::decode(&bytes)?;
    crate::mac::prepare_config_loading()?;
    let cfg = crate::config::load(&choice)?;
    set_log_targets(&opts, &cfg);
    raise_fd_limit();
    // The pre-flight checked that they can start; should they fail anyway,
    // the connections are kept, without mediation, and the log says so.
    let mac =
        crate::mac::Mac::start(&cfg, super::syslog_enabled(&opts, &cfg)).unwrap_or_else(|e| {
            crate::log::warning(&format!(
                "Security modules failed to start after the re-exec ({e}); running without them"
            ));
            crate::mac::Mac::default()
        });
    let bus_fds = snap.bus.fds();
    let mut bound = Vec::with_capacity(snap.listeners.len());
    let mut seen = std::collections::HashSet::new();
    for l in &snap.listeners {
        let open = nix::fcntl::fcntl(l.fd, nix::fcntl::FcntlArg::F_GETFD).is_ok();
        if l.fd < 3 || !open || bus_fds.contains(&l.fd) || !seen.insert(l.fd) {
            return Err(format!("listener fd {} is not valid", l.fd));
        }
    }
    for l in snap.listeners {
        // SAFETY: the previous image handed this listening socket over
        // across exec; it was checked above to be open, named once, and
        // not one of the fds the bus state takes.
        let owned = unsafe { OwnedFd::from_raw_fd(l.fd) };
        let _ = nix::fcntl::fcntl(
            owned.as_raw_fd(),
            nix::fcntl::FcntlArg::F_SETFD(nix::fcntl::FdFlag::FD_CLOEXEC),
        );
        let listener = if l.tcp {
            Listener::Tcp(mio::net::TcpListener::from_std(
                std::net::TcpListener::from(owned),
            ))
        } else {
            Listener::Unix(mio::net::UnixListener::from_std(
                std::os::unix::net::UnixListener::from(owned),
            ))
        };
        bound.push(Bound {
            listener,
            address: l.address,
            cleanup: l.cleanup,
        });
    }
    let sasl = Rc::new(crate::config::sasl_config(&cfg, &snap.bus.guid));
    let mut bus = Bus::restore(snap.bus, Rc::new(cfg), sasl, mac)?;
    let wiring = Rc::new(crate::wiring::Wiring {
        config_source: choice,
        reexec_requests: Default::default(),
    });
    bus.set_upcalls(wiring.clone());
    // The activation environment is the one carried over, not this
    // process's.
    let env = bus.activation().env.clone();
    crate::activation::startup(&mut bus);
    bus.activation_mut().env = env;
    let mut l = Loop::new(bound, snap.pidfile, wiring)?;
    l.watch_avc(&bus)?;
    l.adopt(&mut bus);
    l.watch_service_dirs(&bus);
    l.watch_console(&mut bus);
    // The Reexec callers get their answer now, after everything queued
    // before the re-exec.
    for (sid, serial) in snap.reexec_callers {
        if bus.has_peer(sid) {
            let dest = bus.unique_name(sid);
            let s = bus.next_serial();
            let reply = crate::broker::build::method_return(s, serial, dest.as_deref(), "", &[]);
            bus.send_from_driver(sid, reply);
        }
    }
    l.flush(&mut bus);
    let bodies = match crate::broker::splice::in_flight() {
        0 => String::new(),
        1 => " and 1 body being spliced".to_string(),
        n => format!(" and {n} bodies being spliced"),
    };
    crate::log::info(&format!(
        "Re-executed; took over {} connections{bodies}",
        bus.n_peers()
    ));
    crate::notify::notify("READY=1");
    let r = l.run(&mut bus);
    crate::notify::notify("STOPPING=1");
    l.cleanup();
    r
}
