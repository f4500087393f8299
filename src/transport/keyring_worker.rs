//! DBUS_COOKIE_SHA1 keyring work, off the event loop.
//!
//! Finding a key may mean creating one, which waits up to 8 s for the
//! keyring's lock file (as libdbus does), writes and syncs the file, and
//! may look the user up in the user database. Done on the loop, that froze
//! every other client for as long. Here one worker thread does it; the SASL
//! handshake that asked waits (without consuming more input) until the
//! answer arrives, and the loop is woken by the notifier the daemon
//! installed with [`set_notify`]. One thread, so a stuck lock delays only
//! other cookie handshakes, never the bus, and a flood of them cannot
//! start unbounded threads.

use std::path::PathBuf;
use std::sync::mpsc::{self, Receiver, Sender, TryRecvError};
use std::sync::{Mutex, OnceLock};

use super::cookie::{self, Keyring};

/// What the handshake needs to find a key.
#[derive(Debug)]
pub struct Request {
    /// The user the client claimed: a uid (already checked on the loop) or
    /// a name to look up.
    pub user: User,
    /// The uid of the socket's peer, if known.
    pub peer_uid: Option<u32>,
    /// Keyring directory override (tests); None = the daemon user's.
    pub keyring_dir: Option<PathBuf>,
}

/// A claimed user.
#[derive(Debug)]
pub enum User {
    /// A numeric uid.
    Uid(u32),
    /// A user name (looked up in the user database on the worker).
    Name(String),
}

/// The answer.
#[derive(Debug, PartialEq, Eq)]
pub enum Outcome {
    /// A key to challenge with.
    Key {
        /// The key's id in the keyring.
        id: i32,
        /// The secret, hex-encoded.
        hex_cookie: String,
        /// The uid the client authenticates as.
        uid: u32,
    },
    /// No key: the claim is refused or the keyring cannot be used.
    Rejected,
}

/// A lookup in progress.
#[derive(Debug)]
pub struct Lookup {
    rx: Receiver<Outcome>,
    /// An answer [`Lookup::wait`] already received.
    ready: Option<Outcome>,
}

impl Lookup {
    /// The answer, if it has arrived (a worker that went away counts as
    /// [`Outcome::Rejected`]).
    pub fn poll(&mut self) -> Option<Outcome> {
        if let Some(o) = self.ready.take() {
            return Some(o);
        }
        match self.rx.try_recv() {
            Ok(o) => Some(o),
            Err(TryRecvError::Empty) => None,
            Err(TryRecvError::Disconnected) => Some(Outcome::Rejected),
        }
    }

    /// Blocks until the answer has arrived; [`Lookup::poll`] then returns
    /// it. For tests and tools, never on the event loop.
    pub fn wait(&mut self) {
        if self.ready.is_none() {
            self.ready = Some(self.rx.recv().unwrap_or(Outcome::Rejected));
        }
    }
}

type Job = (Request, Sender<Outcome>);

static JOBS: OnceLock<Mutex<Option<Sender<Job>>>> = OnceLock::new();
static NOTIFY: OnceLock<Box<dyn Fn() + Send + Sync>> = OnceLock::new();

/// Installs what the worker calls after each answer, to wake the event
/// loop. Only the first call has an effect.
pub fn set_notify(f: Box<dyn Fn() + Send + Sync>) {
    let _ = NOTIFY.set(f);
}

/// Queues a lookup for the worker thread (started on first use, and again
/// if it ever went away). If it cannot be queued, the lookup reads as
/// [`Outcome::Rejected`].
pub fn start(req: Request) -> Lookup {
    let (tx, rx) = mpsc::channel();
    let jobs = JOBS.get_or_init(|| Mutex::new(None));
    if let Ok(mut guard) = jobs.lock() {
        if guard.is_none() {
            *guard = spawn_worker();
        }
        // A failed send drops the job and its reply sender with it.
        if guard.as_ref().is_none_or(|j| j.send((req, tx)).is_err()) {
            *guard = None;
        }
    }
    Lookup { rx, ready: None }
}

fn spawn_worker() -> Option<Sender<Job>> {
    let (tx, rx) = mpsc::channel::<Job>();
    std::thread::Builder::new()
        .name("busbar-keyring".into())
        .spawn(move || {
            for (req, reply) in rx {
                let _ = reply.send(find_key(req));
                if let Some(n) = NOTIFY.get() {
                    n();
                }
            }
        })
        .ok()?;
    Some(tx)
}

/// The blocking part: resolve the user, check it may use the daemon's
/// keyring, and find (or create) a recent key.
fn find_key(req: Request) -> Outcome {
    let uid = match req.user {
        User::Uid(u) => u,
        User::Name(name) => match nix::unistd::User::from_name(&name) {
            Ok(Some(u)) => u.uid.as_raw(),
            _ => return Outcome::Rejected,
        },
    };
    // Only the daemon's own user's keyring can be used, and the claimed
    // user must be the peer when the socket tells us who it is.
    if uid != nix::unistd::geteuid().as_raw() || req.peer_uid.is_some_and(|p| p != uid) {
        return Outcome::Rejected;
    }
    let opened = match req.keyring_dir {
        Some(dir) => Keyring::open(dir, cookie::DEFAULT_CONTEXT),
        None => Keyring::open_for_current_user(cookie::DEFAULT_CONTEXT),
    };
    let Ok(mut ring) = opened else {
        return Outcome::Rejected;
    };
    let Ok(id) = ring.best_key() else {
        return Outcome::Rejected;
    };
    match ring.hex_key(id) {
        Some(hex_cookie) => Outcome::Key {
            id,
            hex_cookie,
            uid,
        },
        None => Outcome::Rejected,
    }
}
