//! The per-delivery security check (dbus-daemon's
//! bus_context_check_security_policy): registration, reply tracking, send
//! and receive policy, and the recipient's queue limits.

use policy::{MessageFacts, Verdict};

use super::bus::{Bus, DBUS_NAME};
use super::errors;
use super::peer::Peer;
use super::replies::ExpectError;
use crate::wire::header::{msg_type, Header};
use crate::wire::parsed::MsgRef;

/// A message as the policy and match rules see it: its header fields, read
/// without checking UTF-8 again for a message from a peer (see
/// [`MsgRef`]).
#[derive(Clone, Copy, Debug)]
pub struct View<'a>(pub MsgRef<'a>);

impl<'a> std::ops::Deref for View<'a> {
    type Target = MsgRef<'a>;
    fn deref(&self) -> &MsgRef<'a> {
        &self.0
    }
}

impl<'a> View<'a> {
    /// `h` read from `bytes` (a message the bus built, or one it parsed on
    /// the spot); string reads check UTF-8.
    pub fn new(h: &'a Header, bytes: &'a [u8]) -> Self {
        View(MsgRef::new(h, bytes))
    }

    /// The message's length on the wire, from its fixed header (`bytes`
    /// holds only the start of a message whose body is spliced).
    pub fn msg_len(&self) -> usize {
        let h = self.h();
        let body = h.endian().u32(&self.bytes()[4..8]) as usize;
        h.body_start + body
    }

    /// The facts policy rules look at.
    pub fn facts(&self) -> MessageFacts<'a> {
        let h = self.h();
        MessageFacts {
            msg_type: h.msg_type,
            path: self.path(),
            interface: self.interface(),
            member: self.member(),
            error_name: self.error_name(),
            destination: self.destination(),
            unix_fds: h.unix_fds,
            reply_serial: h.reply_serial,
        }
    }
}

/// An error to send back to whoever caused it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Denied {
    /// D-Bus error name.
    pub name: &'static str,
    /// Human-readable text.
    pub text: String,
}

/// A verdict kept for the next check of the same message: valid for the
/// same sender, `requested_reply` and eavesdropping state, and (for a
/// receive verdict) a receiver with the same receive rules.
#[derive(Clone, Copy, Debug)]
struct Kept {
    sender: Option<u64>,
    /// The receiver whose rules gave a receive verdict (unused for a send
    /// verdict).
    receiver: u64,
    requested_reply: bool,
    eavesdropping: bool,
    verdict: Verdict,
}

impl Kept {
    fn applies(&self, sender: Option<u64>, requested_reply: bool, eavesdropping: bool) -> bool {
        self.sender == sender
            && self.requested_reply == requested_reply
            && self.eavesdropping == eavesdropping
    }
}

/// What the checks of one message for many receivers share (a broadcast,
/// see [`Bus::check_security_memo`]): its policy facts, read once, and the
/// last send and receive verdicts. A send verdict is reused only when the
/// sender's rules ignore the receiver's names; a receive verdict only for a
/// receiver whose rules are the same compiled rules
/// ([`policy::ConnectionPolicy::same_receive_rules`]). Everything else the
/// check looks at (registration, MAC, queue limits, quotas, log="true"
/// rules) is still decided per receiver, so the outcome is the one a fresh
/// check gives.
pub struct CheckMemo<'a> {
    facts: MessageFacts<'a>,
    send: Option<Kept>,
    receive: Option<Kept>,
}

impl<'a> CheckMemo<'a> {
    /// A memo for checks of `v` (and only `v`).
    pub fn new(v: &View<'a>) -> Self {
        CheckMemo {
            facts: v.facts(),
            send: None,
            receive: None,
        }
    }
}

/// The name of a message type as dbus-daemon prints it.
pub fn type_name(t: u8) -> &'static str {
    match t {
        msg_type::METHOD_CALL => "method_call",
        msg_type::METHOD_RETURN => "method_return",
        msg_type::ERROR => "error",
        msg_type::SIGNAL => "signal",
        _ => "invalid",
    }
}

impl Bus {
    /// Per-user accounting (see [`super::quota`]): whether a copy of `v`
    /// from `sp` may be queued at `rp`. None: it may. Some(pause): it may
    /// not, and the sender pauses (back-pressure) when its own user's share
    /// refused it; one refused by another user's share does not, so nobody
    /// can stall a sender by not reading.
    fn quota_refuses(sp: &Peer, rp: &Peer, v: &View<'_>) -> Option<bool> {
        let actor = sp.account.uid;
        let bytes = v.msg_len() as u64;
        let fds = u64::from(v.h().unix_fds);
        if rp.account.admits(actor, bytes, fds) {
            return None;
        }
        Some(rp.account.uid == actor)
    }

    /// The names policy rules match a connection by: its unique name and
    /// every well-known name it owns or is queued for (dbus-daemon's
    /// bus_service_owner_in_queue / bus_connection_is_queued_owner_by_prefix).
    fn policy_names(&self, id: Option<u64>) -> Vec<std::rc::Rc<str>> {
        match id {
            Some(id) => self
                .peers
                .get(&id)
                .map(|p| p.unique_name.iter().chain(&p.names).cloned().collect())
                .unwrap_or_default(),
            None => vec![std::rc::Rc::from(DBUS_NAME)],
        }
    }

    /// `sender`'s (`p`'s) send policy verdict on `memo`'s message to
    /// `proposed` (None: the driver, or with `activation_name` a service not
    /// running yet).
    #[allow(clippy::too_many_arguments)]
    fn send_verdict(
        &self,
        sender: u64,
        p: &Peer,
        proposed: Option<u64>,
        activation_name: Option<&str>,
        requested_reply: bool,
        eavesdropping: bool,
        memo: &mut CheckMemo<'_>,
    ) -> Verdict {
        // Names are collected only for a policy that looks at them; without
        // them the verdict is the same for every receiver.
        if !p.policy.send_needs_names() {
            if let Some(k) = memo.send {
                if k.applies(Some(sender), requested_reply, eavesdropping) {
                    return k.verdict;
                }
            }
            let verdict = p
                .policy
                .can_send(&memo.facts, &[], requested_reply, eavesdropping);
            memo.send = Some(Kept {
                sender: Some(sender),
                receiver: 0,
                requested_reply,
                eavesdropping,
                verdict,
            });
            return verdict;
        }
        let receiver_names: Vec<std::rc::Rc<str>> = match (proposed, activation_name) {
            (None, Some(n)) => vec![std::rc::Rc::from(n)],
            _ => self.policy_names(proposed),
        };
        let names: Vec<&str> = receiver_names.iter().map(|n| &**n).collect();
        p.policy
            .can_send(&memo.facts, &names, requested_reply, eavesdropping)
    }

    /// `receiver`'s (`p`'s) receive policy verdict on `memo`'s message from
    /// `sender` (None: the driver).
    fn receive_verdict(
        &self,
        sender: Option<u64>,
        receiver: u64,
        p: &Peer,
        requested_reply: bool,
        eavesdropping: bool,
        memo: &mut CheckMemo<'_>,
    ) -> Verdict {
        if let Some(k) = memo.receive {
            let same = k.applies(sender, requested_reply, eavesdropping)
                && self
                    .peers
                    .get(&k.receiver)
                    .is_some_and(|q| q.policy.same_receive_rules(&p.policy));
            if same {
                return k.verdict;
            }
        }
        let sender_names = if p.policy.receive_needs_names() {
            self.policy_names(sender)
        } else {
            Vec::new()
        };
        let names: Vec<&str> = sender_names.iter().map(|n| &**n).collect();
        let verdict = p
            .policy
            .can_receive(&memo.facts, &names, requested_reply, eavesdropping);
        memo.receive = Some(Kept {
            sender,
            receiver,
            requested_reply,
            eavesdropping,
            verdict,
        });
        verdict
    }

    /// dbus-daemon's "complain_about_message" text.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn complaint(
        &self,
        name: &'static str,
        what: &str,
        matched: u32,
        v: &View<'_>,
        sender: Option<u64>,
        proposed: Option<u64>,
        requested_reply: bool,
    ) -> Denied {
        let (sname, sinfo) = match sender.and_then(|s| self.peers.get(&s)) {
            Some(p) => (p.name().to_string(), p.loginfo().to_string()),
            None => ("(unset)".to_string(), "(bus)".to_string()),
        };
        let rinfo = match proposed.and_then(|r| self.peers.get(&r)) {
            Some(p) => p.loginfo().to_string(),
            None => "bus".to_string(),
        };
        let f = v.facts();
        Denied {
            name,
            text: format!(
                "{what}, {matched} matched rules; type=\"{}\", sender=\"{sname}\" ({sinfo}) \
                 interface=\"{}\" member=\"{}\" error name=\"{}\" requested_reply=\"{}\" \
                 destination=\"{}\" ({rinfo})",
                type_name(f.msg_type),
                f.interface.unwrap_or("(unset)"),
                f.member.unwrap_or("(unset)"),
                f.error_name.unwrap_or("(unset)"),
                u8::from(requested_reply),
                f.destination.unwrap_or(DBUS_NAME),
            ),
        }
    }

    /// Checks whether `v` may go from `sender` (None: the driver) to
    /// `proposed` (None: the driver), which is `addressed` or an
    /// eavesdropper. On success for an addressed method call, records the
    /// expected reply. `activation_name` stands in for the receiver's names
    /// when the receiver is not running yet.
    pub fn check_security(
        &mut self,
        sender: Option<u64>,
        addressed: Option<u64>,
        proposed: Option<u64>,
        v: &View<'_>,
        activation_name: Option<&str>,
    ) -> Result<(), Denied> {
        let mut memo = CheckMemo::new(v);
        self.check_security_memo(sender, addressed, proposed, v, activation_name, &mut memo)
    }

    /// [`Bus::check_security`] sharing `memo` with the other checks of `v`
    /// (one memo per message: it holds `v`'s facts).
    pub fn check_security_memo(
        &mut self,
        sender: Option<u64>,
        addressed: Option<u64>,
        proposed: Option<u64>,
        v: &View<'_>,
        activation_name: Option<&str>,
        memo: &mut CheckMemo<'_>,
    ) -> Result<(), Denied> {
        let h = v.h();
        // Receiving a copy of a message addressed to someone else.
        let not_addressee = addressed != proposed;
        let eavesdropping = not_addressee && v.destination().is_some();
        let mut requested_reply = false;
        // The two parties, looked up once: nothing here adds or removes
        // connections.
        let sp = sender.and_then(|s| self.peers.get(&s));
        let rp = proposed.and_then(|r| self.peers.get(&r));
        if let Some(s) = sender {
            let active = sp.is_some_and(|p| p.is_active());
            if active {
                if let (Some(rs), Some(p)) = (h.reply_serial, proposed) {
                    if !not_addressee {
                        requested_reply = self.replies.take(p, s, rs);
                    }
                }
            }
            if self.mac.active {
                let activation = proposed.is_none() && activation_name.is_some();
                self.mac_send(s, proposed, v, requested_reply, activation)?;
            }
            if !active {
                let is_hello = proposed.is_none()
                    && h.msg_type == msg_type::METHOD_CALL
                    && v.interface() == Some(DBUS_NAME)
                    && v.member() == Some("Hello");
                if is_hello {
                    return Ok(());
                }
                return Err(Denied {
                    name: errors::ACCESS_DENIED,
                    text:
                        "Client tried to send a message other than Hello without being registered"
                            .into(),
                });
            }
        } else if !not_addressee && h.reply_serial.is_some() {
            requested_reply = true;
        }

        if let (Some(s), Some(p)) = (sender, sp) {
            let verdict = self.send_verdict(
                s,
                p,
                proposed,
                activation_name,
                requested_reply,
                eavesdropping,
                memo,
            );
            if !verdict.allowed {
                return Err(self.complaint(
                    errors::ACCESS_DENIED,
                    "Rejected send message",
                    verdict.matched_rules,
                    v,
                    sender,
                    proposed,
                    requested_reply,
                ));
            }
            if verdict.log {
                let d = self.complaint(
                    errors::ACCESS_DENIED,
                    "Would reject message",
                    verdict.matched_rules,
                    v,
                    sender,
                    proposed,
                    requested_reply,
                );
                crate::log::event(
                    crate::log::Kind::PolicyDenied,
                    crate::log::Level::Security,
                    Some(&p.who()),
                    &d.text,
                );
            }
        }
        if let (Some(r), Some(p)) = (proposed, rp) {
            let active = p.is_active() || matches!(p.state, super::peer::PeerState::Monitor);
            if active {
                let verdict =
                    self.receive_verdict(sender, r, p, requested_reply, eavesdropping, memo);
                if !verdict.allowed {
                    return Err(self.complaint(
                        errors::ACCESS_DENIED,
                        "Rejected receive message",
                        verdict.matched_rules,
                        v,
                        sender,
                        proposed,
                        requested_reply,
                    ));
                }
            }
            let full = p.out_bytes as u64 > self.config.limits.max_outgoing_bytes
                || p.out_fds as u64 > self.config.limits.max_outgoing_unix_fds;
            if full {
                return Err(self.complaint(
                    errors::LIMITS_EXCEEDED,
                    "Rejected: destination has a full message queue",
                    0,
                    v,
                    sender,
                    proposed,
                    requested_reply,
                ));
            }
            if let (Some(s), Some(q)) = (sender, sp) {
                if let Some(pause) = Self::quota_refuses(q, p, v) {
                    if pause {
                        if let Some(q) = self.peers.get_mut(&s) {
                            q.quota_pause = Some(std::time::Instant::now() + super::quota::PAUSE);
                        }
                    }
                    return Err(self.complaint(
                        errors::LIMITS_EXCEEDED,
                        "Rejected: the destination's user holds its share of the bus's memory",
                        0,
                        v,
                        sender,
                        proposed,
                        requested_reply,
                    ));
                }
            }
        }
        if h.msg_type == msg_type::METHOD_CALL && !not_addressee && !h.no_reply_expected() {
            if let (Some(s), Some(a)) = (sender, addressed) {
                let deadline = self.reply_deadline();
                let limit = self.config.limits.max_replies_per_connection;
                match self.replies.expect(s, a, h.serial, deadline, limit) {
                    Ok(()) => {}
                    Err(ExpectError::DuplicateSerial) => {
                        return Err(Denied {
                            name: errors::ACCESS_DENIED,
                            text: "Message has the same reply serial as a currently-outstanding existing method call".into(),
                        })
                    }
                    Err(ExpectError::TooMany) => {
                        let who = self.peers.get(&s).map(|p| p.who()).unwrap_or_default();
                        crate::log::peer_warning(
                            crate::log::Kind::LimitReached,
                            &who,
                            &format!(
                                "The maximum number of pending replies for \"{}\" has been reached (max_replies_per_connection={limit})",
                                self.peers.get(&s).map(|p| p.name()).unwrap_or("?")
                            ),
                        );
                        return Err(Denied {
                            name: errors::LIMITS_EXCEEDED,
                            text: "The maximum number of pending replies per connection has been reached".into(),
                        });
                    }
                }
            }
        }
        Ok(())
    }
}
