//! One daemon and the clients the cases drive, with the bookkeeping that
//! turns "what every client received" into one comparable outcome per case.

use std::io::ErrorKind;

use super::common::{Bus, Client, Msg, MsgBuilder, DRIVER, DRIVER_PATH, METHOD_RETURN, W};
use super::render::{message_line, Norm, Numbers};

/// A client with a role name ("A", "B", ...).
struct Role {
    name: String,
    client: Client,
    /// Has said Hello (a barrier is possible).
    registered: bool,
}

/// A daemon under test and its clients.
pub struct World {
    /// The daemon.
    pub bus: Bus,
    /// The normaliser for this daemon's run.
    pub norm: Norm,
    clients: Vec<Role>,
    /// Outcome lines of the case in progress.
    lines: Vec<String>,
    /// (case name, normalised outcome) of every finished case.
    pub outcomes: Vec<(String, String)>,
    /// How numbers in replies of the case in progress are shown.
    pub numbers: Numbers,
    /// Sort the array in replies of the case in progress.
    pub sort: bool,
}

/// The driver's signals the observer "O" subscribes to.
pub const OBSERVER_RULE: &str = "type='signal',sender='org.freedesktop.DBus'";

fn guid_of(address: &str) -> String {
    address
        .split([',', ';'])
        .find_map(|kv| kv.strip_prefix("guid="))
        .unwrap_or("")
        .to_string()
}

impl World {
    /// Starts `daemon` with `extra` config.
    pub fn start(daemon: &str, extra: &str) -> World {
        let bus = Bus::start_daemon(daemon, extra);
        let norm = Norm::new(bus.pid(), guid_of(&bus.address));
        World {
            bus,
            norm,
            clients: Vec::new(),
            lines: Vec::new(),
            outcomes: Vec::new(),
            numbers: Numbers::Exact,
            sort: false,
        }
    }

    fn idx(&self, role: &str) -> usize {
        self.clients
            .iter()
            .position(|r| r.name == role)
            .unwrap_or_else(|| panic!("no client {role}"))
    }

    /// A client's unique name.
    pub fn unique(&self, role: &str) -> String {
        self.clients[self.idx(role)].client.unique_name.clone()
    }

    /// The unique name `role` had, even after it left.
    pub fn unique_of_role(&self, role: &str) -> String {
        self.norm
            .roles
            .iter()
            .find(|(_, r)| r == role)
            .map(|(u, _)| u.clone())
            .unwrap_or_else(|| panic!("no client {role} ever connected"))
    }

    /// Connects, authenticates and says Hello as `role`.
    pub fn connect(&mut self, role: &str) {
        let c = Client::connect(&self.bus);
        self.norm.add_role(&c.unique_name, role);
        self.clients.push(Role {
            name: role.into(),
            client: c,
            registered: true,
        });
    }

    /// Connects and authenticates as `role`, without Hello.
    pub fn connect_unregistered(&mut self, role: &str) {
        let c = Client::connect_authed(&self.bus, false);
        self.clients.push(Role {
            name: role.into(),
            client: c,
            registered: false,
        });
    }

    /// Sends a message as `role`; returns its serial.
    pub fn send(&mut self, role: &str, m: MsgBuilder) -> u32 {
        let i = self.idx(role);
        let r = &mut self.clients[i];
        m_send(&mut r.client, m)
    }

    /// A method call to the driver with the given header and body.
    #[allow(clippy::too_many_arguments)]
    pub fn call_full(
        &mut self,
        role: &str,
        dest: Option<&str>,
        path: &str,
        iface: Option<&str>,
        member: &str,
        sig: &str,
        body: Vec<u8>,
        flags: u8,
    ) -> u32 {
        let mut m = MsgBuilder::method_call(0, dest, path, iface, member).body(sig, body);
        m.flags = flags;
        self.send(role, m)
    }

    /// org.freedesktop.DBus.`member` on the canonical path.
    pub fn call(&mut self, role: &str, member: &str, sig: &str, body: Vec<u8>) -> u32 {
        self.call_full(
            role,
            Some(DRIVER),
            DRIVER_PATH,
            Some(DRIVER),
            member,
            sig,
            body,
            0,
        )
    }

    /// A call whose only argument is the string `s`.
    pub fn call_s(&mut self, role: &str, member: &str, s: &str) -> u32 {
        let mut w = W::new();
        w.str(s);
        self.call(role, member, "s", w.buf)
    }

    /// RequestName(name, flags).
    pub fn request(&mut self, role: &str, name: &str, flags: u32) -> u32 {
        let mut w = W::new();
        w.str(name).u32(flags);
        self.call(role, "RequestName", "su", w.buf)
    }

    fn record(&mut self, role: &str, m: &Msg) {
        let line = message_line(m, self.numbers, self.sort);
        self.lines.push(format!("{role}<- {line}"));
    }

    /// Waits for the reply to `serial` on `role` (or its disconnection),
    /// recording everything that arrives on the way. Used for clients that
    /// cannot take part in a barrier (not registered, or monitors).
    pub fn await_reply(&mut self, role: &str, serial: u32) {
        let i = self.idx(role);
        loop {
            let r = match self.clients[i].client.pending.pop_front() {
                Some(m) => Ok(m),
                None => self.clients[i].client.read_msg(),
            };
            match r {
                Ok(m) => {
                    let done = m.reply_serial == Some(serial);
                    let name = self.clients[i].name.clone();
                    self.record(&name, &m);
                    if done {
                        return;
                    }
                }
                Err(e) if e.kind() == ErrorKind::TimedOut || e.kind() == ErrorKind::WouldBlock => {
                    let name = self.clients[i].name.clone();
                    self.lines
                        .push(format!("{name}: no reply within the timeout"));
                    return;
                }
                Err(e) => {
                    self.gone(i, &e);
                    return;
                }
            }
        }
    }

    /// Records what `role` receives up to and including the first message
    /// for which `done` is true.
    pub fn read_until(&mut self, role: &str, done: impl Fn(&Msg) -> bool) {
        let i = self.idx(role);
        loop {
            let r = match self.clients[i].client.pending.pop_front() {
                Some(m) => Ok(m),
                None => self.clients[i].client.read_msg(),
            };
            match r {
                Ok(m) => {
                    let stop = done(&m);
                    let name = self.clients[i].name.clone();
                    self.record(&name, &m);
                    if stop {
                        return;
                    }
                }
                Err(e) => {
                    self.gone(i, &e);
                    return;
                }
            }
        }
    }

    /// Records what `role` receives up to the method call with `serial`.
    pub fn await_call(&mut self, role: &str, serial: u32) {
        self.read_until(role, |m| {
            m.msg_type == super::common::METHOD_CALL && m.serial == serial
        });
    }

    /// `role` no longer takes part in barriers (a monitor may not send).
    pub fn set_unregistered(&mut self, role: &str) {
        let i = self.idx(role);
        self.clients[i].registered = false;
    }

    /// Learns the bus id (GetId) for the normaliser, recording nothing.
    pub fn learn_bus_id(&mut self, role: &str) {
        let i = self.idx(role);
        self.norm.bus_id = self.clients[i].client.get_id();
    }

    /// `role`, connected without Hello, has since said Hello itself and
    /// was given `unique`.
    pub fn registered_as(&mut self, role: &str, unique: &str) {
        let i = self.idx(role);
        self.clients[i].client.unique_name = unique.to_string();
        self.clients[i].registered = true;
        self.norm.add_role(unique, role);
    }

    /// Like [`World::await_reply`], returning the reply's first argument
    /// when it is a string.
    pub fn await_reply_str(&mut self, role: &str, serial: u32) -> Option<String> {
        let i = self.idx(role);
        loop {
            let m = match self.clients[i].client.pending.pop_front() {
                Some(m) => m,
                None => match self.clients[i].client.read_msg() {
                    Ok(m) => m,
                    Err(e) => {
                        self.gone(i, &e);
                        return None;
                    }
                },
            };
            let name = self.clients[i].name.clone();
            self.record(&name, &m);
            if m.reply_serial == Some(serial) {
                return m.signature.starts_with('s').then(|| m.arg0_str());
            }
        }
    }

    /// A client found its connection closed: record it and forget it.
    fn gone(&mut self, i: usize, e: &std::io::Error) {
        let what = match e.kind() {
            ErrorKind::UnexpectedEof | ErrorKind::ConnectionReset => "disconnected by the bus",
            ErrorKind::TimedOut | ErrorKind::WouldBlock => "no reply within the timeout",
            _ => "connection error",
        };
        let r = self.clients.remove(i);
        self.lines.push(format!("{}: {what}", r.name));
        if r.registered {
            let u = r.client.unique_name.clone();
            drop(r);
            self.wait_gone(&u);
        }
    }

    /// Waits until the observer has seen `unique` leave the bus (so that
    /// later cases do not race with the daemon's processing of the hangup).
    fn wait_gone(&mut self, unique: &str) {
        let Some(o) = self.clients.iter().position(|r| r.name == "O") else {
            return;
        };
        let seen = |m: &Msg| {
            m.is_signal(DRIVER, "NameOwnerChanged") && {
                let mut r = m.reader();
                r.string() == unique && {
                    r.string();
                    r.string().is_empty()
                }
            }
        };
        if self.clients[o].client.pending.iter().any(seen) {
            return;
        }
        loop {
            match self.clients[o].client.read_msg() {
                Ok(m) => {
                    let done = seen(&m);
                    self.clients[o].client.pending.push_back(m);
                    if done {
                        return;
                    }
                }
                Err(e) => panic!("observer lost while waiting for {unique} to leave: {e}"),
            }
        }
    }

    /// Closes `role`'s connection and waits until the bus has noticed.
    pub fn disconnect(&mut self, role: &str) {
        let i = self.idx(role);
        self.drain(i);
        let r = self.clients.remove(i);
        let u = r.client.unique_name.clone();
        let registered = r.registered;
        drop(r);
        if registered {
            self.wait_gone(&u);
        }
    }

    /// Records whatever `role` has queued without a barrier.
    fn drain(&mut self, i: usize) {
        let name = self.clients[i].name.clone();
        while let Some(m) = self.clients[i].client.pending.pop_front() {
            self.record(&name, &m);
        }
    }

    /// A round trip to the driver from every registered client in turn;
    /// everything each one received before its round trip was answered is
    /// recorded.
    pub fn settle(&mut self) {
        let mut i = 0;
        while i < self.clients.len() {
            if !self.clients[i].registered {
                self.drain(i);
                i += 1;
                continue;
            }
            let serial = {
                let c = &mut self.clients[i].client;
                let m = MsgBuilder::method_call(
                    0,
                    Some(DRIVER),
                    DRIVER_PATH,
                    Some("org.freedesktop.DBus.Peer"),
                    "Ping",
                );
                m_send(c, m)
            };
            let name = self.clients[i].name.clone();
            let mut lost = None;
            loop {
                let r = match self.clients[i].client.pending.pop_front() {
                    Some(m) => Ok(m),
                    None => self.clients[i].client.read_msg(),
                };
                match r {
                    Ok(m) if m.reply_serial == Some(serial) && m.msg_type == METHOD_RETURN => break,
                    Ok(m) => self.record(&name, &m),
                    Err(e) => {
                        lost = Some(e);
                        break;
                    }
                }
            }
            match lost {
                Some(e) => self.gone(i, &e),
                None => i += 1,
            }
        }
    }

    /// Runs one case: `f` sends, then every client settles, and the
    /// normalised record of everything received is the case's outcome.
    pub fn case(&mut self, name: &str, f: impl FnOnce(&mut World)) {
        self.lines.clear();
        f(self);
        self.settle();
        self.numbers = Numbers::Exact;
        self.sort = false;
        let text = self.norm.apply(&self.lines.join("\n"));
        self.outcomes.push((name.to_string(), text));
    }
}

/// Sends `m` on `c` with the next serial; a write to a connection the bus
/// closed is not an error here (the read that follows reports it).
fn m_send(c: &mut Client, mut m: MsgBuilder) -> u32 {
    m.serial = c.next_serial();
    let bytes = m.build();
    super::common::write_lenient(&mut c.sock, &bytes);
    m.serial
}
