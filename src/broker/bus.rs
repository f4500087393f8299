//! The bus: every connection, the name registry, reply tracking and the
//! configuration they run under. One thread owns it; no locks.

use std::collections::HashMap;
use std::hash::BuildHasherDefault;
use std::rc::Rc;
use std::time::{Duration, Instant};

use policy::Config;

use super::build;
use super::names::{NameEvent, Registry};
use super::peer::{OutMsg, Peer};
use super::replies::Replies;
use crate::transport::sasl::SaslConfig;
use crate::wire::header::Header;

/// The bus driver's name.
pub const DBUS_NAME: &str = "org.freedesktop.DBus";
/// The driver's object path.
pub const DBUS_PATH: &str = "/org/freedesktop/DBus";
/// The driver's interface.
pub const DBUS_IFACE: &str = "org.freedesktop.DBus";

/// Bus-wide counters for Debug.Stats.
#[derive(Debug, Default, Clone, Copy, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct BusStats {
    /// Peak number of match rules.
    pub peak_match_rules: usize,
    /// Peak number of well-known names.
    pub peak_bus_names: usize,
    /// Peak match rules of one connection.
    pub peak_match_rules_per_conn: usize,
    /// Peak names of one connection.
    pub peak_bus_names_per_conn: usize,
}

/// Everything the bus knows. The fields are the broker's own: code above
/// the broker reads them through methods and changes them only through
/// methods that keep the invariants between them (a peer's names and the
/// registry, the unique-name map and the peers, the connection counts).
#[derive(Debug)]
pub struct Bus {
    /// Connections by id.
    pub(super) peers: super::idmap::IdMap<Peer>,
    /// Unique name -> connection id.
    /// Unique names (bus-assigned, so nobody chooses colliding keys: the
    /// id hasher instead of SipHash).
    pub(super) unique: HashMap<Rc<str>, u64, BuildHasherDefault<super::idmap::IdHasher>>,
    /// Well-known names.
    pub(super) names: Registry,
    /// Outstanding method calls.
    pub(super) replies: Replies,
    /// Authentication and pending-fd deadlines of the connections.
    pub(super) deadlines: super::deadlines::Deadlines,
    /// Counter for unique names (:1.N).
    pub(super) next_unique: u64,
    /// Counter for connection ids.
    pub(super) next_id: u64,
    /// The running configuration.
    pub(super) config: Rc<Config>,
    /// SASL settings derived from the configuration.
    pub(super) sasl: Rc<SaslConfig>,
    /// The GUID of the listening addresses (`,guid=` and SASL OK).
    pub(super) guid: String,
    /// The bus's own id (GetId). The specification and dbus-daemon keep it
    /// distinct from the addresses' GUID.
    pub(super) id: String,
    /// Serial counter for messages the driver sends.
    pub(super) serial: u32,
    /// Peers with queued output, to flush after this batch.
    pub(super) dirty: Vec<u64>,
    /// Peers to disconnect after this batch.
    pub(super) to_close: Vec<u64>,
    /// Monitors, in the order they became monitors.
    pub(super) monitors: Vec<u64>,
    /// Rules of each monitor.
    pub(super) monitor_rules: HashMap<u64, Vec<super::matchrule::MatchRule>>,
    /// Every connection's match rules, indexed for broadcast routing.
    pub(super) matches: super::matchindex::MatchIndex,
    /// Scratch list of broadcast recipients (kept to reuse its allocation).
    pub(super) recipients: Vec<u64>,
    /// Counters.
    pub(super) stats: BusStats,
    /// Whether the daemon was started with --systemd-activation.
    pub(super) systemd_activation: bool,
    /// Number of connections that have not yet completed Hello.
    pub(super) incomplete: usize,
    /// Activation state.
    pub(super) activation: super::activation::Activation,
    /// The address clients connect to (DBUS_STARTER_ADDRESS).
    pub(super) address: String,
    /// Per-user accounts of queued bytes and fds, and connection counts.
    pub(super) users: super::quota::Users,
    /// Connections that completed Hello (monitors included).
    pub(super) completed: u64,
    /// Cached user database answers (groups, names).
    pub(super) userdb: crate::userdb::UserDb,
    /// Who is at a console (kept current by the daemon's console watch).
    pub(super) console: crate::userdb::Console,
    /// The layers above, as the daemon wired them.
    pub(super) upcalls: Rc<dyn super::upcalls::Upcalls>,
    /// Mandatory access control (SELinux, AppArmor); inactive by default.
    pub(super) mac: crate::mac::Mac,
}

impl Bus {
    /// A bus with no connections: `guid` for the addresses, `id` for GetId
    /// (both from [`crate::guid::random_guid`], which fails rather than
    /// give an all-zero one).
    pub fn new(config: Rc<Config>, sasl: Rc<SaslConfig>, guid: String, id: String) -> Bus {
        let users = super::quota::Users::new(&config.limits);
        Bus {
            peers: super::idmap::IdMap::default(),
            unique: HashMap::default(),
            names: Registry::default(),
            replies: Replies::default(),
            deadlines: super::deadlines::Deadlines::default(),
            next_unique: 0,
            next_id: 1,
            config,
            sasl,
            guid,
            id,
            serial: 0,
            dirty: Vec::new(),
            to_close: Vec::new(),
            monitors: Vec::new(),
            monitor_rules: HashMap::new(),
            matches: super::matchindex::MatchIndex::default(),
            recipients: Vec::new(),
            stats: BusStats::default(),
            systemd_activation: false,
            incomplete: 0,
            activation: super::activation::Activation::default(),
            address: String::new(),
            users,
            completed: 0,
            userdb: crate::userdb::UserDb::default(),
            console: crate::userdb::Console::scan(),
            upcalls: Rc::new(super::upcalls::Unwired),
            mac: crate::mac::Mac::default(),
        }
    }

    /// The login state changed (the console watch saw an event): read it
    /// again. Like dbus-daemon, connections keep the policy they got.
    pub fn console_changed(&mut self) {
        self.console = crate::userdb::Console::scan();
    }

    /// The next serial for a message the bus sends.
    pub fn next_serial(&mut self) -> u32 {
        self.serial = self.serial.wrapping_add(1);
        if self.serial == 0 {
            self.serial = 1;
        }
        self.serial
    }

    /// Resolves a bus name to the connection that owns it.
    pub fn lookup(&self, name: &str) -> Option<u64> {
        if name.starts_with(':') {
            self.unique.get(name).copied()
        } else {
            self.names.owner(name)
        }
    }

    /// The unique name of connection `id`.
    pub fn unique_name(&self, id: u64) -> Option<Rc<str>> {
        self.peers.get(&id).and_then(|p| p.unique_name.clone())
    }

    /// The names policy rules see for `id`: its unique name and every
    /// well-known name it owns or is queued for (as dbus-daemon does).
    pub fn names_of(&self, id: u64) -> Vec<Rc<str>> {
        let Some(p) = self.peers.get(&id) else {
            return Vec::new();
        };
        let mut v = Vec::with_capacity(1 + p.names.len());
        if let Some(u) = &p.unique_name {
            v.push(u.clone());
        }
        v.extend(p.names.iter().cloned());
        v
    }

    /// Whether `id` is the primary owner of `name` (or has it as unique name).
    pub fn is_primary_owner(&self, id: u64, name: &str) -> bool {
        if name.starts_with(':') {
            self.unique.get(name) == Some(&id)
        } else {
            self.names.owner(name) == Some(id)
        }
    }

    /// Queues `m` for `to` and marks it for flushing.
    pub fn deliver(&mut self, to: u64, m: OutMsg) {
        if let Some(p) = self.peers.get_mut(&to) {
            let was_empty = p.out.is_empty();
            p.enqueue(m);
            if was_empty {
                self.dirty.push(to);
            }
        }
    }

    /// Marks a connection for disconnection at the end of this batch.
    pub fn close(&mut self, id: u64) {
        if let Some(p) = self.peers.get_mut(&id) {
            if !p.closing {
                p.closing = true;
                self.to_close.push(id);
            }
        }
    }

    /// Reply timeout from the configuration (None: never).
    pub fn reply_deadline(&self) -> Option<Instant> {
        let t = self.config.limits.reply_timeout;
        if t == 0 || t >= i32::MAX as u64 {
            None
        } else {
            Some(Instant::now() + Duration::from_millis(t))
        }
    }

    /// Sends an error from the driver to `to` in reply to `h`.
    pub fn send_error(&mut self, to: u64, h: &Header, name: &str, text: &str) {
        self.send_error_serial(to, h.serial, name, text);
    }

    /// Sends an error from the driver to `to` in reply to its call `reply_serial`.
    pub fn send_error_serial(&mut self, to: u64, reply_serial: u32, name: &str, text: &str) {
        // A connection that has not said Hello yet is addressed as
        // ":not.active.yet", as dbus-daemon does.
        let dest: Option<Rc<str>> = self.peers.get(&to).map(|p| Rc::from(p.name()));
        let serial = self.next_serial();
        let bytes = build::error(serial, reply_serial, dest.as_deref(), name, text);
        self.send_from_driver(to, bytes);
    }

    /// Sends a message the driver built to `to` (a reply, an error or a
    /// signal): monitors see it, then `to`'s receive policy decides, as for
    /// any other message (see [`Bus::send_from_driver_checked`]).
    pub fn send_from_driver(&mut self, to: u64, bytes: Vec<u8>) {
        self.send_from_driver_checked(to, bytes);
    }

    /// Emits the signals a name change produced.
    pub fn emit_name_events(&mut self, events: Vec<NameEvent>) {
        for e in events {
            match e {
                NameEvent::OwnerChanged { name, old, new } => {
                    let old = old.and_then(|o| self.unique_name(o));
                    let new = new.and_then(|n| self.unique_name(n));
                    self.emit_owner_changed(
                        &name,
                        old.as_deref().unwrap_or(""),
                        new.as_deref().unwrap_or(""),
                    );
                }
                NameEvent::Acquired { peer, name } => {
                    self.send_name_signal(peer, "NameAcquired", &name);
                }
                NameEvent::Lost { peer, name } => {
                    self.send_name_signal(peer, "NameLost", &name);
                }
            }
        }
    }

    fn send_name_signal(&mut self, peer: u64, member: &str, name: &str) {
        let Some(p) = self.peers.get(&peer) else {
            return;
        };
        let Some(dest) = p.unique_name.clone() else {
            return;
        };
        let closing = p.closing;
        let serial = self.next_serial();
        if closing && self.monitors.is_empty() {
            // A connection being disconnected never reads it (dbus-daemon
            // sends it once the connection is gone, so only monitors see
            // it): not built, and no write that could only fail.
            return;
        }
        let mut w = crate::wire::marshal::Writer::new();
        w.string(name);
        let bytes = build::signal(
            serial,
            Some(&dest),
            DBUS_PATH,
            DBUS_IFACE,
            member,
            "s",
            w.as_bytes(),
        );
        self.send_from_driver_checked(peer, bytes);
    }

    /// Broadcasts NameOwnerChanged.
    pub fn emit_owner_changed(&mut self, name: &str, old: &str, new: &str) {
        let serial = self.next_serial();
        if !self.anyone_sees_broadcasts() {
            // Nobody could see it (every connection's churn passes here
            // twice): not even built.
            return;
        }
        let mut w = crate::wire::marshal::Writer::new();
        w.string(name);
        w.string(old);
        w.string(new);
        let bytes = build::signal(
            serial,
            None,
            DBUS_PATH,
            DBUS_IFACE,
            "NameOwnerChanged",
            "sss",
            w.as_bytes(),
        );
        self.broadcast_from_driver(bytes);
    }

    /// Broadcasts ActivatableServicesChanged (no arguments), which
    /// dbus-daemon sends after it has reread its service directories.
    pub fn emit_activatable_services_changed(&mut self) {
        let serial = self.next_serial();
        let bytes = build::signal(
            serial,
            None,
            DBUS_PATH,
            DBUS_IFACE,
            "ActivatableServicesChanged",
            "",
            &[],
        );
        self.broadcast_from_driver(bytes);
    }
}
