//! Routing one message from a connection: to the driver, to the owner of a
//! name, or to everyone whose match rules want it (dbus-daemon's
//! bus_dispatch).

use std::rc::Rc;

use super::bus::{Bus, DBUS_NAME};
use super::errors;
use super::peer::{Inbound, OutMsg, PeerState, Shared};
use crate::transport::pool::Pooled;
use crate::wire::header::{forward_header, forward_header_with_body_len, msg_type};

impl Bus {
    /// Routes a validated message from connection `sid`.
    pub fn dispatch(&mut self, sid: u64, inb: Inbound) {
        let Some(p) = self.peers.get(&sid) else {
            return;
        };
        if matches!(p.state, PeerState::Monitor) {
            crate::log::peer_warning(
                crate::log::Kind::ProtocolViolation,
                &p.who(),
                &format!(
                    "Monitoring connection {} ({}) is not allowed to send messages; closing it. \
                     Please fix the monitor to not do that.",
                    p.name(),
                    p.loginfo()
                ),
            );
            self.close(sid);
            return;
        }
        let active = p.is_active();
        let sender_name: Rc<str> = p
            .unique_name
            .clone()
            .unwrap_or_else(|| Rc::from(":not.active.yet"));
        let inb = Shared::new(inb);
        let h = inb.header();
        let bytes = inb.bytes();
        let v = inb.view();
        let dest = v.destination();

        if dest.is_none() && h.msg_type != msg_type::SIGNAL {
            // Not addressed to anyone: dbus-daemon's own connection object
            // answers Peer methods and ignores the rest.
            if h.msg_type == msg_type::METHOD_CALL {
                self.handle_unaddressed_call(sid, &inb);
            }
            return;
        }

        // A spliced body's rest (`inb.rest`) is not in `bytes`.
        let body_len = bytes.len() - h.body_start + inb.rest;
        let forward = || OutMsg {
            head: Pooled::reuse(|b| {
                forward_header_with_body_len(h, bytes, &sender_name, body_len, b)
            }),
            body: Some(inb.clone()),
        };

        if dest == Some(DBUS_NAME) {
            // The copy with SENDER set is only for monitors and
            // eavesdroppers: a call to the driver (Hello, GetId, AddMatch,
            // ...) usually has none, and needs no header rewrite.
            let out = (!self.monitors.is_empty() || (active && self.matches.has_eavesdrop_rules()))
                .then(forward);
            // dbus-daemon reports an activation failure (the only signal
            // the driver acts on) in a transaction of its own, so monitors
            // see the resulting errors before the signal itself.
            let signal_first = h.msg_type == msg_type::SIGNAL;
            // dbus-daemon shows monitors a Hello from a connection that has
            // no name yet once the driver has given it one, with that name
            // as its sender, just before the reply (see capture_hello).
            let hello =
                !active && h.msg_type == msg_type::METHOD_CALL && v.member() == Some("Hello");
            let monitored = |bus: &Bus| !bus.monitors.is_empty();
            if let Some(out) = out
                .as_ref()
                .filter(|_| monitored(self) && !signal_first && !hello)
            {
                self.capture(Some(sid), None, out, v);
            }
            if let Err(d) = self.check_security(Some(sid), None, None, &v, None) {
                if let Some(out) = out.as_ref().filter(|_| monitored(self) && signal_first) {
                    self.capture(Some(sid), None, out, v);
                }
                self.send_error(sid, h, d.name, &d.text);
                return;
            }
            let handled = self.upcalls().driver(self, sid, &inb);
            if let Some(out) = out.as_ref().filter(|_| monitored(self) && signal_first) {
                self.capture(Some(sid), None, out, v);
            }
            // Eavesdroppers see messages to the driver too (when it
            // accepted them), even the AddMatch that made the first
            // eavesdrop rule (as with dbus-daemon, which matches after the
            // driver has handled the call).
            if active && handled && self.matches.has_eavesdrop_rules() {
                let out = out.unwrap_or_else(forward);
                self.dispatch_matches(Some(sid), None, &out, v);
            }
            return;
        }
        let out = forward();
        if !active {
            if !self.monitors.is_empty() {
                self.capture(Some(sid), None, &out, v);
            }
            self.close(sid);
            return;
        }
        let addressed = match dest {
            None => None,
            Some(d) => match self.lookup(d) {
                Some(r) => Some(r),
                None => {
                    // Activation goes first so that monitors see an
                    // ActivationRequest before the message that caused it,
                    // as with dbus-daemon.
                    let result = if h.no_auto_start() {
                        Err(crate::broker::security::Denied {
                            name: errors::NAME_HAS_NO_OWNER,
                            text: format!("Name \"{d}\" does not exist"),
                        })
                    } else {
                        self.upcalls()
                            .auto_start(self, sid, d, inb.clone(), out.clone())
                    };
                    if !self.monitors.is_empty() {
                        self.capture(Some(sid), None, &out, v);
                    }
                    if let Err(e) = result {
                        self.send_error(sid, h, e.name, &e.text);
                    }
                    return;
                }
            },
        };
        if !self.monitors.is_empty() {
            self.capture(Some(sid), addressed, &out, v);
        }
        match addressed {
            Some(r) => self.deliver_to_owner(sid, r, &inb, &out),
            None => self.dispatch_matches(Some(sid), None, &out, v),
        }
    }

    /// Shows monitors the Hello that `sid` sent, with the unique name it has
    /// just been given as its sender. The driver calls this between giving
    /// the name and replying, which is where dbus-daemon's monitors see it.
    pub fn capture_hello(&mut self, sid: u64, inb: &Inbound) {
        if self.monitors.is_empty() || !inb.body().is_empty() {
            return;
        }
        let Some(name) = self.unique_name(sid) else {
            return;
        };
        let h = inb.header();
        let bytes = inb.bytes();
        let out = OutMsg {
            head: Pooled::new(forward_header(h, bytes, &name)),
            body: None,
        };
        self.capture(Some(sid), None, &out, inb.view());
    }

    /// Delivers a message from `sid` to the connection `r` that owns its
    /// destination (checking policy, recording the expected reply), then to
    /// eavesdroppers.
    pub fn deliver_to_owner(&mut self, sid: u64, r: u64, inb: &Shared, out: &OutMsg) {
        let h = inb.header();
        let v = inb.view();
        if let Err(d) = self.check_security(Some(sid), Some(r), Some(r), &v, None) {
            self.send_error(sid, h, d.name, &d.text);
            return;
        }
        if h.unix_fds > 0 && !self.peers.get(&r).is_some_and(|p| p.unix_fd) {
            self.send_error(
                sid,
                h,
                errors::NOT_SUPPORTED,
                "Tried to send message with Unix file descriptorsto a client that doesn't support that.",
            );
            return;
        }
        self.deliver(r, out.clone());
        self.dispatch_matches(Some(sid), Some(r), out, v);
    }

    /// Peer methods sent without a destination are answered by the bus.
    fn handle_unaddressed_call(&mut self, sid: u64, inb: &Inbound) {
        let h = inb.header();
        let v = inb.view();
        let iface = v.interface();
        if (iface.is_none() || iface == Some("org.freedesktop.DBus.Peer"))
            && self.upcalls().peer_method(self, sid, inb)
        {
            return;
        }
        if h.no_reply_expected() {
            return;
        }
        let text = format!(
            "Method \"{}\" with signature \"{}\" on interface \"{}\" doesn't exist\n",
            v.member().unwrap_or(""),
            v.signature().unwrap_or(""),
            iface.unwrap_or("(null)")
        );
        self.send_error(sid, h, errors::UNKNOWN_METHOD, &text);
    }
}
