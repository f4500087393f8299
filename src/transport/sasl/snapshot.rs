//! A handshake in progress as plain data, and back.

use std::rc::Rc;

use super::{CookieChallenge, Mechanism, SaslConfig, SaslServer, State};

/// A handshake in progress as plain data, for a re-executed busbar to take
/// over (see doc/state-format.md). The server configuration is not part of
/// it: the new process has its own.
#[derive(Clone, Debug, Default, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct SaslSnapshot {
    /// uid from SO_PEERCRED.
    pub peer_uid: Option<u32>,
    /// The state's name (`WaitingForNul`, `WaitingForAuth`, ...).
    pub state: String,
    /// Mechanism in progress (its protocol name).
    pub mech: Option<String>,
    /// EXTERNAL: the claimed identity.
    pub identity: Vec<u8>,
    /// EXTERNAL: an empty DATA challenge was already sent.
    pub asked_for_initial_response: bool,
    /// DBUS_COOKIE_SHA1: (server challenge, hex cookie, uid).
    pub cookie: Option<(String, String, u32)>,
    /// Identity accepted with OK: Some(uid) or None for ANONYMOUS.
    pub authorized: Option<Option<u32>>,
    /// NEGOTIATE_UNIX_FD was agreed.
    pub unix_fd: bool,
    /// REJECTED replies sent.
    pub rejects: u32,
    /// ERROR replies sent.
    pub errors: u32,
    /// Commands received.
    pub commands: u32,
}

const SASL_STATES: [(State, &str); 7] = [
    (State::WaitingForNul, "WaitingForNul"),
    (State::WaitingForAuth, "WaitingForAuth"),
    (State::WaitingForData, "WaitingForData"),
    (State::WaitingForKeyring, "WaitingForKeyring"),
    (State::WaitingForBegin, "WaitingForBegin"),
    (State::Authenticated, "Authenticated"),
    (State::NeedDisconnect, "NeedDisconnect"),
];

impl SaslServer {
    /// The handshake as plain data. Err while a DBUS_COOKIE_SHA1 key lookup
    /// is running on the keyring worker, which cannot be carried over.
    pub fn snapshot(&self) -> Result<SaslSnapshot, String> {
        if self.state == State::WaitingForKeyring || self.keyring.is_some() {
            return Err("a DBUS_COOKIE_SHA1 handshake is waiting for the keyring".into());
        }
        let state = SASL_STATES
            .iter()
            .find(|(s, _)| *s == self.state)
            .map_or("NeedDisconnect", |(_, n)| n);
        Ok(SaslSnapshot {
            peer_uid: self.peer_uid,
            state: state.to_string(),
            mech: self.mech.map(|m| m.name().to_string()),
            identity: self.identity.clone(),
            asked_for_initial_response: self.asked_for_initial_response,
            cookie: self
                .cookie
                .as_ref()
                .map(|c| (c.server_challenge.clone(), c.hex_cookie.clone(), c.uid)),
            authorized: self.authorized,
            unix_fd: self.unix_fd,
            rejects: self.rejects,
            errors: self.errors,
            commands: self.commands,
        })
    }

    /// A handshake taken over from a snapshot. Err for a state or
    /// mechanism this busbar does not know.
    pub fn restore(config: Rc<SaslConfig>, s: &SaslSnapshot) -> Result<SaslServer, String> {
        let state = SASL_STATES
            .iter()
            .find(|(_, n)| *n == s.state)
            .map(|(st, _)| *st)
            .filter(|st| *st != State::WaitingForKeyring)
            .ok_or_else(|| format!("unknown SASL state {:?}", s.state))?;
        let mech = match &s.mech {
            None => None,
            Some(m) => Some(
                Mechanism::from_name(m).ok_or_else(|| format!("unknown SASL mechanism {m:?}"))?,
            ),
        };
        let mut srv = SaslServer::new(config, s.peer_uid);
        srv.state = state;
        srv.mech = mech;
        srv.identity = s.identity.clone();
        srv.asked_for_initial_response = s.asked_for_initial_response;
        srv.cookie = s
            .cookie
            .as_ref()
            .map(|(server_challenge, hex_cookie, uid)| CookieChallenge {
                server_challenge: server_challenge.clone(),
                hex_cookie: hex_cookie.clone(),
                uid: *uid,
            });
        srv.authorized = s.authorized;
        srv.unix_fd = s.unix_fd;
        srv.rejects = s.rejects;
        srv.errors = s.errors;
        srv.commands = s.commands;
        Ok(srv)
    }
}
