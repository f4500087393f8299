//! The server side of the D-Bus SASL handshake, as a pure state machine over
//! bytes: no sockets here. The connection code feeds it what it reads and
//! writes out what it returns.
//!
//! Behaviour follows dbus-daemon 1.14 (dbus/dbus-auth.c) and the D-Bus
//! specification's "Authentication Protocol" chapter.

/// A SASL mechanism the server may offer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mechanism {
    /// Credentials from the socket (SO_PEERCRED).
    External,
    /// Shared-secret cookie in ~/.dbus-keyrings.
    CookieSha1,
    /// No authentication; only with `<allow_anonymous/>`.
    Anonymous,
}

/// Server-wide SASL settings, shared by every connection.
#[derive(Clone, Debug)]
pub struct SaslConfig {
    /// Mechanisms allowed by `<auth>` (empty list in the config = all of them),
    /// in the order they are advertised in REJECTED.
    pub mechanisms: Vec<Mechanism>,
    /// `<allow_anonymous/>`: ANONYMOUS may complete.
    pub allow_anonymous: bool,
    /// The server GUID (32 lowercase hex chars) sent with OK.
    pub guid: String,
    /// Whether the transport can pass unix fds (unix sockets: true).
    pub unix_fd_possible: bool,
}

/// What the handshake has produced so far.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SaslStatus {
    /// Need more input.
    Continue,
    /// BEGIN received: the connection is authenticated. Bytes after the
    /// BEGIN line are the start of the message stream.
    Authenticated {
        /// The authenticated uid (None for ANONYMOUS).
        uid: Option<u32>,
        /// NEGOTIATE_UNIX_FD was agreed.
        unix_fd: bool,
    },
    /// The peer must be disconnected (protocol violation, too many failures).
    Disconnect,
}

/// One connection's handshake state.
#[derive(Debug)]
pub struct SaslServer {
    _private: (),
}

impl SaslServer {
    /// A new handshake. `peer_uid` is the uid from SO_PEERCRED, if known.
    pub fn new(config: std::rc::Rc<SaslConfig>, peer_uid: Option<u32>) -> SaslServer {
        let _ = (config, peer_uid);
        todo!()
    }

    /// Feeds bytes read from the peer. Appends any response lines to `out`.
    /// Returns how many bytes of `input` were consumed and the status. When the
    /// status is `Authenticated`, `input[consumed..]` belongs to the message
    /// stream. Unconsumed bytes of an incomplete line must be fed again
    /// (with more appended) on the next call.
    pub fn feed(&mut self, input: &[u8], out: &mut Vec<u8>) -> (usize, SaslStatus) {
        let _ = (input, out);
        todo!()
    }
}
