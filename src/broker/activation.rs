//! Activation bookkeeping the bus owns: names being activated, the
//! messages held for them, the launched processes and the activation
//! environment. Plain data; src/activation decides what to do with it.

use std::collections::HashMap;
use std::ffi::OsString;
use std::time::Instant;

use super::peer::OutMsg;
use super::services::Index;

/// What waits for a name to appear.
#[derive(Debug)]
pub enum Held {
    /// An auto-started method call from a connection.
    Call {
        /// The caller.
        sender: u64,
        /// The call as received.
        inb: super::peer::Shared,
        /// The call as it will be forwarded.
        out: OutMsg,
    },
    /// A message the bus itself sends (ActivationRequest, SetEnvironment).
    Driver {
        /// The message.
        out: OutMsg,
    },
    /// A StartServiceByName waiting for its reply.
    Start {
        /// The caller.
        sender: u64,
        /// The serial of its call.
        serial: u32,
    },
}

/// One name being activated.
#[derive(Debug)]
pub struct Pending {
    /// What waits for it, in arrival order.
    pub held: Vec<Held>,
    /// When the activation times out.
    pub deadline: Instant,
    /// The Exec line of its service file.
    pub exec: Option<String>,
    /// Its SystemdService.
    pub systemd_service: Option<String>,
    /// The process launched for it, until it exits.
    pub pid: Option<i32>,
}

/// Activation state of the bus.
#[derive(Debug, Default)]
pub struct Activation {
    /// The activatable services (rebuilt from disk, never carried over).
    pub index: Index,
    /// Names being activated.
    pub pending: HashMap<String, Pending>,
    /// Messages held in `pending`, all names together.
    pub n_held: usize,
    /// The environment for activated services: the bus's own (as bytes:
    /// a variable that is not UTF-8 is passed on intact) plus
    /// UpdateActivationEnvironment's.
    pub env: Vec<(OsString, OsString)>,
    /// The service directories changed (a reload): watches need updating.
    pub dirs_changed: bool,
}
