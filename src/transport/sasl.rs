//! The server side of the D-Bus SASL handshake, as a pure state machine over
//! bytes: no sockets here. The connection code feeds it what it reads and
//! writes out what it returns.
//!
//! Behaviour follows dbus-daemon 1.14 (dbus/dbus-auth.c) and the D-Bus
//! specification's "Authentication Protocol" chapter:
//!
//! * the client's first byte must be NUL (the credentials byte), otherwise
//!   the peer is disconnected;
//! * then CRLF-terminated ASCII command lines; a line (or an unterminated
//!   remainder) longer than [`MAX_LINE_BYTES`] disconnects;
//! * [`MAX_REJECTS`] REJECTED replies disconnect (libdbus's `max_failures`);
//!   in addition, unlike libdbus, [`MAX_ERRORS`] ERROR replies or
//!   [`MAX_COMMANDS`] command lines disconnect, so that a peer cannot keep a
//!   connection in the handshake forever;
//! * BEGIN before OK disconnects (as in libdbus).
//!
//! Differences from libdbus, on purpose: ANONYMOUS is REJECTED unless
//! `allow_anonymous` (dbus-daemon says OK and then drops the connection at
//! BEGIN); DBUS_COOKIE_SHA1 additionally requires the claimed user to be the
//! socket peer's uid when that is known.

use std::path::PathBuf;
use std::rc::Rc;

use super::cookie::{self, hex_decode, hex_encode};
use super::keyring_worker;

/// Longest accepted command line, CRLF included (libdbus's 16 KiB buffer).
pub const MAX_LINE_BYTES: usize = 16 * 1024;

/// After this many REJECTED replies the peer is disconnected (libdbus: 6).
pub const MAX_REJECTS: u32 = 6;

/// After this many ERROR replies the peer is disconnected.
pub const MAX_ERRORS: u32 = 16;

/// After this many command lines without BEGIN the peer is disconnected.
pub const MAX_COMMANDS: u32 = 128;

mod snapshot;
pub use snapshot::SaslSnapshot;

/// Bytes of randomness in a DBUS_COOKIE_SHA1 server challenge.
const CHALLENGE_BYTES: usize = 16;

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

/// All mechanisms, in the order libdbus advertises them.
const ALL_MECHANISMS: [Mechanism; 3] = [
    Mechanism::External,
    Mechanism::CookieSha1,
    Mechanism::Anonymous,
];

impl Mechanism {
    /// The protocol name: `EXTERNAL`, `DBUS_COOKIE_SHA1` or `ANONYMOUS`.
    pub fn name(self) -> &'static str {
        match self {
            Mechanism::External => "EXTERNAL",
            Mechanism::CookieSha1 => "DBUS_COOKIE_SHA1",
            Mechanism::Anonymous => "ANONYMOUS",
        }
    }

    /// The mechanism with this protocol name (case-sensitive), if known.
    pub fn from_name(name: &str) -> Option<Mechanism> {
        ALL_MECHANISMS.into_iter().find(|m| m.name() == name)
    }
}

/// Maps an `<auth>` name from the configuration (`EXTERNAL`,
/// `DBUS_COOKIE_SHA1`, `ANONYMOUS`; case-sensitive) to a [`Mechanism`].
pub fn mechanism_from_name(name: &str) -> Option<Mechanism> {
    Mechanism::from_name(name)
}

/// Server-wide SASL settings, shared by every connection.
#[derive(Clone, Debug)]
pub struct SaslConfig {
    /// Mechanisms allowed by `<auth>` (empty list in the config = all of them;
    /// an empty vector here is also taken to mean all of them). REJECTED
    /// lists the allowed ones in libdbus's fixed order (EXTERNAL,
    /// DBUS_COOKIE_SHA1, ANONYMOUS), whatever the order here.
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

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    /// Nothing read yet: expecting the NUL credentials byte.
    WaitingForNul,
    WaitingForAuth,
    WaitingForData,
    /// DBUS_COOKIE_SHA1: the keyring worker is finding a key; no input is
    /// consumed until it answers.
    WaitingForKeyring,
    WaitingForBegin,
    Authenticated,
    NeedDisconnect,
}

/// Progress of a DBUS_COOKIE_SHA1 exchange after the challenge was sent.
struct CookieChallenge {
    server_challenge: String,
    hex_cookie: String,
    uid: u32,
}

/// Commands a client may send.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Command {
    Auth,
    Cancel,
    Data,
    Begin,
    Error,
    NegotiateUnixFd,
    /// REJECTED, OK, AGREE_UNIX_FD (server-to-client only) or unknown.
    Unknown,
}

impl Command {
    fn parse(word: &[u8]) -> Command {
        match word {
            b"AUTH" => Command::Auth,
            b"CANCEL" => Command::Cancel,
            b"DATA" => Command::Data,
            b"BEGIN" => Command::Begin,
            b"ERROR" => Command::Error,
            b"NEGOTIATE_UNIX_FD" => Command::NegotiateUnixFd,
            _ => Command::Unknown,
        }
    }
}

/// One connection's handshake state.
pub struct SaslServer {
    config: Rc<SaslConfig>,
    peer_uid: Option<u32>,
    /// Keyring directory override (tests); None = the daemon user's
    /// ~/.dbus-keyrings.
    keyring_dir: Option<PathBuf>,
    state: State,
    /// Mechanism of the conversation in progress, if any.
    mech: Option<Mechanism>,
    /// EXTERNAL: identity the client claimed (decoded), if any.
    identity: Vec<u8>,
    /// EXTERNAL: an empty DATA challenge was already sent.
    asked_for_initial_response: bool,
    /// DBUS_COOKIE_SHA1: challenge sent, waiting for the answer.
    cookie: Option<CookieChallenge>,
    /// DBUS_COOKIE_SHA1: the key lookup in progress (state
    /// WaitingForKeyring).
    keyring: Option<keyring_worker::Lookup>,
    /// Identity accepted with OK: Some(uid) or None for ANONYMOUS.
    authorized: Option<Option<u32>>,
    unix_fd: bool,
    rejects: u32,
    errors: u32,
    commands: u32,
}

impl std::fmt::Debug for SaslServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SaslServer")
            .field("peer_uid", &self.peer_uid)
            .field("state", &self.state)
            .field("mech", &self.mech)
            .field("authorized", &self.authorized)
            .field("unix_fd", &self.unix_fd)
            .field("rejects", &self.rejects)
            .field("errors", &self.errors)
            .finish_non_exhaustive()
    }
}

/// Index of the first blank (space or tab) at or after `from`, or the length.
fn find_blank(s: &[u8], from: usize) -> usize {
    s[from..]
        .iter()
        .position(|&b| b == b' ' || b == b'\t')
        .map_or(s.len(), |p| from + p)
}

/// Index of the first non-blank at or after `from`, or the length.
fn skip_blank(s: &[u8], from: usize) -> usize {
    s[from..]
        .iter()
        .position(|&b| b != b' ' && b != b'\t')
        .map_or(s.len(), |p| from + p)
}

/// A claimed identity as a uid, the way libdbus reads it (`strtoul` base 0
/// over the whole string). `None` if not a number or not a valid uid.
fn parse_uid(s: &[u8]) -> Option<u32> {
    let v = cookie::parse_c_integer(s)?;
    if v < 0 || s.first() == Some(&b'-') || s.first() == Some(&b'+') {
        return None;
    }
    u32::try_from(v).ok().filter(|&u| u != u32::MAX)
}

/// Constant-time comparison of two byte strings.
fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

impl SaslServer {
    /// A new handshake. `peer_uid` is the uid from SO_PEERCRED, if known.
    pub fn new(config: Rc<SaslConfig>, peer_uid: Option<u32>) -> SaslServer {
        SaslServer {
            config,
            peer_uid,
            keyring_dir: None,
            state: State::WaitingForNul,
            mech: None,
            identity: Vec::new(),
            asked_for_initial_response: false,
            cookie: None,
            keyring: None,
            authorized: None,
            unix_fd: false,
            rejects: 0,
            errors: 0,
            commands: 0,
        }
    }

    /// Like [`SaslServer::new`], but DBUS_COOKIE_SHA1 uses the keyring in
    /// `keyring_dir` instead of the daemon user's `~/.dbus-keyrings` (for
    /// tests). All other rules, including the uid checks, still apply.
    pub fn with_keyring_dir(
        config: Rc<SaslConfig>,
        peer_uid: Option<u32>,
        keyring_dir: PathBuf,
    ) -> SaslServer {
        let mut s = SaslServer::new(config, peer_uid);
        s.keyring_dir = Some(keyring_dir);
        s
    }

    /// The identity accepted so far: `Some(uid)` once OK was sent for
    /// EXTERNAL or DBUS_COOKIE_SHA1 (and after BEGIN), `None` before that,
    /// after a CANCEL/REJECTED, and for ANONYMOUS.
    pub fn authorized_uid(&self) -> Option<u32> {
        self.authorized.flatten()
    }

    /// Feeds bytes read from the peer. Appends any response lines to `out`.
    /// Returns how many bytes of `input` were consumed and the status. When the
    /// status is `Authenticated`, `input[consumed..]` belongs to the message
    /// stream. Unconsumed bytes of an incomplete line must be fed again
    /// (with more appended) on the next call.
    ///
    /// On `Disconnect`, `out` may end with a last reply (e.g. the final
    /// REJECTED) that the caller may flush on a best-effort basis. Once
    /// `Authenticated` or `Disconnect` was returned, further calls consume
    /// nothing and return the same status.
    pub fn feed(&mut self, input: &[u8], out: &mut Vec<u8>) -> (usize, SaslStatus) {
        let mut pos = 0;
        if self.state == State::WaitingForNul {
            match input.first() {
                None => return (0, SaslStatus::Continue),
                Some(0) => {
                    self.state = State::WaitingForAuth;
                    pos = 1;
                }
                Some(_) => {
                    self.state = State::NeedDisconnect;
                    return (0, SaslStatus::Disconnect);
                }
            }
        }
        loop {
            match self.state {
                State::Authenticated => {
                    return (
                        pos,
                        SaslStatus::Authenticated {
                            uid: self.authorized.flatten(),
                            unix_fd: self.unix_fd,
                        },
                    )
                }
                State::NeedDisconnect => return (pos, SaslStatus::Disconnect),
                State::WaitingForKeyring => {
                    match self.keyring.as_mut().and_then(keyring_worker::Lookup::poll) {
                        Some(outcome) => {
                            self.keyring = None;
                            self.cookie_challenge(outcome, out);
                            continue;
                        }
                        None => return (pos, SaslStatus::Continue),
                    }
                }
                _ => {}
            }
            let rest = &input[pos..];
            let Some(eol) = rest.windows(2).position(|w| w == b"\r\n") else {
                if rest.len() > MAX_LINE_BYTES {
                    self.state = State::NeedDisconnect;
                    continue;
                }
                return (pos, SaslStatus::Continue);
            };
            if eol + 2 > MAX_LINE_BYTES {
                self.state = State::NeedDisconnect;
                continue;
            }
            pos += eol + 2;
            self.commands += 1;
            if self.commands > MAX_COMMANDS {
                self.state = State::NeedDisconnect;
                continue;
            }
            self.process_line(&rest[..eol], out);
        }
    }

    fn process_line(&mut self, line: &[u8], out: &mut Vec<u8>) {
        if line.iter().any(|&b| b == 0 || !b.is_ascii()) {
            self.send_error(out, "Command contained non-ASCII");
            return;
        }
        let i = find_blank(line, 0);
        let args = &line[skip_blank(line, i)..];
        let command = Command::parse(&line[..i]);
        match self.state {
            State::WaitingForAuth => match command {
                Command::Auth => self.handle_auth(args, out),
                Command::Cancel | Command::Data => {
                    self.send_error(out, "Not currently in an auth conversation")
                }
                Command::Begin => self.state = State::NeedDisconnect,
                Command::Error => self.send_rejected(out),
                Command::NegotiateUnixFd => self.send_error(out, "Need to authenticate first"),
                Command::Unknown => self.send_error(out, "Unknown command"),
            },
            State::WaitingForData => match command {
                Command::Auth => self.send_error(out, "Sent AUTH while another AUTH in progress"),
                Command::Cancel | Command::Error => self.send_rejected(out),
                Command::Data => match self.mech {
                    Some(mech) => self.process_data(mech, args, out),
                    None => self.send_rejected(out),
                },
                Command::Begin => self.state = State::NeedDisconnect,
                Command::NegotiateUnixFd => self.send_error(out, "Need to authenticate first"),
                Command::Unknown => self.send_error(out, "Unknown command"),
            },
            State::WaitingForBegin => match command {
                Command::Auth => self.send_error(out, "Sent AUTH while expecting BEGIN"),
                Command::Data => self.send_error(out, "Sent DATA while expecting BEGIN"),
                Command::Begin => self.state = State::Authenticated,
                Command::NegotiateUnixFd => {
                    if self.config.unix_fd_possible {
                        self.unix_fd = true;
                        out.extend_from_slice(b"AGREE_UNIX_FD\r\n");
                    } else {
                        self.send_error(
                            out,
                            "Unix FD passing not supported, not authenticated or otherwise not possible",
                        );
                    }
                }
                Command::Cancel | Command::Error => self.send_rejected(out),
                Command::Unknown => self.send_error(out, "Unknown command"),
            },
            State::WaitingForNul
            | State::WaitingForKeyring
            | State::Authenticated
            | State::NeedDisconnect => {}
        }
    }

    fn is_allowed(&self, mech: Mechanism) -> bool {
        self.config.mechanisms.is_empty() || self.config.mechanisms.contains(&mech)
    }

    fn handle_auth(&mut self, args: &[u8], out: &mut Vec<u8>) {
        if args.is_empty() {
            self.send_rejected(out);
            return;
        }
        let i = find_blank(args, 0);
        let hex = &args[skip_blank(args, i)..];
        let mech = std::str::from_utf8(&args[..i])
            .ok()
            .and_then(Mechanism::from_name)
            .filter(|&m| self.is_allowed(m));
        match mech {
            Some(mech) => {
                self.mech = Some(mech);
                self.process_data(mech, hex, out);
            }
            None => self.send_rejected(out),
        }
    }

    fn process_data(&mut self, mech: Mechanism, hex: &[u8], out: &mut Vec<u8>) {
        let Some(data) = hex_decode(hex) else {
            self.send_error(out, "Invalid hex encoding");
            return;
        };
        match mech {
            Mechanism::External => self.external_data(data, out),
            Mechanism::Anonymous => self.anonymous_data(&data, out),
            Mechanism::CookieSha1 => {
                if self.cookie.is_none() {
                    self.cookie_first(&data, out);
                } else {
                    self.cookie_second(&data, out);
                }
            }
        }
    }

    fn external_data(&mut self, data: Vec<u8>, out: &mut Vec<u8>) {
        let Some(peer) = self.peer_uid else {
            self.send_rejected(out);
            return;
        };
        if !data.is_empty() {
            if !self.identity.is_empty() {
                // A second identity in the same conversation.
                self.send_rejected(out);
                return;
            }
            self.identity = data;
        }
        if self.identity.is_empty() && !self.asked_for_initial_response {
            self.asked_for_initial_response = true;
            out.extend_from_slice(b"DATA\r\n");
            self.state = State::WaitingForData;
            return;
        }
        let desired = if self.identity.is_empty() {
            Some(peer)
        } else {
            parse_uid(&self.identity)
        };
        if desired == Some(peer) {
            self.send_ok(Some(peer), out);
        } else {
            self.send_rejected(out);
        }
    }

    fn anonymous_data(&mut self, data: &[u8], out: &mut Vec<u8>) {
        if !self.config.allow_anonymous || std::str::from_utf8(data).is_err() {
            self.send_rejected(out);
            return;
        }
        self.send_ok(None, out);
    }

    /// Whether a DBUS_COOKIE_SHA1 key lookup is in progress: feeding
    /// consumes nothing until it answers, and the daemon is woken (see
    /// [`keyring_worker::set_notify`]) to feed again.
    pub fn waiting_for_keyring(&self) -> bool {
        self.state == State::WaitingForKeyring
    }

    /// Blocks until a key lookup in progress has answered, so that the next
    /// feed goes on. For tests and tools, never on the event loop.
    pub fn wait_for_keyring(&mut self) {
        if let Some(l) = &mut self.keyring {
            l.wait();
        }
    }

    /// First DATA of DBUS_COOKIE_SHA1: the user name or uid. A uid that can
    /// never be accepted is refused at once; otherwise the keyring work
    /// (and a name's user database lookup) goes to the keyring worker.
    fn cookie_first(&mut self, data: &[u8], out: &mut Vec<u8>) {
        let user = match parse_uid(data) {
            Some(uid) => {
                if uid != nix::unistd::geteuid().as_raw() || self.peer_uid.is_some_and(|p| p != uid)
                {
                    self.send_rejected(out);
                    return;
                }
                keyring_worker::User::Uid(uid)
            }
            None => match std::str::from_utf8(data) {
                Ok(name) if !name.is_empty() && !name.contains('\0') => {
                    keyring_worker::User::Name(name.to_owned())
                }
                _ => {
                    self.send_rejected(out);
                    return;
                }
            },
        };
        self.keyring = Some(keyring_worker::start(keyring_worker::Request {
            user,
            peer_uid: self.peer_uid,
            keyring_dir: self.keyring_dir.clone(),
        }));
        self.state = State::WaitingForKeyring;
    }

    /// The keyring worker answered: send the challenge, or REJECTED.
    fn cookie_challenge(&mut self, outcome: keyring_worker::Outcome, out: &mut Vec<u8>) {
        self.state = State::WaitingForData;
        let keyring_worker::Outcome::Key {
            id,
            hex_cookie,
            uid,
        } = outcome
        else {
            self.send_rejected(out);
            return;
        };
        let Ok(challenge) = cookie::random_bytes(CHALLENGE_BYTES) else {
            self.send_rejected(out);
            return;
        };
        let server_challenge = hex_encode(&challenge);
        let payload = format!("{} {} {}", cookie::DEFAULT_CONTEXT, id, server_challenge);
        out.extend_from_slice(b"DATA ");
        out.extend_from_slice(hex_encode(payload.as_bytes()).as_bytes());
        out.extend_from_slice(b"\r\n");
        self.cookie = Some(CookieChallenge {
            server_challenge,
            hex_cookie,
            uid,
        });
    }

    fn cookie_second(&mut self, data: &[u8], out: &mut Vec<u8>) {
        let Some(ch) = &self.cookie else {
            self.send_rejected(out);
            return;
        };
        let i = find_blank(data, 0);
        if i == data.len() {
            self.send_rejected(out);
            return;
        }
        let client_challenge = &data[..i];
        let client_hash = &data[skip_blank(data, i)..];
        if client_challenge.is_empty() || client_hash.is_empty() {
            self.send_rejected(out);
            return;
        }
        let expected = cookie::compute_hash(
            ch.server_challenge.as_bytes(),
            client_challenge,
            ch.hex_cookie.as_bytes(),
        );
        if ct_eq(client_hash, expected.as_bytes()) {
            let uid = ch.uid;
            self.send_ok(Some(uid), out);
        } else {
            self.send_rejected(out);
        }
    }

    /// Abandons the conversation in progress.
    fn shutdown_mech(&mut self) {
        self.mech = None;
        self.identity.clear();
        self.asked_for_initial_response = false;
        self.cookie = None;
        self.keyring = None;
        self.authorized = None;
        self.unix_fd = false;
    }

    fn send_rejected(&mut self, out: &mut Vec<u8>) {
        out.extend_from_slice(b"REJECTED");
        for m in ALL_MECHANISMS {
            if self.is_allowed(m) {
                out.push(b' ');
                out.extend_from_slice(m.name().as_bytes());
            }
        }
        out.extend_from_slice(b"\r\n");
        self.shutdown_mech();
        self.rejects += 1;
        self.state = if self.rejects >= MAX_REJECTS {
            State::NeedDisconnect
        } else {
            State::WaitingForAuth
        };
    }

    fn send_error(&mut self, out: &mut Vec<u8>, message: &str) {
        out.extend_from_slice(b"ERROR \"");
        out.extend_from_slice(message.as_bytes());
        out.extend_from_slice(b"\"\r\n");
        self.errors += 1;
        if self.errors >= MAX_ERRORS {
            self.state = State::NeedDisconnect;
        }
    }

    fn send_ok(&mut self, uid: Option<u32>, out: &mut Vec<u8>) {
        out.extend_from_slice(b"OK ");
        out.extend_from_slice(self.config.guid.as_bytes());
        out.extend_from_slice(b"\r\n");
        self.authorized = Some(uid);
        self.state = State::WaitingForBegin;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GUID: &str = "0123456789abcdef0123456789abcdef";

    fn config(mechs: &[Mechanism], anon: bool, fd: bool) -> Rc<SaslConfig> {
        Rc::new(SaslConfig {
            mechanisms: mechs.to_vec(),
            allow_anonymous: anon,
            guid: GUID.into(),
            unix_fd_possible: fd,
        })
    }

    fn all() -> Rc<SaslConfig> {
        config(&[], true, true)
    }

    fn hex(s: &str) -> String {
        hex_encode(s.as_bytes())
    }

    /// Feeds `input` in one go; returns (consumed, status, output text).
    fn run(s: &mut SaslServer, input: &[u8]) -> (usize, SaslStatus, String) {
        let mut out = Vec::new();
        let mut n = 0;
        loop {
            let (used, st) = s.feed(&input[n..], &mut out);
            n += used;
            if !s.waiting_for_keyring() {
                return (n, st, String::from_utf8(out).unwrap());
            }
            s.wait_for_keyring();
        }
    }

    fn started(cfg: Rc<SaslConfig>, uid: Option<u32>) -> SaslServer {
        let mut s = SaslServer::new(cfg, uid);
        assert_eq!(run(&mut s, b"\0"), (1, SaslStatus::Continue, String::new()));
        s
    }

    fn ok_line() -> String {
        format!("OK {GUID}\r\n")
    }

    #[test]
    fn mechanism_names() {
        assert_eq!(mechanism_from_name("EXTERNAL"), Some(Mechanism::External));
        assert_eq!(
            mechanism_from_name("DBUS_COOKIE_SHA1"),
            Some(Mechanism::CookieSha1)
        );
        assert_eq!(mechanism_from_name("ANONYMOUS"), Some(Mechanism::Anonymous));
        assert_eq!(mechanism_from_name("external"), None);
        assert_eq!(mechanism_from_name("KERBEROS_V4"), None);
        for m in ALL_MECHANISMS {
            assert_eq!(Mechanism::from_name(m.name()), Some(m));
        }
    }

    #[test]
    fn nul_byte_required() {
        let mut s = SaslServer::new(all(), Some(1000));
        assert_eq!(run(&mut s, b""), (0, SaslStatus::Continue, String::new()));
        let mut s = SaslServer::new(all(), Some(1000));
        assert_eq!(run(&mut s, b"AUTH\r\n").1, SaslStatus::Disconnect);
        assert_eq!(
            run(&mut s, b"\0AUTH\r\n"),
            (0, SaslStatus::Disconnect, String::new())
        );
    }

    #[test]
    fn external_full_flow_pipelined() {
        let mut s = SaslServer::new(all(), Some(1000));
        let input = format!(
            "\0AUTH EXTERNAL {}\r\nNEGOTIATE_UNIX_FD\r\nBEGIN\r\nl\x01\0\x01",
            hex("1000")
        );
        let (n, st, out) = run(&mut s, input.as_bytes());
        assert_eq!(out, format!("{}AGREE_UNIX_FD\r\n", ok_line()));
        assert_eq!(
            st,
            SaslStatus::Authenticated {
                uid: Some(1000),
                unix_fd: true
            }
        );
        assert_eq!(&input.as_bytes()[n..], b"l\x01\0\x01");
        // Further feeds are inert.
        assert_eq!(run(&mut s, b"junk\r\n").0, 0);
    }

    #[test]
    fn external_byte_at_a_time() {
        let mut s = SaslServer::new(all(), Some(1000));
        let input = format!("\0AUTH EXTERNAL {}\r\nBEGIN\r\nX", hex("1000"));
        let mut buf: Vec<u8> = Vec::new();
        let mut out = Vec::new();
        let mut status = SaslStatus::Continue;
        for &b in input.as_bytes() {
            buf.push(b);
            let (n, st) = s.feed(&buf, &mut out);
            buf.drain(..n);
            status = st;
            if status != SaslStatus::Continue {
                break;
            }
        }
        assert_eq!(
            status,
            SaslStatus::Authenticated {
                uid: Some(1000),
                unix_fd: false
            }
        );
        assert_eq!(String::from_utf8(out).unwrap(), ok_line());
        assert!(buf.is_empty());
    }

    #[test]
    fn external_without_initial_response() {
        let mut s = started(all(), Some(42));
        assert_eq!(run(&mut s, b"AUTH EXTERNAL\r\n").2, "DATA\r\n");
        assert_eq!(s.authorized_uid(), None);
        assert_eq!(run(&mut s, b"DATA\r\n").2, ok_line());
        assert_eq!(s.authorized_uid(), Some(42));
        assert_eq!(
            run(&mut s, b"BEGIN\r\n").1,
            SaslStatus::Authenticated {
                uid: Some(42),
                unix_fd: false
            }
        );

        // Answering the empty challenge with the uid works too.
        let mut s = started(all(), Some(42));
        run(&mut s, b"AUTH EXTERNAL\r\n");
        assert_eq!(
            run(&mut s, format!("DATA {}\r\n", hex("42")).as_bytes()).2,
            ok_line()
        );
        // ... but a wrong one does not.
        let mut s = started(all(), Some(42));
        run(&mut s, b"AUTH EXTERNAL\r\n");
        assert!(run(&mut s, format!("DATA {}\r\n", hex("43")).as_bytes())
            .2
            .starts_with("REJECTED"));
    }

    #[test]
    fn external_rejections() {
        let rejected = "REJECTED EXTERNAL DBUS_COOKIE_SHA1 ANONYMOUS\r\n";
        let mut s = started(all(), Some(1000));
        assert_eq!(
            run(
                &mut s,
                format!("AUTH EXTERNAL {}\r\n", hex("1001")).as_bytes()
            )
            .2,
            rejected
        );
        assert_eq!(
            run(
                &mut s,
                format!("AUTH EXTERNAL {}\r\n", hex("root")).as_bytes()
            )
            .2,
            rejected
        );
        assert_eq!(
            run(
                &mut s,
                format!("AUTH EXTERNAL {}\r\n", hex("-1000")).as_bytes()
            )
            .2,
            rejected
        );
        assert_eq!(
            run(
                &mut s,
                format!("AUTH EXTERNAL {}\r\n", hex("99999999999")).as_bytes()
            )
            .2,
            rejected
        );
        // strtoul-style numbers are accepted, as by libdbus.
        assert_eq!(
            run(
                &mut s,
                format!("AUTH EXTERNAL {}\r\n", hex("0x3e8")).as_bytes()
            )
            .2,
            ok_line()
        );
        // No credentials: EXTERNAL cannot work.
        let mut s = started(all(), None);
        assert_eq!(
            run(&mut s, format!("AUTH EXTERNAL {}\r\n", hex("0")).as_bytes()).2,
            rejected
        );
        assert_eq!(run(&mut s, b"AUTH EXTERNAL\r\n").2, rejected);
    }

    #[test]
    fn mechanism_list_and_unknown_mechanisms() {
        let mut s = started(
            config(&[Mechanism::Anonymous, Mechanism::External], false, true),
            Some(1),
        );
        assert_eq!(
            run(&mut s, b"AUTH\r\n").2,
            "REJECTED EXTERNAL ANONYMOUS\r\n"
        );
        assert_eq!(
            run(&mut s, b"AUTH   \r\n").2,
            "REJECTED EXTERNAL ANONYMOUS\r\n"
        );
        assert_eq!(
            run(&mut s, b"AUTH KERBEROS_V4 00\r\n").2,
            "REJECTED EXTERNAL ANONYMOUS\r\n"
        );
        assert_eq!(
            run(&mut s, b"AUTH DBUS_COOKIE_SHA1 00\r\n").2,
            "REJECTED EXTERNAL ANONYMOUS\r\n"
        );
        let mut s = started(config(&[Mechanism::External], false, true), Some(1));
        assert_eq!(run(&mut s, b"AUTH\r\n").2, "REJECTED EXTERNAL\r\n");
    }

    #[test]
    fn anonymous() {
        let mut s = started(all(), None);
        assert_eq!(
            run(
                &mut s,
                format!("AUTH ANONYMOUS {}\r\n", hex("libdbus 1.14")).as_bytes()
            )
            .2,
            ok_line()
        );
        assert_eq!(s.authorized_uid(), None);
        assert_eq!(
            run(&mut s, b"BEGIN\r\n").1,
            SaslStatus::Authenticated {
                uid: None,
                unix_fd: false
            }
        );

        let mut s = started(all(), Some(5));
        assert_eq!(run(&mut s, b"AUTH ANONYMOUS\r\n").2, ok_line());
        assert_eq!(
            run(&mut s, b"BEGIN\r\n").1,
            SaslStatus::Authenticated {
                uid: None,
                unix_fd: false
            }
        );

        // Invalid UTF-8 trace.
        let mut s = started(all(), None);
        assert!(run(&mut s, b"AUTH ANONYMOUS ff\r\n")
            .2
            .starts_with("REJECTED"));
        // Invalid hex.
        assert!(run(&mut s, b"AUTH ANONYMOUS xyz\r\n")
            .2
            .starts_with("ERROR"));
        // Not allowed.
        let mut s = started(config(&[], false, true), None);
        assert!(run(&mut s, b"AUTH ANONYMOUS\r\n").2.starts_with("REJECTED"));
    }

    #[test]
    fn unix_fd_negotiation() {
        let mut s = started(config(&[], false, false), Some(0));
        run(&mut s, format!("AUTH EXTERNAL {}\r\n", hex("0")).as_bytes());
        let (_, st, out) = run(&mut s, b"NEGOTIATE_UNIX_FD\r\n");
        assert_eq!(st, SaslStatus::Continue);
        assert!(out.starts_with("ERROR \""), "{out}");
        assert_eq!(
            run(&mut s, b"BEGIN\r\n").1,
            SaslStatus::Authenticated {
                uid: Some(0),
                unix_fd: false
            }
        );

        let mut s = started(all(), Some(0));
        assert!(run(&mut s, b"NEGOTIATE_UNIX_FD\r\n").2.starts_with("ERROR"));
    }

    #[test]
    fn cancel_and_error_and_begin_early() {
        let mut s = started(all(), Some(7));
        assert!(run(&mut s, b"CANCEL\r\n").2.starts_with("ERROR"));
        assert!(run(&mut s, b"DATA\r\n").2.starts_with("ERROR"));
        assert!(run(&mut s, b"ERROR\r\n").2.starts_with("REJECTED"));
        run(&mut s, b"AUTH EXTERNAL\r\n");
        assert!(run(&mut s, b"AUTH EXTERNAL\r\n").2.starts_with("ERROR"));
        assert!(run(&mut s, b"ERROR \"whatever\"\r\n")
            .2
            .starts_with("REJECTED"));
        run(&mut s, b"AUTH EXTERNAL\r\n");
        assert!(run(&mut s, b"CANCEL\r\n").2.starts_with("REJECTED"));
        // OK, then CANCEL drops the identity.
        assert_eq!(
            run(&mut s, format!("AUTH EXTERNAL {}\r\n", hex("7")).as_bytes()).2,
            ok_line()
        );
        assert!(run(&mut s, b"AUTH EXTERNAL\r\n").2.starts_with("ERROR"));
        assert!(run(&mut s, b"DATA\r\n").2.starts_with("ERROR"));
        assert!(run(&mut s, b"CANCEL\r\n").2.starts_with("REJECTED"));
        assert_eq!(s.authorized_uid(), None);
        // BEGIN before OK disconnects.
        assert_eq!(run(&mut s, b"BEGIN\r\n").1, SaslStatus::Disconnect);

        let mut s = started(all(), Some(7));
        run(&mut s, b"AUTH EXTERNAL\r\n");
        assert_eq!(run(&mut s, b"BEGIN\r\nxx").1, SaslStatus::Disconnect);
    }

    #[test]
    fn garbage_and_non_ascii() {
        let mut s = started(all(), Some(7));
        assert_eq!(run(&mut s, b"FOO\r\n").2, "ERROR \"Unknown command\"\r\n");
        assert_eq!(run(&mut s, b"\r\n").2, "ERROR \"Unknown command\"\r\n");
        assert_eq!(
            run(&mut s, b"OK 1234\r\n").2,
            "ERROR \"Unknown command\"\r\n"
        );
        assert_eq!(
            run(&mut s, b"AUTH \xc3\xa9\r\n").2,
            "ERROR \"Command contained non-ASCII\"\r\n"
        );
        assert_eq!(
            run(&mut s, b"AUTH \0\r\n").2,
            "ERROR \"Command contained non-ASCII\"\r\n"
        );
        assert_eq!(run(&mut s, b"auth\r\n").2, "ERROR \"Unknown command\"\r\n");
        assert_eq!(
            run(&mut s, b"AUTH EXTERNAL 31 \r\n").2,
            "ERROR \"Invalid hex encoding\"\r\n"
        );
        // Still usable.
        assert_eq!(
            run(&mut s, format!("AUTH EXTERNAL {}\r\n", hex("7")).as_bytes()).2,
            ok_line()
        );
    }

    #[test]
    fn many_garbage_lines_disconnect() {
        let mut s = started(all(), Some(7));
        let input: Vec<u8> = b"GARBAGE\r\n".repeat(200);
        let (n, st, out) = run(&mut s, &input);
        assert_eq!(st, SaslStatus::Disconnect);
        assert!(n <= input.len());
        assert!(out.len() < 1024);
        // Garbage fed line by line also ends.
        let mut s = started(all(), Some(7));
        let mut last = SaslStatus::Continue;
        for _ in 0..200 {
            last = run(&mut s, b"\xff\xfe\r\n").1;
            if last == SaslStatus::Disconnect {
                break;
            }
        }
        assert_eq!(last, SaslStatus::Disconnect);
    }

    #[test]
    fn endless_unix_fd_negotiation_disconnects() {
        let mut s = started(all(), Some(7));
        run(&mut s, format!("AUTH EXTERNAL {}\r\n", hex("7")).as_bytes());
        let input = b"NEGOTIATE_UNIX_FD\r\n".repeat(1000);
        assert_eq!(run(&mut s, &input).1, SaslStatus::Disconnect);
    }

    #[test]
    fn too_many_rejections_disconnect() {
        let mut s = started(all(), None);
        for i in 1..=MAX_REJECTS {
            let (_, st, out) = run(&mut s, b"AUTH EXTERNAL 31\r\n");
            assert!(out.starts_with("REJECTED"));
            assert_eq!(st == SaslStatus::Disconnect, i == MAX_REJECTS);
        }
    }

    #[test]
    fn long_lines_disconnect() {
        let mut s = started(all(), Some(7));
        let mut line = vec![b'A'; MAX_LINE_BYTES - 2];
        line.extend_from_slice(b"\r\n");
        assert_eq!(run(&mut s, &line).1, SaslStatus::Continue);
        let mut s = started(all(), Some(7));
        let mut line = vec![b'A'; MAX_LINE_BYTES - 1];
        line.extend_from_slice(b"\r\n");
        assert_eq!(run(&mut s, &line).1, SaslStatus::Disconnect);
        // Unterminated and too long.
        let mut s = started(all(), Some(7));
        assert_eq!(
            run(&mut s, &vec![b'A'; MAX_LINE_BYTES]).1,
            SaslStatus::Continue
        );
        assert_eq!(
            run(&mut s, &vec![b'A'; MAX_LINE_BYTES + 1]).1,
            SaslStatus::Disconnect
        );
    }

    #[test]
    fn partial_lines_are_not_consumed() {
        let mut s = started(all(), Some(7));
        assert_eq!(
            run(&mut s, b"AUTH EXT"),
            (0, SaslStatus::Continue, String::new())
        );
        assert_eq!(run(&mut s, b"AUTH\r\nAUTH EXT").0, 6);
        let mut s = SaslServer::new(all(), Some(7));
        assert_eq!(
            run(&mut s, b"\0AUTH EXTERNAL 37\r"),
            (1, SaslStatus::Continue, String::new())
        );
    }

    #[test]
    fn uid_parsing() {
        assert_eq!(parse_uid(b"0"), Some(0));
        assert_eq!(parse_uid(b"1000"), Some(1000));
        assert_eq!(parse_uid(b"0x10"), Some(16));
        assert_eq!(parse_uid(b"4294967295"), None);
        assert_eq!(parse_uid(b"-1"), None);
        assert_eq!(parse_uid(b"+1"), None);
        assert_eq!(parse_uid(b" 1"), None);
        assert_eq!(parse_uid(b""), None);
        assert_eq!(parse_uid(b"root"), None);
    }

    fn my_uid() -> u32 {
        nix::unistd::geteuid().as_raw()
    }

    fn my_name() -> String {
        nix::unistd::User::from_uid(nix::unistd::geteuid())
            .unwrap()
            .unwrap()
            .name
    }

    /// Plays the client side of DBUS_COOKIE_SHA1 from the server's DATA.
    fn cookie_reply(dir: &std::path::Path, data_line: &str, tamper: bool) -> String {
        let payload = hex_decode(
            data_line
                .trim_end()
                .strip_prefix("DATA ")
                .unwrap()
                .as_bytes(),
        )
        .unwrap();
        let payload = String::from_utf8(payload).unwrap();
        let mut parts = payload.split(' ');
        let (ctx, id, server) = (
            parts.next().unwrap(),
            parts.next().unwrap(),
            parts.next().unwrap(),
        );
        assert_eq!(ctx, "org_freedesktop_general");
        assert_eq!(server.len(), 32);
        let text = std::fs::read_to_string(dir.join(ctx)).unwrap();
        let line = text
            .lines()
            .find(|l| l.split(' ').next() == Some(id))
            .unwrap();
        let mut secret = line.split(' ').nth(2).unwrap().to_string();
        if tamper {
            secret.push('0');
        }
        let hash = cookie::compute_hash(server.as_bytes(), b"c0ffee", secret.as_bytes());
        format!("DATA {}\r\n", hex(&format!("c0ffee {hash}")))
    }

    #[test]
    fn cookie_sha1_success_by_name_and_uid() {
        let home = cookie::tests::temp_dir("sasl-cookie");
        let dir = home.join(".dbus-keyrings");
        for who in [hex(&my_name()), hex(&my_uid().to_string())] {
            let mut s = SaslServer::with_keyring_dir(all(), Some(my_uid()), dir.clone());
            run(&mut s, b"\0");
            let (_, st, data) = run(
                &mut s,
                format!("AUTH DBUS_COOKIE_SHA1 {who}\r\n").as_bytes(),
            );
            assert_eq!(st, SaslStatus::Continue);
            assert!(data.starts_with("DATA "), "{data}");
            assert_eq!(s.authorized_uid(), None);
            let reply = cookie_reply(&dir, &data, false);
            assert_eq!(run(&mut s, reply.as_bytes()).2, ok_line());
            assert_eq!(
                run(&mut s, b"BEGIN\r\n").1,
                SaslStatus::Authenticated {
                    uid: Some(my_uid()),
                    unix_fd: false
                }
            );
        }
        // Unknown peer (e.g. TCP): allowed as long as the user is ours.
        let mut s = SaslServer::with_keyring_dir(all(), None, dir.clone());
        run(&mut s, b"\0");
        let data = run(
            &mut s,
            format!("AUTH DBUS_COOKIE_SHA1 {}\r\n", hex(&my_name())).as_bytes(),
        )
        .2;
        assert_eq!(
            run(&mut s, cookie_reply(&dir, &data, false).as_bytes()).2,
            ok_line()
        );
        std::fs::remove_dir_all(&home).unwrap();
    }

    #[test]
    fn cookie_sha1_failures() {
        let home = cookie::tests::temp_dir("sasl-cookie-fail");
        let dir = home.join(".dbus-keyrings");
        let me = hex(&my_name());
        let new = |peer| {
            let mut s = SaslServer::with_keyring_dir(all(), peer, dir.clone());
            run(&mut s, b"\0");
            s
        };
        // Wrong hash.
        let mut s = new(Some(my_uid()));
        let data = run(&mut s, format!("AUTH DBUS_COOKIE_SHA1 {me}\r\n").as_bytes()).2;
        assert!(run(&mut s, cookie_reply(&dir, &data, true).as_bytes())
            .2
            .starts_with("REJECTED"));
        // Malformed replies.
        for bad in ["nospace", " lead", "trail ", ""] {
            let mut s = new(Some(my_uid()));
            run(&mut s, format!("AUTH DBUS_COOKIE_SHA1 {me}\r\n").as_bytes());
            let out = run(&mut s, format!("DATA {}\r\n", hex(bad)).as_bytes()).2;
            assert!(out.starts_with("REJECTED"), "{bad:?}: {out}");
        }
        // Peer is somebody else.
        let mut s = new(Some(my_uid().wrapping_add(1)));
        assert!(
            run(&mut s, format!("AUTH DBUS_COOKIE_SHA1 {me}\r\n").as_bytes())
                .2
                .starts_with("REJECTED")
        );
        // Claimed user is not the daemon's user.
        let other = if my_uid() == 0 { "65534" } else { "0" };
        let mut s = new(None);
        assert!(run(
            &mut s,
            format!("AUTH DBUS_COOKIE_SHA1 {}\r\n", hex(other)).as_bytes()
        )
        .2
        .starts_with("REJECTED"));
        // Unknown user, no user at all.
        assert!(run(
            &mut s,
            format!("AUTH DBUS_COOKIE_SHA1 {}\r\n", hex("no-such-user-xyz")).as_bytes()
        )
        .2
        .starts_with("REJECTED"));
        assert!(run(&mut s, b"AUTH DBUS_COOKIE_SHA1\r\n")
            .2
            .starts_with("REJECTED"));
        // Keyring directory not private.
        use std::os::unix::fs::PermissionsExt;
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
        let mut s = new(Some(my_uid()));
        assert!(
            run(&mut s, format!("AUTH DBUS_COOKIE_SHA1 {me}\r\n").as_bytes())
                .2
                .starts_with("REJECTED")
        );
        std::fs::remove_dir_all(&home).unwrap();
    }

    #[test]
    fn random_input_never_panics_and_terminates() {
        let words: [&[u8]; 12] = [
            b"AUTH",
            b" ",
            b"EXTERNAL",
            b"\r\n",
            b"DATA",
            b"BEGIN",
            b"CANCEL",
            b"ERROR",
            b"NEGOTIATE_UNIX_FD",
            b"31303030",
            b"\xff",
            b"ANONYMOUS",
        ];
        let mut seed: u64 = 0x2545_f491_4f6c_dd1d;
        let mut next = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        for _ in 0..500 {
            let mut s = SaslServer::new(all(), Some(1000));
            let mut input = vec![0u8];
            for _ in 0..(next() % 60) {
                if next() % 5 == 0 {
                    input.push((next() & 0xff) as u8);
                } else {
                    input.extend_from_slice(words[(next() % 12) as usize]);
                }
            }
            let mut buf: Vec<u8> = Vec::new();
            let mut out = Vec::new();
            for chunk in input.chunks(1 + (next() % 7) as usize) {
                buf.extend_from_slice(chunk);
                let (n, st) = s.feed(&buf, &mut out);
                assert!(n <= buf.len());
                buf.drain(..n);
                if st != SaslStatus::Continue {
                    break;
                }
            }
            assert!(out.len() < 64 * 1024);
        }
    }
}
