//! A message's bytes bound to the header parsed from them, so that the
//! header's strings are checked once, by the parse (whose name grammars
//! admit only ASCII, so UTF-8 needs no check of its own), and not again on
//! every read.
//!
//! [`Header`]'s own accessors take any bytes and so must check UTF-8 on
//! every call. A [`Parsed`] owns its bytes (behind [`StableBytes`]) and the
//! header that [`Header::parse`] or [`Header::parse_prefix`] validated
//! against exactly those bytes; its fields are private and nothing changes
//! either afterwards, so [`MsgRef`]'s accessors can hand out the strings
//! without looking at them again. Messages the bus built itself
//! ([`Parsed::parse_own`], which does not validate) and headers paired
//! with bytes by hand ([`MsgRef::new`]) keep the checked reads.

use std::ops::Range;

use super::header::Header;
use super::WireError;

/// Bytes that, once they read as something, read the same for as long as
/// the value lives.
///
/// # Safety
///
/// Once a deref of a value has returned a non-empty slice, every later
/// deref through a shared reference (also after the value is moved) must
/// return byte-identical contents, for the value's whole life. (A parse
/// never accepts an empty slice, so what a [`Parsed`] validated is what it
/// reads later.)
pub unsafe trait StableBytes: std::ops::Deref<Target = [u8]> {}

// SAFETY: a Vec's contents change only through `&mut Vec`, and deref
// returns its one buffer (moving a Vec does not move its heap buffer, and
// would not change the contents if it did).
unsafe impl StableBytes for Vec<u8> {}

// SAFETY: a shared borrow of bytes: nothing can change them while it
// lives (`[u8]` has no interior mutability), and deref returns the same
// slice every time.
unsafe impl StableBytes for &[u8] {}

/// A message's bytes and its header, validated together.
#[derive(Debug, Default)]
pub struct Parsed<B> {
    bytes: B,
    header: Header,
    /// Whether the parse checked every string field of `header` as UTF-8
    /// in `bytes` (false for the bus's own messages and for a default,
    /// empty one).
    utf8: bool,
}

impl<B: StableBytes> Parsed<B> {
    /// Parses and validates the whole message in `bytes`, as
    /// [`Header::parse`].
    pub fn parse(bytes: B, n_fds: usize) -> Result<Self, WireError> {
        let header = Header::parse(&bytes, n_fds)?;
        Ok(Parsed {
            bytes,
            header,
            utf8: true,
        })
    }

    /// A message the bus built itself, as [`Header::parse_own`] (its
    /// strings are not validated, so reads check them).
    pub fn parse_own(bytes: B) -> Result<Self, WireError> {
        let header = Header::parse_own(&bytes)?;
        Ok(Parsed {
            bytes,
            header,
            utf8: false,
        })
    }

    /// The start of a message whose body ends with a byte array, as
    /// [`Header::parse_prefix`]: the header and the offset where the
    /// unvalidated rest starts. `bytes` is kept as it is (the caller keeps
    /// the part it needs with [`Parsed::copied_prefix`]).
    pub fn parse_prefix(bytes: B, n_fds: usize) -> Option<(Self, usize)> {
        let (header, head_len) = Header::parse_prefix(&bytes, n_fds)?;
        Some((
            Parsed {
                bytes,
                header,
                utf8: true,
            },
            head_len,
        ))
    }

    /// The bytes.
    pub fn bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// The bytes' container.
    pub fn raw(&self) -> &B {
        &self.bytes
    }

    /// The header.
    pub fn header(&self) -> &Header {
        &self.header
    }

    /// The message as the router reads it.
    pub fn view(&self) -> MsgRef<'_> {
        MsgRef {
            h: &self.header,
            bytes: &self.bytes,
            utf8: self.utf8,
        }
    }

    /// The same message in other bytes: `make` gets these bytes and returns
    /// a container holding a copy. None if the copy differs (so the header
    /// can never describe bytes it was not validated on).
    pub fn copied<C: StableBytes>(&self, make: impl FnOnce(&[u8]) -> C) -> Option<Parsed<C>> {
        self.copied_prefix(self.bytes.len(), make)
    }

    /// As [`Parsed::copied`], of the first `n` bytes only, which must hold
    /// the whole header (every string field lies before `body_start`).
    pub fn copied_prefix<C: StableBytes>(
        &self,
        n: usize,
        make: impl FnOnce(&[u8]) -> C,
    ) -> Option<Parsed<C>> {
        let src = self
            .bytes
            .get(..n)
            .filter(|_| n >= self.header.body_start)?;
        let bytes = make(src);
        if *bytes != *src {
            return None;
        }
        Some(Parsed {
            bytes,
            header: self.header.clone(),
            utf8: self.utf8,
        })
    }

    /// Gives the bytes up, leaving an empty message (no header fields).
    pub fn take_bytes(&mut self) -> B
    where
        B: Default,
    {
        self.header = Header::default();
        self.utf8 = false;
        std::mem::take(&mut self.bytes)
    }
}

/// A message to read header fields from: a [`Parsed`] one's view, or a
/// header and bytes paired by hand.
#[derive(Clone, Copy, Debug)]
pub struct MsgRef<'a> {
    h: &'a Header,
    bytes: &'a [u8],
    utf8: bool,
}

impl<'a> MsgRef<'a> {
    /// `h` read from `bytes`; every string read checks UTF-8.
    pub fn new(h: &'a Header, bytes: &'a [u8]) -> Self {
        MsgRef {
            h,
            bytes,
            utf8: false,
        }
    }

    /// The header.
    pub fn h(&self) -> &'a Header {
        self.h
    }

    /// The bytes (only the start of a message whose body is spliced).
    pub fn bytes(&self) -> &'a [u8] {
        self.bytes
    }

    fn text(&self, r: &Option<Range<usize>>) -> Option<&'a str> {
        let b = self.bytes.get(r.clone()?)?;
        if self.utf8 {
            // SAFETY: `utf8` is true only in a view of a `Parsed` that
            // `Parsed::parse` or `Parsed::parse_prefix` made (or
            // `Parsed::copied` from one, after comparing the bytes). Those
            // ran `Header::parse`/`parse_prefix` with validation on, which
            // returns a header only if the bytes of every string field's
            // range are UTF-8: `Header::parse_head` accepts a string field
            // only if its name grammar's check in names.rs (`*_bytes`)
            // accepts it, and those grammars admit ASCII bytes only (the
            // test `names::tests::no_grammar_admits_non_ascii` tries every
            // byte from 0x80 in every position); a signature field is
            // validated as type codes, all ASCII. The
            // `Parsed`'s fields are private and change together only in
            // `take_bytes`, which clears `utf8`; `StableBytes` guarantees
            // its bytes still read as they did when they were parsed. So
            // `b`, the bytes of one such range, is UTF-8.
            Some(unsafe { std::str::from_utf8_unchecked(b) })
        } else {
            std::str::from_utf8(b).ok()
        }
    }

    /// PATH
    pub fn path(&self) -> Option<&'a str> {
        self.text(self.h.path_range())
    }
    /// INTERFACE
    pub fn interface(&self) -> Option<&'a str> {
        self.text(self.h.interface_range())
    }
    /// MEMBER
    pub fn member(&self) -> Option<&'a str> {
        self.text(self.h.member_range())
    }
    /// ERROR_NAME
    pub fn error_name(&self) -> Option<&'a str> {
        self.text(self.h.error_name_range())
    }
    /// DESTINATION
    pub fn destination(&self) -> Option<&'a str> {
        self.text(self.h.destination_range())
    }
    /// SENDER as the peer wrote it.
    pub fn sender(&self) -> Option<&'a str> {
        self.text(self.h.sender_range())
    }
    /// SIGNATURE (None when absent, meaning an empty body).
    pub fn signature(&self) -> Option<&'a str> {
        self.text(self.h.signature_range())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::header::{field, msg_type, HeaderBuilder};
    use crate::wire::Endian;

    fn call() -> Vec<u8> {
        let mut b = HeaderBuilder::new(Endian::Little, msg_type::METHOD_CALL, 0, 0, 7);
        b.string(field::PATH, "/a/b");
        b.string(field::INTERFACE, "org.example.I");
        b.string(field::MEMBER, "Ping");
        b.string(field::DESTINATION, "org.example.D");
        b.finish()
    }

    #[test]
    fn parsed_reads_the_fields_it_validated() {
        let p = Parsed::parse(call(), 0).unwrap();
        let v = p.view();
        assert_eq!(v.path(), Some("/a/b"));
        assert_eq!(v.interface(), Some("org.example.I"));
        assert_eq!(v.member(), Some("Ping"));
        assert_eq!(v.destination(), Some("org.example.D"));
        assert_eq!(v.sender(), None);
        assert_eq!(v.signature(), None);
        let own = Parsed::parse_own(call()).unwrap();
        assert_eq!(own.view().member(), Some("Ping"));
    }

    #[test]
    fn a_copy_must_hold_the_same_bytes() {
        let p = Parsed::parse(call(), 0).unwrap();
        assert!(p.copied(|b| b.to_vec()).is_some());
        assert!(p
            .copied(|b| {
                let mut v = b.to_vec();
                let at = v.len() - 9;
                v[at] = 0xff;
                v
            })
            .is_none());
    }

    #[test]
    fn a_prefix_copy_must_hold_the_header() {
        let bytes = call();
        let p = Parsed::parse(&bytes[..], 0).unwrap();
        let body_start = p.header().body_start;
        let head = p.copied_prefix(body_start, |b| b.to_vec()).unwrap();
        assert_eq!(head.view().member(), Some("Ping"));
        assert!(p.copied_prefix(body_start - 1, |b| b.to_vec()).is_none());
        assert!(p.copied_prefix(bytes.len() + 1, |b| b.to_vec()).is_none());
    }

    #[test]
    fn a_header_paired_by_hand_checks_utf8() {
        let bytes = call();
        let h = Header::parse(&bytes, 0).unwrap();
        let mut other = bytes.clone();
        let at = other.windows(4).position(|w| w == b"Ping").unwrap();
        other[at] = 0xff;
        assert_eq!(MsgRef::new(&h, &other).member(), None);
        assert_eq!(MsgRef::new(&h, &bytes).member(), Some("Ping"));
    }

    #[test]
    fn taking_the_bytes_clears_the_fields() {
        let mut p = Parsed::parse(call(), 0).unwrap();
        let b = p.take_bytes();
        assert!(!b.is_empty());
        assert_eq!(p.view().member(), None);
        assert!(p.bytes().is_empty());
    }
}
