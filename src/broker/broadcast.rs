//! Delivery by match rules: broadcasts, eavesdroppers and monitors.

use super::bus::{Bus, DBUS_NAME};
use super::matchrule::{Arg, MatchRule, MatchSubject};
use super::peer::{OutMsg, PeerState};
use super::security::{CheckMemo, View};
use crate::wire::header::Header;
use crate::wire::marshal::Reader;
use crate::wire::parsed::MsgRef;
use crate::wire::signature::single_type_len;

/// A message seen through the eyes of a match rule.
pub struct Subject<'a> {
    bus: &'a Bus,
    sender: Option<u64>,
    v: View<'a>,
}

impl<'a> Subject<'a> {
    /// A subject for `v` sent by `sender` (None: the driver).
    pub fn new(bus: &'a Bus, sender: Option<u64>, v: View<'a>) -> Self {
        Subject { bus, sender, v }
    }
}

/// Reads argument `n` of a body lazily, without looking past it.
pub fn body_arg(m: MsgRef<'_>, n: u8) -> Option<Arg<'_>> {
    let (h, bytes) = (m.h(), m.bytes());
    let sig = m.signature()?.as_bytes();
    let body = bytes.get(h.body_start..)?;
    let mut r = Reader::new(body, h.endian());
    let mut s = sig;
    for i in 0..=n {
        if s.is_empty() {
            return None;
        }
        let len = single_type_len(s).ok()?;
        let (t, rest) = s.split_at(len);
        if i == n {
            return Some(match t {
                b"s" => Arg::Str(r.string().ok()?),
                b"o" => Arg::Path(r.object_path().ok()?),
                _ => Arg::Other,
            });
        }
        r.skip(t).ok()?;
        s = rest;
    }
    None
}

impl MatchSubject for Subject<'_> {
    fn msg_type(&self) -> u8 {
        self.v.h().msg_type
    }
    fn sender_is(&self, name: &str) -> bool {
        match self.sender {
            None => name == DBUS_NAME,
            Some(s) => self.bus.is_primary_owner(s, name),
        }
    }
    fn destination(&self) -> Option<&str> {
        self.v.destination()
    }
    fn path(&self) -> Option<&str> {
        self.v.path()
    }
    fn interface(&self) -> Option<&str> {
        self.v.interface()
    }
    fn member(&self) -> Option<&str> {
        self.v.member()
    }
    fn arg(&self, n: u8) -> Option<Arg<'_>> {
        body_arg(*self.v, n)
    }
}

/// A subject whose destination was already matched by the broker.
struct DestinationDecided<'s, 'a> {
    inner: &'s Subject<'a>,
    destination: Option<&'s str>,
}

impl MatchSubject for DestinationDecided<'_, '_> {
    fn msg_type(&self) -> u8 {
        self.inner.msg_type()
    }
    fn sender_is(&self, name: &str) -> bool {
        self.inner.sender_is(name)
    }
    fn destination(&self) -> Option<&str> {
        self.destination
    }
    fn path(&self) -> Option<&str> {
        self.inner.path()
    }
    fn interface(&self) -> Option<&str> {
        self.inner.interface()
    }
    fn member(&self) -> Option<&str> {
        self.inner.member()
    }
    fn arg(&self, n: u8) -> Option<Arg<'_>> {
        self.inner.arg(n)
    }
}

impl Bus {
    /// dbus-daemon's match semantics around the destination and eavesdrop
    /// keys, then the rule's own keys.
    pub fn rule_matches(
        &self,
        rule: &MatchRule,
        eavesdrop_implied: bool,
        addressed: Option<u64>,
        subj: &Subject<'_>,
    ) -> bool {
        let wants_eavesdrop = rule.eavesdrop || eavesdrop_implied;
        let msg_dest = subj.v.destination();
        match &rule.destination {
            Some(rd) => {
                let Some(md) = msg_dest else { return false };
                if !wants_eavesdrop {
                    return false;
                }
                match addressed {
                    None => {
                        if rd.as_str() != md {
                            return false;
                        }
                    }
                    Some(a) => {
                        if !self.is_primary_owner(a, rd) {
                            return false;
                        }
                    }
                }
            }
            None => {
                if !wants_eavesdrop && msg_dest.is_some() {
                    return false;
                }
            }
        }
        // The destination key was decided above; let the rule see its own
        // value so its generic check agrees.
        let view = DestinationDecided {
            inner: subj,
            destination: rule.destination.as_deref(),
        };
        rule.matches(&view)
    }

    /// Sends `out` to every connection (other than `addressed`) with a
    /// matching rule, checking policy for each.
    pub fn dispatch_matches(
        &mut self,
        sender: Option<u64>,
        addressed: Option<u64>,
        out: &OutMsg,
        v: View<'_>,
    ) {
        if self.matches.is_empty() {
            return;
        }
        // A message with a destination can only match eavesdrop rules.
        let has_destination = v.destination().is_some();
        if has_destination && !self.matches.has_eavesdrop_rules() {
            return;
        }
        // Candidates come from the index; each recipient is taken once (the
        // index marks a connection as done when the callback says so).
        let mut recipients = std::mem::take(&mut self.recipients);
        recipients.clear();
        {
            let subj = Subject::new(self, sender, v);
            let sender_peer = sender.and_then(|s| self.peers.get(&s));
            // Only sender-keyed rules need the sender's names.
            let names: &[std::rc::Rc<str>] = match (sender_peer, self.matches.has_sender_rules()) {
                (Some(p), true) => &p.names,
                _ => &[],
            };
            let first: Option<&str> = match sender {
                None => Some(DBUS_NAME),
                Some(_) => sender_peer.and_then(|p| p.unique_name.as_deref()),
            };
            let sender_names = first.into_iter().chain(names.iter().map(|n| &**n));
            self.matches.begin();
            self.matches.for_candidates(
                sender_names,
                v.interface(),
                v.member(),
                has_destination,
                |id, rule| {
                    if Some(id) == addressed || !self.peers.get(&id).is_some_and(|p| p.is_active())
                    {
                        return true;
                    }
                    if self.rule_matches(rule, false, addressed, &subj) {
                        recipients.push(id);
                        return true;
                    }
                    false
                },
            );
        }
        // Deliver in connection order so every run is the same.
        recipients.sort_unstable();
        let mut memo = CheckMemo::new(&v);
        for &r in &recipients {
            if let Err(d) =
                self.check_security_memo(sender, addressed, Some(r), &v, None, &mut memo)
            {
                if !self.monitors.is_empty() {
                    self.capture_error_reply(sender, v.h(), d.name, &d.text);
                }
                continue;
            }
            if v.h().unix_fds > 0 && !self.peers.get(&r).is_some_and(|p| p.unix_fd) {
                continue;
            }
            self.deliver(r, out.clone());
        }
        recipients.clear();
        self.recipients = recipients;
    }

    /// Shows `out` to every monitor whose rules match.
    pub fn capture(
        &mut self,
        sender: Option<u64>,
        addressed: Option<u64>,
        out: &OutMsg,
        v: View<'_>,
    ) {
        let mut to: Vec<u64> = Vec::new();
        {
            let subj = Subject::new(self, sender, v);
            for m in &self.monitors {
                let Some(rules) = self.monitor_rules.get(m) else {
                    continue;
                };
                if rules.is_empty()
                    || rules
                        .iter()
                        .any(|r| self.rule_matches(r, true, addressed, &subj))
                {
                    to.push(*m);
                }
            }
        }
        for m in to {
            self.deliver(m, out.clone());
        }
    }

    /// Shows monitors the error the bus would send back to the sender of
    /// `h` (`to`; None for the driver itself), even when it is not sent,
    /// e.g. for a rejected broadcast.
    pub fn capture_error_reply(&mut self, to: Option<u64>, h: &Header, name: &str, text: &str) {
        let dest: std::rc::Rc<str> = match to {
            Some(id) => match self.unique_name(id) {
                Some(u) => u,
                None => return,
            },
            None => std::rc::Rc::from(DBUS_NAME),
        };
        let serial = self.next_serial();
        let bytes = super::build::error(serial, h.serial, Some(&dest), name, text);
        let m = OutMsg {
            head: crate::transport::pool::Pooled::new(bytes),
            body: None,
        };
        let head = m.head.clone();
        let Ok(eh) = Header::parse_own(&head) else {
            return;
        };
        self.capture(None, to, &m, View::new(&eh, &head));
    }

    /// Sends a unicast message from the driver, subject to the recipient's
    /// receive policy. As dbus-daemon (bus_transaction_send_from_driver),
    /// this holds for every message from the bus, replies and errors
    /// included: a reply is a requested reply, but with no receive rule that
    /// matches it is still denied (even the reply to Hello), and the bus
    /// drops it silently. Monitors see it either way, and the error it
    /// would have caused. A connection that is not registered yet has no
    /// policy and receives anything from the bus.
    pub fn send_from_driver_checked(&mut self, to: u64, bytes: Vec<u8>) {
        let m = OutMsg {
            head: crate::transport::pool::Pooled::new(bytes),
            body: None,
        };
        let Ok(h) = Header::parse_own(&m.head) else {
            return;
        };
        let head = m.head.clone();
        let v = View::new(&h, &head);
        if !self.monitors.is_empty() {
            self.capture(None, Some(to), &m, v);
        }
        if let Err(d) = self.check_security(None, Some(to), Some(to), &v, None) {
            if !self.monitors.is_empty() {
                self.capture_error_reply(None, &h, d.name, &d.text);
            }
            return;
        }
        self.deliver(to, m);
    }

    /// Whether a broadcast could reach anyone: a monitor, or a match rule.
    pub fn anyone_sees_broadcasts(&self) -> bool {
        !(self.monitors.is_empty() && self.matches.is_empty())
    }

    /// Broadcasts a signal from the driver.
    pub fn broadcast_from_driver(&mut self, bytes: Vec<u8>) {
        // Nobody could see it: skip re-parsing what the driver just built.
        if !self.anyone_sees_broadcasts() {
            return;
        }
        let m = OutMsg {
            head: crate::transport::pool::Pooled::new(bytes),
            body: None,
        };
        let head = m.head.clone();
        let Ok(h) = Header::parse_own(&head) else {
            return;
        };
        let v = View::new(&h, &head);
        if !self.monitors.is_empty() {
            self.capture(None, None, &m, v);
        }
        self.dispatch_matches(None, None, &m, v);
    }

    /// Whether `id` is a monitor.
    pub fn is_monitor(&self, id: u64) -> bool {
        self.peers
            .get(&id)
            .is_some_and(|p| matches!(p.state, PeerState::Monitor))
    }
}
