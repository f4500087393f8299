//! Start-up (config, listeners, fork, pidfile, printing the address) and the
//! readiness loop that drives every socket, signal and timer.

use std::io::{self, Write};
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::PathBuf;
use std::rc::Rc;
use std::time::{Duration, Instant};

use nix::sys::signal::{SigSet, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};

use crate::broker::bus::Bus;
use crate::broker::splice::Pull;
use crate::cli::{ConfigChoice, Options, Override};
use crate::printfd::PrintFds;
use crate::ready::{Class, ReadyQueue};
use crate::transport::address::parse_addresses;
use crate::transport::listener::{listen, take_systemd_fds, Bound};

mod backend;
mod bufring;
mod epoll;
mod handoff;
mod multishot;
mod uring;

use backend::{Event, Io, RxEnd};

/// A readiness token: a peer's id, or one of the constants below.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Token(usize);

const SIGNAL_TOKEN: Token = Token(usize::MAX - 1);
const INOTIFY_TOKEN: Token = Token(usize::MAX - 2);
/// A worker thread answered: the DBUS_COOKIE_SHA1 keyring worker, or the
/// user database worker (mio allows one waker per poll; they share it).
const WORKER_TOKEN: Token = Token(usize::MAX - 3);
/// /run/systemd/users or /run/console changed (at_console).
const CONSOLE_TOKEN: Token = Token(usize::MAX - 4);
/// The SELinux AVC's netlink socket (policy loads, enforcing changes).
const AVC_TOKEN: Token = Token(usize::MAX - 5);
const LISTENER_BASE: usize = usize::MAX - 4096;

/// Bytes read in one round, shared among the round's connections: this is
/// what bounds how long a newly ready connection waits for its turn.
const BYTES_PER_ROUND: usize = 128 * 1024;
/// Bytes read from one connection in one turn, at most (alone in a round).
const BYTES_PER_TURN: usize = 64 * 1024;
/// Bytes one connection may read in one turn however crowded the round.
const MIN_BYTES_PER_TURN: usize = 16 * 1024;
/// Messages dispatched from one connection in one turn, at most.
const MSGS_PER_TURN: usize = 128;
/// Connections accepted from one listener per round, at most.
const ACCEPTS_PER_ROUND: usize = 4;
/// Turns of connections that have not completed Hello per round, at most
/// (see [`crate::ready`]).
const INCOMPLETE_TURNS_PER_ROUND: usize = 4;

/// Points fd 0 at /dev/null, and fds 1/2 if closed, so no socket ever
/// lands on a standard fd (dbus-daemon forces stdin to /dev/null too, so
/// --print-address=0 prints into /dev/null with both).
fn ensure_standard_fds() {
    use nix::fcntl::{fcntl, FcntlArg};
    for fd in 0..3 {
        let closed = fcntl(fd, FcntlArg::F_GETFD).is_err();
        if closed || fd == 0 {
            crate::printfd::replace_with_dev_null(fd);
        }
    }
}

fn raise_fd_limit() {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    if let Ok((soft, hard)) = getrlimit(Resource::RLIMIT_NOFILE) {
        let want: u64 = 65536;
        if nix::unistd::geteuid().is_root() && hard < want {
            if let Err(e) = setrlimit(Resource::RLIMIT_NOFILE, want, want) {
                // dbus-daemon logs this at info level, with the D-Bus
                // error its errno maps to.
                let name = if e == nix::errno::Errno::EPERM {
                    "org.freedesktop.DBus.Error.AccessDenied"
                } else {
                    "org.freedesktop.DBus.Error.Failed"
                };
                crate::log::info(&format!(
                    "{name}: Failed to set fd limit to {want}: {}",
                    crate::errtext::strerror(&std::io::Error::from_raw_os_error(e as i32))
                ));
            }
        } else if soft < want.min(hard) {
            let _ = setrlimit(Resource::RLIMIT_NOFILE, want.min(hard), hard);
        }
    }
}

fn drop_privileges(user: &str) -> Result<(), String> {
    use nix::unistd::{setgid, setgroups, setuid, User};
    if !nix::unistd::geteuid().is_root() {
        return Ok(());
    }
    let u = User::from_name(user)
        .map_err(|e| format!("Could not look up user \"{user}\": {e}"))?
        .ok_or_else(|| format!("Could not get UID and GID for username \"{user}\""))?;
    if u.uid.is_root() {
        return Ok(());
    }
    // As dbus-daemon built with libaudit: CAP_AUDIT_WRITE survives.
    crate::mac::audit::change_ids_keeping_audit(|| {
        setgroups(&[u.gid]).map_err(|e| format!("Failed to drop supplementary groups: {e}"))?;
        setgid(u.gid).map_err(|e| format!("Failed to set GID to {}: {e}", u.gid))?;
        setuid(u.uid).map_err(|e| format!("Failed to set UID to {}: {e}", u.uid))?;
        Ok(())
    })
}

/// Forks into the background. Returns in the child; the parent exits once
/// the child reports that it printed its address and pid (or failed).
fn daemonize(keep_umask: bool) -> Result<OwnedFd, String> {
    let (r, w) = nix::unistd::pipe().map_err(|e| format!("Failed to create pipe: {e}"))?;
    // SAFETY: busbar is single-threaded at this point (no runtime or helper
    // thread has been started), so the child may run arbitrary code.
    match unsafe { nix::unistd::fork() } {
        Err(e) => Err(format!("Failed to fork daemon: {e}")),
        Ok(nix::unistd::ForkResult::Parent { .. }) => {
            drop(w);
            let mut f = std::fs::File::from(r);
            let mut buf = [0u8; 1];
            let ok = std::io::Read::read(&mut f, &mut buf).map(|n| n == 1 && buf[0] == b'1');
            std::process::exit(if matches!(ok, Ok(true)) { 0 } else { 1 });
        }
        Ok(nix::unistd::ForkResult::Child) => {
            drop(r);
            let _ = nix::unistd::setsid();
            let _ = nix::unistd::chdir("/");
            if !keep_umask {
                nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(0o022));
            }
            Ok(w)
        }
    }
}

/// Loads the configuration and exits with its errors, for `--check-config`.
pub fn check_config(path: &std::path::Path) -> i32 {
    let _ = crate::mac::prepare_config_loading();
    match policy::load_file(path) {
        Ok(cfg) => {
            // Plain writes whose failure is ignored: println! panics when
            // stdout is closed or a dead pipe.
            let mut err = io::stderr().lock();
            for w in &cfg.warnings {
                let _ = writeln!(err, "{}: warning: {w}", path.display());
            }
            let _ = writeln!(io::stdout().lock(), "{}: OK", path.display());
            0
        }
        Err(e) => {
            let _ = writeln!(io::stderr().lock(), "{}: {}", path.display(), e.located());
            1
        }
    }
}

/// Runs the bus until SIGTERM/SIGINT. Returns the exit status.
pub fn run(opts: Options) -> i32 {
    // Before any fd is opened: a print fd that is not open must not come
    // to name one of the bus's sockets.
    crate::reexec::init();
    if let Some(fd) = opts.restore_state {
        ensure_standard_fds();
        return match handoff::run_restored(opts, fd) {
            Ok(()) => 0,
            Err(e) => {
                crate::log::startup_failed(&format!("Cannot take over the saved state: {e}"));
                1
            }
        };
    }
    let prints = PrintFds::claim(&[opts.print_address, opts.print_pid]);
    ensure_standard_fds();
    match run_inner(opts, prints) {
        Ok(()) => 0,
        Err(e) => {
            crate::log::startup_failed(&e);
            1
        }
    }
}

/// Whether lines go to syslog, from the options and the configuration.
fn syslog_enabled(opts: &Options, cfg: &policy::Config) -> bool {
    match opts.syslog {
        Override::Always => true,
        Override::Never => false,
        Override::Config => cfg.syslog,
    }
}

/// Where log lines go, from the options and the configuration.
fn set_log_targets(opts: &Options, cfg: &policy::Config) {
    let syslog = syslog_enabled(opts, cfg);
    let mut targets = crate::log::TO_STDERR;
    if syslog {
        targets |= crate::log::TO_SYSLOG;
    }
    if opts.syslog_only {
        targets = crate::log::TO_SYSLOG;
    }
    crate::log::set_targets(targets);
    // Before forking, as dbus-daemon: its session prefix names the pid that
    // read the configuration.
    crate::log::set_prefix(crate::log::bus_prefix(
        cfg.bus_type.as_deref(),
        nix::unistd::getuid().as_raw(),
        std::process::id(),
    ));
    for w in &cfg.warnings {
        crate::log::warning(w);
    }
}

fn run_inner(opts: Options, mut prints: PrintFds) -> Result<(), String> {
    crate::notify::init();
    crate::mac::prepare_config_loading()?;
    let choice = opts.config.clone().unwrap_or(ConfigChoice::Session);
    let cfg = crate::config::load(&choice)?;
    set_log_targets(&opts, &cfg);

    // Listen.
    let mut systemd_fds = take_systemd_fds();
    let addresses = match &opts.address {
        // dbus-daemon takes an empty --address= as none given.
        Some(a) if !a.is_empty() => vec![a.clone()],
        _ => cfg.listen.clone(),
    };
    if addresses.is_empty() {
        return Err("No addresses specified in the configuration file".into());
    }
    let mut bound: Vec<Bound> = Vec::new();
    for a in &addresses {
        let entries = parse_addresses(a).map_err(|e| e.0)?;
        // As dbus_server_listen: the first entry that works.
        let mut last_err = String::new();
        let mut ok = false;
        for e in &entries {
            match listen(e, &mut systemd_fds) {
                Ok(b) => {
                    bound.extend(b);
                    ok = true;
                    break;
                }
                Err(err) => last_err = err,
            }
        }
        if !ok {
            return Err(last_err);
        }
    }
    // After listening, as dbus-daemon: an address that fails to bind is
    // reported without the fd-limit line.
    raise_fd_limit();
    for b in &bound {
        if let Some(p) = &b.cleanup {
            // Everyone may connect; the bus policy decides who may stay.
            use std::os::unix::fs::PermissionsExt;
            let _ = std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o777));
        }
    }
    let guid = crate::guid::random_guid()?;
    // GetId's answer, made the same way (never all zeros).
    let bus_id = crate::guid::random_guid()?;
    let address: String = bound
        .iter()
        .map(|b| format!("{},guid={guid}", b.address))
        .collect::<Vec<_>>()
        .join(";");

    let fork = match opts.fork {
        Override::Always => true,
        Override::Never => false,
        Override::Config => cfg.fork,
    };
    let pidfile: Option<PathBuf> = cfg.pidfile.clone().filter(|_| opts.write_pidfile);
    if let Some(pf) = &pidfile {
        // Before forking, as dbus-daemon, so the caller sees the error.
        crate::pidfile::check_absent(pf)?;
    }
    let notify = if fork {
        Some(daemonize(cfg.keep_umask)?)
    } else {
        None
    };
    // dbus-daemon's order: the address, the pid file, the pid.
    if let Some(fd) = opts.print_address {
        prints.print(fd, &format!("{address}\n"))?;
    }
    if let Some(pf) = &pidfile {
        crate::pidfile::write(pf, std::process::id())?;
    }
    if let Some(fd) = opts.print_pid {
        prints.print(fd, &format!("{}\n", std::process::id()))?;
    }
    // Like dbus-daemon: the pidfile is written (and the address printed)
    // before giving up root.
    if let Some(user) = &cfg.user {
        drop_privileges(user)?;
    }
    if let Some(n) = notify {
        let mut f = std::fs::File::from(n);
        let _ = f.write_all(b"1");
        drop(f);
        // Detach stdio from the terminal now that everything is printed.
        for fd in 0..3 {
            crate::printfd::replace_with_dev_null(fd);
        }
        crate::log::stderr_replaced();
    }

    // After the privileges are dropped, as dbus-daemon (the AVC keeps
    // CAP_AUDIT_WRITE that way).
    let mac = match crate::mac::Mac::start(&cfg, syslog_enabled(&opts, &cfg)) {
        Ok(m) => m,
        Err(e) => {
            // As dbus-daemon, which closes (and unlinks) its sockets when
            // the LSM set-up fails.
            for b in &bound {
                if let Some(p) = &b.cleanup {
                    let _ = std::fs::remove_file(p);
                }
            }
            return Err(e);
        }
    };
    let sasl = Rc::new(crate::config::sasl_config(&cfg, &guid));
    let mut bus = Bus::new(Rc::new(cfg), sasl, guid, bus_id);
    bus.set_mac(mac);
    bus.set_start_info(opts.systemd_activation, address.clone());
    let wiring = Rc::new(crate::wiring::Wiring {
        config_source: choice,
        reexec_requests: Default::default(),
    });
    bus.set_upcalls(wiring.clone());
    crate::activation::startup(&mut bus);
    let mut l = Loop::new(bound, pidfile, wiring)?;
    l.watch_avc(&bus)?;
    l.watch_service_dirs(&bus);
    l.watch_console(&mut bus);
    crate::notify::notify("READY=1");
    let r = l.run(&mut bus);
    crate::notify::notify("STOPPING=1");
    l.cleanup();
    r
}

struct Loop {
    /// epoll or io_uring (see [`backend`]).
    io: Io,
    /// The last wait's events (kept to reuse its allocation).
    events: Vec<Event>,
    /// The upcalls the bus was wired with (Reexec requests wait there).
    wiring: Rc<crate::wiring::Wiring>,
    /// SIGUSR2 asked for a re-exec.
    reexec_signalled: bool,
    listeners: Vec<Bound>,
    signals: SignalFd,
    pidfile: Option<PathBuf>,
    /// The list of peers to flush, swapped with `Bus::dirty` (kept to
    /// reuse its allocation).
    dirty: Vec<u64>,
    dirwatch: Option<crate::activation::DirWatch>,
    /// Connections waiting for a turn.
    ready: ReadyQueue,
    /// This round's connections (kept to reuse its allocation).
    round: Vec<u64>,
    /// Listeners that may have more connections waiting to be accepted.
    accept_ready: Vec<bool>,
    /// Peers not read from while their live messages are at
    /// max_incoming_bytes / max_incoming_unix_fds.
    throttled: Vec<u64>,
    /// accept() is paused while max_incomplete_connections are incomplete.
    accept_paused: bool,
    /// Which listeners are watched level-triggered (see
    /// [`Loop::set_listeners_level_triggered`]).
    listener_level: Vec<bool>,
    /// inotify on /run/systemd/users and /run/console (at_console).
    console: Option<crate::userdb::ConsoleWatch>,
    /// Connections whose peer has shut down its side (or that had an
    /// error): their turns read to the end, not just to a short read.
    read_closed: std::collections::HashSet<u64, crate::broker::idmap::IdBuild>,
    /// Senders of spliced bodies to give a turn (kept for its allocation).
    woken: Vec<u64>,
}

/// How a connection's turn ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum TurnEnd {
    /// Nothing more to read until the next readiness event.
    Drained,
    /// The turn's budget ran out: there may be more.
    Exhausted,
    /// Back-pressure: not read until its messages drain.
    Throttled,
    /// Closed or closing.
    Gone,
}

impl Loop {
    fn new(
        mut listeners: Vec<Bound>,
        pidfile: Option<PathBuf>,
        wiring: Rc<crate::wiring::Wiring>,
    ) -> Result<Loop, String> {
        let mut io = Io::new()?;
        let mut mask = SigSet::empty();
        for s in [
            Signal::SIGTERM,
            Signal::SIGINT,
            Signal::SIGHUP,
            Signal::SIGCHLD,
            Signal::SIGUSR2,
        ] {
            mask.add(s);
        }
        mask.thread_block()
            .map_err(|e| format!("Failed to block signals: {e}"))?;
        let signals = SignalFd::with_flags(&mask, SfdFlags::SFD_NONBLOCK | SfdFlags::SFD_CLOEXEC)
            .map_err(|e| format!("Failed to create signalfd: {e}"))?;
        io.register(signals.as_raw_fd(), SIGNAL_TOKEN.0)
            .map_err(|e| e.to_string())?;
        let waker = io.waker(WORKER_TOKEN.0)?;
        let w = waker.clone();
        crate::transport::keyring_worker::set_notify(Box::new(move || w()));
        crate::userdb::worker::set_notify(Box::new(move || waker()));
        for (i, b) in listeners.iter_mut().enumerate() {
            let fd = match &b.listener {
                crate::transport::listener::Listener::Unix(l) => l.as_raw_fd(),
                crate::transport::listener::Listener::Tcp(l) => l.as_raw_fd(),
            };
            io.register(fd, LISTENER_BASE + i)
                .map_err(|e| e.to_string())?;
        }
        let n_listeners = listeners.len();
        let mut l = Loop {
            io,
            events: Vec::new(),
            wiring,
            reexec_signalled: false,
            listeners,
            signals,
            pidfile,
            dirty: Vec::new(),
            dirwatch: None,
            ready: ReadyQueue::default(),
            round: Vec::new(),
            accept_ready: vec![false; n_listeners],
            listener_level: vec![false; n_listeners],
            throttled: Vec::new(),
            accept_paused: false,
            console: None,
            read_closed: std::collections::HashSet::default(),
            woken: Vec::new(),
        };
        l.set_listeners_level_triggered(true);
        Ok(l)
    }

    /// Watches the SELinux AVC's netlink socket (policy reloads, enforcing
    /// changes), when SELinux is active.
    fn watch_avc(&mut self, bus: &Bus) -> Result<(), String> {
        if let Some(fd) = bus.mac().netlink_fd() {
            self.io
                .register(fd, AVC_TOKEN.0)
                .map_err(|e| format!("Failed to watch the AVC netlink socket: {e}"))?;
        }
        Ok(())
    }

    /// Watches the login state so at_console is answered from memory.
    fn watch_console(&mut self, bus: &mut Bus) {
        if let Some(w) = crate::userdb::ConsoleWatch::standard() {
            let fd = w.raw_fd();
            let r = self.io.register(fd, CONSOLE_TOKEN.0);
            if r.is_ok() {
                self.console = Some(w);
            }
        }
        // Read after the watch is in place, so no change falls between.
        bus.console_changed();
    }

    /// (Re)starts watching the service directories with inotify.
    fn watch_service_dirs(&mut self, bus: &Bus) {
        if self.dirwatch.is_none() {
            if let Some(w) = crate::activation::DirWatch::new() {
                let fd = w.raw_fd();
                let r = self.io.register(fd, INOTIFY_TOKEN.0);
                if r.is_ok() {
                    self.dirwatch = Some(w);
                }
            }
        }
        if let Some(w) = &mut self.dirwatch {
            w.set_dirs(&crate::activation::service_dirs(bus));
        }
    }

    fn cleanup(&mut self) {
        for b in &self.listeners {
            if let Some(p) = &b.cleanup {
                let _ = std::fs::remove_file(p);
            }
        }
        if let Some(p) = &self.pidfile {
            let _ = std::fs::remove_file(p);
        }
    }

    /// The earliest deadline of anything: O(log n) in the deadlines armed
    /// (plus the activations in progress), whatever the number of
    /// connections.
    fn next_deadline(bus: &Bus) -> Option<Instant> {
        bus.next_deadline()
    }

    /// How long the next poll may wait: not at all while a connection or a
    /// listener still has work from the last round.
    fn poll_timeout(&self, bus: &Bus) -> Option<Duration> {
        if !self.ready.is_empty() || self.accept_ready.iter().any(|&r| r) {
            return Some(Duration::ZERO);
        }
        let now = Instant::now();
        // A throttled peer paused by its user's quota needs a wake-up when
        // the pause ends; only throttled peers are looked at.
        let pause_end = self
            .throttled
            .iter()
            .filter_map(|id| bus.peer(*id).and_then(|p| p.quota_pause))
            .filter(|&t| t > now)
            .min();
        [Self::next_deadline(bus), pause_end]
            .into_iter()
            .flatten()
            .min()
            .map(|d| d.saturating_duration_since(now))
    }

    /// One round after another: collect readiness, give every ready
    /// connection one bounded turn (fresh ones first), fire due timers,
    /// flush every touched peer.
    fn run(&mut self, bus: &mut Bus) -> Result<(), String> {
        let mut events = std::mem::take(&mut self.events);
        loop {
            if !self.throttled.is_empty() {
                // A write that completes may let a throttled sender read
                // again (its messages drain): with io_uring the writes
                // complete in the wait, which must not block before the
                // sender is looked at again.
                self.io.settle(bus);
                self.resume_throttled(bus);
            }
            let timeout = self.poll_timeout(bus);
            events.clear();
            if let Err(e) = self.io.wait(bus, &mut events, timeout) {
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(format!("poll failed: {e}"));
            }
            for ev in &events {
                let t = Token(ev.token);
                if t == SIGNAL_TOKEN {
                    if self.handle_signals(bus) {
                        return Ok(());
                    }
                } else if t == WORKER_TOKEN {
                    self.io.woken();
                    // Handshakes waiting for the keyring go on now (SASL
                    // may have an answer to send with nothing buffered),
                    // and so do connections admitted once the user
                    // database answered; whatever is left buffered (or in
                    // the socket, which they were not read from meanwhile)
                    // gets the next turn.
                    let mut woken = bus.keyring_waiters();
                    woken.extend(bus.userdb_answered());
                    for id in woken {
                        self.io.reclaim(bus, id);
                        bus.process_input(id, MSGS_PER_TURN);
                        self.ready.schedule(id, Self::class_of(bus, id));
                    }
                } else if t == AVC_TOKEN {
                    bus.mac_mut().netlink_ready();
                } else if t == CONSOLE_TOKEN {
                    if self.console.as_mut().is_some_and(|w| w.drain()) {
                        bus.console_changed();
                    }
                } else if t == INOTIFY_TOKEN {
                    if self.dirwatch.as_ref().is_some_and(|w| w.drain()) {
                        crate::activation::dirs_modified(bus);
                    }
                } else if t.0 >= LISTENER_BASE {
                    if let Some(r) = self.accept_ready.get_mut(t.0 - LISTENER_BASE) {
                        *r = true;
                    }
                } else {
                    let id = t.0 as u64;
                    if ev.writable && bus.has_peer(id) {
                        bus.mark_dirty(id);
                    }
                    if ev.read_closed || ev.error {
                        // No later event will say so: read to the end.
                        self.read_closed.insert(id);
                    }
                    if ev.readable || ev.read_closed || ev.error {
                        self.ready.schedule(id, Self::class_of(bus, id));
                    }
                }
            }
            self.serve_round(bus);
            for idx in 0..self.listeners.len() {
                if self.accept_ready[idx] {
                    self.accept(bus, idx);
                }
            }
            let now = Instant::now();
            if Self::next_deadline(bus).is_some_and(|d| d <= now) {
                self.timers(bus, now);
            }
            if bus.activation().dirs_changed {
                bus.activation_mut().dirs_changed = false;
                self.watch_service_dirs(bus);
            }
            self.flush(bus);
            self.close_pending(bus);
            self.resume_accept(bus);
            self.resume_throttled(bus);
            if self.reexec_signalled || !self.wiring.reexec_requests.borrow().is_empty() {
                // What is queued is written before the state is saved,
                // and what was received is in it.
                self.io.settle(bus);
                self.io.quiesce(bus);
                self.reexec(bus);
                // The refusal's errors go out now, not at the next event.
                self.flush(bus);
                self.close_pending(bus);
            }
        }
    }

    /// Which queue connection `id` waits in.
    fn class_of(bus: &Bus, id: u64) -> Class {
        match bus.peer(id) {
            Some(p) if p.unique_name.is_none() => Class::Incomplete,
            _ => Class::Client,
        }
    }

    /// Gives each connection of this round one turn: first those that
    /// became ready since the last round, sharing [`BYTES_PER_ROUND`], whose
    /// output (a quiet client's reply) is then flushed at once; then those
    /// that used their whole last turn (flooders) and connections that have
    /// not completed Hello, [`MIN_BYTES_PER_TURN`] each. A round is short
    /// however many flood, so a call that arrives meanwhile waits little
    /// for the next round, where it goes first.
    fn serve_round(&mut self, bus: &mut Bus) {
        let mut round = std::mem::take(&mut self.round);
        let fresh = self
            .ready
            .take_round(&mut round, INCOMPLETE_TURNS_PER_ROUND);
        let bytes = (BYTES_PER_ROUND / fresh.max(1)).clamp(MIN_BYTES_PER_TURN, BYTES_PER_TURN);
        for (i, &id) in round.iter().enumerate() {
            if i == fresh && bus.has_dirty() {
                self.flush(bus);
                // io_uring: the sends go out now, and none is in flight
                // while the rest of the round queues more behind them (a
                // send left in flight here stalled a peer's queue).
                self.io.settle(bus);
            }
            let budget = if i < fresh { bytes } else { MIN_BYTES_PER_TURN };
            match self.turn(bus, id, budget) {
                TurnEnd::Exhausted => self.ready.requeue(id, Self::class_of(bus, id)),
                TurnEnd::Drained => {
                    self.ready.done(id);
                    self.io.turn_drained(bus, id);
                }
                TurnEnd::Gone => self.ready.done(id),
                TurnEnd::Throttled => {
                    self.ready.done(id);
                    self.io.pause(id);
                    if !self.throttled.contains(&id) {
                        self.throttled.push(id);
                    }
                }
            }
        }
        self.round = round;
    }

    /// Whether `id` must not be read from now: its messages still alive in
    /// the bus are at max_incoming_bytes or max_incoming_unix_fds.
    fn at_incoming_limit(bus: &Bus, id: u64) -> bool {
        let l = &bus.limits();
        bus.peer(id).is_some_and(|p| {
            p.live
                .at_limit(l.max_incoming_bytes, l.max_incoming_unix_fds)
                || (p.quota_pause.is_some() && p.quota_paused(Instant::now()))
        })
    }

    /// Queues again the throttled peers whose messages have drained (the
    /// socket is edge-triggered, so no new event would say so); forgets
    /// those that are gone.
    fn resume_throttled(&mut self, bus: &mut Bus) {
        if self.throttled.is_empty() {
            return;
        }
        let ready = &mut self.ready;
        self.throttled.retain(|&id| {
            if Self::at_incoming_limit(bus, id) {
                return true;
            }
            if bus.has_peer(id) {
                ready.schedule(id, Self::class_of(bus, id));
            }
            false
        });
    }

    /// Accepts again once fewer than max_incomplete_connections are
    /// incomplete (pending connections wait in the listen backlog meanwhile,
    /// as with dbus-daemon, which stops watching its listening sockets).
    fn resume_accept(&mut self, bus: &mut Bus) {
        if self.accept_paused && (bus.incomplete() as u64) < bus.limits().max_incomplete_connections
        {
            self.accept_paused = false;
            self.accept_ready.fill(true);
            self.set_listeners_level_triggered(true);
        }
    }

    fn handle_signals(&mut self, bus: &mut Bus) -> bool {
        let mut quit = false;
        while let Ok(Some(info)) = self.signals.read_signal() {
            match Signal::try_from(info.ssi_signo as i32) {
                Ok(Signal::SIGTERM) | Ok(Signal::SIGINT) => quit = true,
                Ok(Signal::SIGHUP) => {
                    let _ = bus.upcalls().reload(bus);
                }
                Ok(Signal::SIGCHLD) => crate::activation::reap_children(bus),
                Ok(Signal::SIGUSR2) => self.reexec_signalled = true,
                _ => {}
            }
        }
        quit
    }

    /// Watches the listeners level-triggered (`level`) or edge-triggered,
    /// as mio registered them. Level-triggered, the loop accepts one
    /// connection per listener and round and learns from the next poll
    /// whether more wait, instead of from an accept that fails with EAGAIN
    /// (one syscall per connection). While accepting is paused they are
    /// edge-triggered, or a full backlog would wake every poll.
    fn set_listeners_level_triggered(&mut self, level: bool) {
        use std::os::fd::AsRawFd;
        for (i, b) in self.listeners.iter().enumerate() {
            if self.listener_level.get(i) == Some(&level) {
                continue;
            }
            let fd = match &b.listener {
                crate::transport::listener::Listener::Unix(l) => l.as_raw_fd(),
                crate::transport::listener::Listener::Tcp(l) => l.as_raw_fd(),
            };
            if self.io.set_level_triggered(fd, LISTENER_BASE + i, level) {
                if let Some(l) = self.listener_level.get_mut(i) {
                    *l = level;
                }
            }
        }
    }

    /// Accepts at most [`ACCEPTS_PER_ROUND`] connections from listener
    /// `idx` (one if it is level-triggered); `accept_ready` says whether
    /// more may be waiting.
    fn accept(&mut self, bus: &mut Bus, idx: usize) {
        for _ in 0..ACCEPTS_PER_ROUND {
            if bus.incomplete() as u64 >= bus.limits().max_incomplete_connections {
                // Leave the rest in the backlog until one completes or
                // times out (dbus-daemon, fd.o #80919).
                self.accept_paused = true;
                self.accept_ready[idx] = false;
                self.set_listeners_level_triggered(false);
                return;
            }
            let Some(b) = self.listeners.get(idx) else {
                return;
            };
            match b.listener.accept() {
                Ok(stream) => {
                    let id = bus.next_peer_id();
                    let r = self.io.register_peer(stream.raw_fd(), id, true);
                    if r.is_err() {
                        continue;
                    }
                    let got = bus.add_peer(stream);
                    debug_assert_eq!(got, id);
                    if self.listener_level.get(idx) == Some(&true) {
                        // The next poll says whether more are waiting.
                        self.accept_ready[idx] = false;
                        return;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    self.accept_ready[idx] = false;
                    return;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    crate::log::warning(&format!("Failed to accept a connection: {e}"));
                    self.accept_ready[idx] = false;
                    return;
                }
            }
        }
    }

    /// One turn of connection `id`: dispatch what an earlier turn left
    /// buffered, then read and dispatch until the socket is dry, or `bytes`
    /// were read, or [`MSGS_PER_TURN`] messages were dispatched.
    fn turn(&mut self, bus: &mut Bus, id: u64, mut bytes: usize) -> TurnEnd {
        let mut msgs = MSGS_PER_TURN;
        // io_uring: no receive of its own may be in flight while the turn
        // reads, and what receives brought is in `inbuf`, counted here.
        self.io.reclaim(bus, id);
        bytes = bytes.saturating_sub(self.io.take_delivered(id));
        if let Some(p) = bus.peer_mut(id) {
            p.splice_wait = false;
        }
        let leftover = bus.peer(id).is_some_and(|p| {
            !p.closing && p.large_rx.is_none() && p.splice_in.is_none() && !p.inbuf.is_empty()
        });
        if leftover {
            msgs -= self.frame(bus, id, msgs);
        }
        loop {
            let Some(p) = bus.peer_mut(id) else {
                return TurnEnd::Gone;
            };
            if p.closing {
                return TurnEnd::Gone;
            }
            if bus.awaits_userdb(id) {
                // Not read from until the user database answers; the
                // answer schedules a turn (the socket, edge-triggered,
                // would not).
                return TurnEnd::Drained;
            }
            if msgs == 0 || bytes == 0 {
                return TurnEnd::Exhausted;
            }
            if bus.peer(id).is_some_and(|p| p.splice_wait) {
                // Woken when one of its spliced bodies is through.
                return TurnEnd::Drained;
            }
            if bus.peer(id).is_some_and(|p| p.splice_in.is_some()) {
                // The rest of a spliced body goes first, whatever the
                // incoming limits (the message is already routed).
                match bus.splice_pull(id) {
                    Pull::Done => continue,
                    Pull::Wait => return TurnEnd::Drained,
                    Pull::Gone => return TurnEnd::Gone,
                }
            }
            if Self::at_incoming_limit(bus, id) {
                // Back-pressure: read no more until its messages drain.
                return TurnEnd::Throttled;
            }
            let spilled = bus.peer(id).is_some_and(|p| !p.rx_spill.is_empty());
            // Bytes taken from the socket already come first.
            match if spilled {
                RxEnd::Open
            } else {
                self.io.rx_end(id)
            } {
                RxEnd::Open => {}
                // io_uring's receive was short: as after a short read.
                RxEnd::Dry => {
                    if let Some(p) = bus.peer_mut(id) {
                        p.inbuf.release_if_empty();
                    }
                    return Self::short_read_end(bus, id, msgs);
                }
                RxEnd::Closed => {
                    bus.close(id);
                    return TurnEnd::Gone;
                }
            }
            let Some(p) = bus.peer_mut(id) else {
                return TurnEnd::Gone;
            };
            let mut fds = Vec::new();
            if let Some(rx) = &mut p.large_rx {
                // The rest of a large message goes straight into its buffer.
                let spare = rx.spare();
                let lim = spare.len().min(bytes);
                match recv_input(&mut p.rx_spill, &p.stream, &mut spare[..lim], &mut fds) {
                    Ok(0) => {
                        bus.close(id);
                        return TurnEnd::Gone;
                    }
                    Ok(n) => {
                        bytes -= n;
                        let done = rx.advance(n);
                        let short = !spilled
                            && n < lim
                            && fds.is_empty()
                            && !self.read_closed.contains(&id);
                        p.in_fds.extend(fds);
                        if done {
                            bus.finish_large_message(id);
                            msgs -= 1;
                            msgs -= self.frame(bus, id, msgs);
                        } else {
                            bus.check_pending_fds(id);
                        }
                        if short {
                            return Self::short_read_end(bus, id, msgs);
                        }
                        continue;
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => return TurnEnd::Drained,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(_) => {
                        bus.close(id);
                        return TurnEnd::Gone;
                    }
                }
            }
            // Straight into the connection's receive chunk, which the
            // messages are then sliced out of.
            let (stream, spill) = (&p.stream, &mut p.rx_spill);
            let mut asked = 0;
            match p.inbuf.fill(bytes, |buf| {
                asked = buf.len();
                recv_input(spill, stream, buf, &mut fds)
            }) {
                Ok(0) => {
                    bus.close(id);
                    return TurnEnd::Gone;
                }
                Ok(n) => {
                    bytes -= n;
                    let short =
                        !spilled && n < asked && fds.is_empty() && !self.read_closed.contains(&id);
                    p.in_fds.extend(fds);
                    msgs -= self.frame(bus, id, msgs);
                    if short {
                        // As on EAGAIN below: an idle connection holds no
                        // receive chunk.
                        if let Some(p) = bus.peer_mut(id) {
                            p.inbuf.release_if_empty();
                        }
                        return Self::short_read_end(bus, id, msgs);
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    // An idle connection holds no receive chunk.
                    p.inbuf.release_if_empty();
                    return TurnEnd::Drained;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(_) => {
                    bus.close(id);
                    return TurnEnd::Gone;
                }
            }
        }
    }

    /// Frames and dispatches up to `msgs` of connection `id`'s buffered
    /// messages; if the framing found a body to splice while a receive of
    /// the backend was armed on the socket, takes the receive back and
    /// frames again. Returns how many it dispatched.
    fn frame(&mut self, bus: &mut Bus, id: u64, msgs: usize) -> usize {
        let mut n = bus.process_input(id, msgs);
        if bus
            .peer_mut(id)
            .is_some_and(|p| std::mem::take(&mut p.rx_release))
        {
            self.io.release(bus, id);
            n += bus.process_input(id, msgs - n);
        }
        n
    }

    /// A read returned less than it asked for: the stream socket had no
    /// more at that moment, and anything arriving later raises a new
    /// (edge-triggered) readiness event (unless the peer already shut down
    /// its side: see `read_closed`; and unless the read brought fds, as
    /// the kernel ends a unix stream read after a message's fds), so the
    /// turn ends without the
    /// recvmsg that would only say EAGAIN (one syscall per turn, three per
    /// connection setup with libdbus). If the turn's message budget ran
    /// out, whole messages may still be buffered: then it comes back.
    fn short_read_end(bus: &Bus, id: u64, msgs: usize) -> TurnEnd {
        match bus.peer(id) {
            Some(p) if !p.closing => {
                if msgs == 0 {
                    TurnEnd::Exhausted
                } else {
                    TurnEnd::Drained
                }
            }
            _ => TurnEnd::Gone,
        }
    }

    /// Fires what is due: reply timeouts, authentication and pending-fd
    /// timeouts, activation timeouts. Costs O(log n) per deadline fired.
    fn timers(&mut self, bus: &mut Bus, now: Instant) {
        bus.expire_replies(now);
        bus.expire_deadlines(now);
        crate::activation::timers(bus, now);
    }

    fn flush(&mut self, bus: &mut Bus) {
        while bus.has_dirty() {
            // Swapped with a list kept here, so neither loses its capacity.
            let mut dirty = std::mem::take(&mut self.dirty);
            bus.swap_dirty(&mut dirty);
            for &id in &dirty {
                self.io.flush_peer(bus, id);
            }
            dirty.clear();
            self.dirty = dirty;
        }
        // Senders of spliced bodies whose pipes have room again.
        crate::broker::splice::take_wakes(&mut self.woken);
        for id in self.woken.drain(..) {
            if bus.has_peer(id) {
                self.ready.schedule(id, Self::class_of(bus, id));
            }
        }
    }

    fn close_pending(&mut self, bus: &mut Bus) {
        loop {
            if !bus.has_to_close() {
                break;
            }
            // Queued writes go first: nothing may free what they point
            // at, and the best-effort flush below must follow them.
            self.io.settle(bus);
            let ids = bus.take_to_close();
            for id in ids {
                self.read_closed.remove(&id);
                if let Some(mut p) = bus.remove_peer(id) {
                    // Best effort: what was already queued (e.g. a last
                    // REJECTED) may still fit in the socket.
                    let _ = p.flush();
                    self.io.closing(p.stream.raw_fd(), id as usize);
                    drop(p);
                }
            }
            self.flush(bus);
        }
    }
}

/// Reads connection input into `buf`: what a receive already took from
/// the socket (`spill`) first, then the socket.
fn recv_input(
    spill: &mut crate::transport::spill::Spill,
    stream: &crate::transport::stream::Stream,
    buf: &mut [u8],
    fds: &mut Vec<std::os::fd::OwnedFd>,
) -> io::Result<usize> {
    if spill.is_empty() {
        stream.recv(buf, fds)
    } else {
        Ok(spill.read(buf, fds))
    }
}
