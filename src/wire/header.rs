//! Message header view and rewriting.
//!
//! [`Header::parse`] validates a whole framed message (header fields and,
//! through [`super::body`], the body) and records where each field lives, so
//! the router can look at names without copying them. [`HeaderBuilder`]
//! writes the header the bus sends on: the same byte order, type, flags and
//! serial, the known fields, and SENDER set by the bus. Unknown fields are
//! dropped, as the specification asks of a bus.

use std::ops::Range;

use super::body::validate_body;
use super::names::{bus_name_bytes, interface_bytes, member_bytes, object_path_bytes};
use super::signature::validate_signature;
use super::{Endian, WireError};

/// Size of the fixed part of a header.
pub const FIXED_HEADER_LEN: usize = 16;

/// Message type codes.
pub mod msg_type {
    /// method call
    pub const METHOD_CALL: u8 = 1;
    /// method return
    pub const METHOD_RETURN: u8 = 2;
    /// error
    pub const ERROR: u8 = 3;
    /// signal
    pub const SIGNAL: u8 = 4;
}

/// Header flags.
pub mod flags {
    /// NO_REPLY_EXPECTED
    pub const NO_REPLY_EXPECTED: u8 = 0x1;
    /// NO_AUTO_START
    pub const NO_AUTO_START: u8 = 0x2;
    /// ALLOW_INTERACTIVE_AUTHORIZATION
    pub const ALLOW_INTERACTIVE_AUTHORIZATION: u8 = 0x4;
}

/// Header field codes.
pub mod field {
    /// PATH (o)
    pub const PATH: u8 = 1;
    /// INTERFACE (s)
    pub const INTERFACE: u8 = 2;
    /// MEMBER (s)
    pub const MEMBER: u8 = 3;
    /// ERROR_NAME (s)
    pub const ERROR_NAME: u8 = 4;
    /// REPLY_SERIAL (u)
    pub const REPLY_SERIAL: u8 = 5;
    /// DESTINATION (s)
    pub const DESTINATION: u8 = 6;
    /// SENDER (s)
    pub const SENDER: u8 = 7;
    /// SIGNATURE (g)
    pub const SIGNATURE: u8 = 8;
    /// UNIX_FDS (u)
    pub const UNIX_FDS: u8 = 9;
}

const LOCAL_PATH: &str = "/org/freedesktop/DBus/Local";
const LOCAL_INTERFACE: &str = "org.freedesktop.DBus.Local";

/// Total length of the message whose first 16 bytes are `fixed`, or an error
/// if the fixed header is invalid or the message would exceed `max_len`.
pub fn frame_len(fixed: &[u8], max_len: usize) -> Result<usize, WireError> {
    if fixed.len() < FIXED_HEADER_LEN {
        return Err(WireError("short fixed header"));
    }
    let endian = Endian::from_marker(fixed[0]).ok_or(WireError("bad byte order marker"))?;
    if fixed[3] != 1 {
        return Err(WireError("unknown protocol version"));
    }
    let body_len = endian.u32(&fixed[4..8]) as usize;
    let fields_len = endian.u32(&fixed[12..16]) as usize;
    if fields_len > super::MAX_ARRAY_LEN as usize {
        return Err(WireError("header fields array too long"));
    }
    let header_len = pad8(FIXED_HEADER_LEN + fields_len);
    let total = header_len
        .checked_add(body_len)
        .ok_or(WireError("message too long"))?;
    if total > max_len || total > super::MAX_MESSAGE_SIZE {
        return Err(WireError("message too long"));
    }
    Ok(total)
}

/// Rounds up to a multiple of 8.
pub fn pad8(n: usize) -> usize {
    (n + 7) & !7
}

/// A validated message header: scalar fields and where the string fields lie
/// in the message bytes.
#[derive(Clone, Debug, Default)]
pub struct Header {
    /// Byte order.
    pub endian_big: bool,
    /// Message type code.
    pub msg_type: u8,
    /// Flags byte.
    pub flags: u8,
    /// Serial (non-zero).
    pub serial: u32,
    /// REPLY_SERIAL, if present.
    pub reply_serial: Option<u32>,
    /// UNIX_FDS (0 if absent).
    pub unix_fds: u32,
    /// Offset of the body in the message.
    pub body_start: usize,
    path: Option<Range<usize>>,
    interface: Option<Range<usize>>,
    member: Option<Range<usize>>,
    error_name: Option<Range<usize>>,
    destination: Option<Range<usize>>,
    sender: Option<Range<usize>>,
    signature: Option<Range<usize>>,
}

fn text<'a>(msg: &'a [u8], r: &Option<Range<usize>>) -> Option<&'a str> {
    r.as_ref()
        .and_then(|r| msg.get(r.clone()))
        .and_then(|b| std::str::from_utf8(b).ok())
}

impl Header {
    /// Byte order.
    pub fn endian(&self) -> Endian {
        if self.endian_big {
            Endian::Big
        } else {
            Endian::Little
        }
    }

    /// Parses and validates the whole message `msg` (exactly one framed
    /// message). `n_fds` is the number of fds that arrived with it.
    pub fn parse(msg: &[u8], n_fds: usize) -> Result<Header, WireError> {
        Self::parse_checked::<true>(msg, n_fds)
    }

    /// Parses a message the bus built itself (with [`HeaderBuilder`] and
    /// marshalled bodies): the same framing and field offsets as
    /// [`Header::parse`], without re-validating names, UTF-8, the
    /// signature and the body the builder wrote (about two thirds of the
    /// parse of a driver reply or signal). These accessors check UTF-8 on
    /// every read either way; [`super::parsed::MsgRef`]'s do not for a
    /// message [`Header::parse`] validated. Debug builds check that the full parse
    /// accepts it.
    pub fn parse_own(msg: &[u8]) -> Result<Header, WireError> {
        let h = Self::parse_checked::<false>(msg, 0);
        debug_assert!(
            h.is_err() || Self::parse(msg, 0).is_ok(),
            "the bus built an invalid message"
        );
        h
    }

    fn parse_checked<const CHECK: bool>(msg: &[u8], n_fds: usize) -> Result<Header, WireError> {
        let total = frame_len(msg, usize::MAX)?;
        if total != msg.len() {
            return Err(WireError("message length mismatch"));
        }
        let h = Self::parse_head::<CHECK>(msg, n_fds)?;
        if CHECK {
            let sig = h.signature(msg).unwrap_or("").as_bytes();
            validate_body(sig, &msg[h.body_start..], h.endian())?;
        }
        Ok(h)
    }

    /// For a message of which only `prefix` has arrived: its header, and
    /// where the rest starts that needs no validation, when the body ends
    /// with a byte array (its signature's last complete type is `ay`:
    /// `ay`, `say`, `a{sv}ay`, ...) that ends the message, and `prefix`
    /// holds the header, the values before the array and the array's
    /// length. The header and those values are validated as
    /// [`Header::parse`] does. None when the body is something else, or the
    /// prefix too short, or anything is wrong (the copying path then reads
    /// the whole message and reports it).
    pub fn parse_prefix(prefix: &[u8], n_fds: usize) -> Option<(Header, usize)> {
        if prefix.len() < FIXED_HEADER_LEN {
            return None;
        }
        let total = frame_len(prefix, usize::MAX).ok()?;
        let endian = Endian::from_marker(prefix[0])?;
        let fields_len = endian.u32(&prefix[12..16]) as usize;
        let body_start = pad8(FIXED_HEADER_LEN + fields_len);
        if prefix.len() < body_start + 4 || total < body_start + 4 {
            return None;
        }
        let h = Self::parse_head::<true>(&prefix[..body_start + 4], n_fds).ok()?;
        let sig = h.signature(prefix)?.as_bytes();
        let last = super::signature::last_type_start(sig).ok()?;
        if &sig[last..] != b"ay" {
            return None;
        }
        // The values before the array, validated as the whole body would
        // be; then the array's length, 4-aligned, whose contents need no
        // checking and end the message.
        let body = &prefix[body_start..];
        let values_end = super::body::validate_leading_values(&sig[..last], body, endian).ok()?;
        let len_at = values_end.next_multiple_of(4);
        if body.get(values_end..len_at)?.iter().any(|&b| b != 0) {
            return None;
        }
        let array_len = endian.u32(body.get(len_at..len_at + 4)?) as usize;
        let head_len = body_start + len_at + 4;
        if array_len > super::MAX_ARRAY_LEN as usize || head_len + array_len != total {
            return None;
        }
        Some((h, head_len))
    }

    /// Parses and validates everything before the body of `msg` (which
    /// holds at least the header, padding included). Without `CHECK`
    /// (the bus's own messages), names, UTF-8 and the signature are not
    /// validated again.
    fn parse_head<const CHECK: bool>(msg: &[u8], n_fds: usize) -> Result<Header, WireError> {
        if msg.len() < FIXED_HEADER_LEN {
            return Err(WireError("short fixed header"));
        }
        let endian = Endian::from_marker(msg[0]).ok_or(WireError("bad byte order marker"))?;
        let mut h = Header {
            endian_big: endian == Endian::Big,
            msg_type: msg[1],
            flags: msg[2],
            serial: endian.u32(&msg[8..12]),
            ..Header::default()
        };
        if !(msg_type::METHOD_CALL..=msg_type::SIGNAL).contains(&h.msg_type) {
            return Err(WireError("unknown message type"));
        }
        if h.serial == 0 {
            return Err(WireError("zero serial"));
        }
        let fields_len = endian.u32(&msg[12..16]) as usize;
        let fields_end = FIXED_HEADER_LEN + fields_len;
        h.body_start = pad8(fields_end);
        if msg.len() < h.body_start {
            return Err(WireError("header fields overrun"));
        }
        if msg[fields_end..h.body_start].iter().any(|&b| b != 0) {
            return Err(WireError("nonzero header padding"));
        }
        let mut seen = 0u32;
        let mut pos = FIXED_HEADER_LEN;
        while pos < fields_end {
            let aligned = pad8(pos);
            if aligned >= fields_end {
                return Err(WireError("header field padding past end"));
            }
            check_zero(&msg[pos..aligned])?;
            pos = aligned;
            let code = msg[pos];
            let sig_len = *msg
                .get(pos + 1)
                .ok_or(WireError("truncated header field"))? as usize;
            let sig_start = pos + 2;
            let sig_end = sig_start + sig_len;
            if sig_end >= fields_end || msg[sig_end] != 0 {
                return Err(WireError("bad header field signature"));
            }
            let sig = &msg[sig_start..sig_end];
            let value_start = sig_end + 1;
            if code != 0 && code <= field::UNIX_FDS {
                if seen & (1 << code) != 0 {
                    return Err(WireError("duplicate header field"));
                }
                seen |= 1 << code;
            }
            let expected: &[u8] = match code {
                0 => return Err(WireError("invalid header field code 0")),
                field::PATH => b"o",
                field::INTERFACE
                | field::MEMBER
                | field::ERROR_NAME
                | field::DESTINATION
                | field::SENDER => b"s",
                field::SIGNATURE => b"g",
                field::REPLY_SERIAL | field::UNIX_FDS => b"u",
                _ => {
                    // Unknown field: validate the variant and skip it.
                    validate_signature(sig)?;
                    if super::signature::single_type_len(sig)? != sig.len() {
                        return Err(WireError("header field variant is not one type"));
                    }
                    let end = skip_value(msg, fields_end, value_start, sig, endian)?;
                    pos = end;
                    continue;
                }
            };
            if sig != expected {
                return Err(WireError("header field has wrong type"));
            }
            match expected[0] {
                b'u' => {
                    let p = align(value_start, 4);
                    let b = msg
                        .get(p..p + 4)
                        .filter(|_| p + 4 <= fields_end)
                        .ok_or(WireError("truncated header field"))?;
                    check_zero(&msg[value_start..p])?;
                    let v = endian.u32(b);
                    if code == field::REPLY_SERIAL {
                        if v == 0 {
                            return Err(WireError("zero reply serial"));
                        }
                        h.reply_serial = Some(v);
                    } else {
                        h.unix_fds = v;
                    }
                    pos = p + 4;
                }
                b'g' => {
                    let len = *msg.get(value_start).ok_or(WireError("truncated"))? as usize;
                    let s = value_start + 1;
                    if s + len >= fields_end || msg[s + len] != 0 {
                        return Err(WireError("bad signature field"));
                    }
                    if CHECK {
                        validate_signature(&msg[s..s + len])?;
                    }
                    h.signature = Some(s..s + len);
                    pos = s + len + 1;
                }
                _ => {
                    let p = align(value_start, 4);
                    if p + 4 > fields_end {
                        return Err(WireError("truncated header field"));
                    }
                    check_zero(&msg[value_start..p])?;
                    let len = endian.u32(&msg[p..p + 4]) as usize;
                    let s = p + 4;
                    let e = s.checked_add(len).ok_or(WireError("overflow"))?;
                    if e >= fields_end || msg[e] != 0 {
                        return Err(WireError("bad string header field"));
                    }
                    if !CHECK {
                        let r = Some(s..e);
                        match code {
                            field::PATH => h.path = r,
                            field::INTERFACE => h.interface = r,
                            field::MEMBER => h.member = r,
                            field::ERROR_NAME => h.error_name = r,
                            field::DESTINATION => h.destination = r,
                            _ => h.sender = r,
                        }
                        pos = e + 1;
                        continue;
                    }
                    // The names' grammars admit ASCII only (names.rs), so
                    // a field they accept is valid UTF-8: no separate check.
                    let st = &msg[s..e];
                    match code {
                        field::PATH => {
                            object_path_bytes(st)?;
                            if st == LOCAL_PATH.as_bytes() {
                                return Err(WireError("message uses the local path"));
                            }
                            h.path = Some(s..e);
                        }
                        field::INTERFACE => {
                            interface_bytes(st)?;
                            if st == LOCAL_INTERFACE.as_bytes() {
                                return Err(WireError("message uses the local interface"));
                            }
                            h.interface = Some(s..e);
                        }
                        field::MEMBER => {
                            member_bytes(st)?;
                            h.member = Some(s..e);
                        }
                        field::ERROR_NAME => {
                            // The same grammar as an interface name.
                            interface_bytes(st)?;
                            h.error_name = Some(s..e);
                        }
                        field::DESTINATION => {
                            bus_name_bytes(st)?;
                            h.destination = Some(s..e);
                        }
                        _ => {
                            bus_name_bytes(st)?;
                            h.sender = Some(s..e);
                        }
                    }
                    debug_assert!(st.is_ascii(), "a name grammar admitted non-ASCII");
                    pos = e + 1;
                }
            }
        }
        if pos != fields_end {
            return Err(WireError("header fields overrun"));
        }
        match h.msg_type {
            msg_type::METHOD_CALL if h.path.is_none() || h.member.is_none() => {
                return Err(WireError("method call without path or member"))
            }
            msg_type::SIGNAL if h.path.is_none() || h.member.is_none() || h.interface.is_none() => {
                return Err(WireError("signal without path, interface or member"))
            }
            msg_type::ERROR if h.error_name.is_none() || h.reply_serial.is_none() => {
                return Err(WireError("error without name or reply serial"))
            }
            msg_type::METHOD_RETURN if h.reply_serial.is_none() => {
                return Err(WireError("method return without reply serial"))
            }
            _ => {}
        }
        if h.unix_fds as usize > n_fds {
            return Err(WireError("message claims more fds than were sent"));
        }
        Ok(h)
    }

    /// PATH
    pub fn path<'a>(&self, msg: &'a [u8]) -> Option<&'a str> {
        text(msg, &self.path)
    }
    /// INTERFACE
    pub fn interface<'a>(&self, msg: &'a [u8]) -> Option<&'a str> {
        text(msg, &self.interface)
    }
    /// MEMBER
    pub fn member<'a>(&self, msg: &'a [u8]) -> Option<&'a str> {
        text(msg, &self.member)
    }
    /// ERROR_NAME
    pub fn error_name<'a>(&self, msg: &'a [u8]) -> Option<&'a str> {
        text(msg, &self.error_name)
    }
    /// DESTINATION
    pub fn destination<'a>(&self, msg: &'a [u8]) -> Option<&'a str> {
        text(msg, &self.destination)
    }
    /// SENDER as the peer wrote it (the bus replaces it).
    pub fn sender<'a>(&self, msg: &'a [u8]) -> Option<&'a str> {
        text(msg, &self.sender)
    }
    /// SIGNATURE (None when absent, meaning an empty body).
    pub fn signature<'a>(&self, msg: &'a [u8]) -> Option<&'a str> {
        text(msg, &self.signature)
    }
    pub(super) fn path_range(&self) -> &Option<Range<usize>> {
        &self.path
    }
    pub(super) fn interface_range(&self) -> &Option<Range<usize>> {
        &self.interface
    }
    pub(super) fn member_range(&self) -> &Option<Range<usize>> {
        &self.member
    }
    pub(super) fn error_name_range(&self) -> &Option<Range<usize>> {
        &self.error_name
    }
    pub(super) fn destination_range(&self) -> &Option<Range<usize>> {
        &self.destination
    }
    pub(super) fn sender_range(&self) -> &Option<Range<usize>> {
        &self.sender
    }
    pub(super) fn signature_range(&self) -> &Option<Range<usize>> {
        &self.signature
    }
    /// Whether the caller asked for no reply.
    pub fn no_reply_expected(&self) -> bool {
        self.flags & flags::NO_REPLY_EXPECTED != 0
    }
    /// Whether auto-start is suppressed.
    pub fn no_auto_start(&self) -> bool {
        self.flags & flags::NO_AUTO_START != 0
    }
}

fn align(p: usize, n: usize) -> usize {
    (p + n - 1) & !(n - 1)
}

fn check_zero(b: &[u8]) -> Result<(), WireError> {
    if b.iter().any(|&x| x != 0) {
        Err(WireError("nonzero padding"))
    } else {
        Ok(())
    }
}

/// Skips one value of type `sig` at `pos` in `msg` (bounded by `end`),
/// validating it; returns the end offset.
fn skip_value(
    msg: &[u8],
    end: usize,
    pos: usize,
    sig: &[u8],
    endian: Endian,
) -> Result<usize, WireError> {
    // Validate by treating the region as a body: alignment is relative to
    // the message start, which is 8-aligned, so we validate from an
    // 8-aligned start with a prefix that we then skip.
    let start8 = pos & !7;
    let prefix = pos - start8;
    let mut r = super::marshal::Reader::new(&msg[start8..end], endian);
    for _ in 0..prefix {
        r.u8()?;
    }
    r.skip(sig)?;
    Ok(start8 + r.pos())
}

/// Writes a header in a given byte order.
#[derive(Debug)]
pub struct HeaderBuilder {
    buf: Vec<u8>,
    endian: Endian,
}

impl HeaderBuilder {
    /// Starts a header; body length and serial as given.
    pub fn new(endian: Endian, msg_type: u8, flags: u8, body_len: u32, serial: u32) -> Self {
        Self::with_buf(
            Vec::with_capacity(256),
            endian,
            msg_type,
            flags,
            body_len,
            serial,
        )
    }

    /// Starts a header in `buf` (cleared first; its capacity is reused).
    pub fn with_buf(
        mut buf: Vec<u8>,
        endian: Endian,
        msg_type: u8,
        flags: u8,
        body_len: u32,
        serial: u32,
    ) -> Self {
        buf.clear();
        // A recycled buffer keeps its capacity; a new one gets room for
        // the usual header at once rather than regrowing field by field.
        buf.reserve(256);
        buf.extend_from_slice(&[endian.marker(), msg_type, flags, 1]);
        let mut b = HeaderBuilder { buf, endian };
        b.put_u32(body_len);
        b.put_u32(serial);
        b.put_u32(0); // fields length, patched in finish()
        b
    }

    fn put_u32(&mut self, v: u32) {
        let bytes = match self.endian {
            Endian::Little => v.to_le_bytes(),
            Endian::Big => v.to_be_bytes(),
        };
        self.buf.extend_from_slice(&bytes);
    }

    fn pad_to(&mut self, n: usize) {
        while !self.buf.len().is_multiple_of(n) {
            self.buf.push(0);
        }
    }

    /// Adds a string-typed field (PATH uses 'o', others 's').
    pub fn string(&mut self, code: u8, value: &str) {
        self.pad_to(8);
        let sig = if code == field::PATH { b'o' } else { b's' };
        self.buf.extend_from_slice(&[code, 1, sig, 0]);
        self.put_u32(value.len() as u32);
        self.buf.extend_from_slice(value.as_bytes());
        self.buf.push(0);
    }

    /// Adds a u32 field (REPLY_SERIAL, UNIX_FDS).
    pub fn u32(&mut self, code: u8, value: u32) {
        self.pad_to(8);
        self.buf.extend_from_slice(&[code, 1, b'u', 0]);
        self.put_u32(value);
    }

    /// Adds the SIGNATURE field.
    pub fn signature(&mut self, value: &str) {
        self.pad_to(8);
        self.buf
            .extend_from_slice(&[field::SIGNATURE, 1, b'g', 0, value.len() as u8]);
        self.buf.extend_from_slice(value.as_bytes());
        self.buf.push(0);
    }

    /// Patches the fields length and pads to 8; the body follows directly.
    pub fn finish(mut self) -> Vec<u8> {
        let len = (self.buf.len() - FIXED_HEADER_LEN) as u32;
        let bytes = match self.endian {
            Endian::Little => len.to_le_bytes(),
            Endian::Big => len.to_be_bytes(),
        };
        self.buf[12..16].copy_from_slice(&bytes);
        self.pad_to(8);
        self.buf
    }
}

/// Builds the header the bus forwards for `msg`: the same fixed part, the
/// known fields, and SENDER = `sender`.
pub fn forward_header(h: &Header, msg: &[u8], sender: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(256);
    forward_header_into(h, msg, sender, &mut out);
    out
}

/// [`forward_header`] written into `out` (cleared first), reusing its
/// capacity.
pub fn forward_header_into(h: &Header, msg: &[u8], sender: &str, out: &mut Vec<u8>) {
    let body_len = msg.len() - h.body_start;
    forward_header_with_body_len(h, msg, sender, body_len, out);
}

/// [`forward_header_into`] for a message whose body is `body_len` bytes
/// long though `msg` holds only its start (a body spliced past user space).
pub fn forward_header_with_body_len(
    h: &Header,
    msg: &[u8],
    sender: &str,
    body_len: usize,
    out: &mut Vec<u8>,
) {
    let body_len = body_len as u32;
    let mut b = HeaderBuilder::with_buf(
        std::mem::take(out),
        h.endian(),
        h.msg_type,
        h.flags,
        body_len,
        h.serial,
    );
    if let Some(v) = h.path(msg) {
        b.string(field::PATH, v);
    }
    if let Some(v) = h.interface(msg) {
        b.string(field::INTERFACE, v);
    }
    if let Some(v) = h.member(msg) {
        b.string(field::MEMBER, v);
    }
    if let Some(v) = h.error_name(msg) {
        b.string(field::ERROR_NAME, v);
    }
    if let Some(v) = h.reply_serial {
        b.u32(field::REPLY_SERIAL, v);
    }
    if let Some(v) = h.destination(msg) {
        b.string(field::DESTINATION, v);
    }
    b.string(field::SENDER, sender);
    if let Some(v) = h.signature(msg) {
        b.signature(v);
    }
    if h.unix_fds > 0 {
        b.u32(field::UNIX_FDS, h.unix_fds);
    }
    *out = b.finish();
}
