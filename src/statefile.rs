//! The file a re-executing busbar hands to its new image: a fixed header
//! with the state format's version, then the state as CBOR. The format and
//! its compatibility rules are in doc/state-format.md.

use std::io::{Read, Seek, SeekFrom, Write};
use std::os::fd::{FromRawFd, OwnedFd, RawFd};

use serde::{Deserialize, Serialize};

use crate::broker::snapshot::BusState;

/// The first bytes of a state file.
pub const MAGIC: &[u8; 8] = b"BUSBARST";
/// Bytes of the header: magic, major (u16), minor (u16), payload length (u64),
/// all little-endian.
pub const HEADER_LEN: usize = 8 + 2 + 2 + 8;
/// The largest payload accepted.
pub const MAX_PAYLOAD: u64 = 4 << 30;

const fn parse_u16(s: Option<&str>, default: u16) -> u16 {
    let Some(s) = s else { return default };
    let b = s.as_bytes();
    if b.is_empty() {
        return default;
    }
    let mut v: u32 = 0;
    let mut i = 0;
    while i < b.len() {
        let d = b[i];
        assert!(
            d.is_ascii_digit(),
            "BUSBAR_STATE_MAJOR/MINOR must be a number"
        );
        v = v * 10 + (d - b'0') as u32;
        assert!(v <= u16::MAX as u32, "BUSBAR_STATE_MAJOR/MINOR too large");
        i += 1;
    }
    v as u16
}

/// The state format's major version this build writes and reads. A build
/// reads only its own major. `BUSBAR_STATE_MAJOR` at compile time
/// overrides it (for tests that need "a different build").
pub const MAJOR: u16 = parse_u16(option_env!("BUSBAR_STATE_MAJOR"), 1);
/// The minor version this build writes; it reads every minor up to it.
/// `BUSBAR_STATE_MINOR` at compile time overrides it.
pub const MINOR: u16 = parse_u16(option_env!("BUSBAR_STATE_MINOR"), 1);

/// A listening socket carried over.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct ListenerState {
    /// Its fd.
    pub fd: RawFd,
    /// TCP (else unix).
    pub tcp: bool,
    /// The address it was bound for (without the guid).
    pub address: String,
    /// The socket file removed at exit, if any.
    pub cleanup: Option<std::path::PathBuf>,
}

/// Everything a re-executed busbar takes over.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct Snapshot {
    /// The listening sockets.
    pub listeners: Vec<ListenerState>,
    /// The pid file removed at exit, if any.
    pub pidfile: Option<std::path::PathBuf>,
    /// Reexec calls to answer once the new image runs: (caller, serial).
    pub reexec_callers: Vec<(u64, u32)>,
    /// The broker's state.
    pub bus: BusState,
}

impl Snapshot {
    /// Every fd the snapshot names.
    pub fn fds(&self) -> Vec<RawFd> {
        let mut v: Vec<RawFd> = self.listeners.iter().map(|l| l.fd).collect();
        v.extend(self.bus.fds());
        v
    }
}

/// Header then CBOR payload.
pub fn encode(s: &Snapshot) -> Result<Vec<u8>, String> {
    let mut payload = Vec::new();
    ciborium::into_writer(s, &mut payload).map_err(|e| format!("cannot encode state: {e}"))?;
    let mut out = Vec::with_capacity(HEADER_LEN + payload.len());
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&MAJOR.to_le_bytes());
    out.extend_from_slice(&MINOR.to_le_bytes());
    out.extend_from_slice(&(payload.len() as u64).to_le_bytes());
    out.extend_from_slice(&payload);
    Ok(out)
}

/// The version in a state file's header.
pub fn version_of(b: &[u8]) -> Result<(u16, u16), String> {
    if b.len() < HEADER_LEN || &b[..8] != MAGIC {
        return Err("not a busbar state file".into());
    }
    Ok((
        u16::from_le_bytes([b[8], b[9]]),
        u16::from_le_bytes([b[10], b[11]]),
    ))
}

/// Reads a state file: refuses another major, or a minor newer than this
/// build's, or a payload that does not decode.
pub fn decode(b: &[u8]) -> Result<Snapshot, String> {
    let (major, minor) = version_of(b)?;
    if major != MAJOR {
        return Err(format!(
            "state format {major}.{minor} is incompatible with this busbar's {MAJOR}.{MINOR}"
        ));
    }
    if minor > MINOR {
        return Err(format!(
            "state format {major}.{minor} is newer than this busbar's {MAJOR}.{MINOR}"
        ));
    }
    let mut len = [0u8; 8];
    len.copy_from_slice(&b[12..20]);
    let len = u64::from_le_bytes(len);
    let rest = &b[HEADER_LEN..];
    if len > MAX_PAYLOAD || len != rest.len() as u64 {
        return Err("state file truncated or with trailing bytes".into());
    }
    ciborium::from_reader(rest).map_err(|e| format!("cannot decode state: {e}"))
}

/// Writes `bytes` into a new memfd (without CLOEXEC: the new image
/// inherits it) and rewinds it.
pub fn to_memfd(bytes: &[u8]) -> Result<OwnedFd, String> {
    let name = c"busbar-state";
    let fd = nix::sys::memfd::memfd_create(name, nix::sys::memfd::MemFdCreateFlag::empty())
        .map_err(|e| format!("memfd_create: {e}"))?;
    let mut f = std::fs::File::from(fd);
    f.write_all(bytes)
        .and_then(|()| f.seek(SeekFrom::Start(0)).map(drop))
        .map_err(|e| format!("writing the state: {e}"))?;
    Ok(OwnedFd::from(f))
}

/// Reads the state the previous image left in fd `fd` and closes it.
pub fn read_fd(fd: RawFd) -> Result<Vec<u8>, String> {
    if fd < 3 || nix::fcntl::fcntl(fd, nix::fcntl::FcntlArg::F_GETFD).is_err() {
        return Err(format!("state fd {fd} is not open"));
    }
    // SAFETY: `fd` was passed by the previous image on the command line as
    // the state's memfd, which nothing else in this process owns; it was
    // just checked to be open, and it is wrapped once, here.
    let owned = unsafe { OwnedFd::from_raw_fd(fd) };
    let mut f = std::fs::File::from(owned);
    let _ = f.seek(SeekFrom::Start(0));
    let mut b = Vec::new();
    Read::by_ref(&mut f)
        .take(MAX_PAYLOAD + HEADER_LEN as u64 + 1)
        .read_to_end(&mut b)
        .map_err(|e| format!("reading the state: {e}"))?;
    Ok(b)
}
