//! A small marshaller and reader for the values the bus itself produces and
//! consumes (driver replies, driver arguments, header fields, match-rule
//! argN lookups). Forwarded messages never go through here.
//!
//! Alignment is computed from the start of the buffer, which is always the
//! start of a message or of a body (both 8-aligned in a message).

use super::names::validate_object_path;
use super::signature::{alignment, single_type_len, validate_signature};
use super::{Endian, WireError, MAX_ARRAY_LEN};

/// Maximum total nesting of structs, dict entries and variants that
/// [`Reader::skip`] will follow (the body validator's limit).
const MAX_SKIP_DEPTH: usize = 64;

/// Builds marshalled data in little-endian byte order.
///
/// The writer never fails: callers are responsible for passing values that
/// are valid for their type (strings without NUL, valid object paths and
/// signatures).
#[derive(Debug, Default, Clone)]
pub struct Writer {
    buf: Vec<u8>,
}

/// Marks an open array; pass it back to [`Writer::end_array`].
#[derive(Debug)]
#[must_use]
pub struct ArrayMark {
    len_pos: usize,
    start: usize,
}

impl Writer {
    /// An empty writer.
    pub fn new() -> Writer {
        // Room for the driver's usual bodies (a few names), so they are
        // written without regrowing.
        Writer {
            buf: Vec::with_capacity(128),
        }
    }
    /// Pads with zero bytes to a multiple of `n`.
    pub fn align(&mut self, n: usize) {
        if n > 1 {
            let pad = (n - self.buf.len() % n) % n;
            self.buf.resize(self.buf.len() + pad, 0);
        }
    }
    /// `y`
    pub fn u8(&mut self, v: u8) {
        self.buf.push(v)
    }
    /// `b`
    pub fn bool(&mut self, v: bool) {
        self.u32(u32::from(v))
    }
    /// `n`
    pub fn i16(&mut self, v: i16) {
        self.align(2);
        self.buf.extend_from_slice(&v.to_le_bytes())
    }
    /// `q`
    pub fn u16(&mut self, v: u16) {
        self.align(2);
        self.buf.extend_from_slice(&v.to_le_bytes())
    }
    /// `u`
    pub fn u32(&mut self, v: u32) {
        self.align(4);
        self.buf.extend_from_slice(&v.to_le_bytes())
    }
    /// `i`
    pub fn i32(&mut self, v: i32) {
        self.align(4);
        self.buf.extend_from_slice(&v.to_le_bytes())
    }
    /// `h` (an index into the message's file descriptors)
    pub fn unix_fd(&mut self, index: u32) {
        self.u32(index)
    }
    /// `t`
    pub fn u64(&mut self, v: u64) {
        self.align(8);
        self.buf.extend_from_slice(&v.to_le_bytes())
    }
    /// `x`
    pub fn i64(&mut self, v: i64) {
        self.align(8);
        self.buf.extend_from_slice(&v.to_le_bytes())
    }
    /// `d`
    pub fn f64(&mut self, v: f64) {
        self.align(8);
        self.buf.extend_from_slice(&v.to_le_bytes())
    }
    /// `s`
    pub fn string(&mut self, v: &str) {
        // A string longer than u32::MAX cannot be in a message anyway.
        let len = u32::try_from(v.len()).unwrap_or(u32::MAX);
        self.u32(len);
        self.buf.extend_from_slice(v.as_bytes());
        self.buf.push(0);
    }
    /// `o`
    pub fn object_path(&mut self, v: &str) {
        self.string(v)
    }
    /// `g` (at most 255 bytes; longer input is truncated)
    pub fn signature(&mut self, v: &str) {
        let bytes = &v.as_bytes()[..v.len().min(255)];
        self.buf.push(bytes.len() as u8);
        self.buf.extend_from_slice(bytes);
        self.buf.push(0);
    }
    /// Starts a variant: writes the signature `sig`; the caller then writes one value of that type.
    pub fn variant(&mut self, sig: &str) {
        self.signature(sig);
        self.align(sig.as_bytes().first().map_or(1, |&c| alignment(c)));
    }
    /// Starts an array whose elements have alignment `elem_align`
    /// (8 for structs and dict entries).
    pub fn begin_array(&mut self, elem_align: usize) -> ArrayMark {
        self.align(4);
        let len_pos = self.buf.len();
        self.buf.extend_from_slice(&[0; 4]);
        self.align(elem_align);
        ArrayMark {
            len_pos,
            start: self.buf.len(),
        }
    }
    /// Closes an array, patching its length.
    pub fn end_array(&mut self, mark: ArrayMark) {
        let len = self.buf.len().saturating_sub(mark.start);
        self.patch_u32(mark.len_pos, u32::try_from(len).unwrap_or(u32::MAX));
    }
    /// Starts a struct or dict entry (aligns to 8).
    pub fn begin_struct(&mut self) {
        self.align(8)
    }
    /// Appends raw bytes (caller ensures alignment).
    pub fn raw(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes)
    }
    /// Current length.
    pub fn len(&self) -> usize {
        self.buf.len()
    }
    /// Whether nothing was written.
    pub fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }
    /// Patches a u32 written earlier at `pos` (little endian). Does nothing
    /// if `pos..pos + 4` is not inside what was written.
    pub fn patch_u32(&mut self, pos: usize, v: u32) {
        if let Some(slot) = pos
            .checked_add(4)
            .and_then(|end| self.buf.get_mut(pos..end))
        {
            slot.copy_from_slice(&v.to_le_bytes());
        }
    }
    /// The bytes written.
    pub fn into_bytes(self) -> Vec<u8> {
        self.buf
    }
    /// The bytes written so far.
    pub fn as_bytes(&self) -> &[u8] {
        &self.buf
    }
}

/// Reads marshalled values from `buf` in byte order `endian`. Every method
/// returns an error (never panics) on truncated or invalid data.
#[derive(Debug, Clone)]
pub struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
    endian: Endian,
}

impl<'a> Reader<'a> {
    /// A reader at offset 0 of `buf` (which must start 8-aligned).
    pub fn new(buf: &'a [u8], endian: Endian) -> Reader<'a> {
        Reader {
            buf,
            pos: 0,
            endian,
        }
    }
    /// Current offset.
    pub fn pos(&self) -> usize {
        self.pos
    }
    /// The byte order being read.
    pub fn endian(&self) -> Endian {
        self.endian
    }
    /// Whether every byte was consumed.
    pub fn at_end(&self) -> bool {
        self.pos >= self.buf.len()
    }
    /// Number of bytes not yet consumed.
    pub fn remaining(&self) -> usize {
        self.buf.len().saturating_sub(self.pos)
    }
    /// Skips padding to a multiple of `n`; the padding must be present and zero.
    pub fn align(&mut self, n: usize) -> Result<(), WireError> {
        if n <= 1 {
            return Ok(());
        }
        let pad = (n - self.pos % n) % n;
        let pad_bytes = self.take(pad).map_err(|_| WireError("truncated padding"))?;
        if pad_bytes.iter().any(|&b| b != 0) {
            return Err(WireError("nonzero alignment padding"));
        }
        Ok(())
    }
    /// Consumes `n` bytes.
    fn take(&mut self, n: usize) -> Result<&'a [u8], WireError> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|&e| e <= self.buf.len())
            .ok_or(WireError("not enough data"))?;
        let s = &self.buf[self.pos..end];
        self.pos = end;
        Ok(s)
    }
    fn fixed<const N: usize>(&mut self) -> Result<[u8; N], WireError> {
        self.align(N)?;
        let mut a = [0u8; N];
        a.copy_from_slice(self.take(N)?);
        if self.endian == Endian::Big {
            a.reverse();
        }
        // `a` is now little endian.
        Ok(a)
    }
    /// `y`
    pub fn u8(&mut self) -> Result<u8, WireError> {
        Ok(self.take(1)?[0])
    }
    /// `b` (must be 0 or 1)
    pub fn bool(&mut self) -> Result<bool, WireError> {
        match self.u32()? {
            0 => Ok(false),
            1 => Ok(true),
            _ => Err(WireError("boolean is not 0 or 1")),
        }
    }
    /// `n`
    pub fn i16(&mut self) -> Result<i16, WireError> {
        Ok(i16::from_le_bytes(self.fixed()?))
    }
    /// `q`
    pub fn u16(&mut self) -> Result<u16, WireError> {
        Ok(u16::from_le_bytes(self.fixed()?))
    }
    /// `u`
    pub fn u32(&mut self) -> Result<u32, WireError> {
        Ok(u32::from_le_bytes(self.fixed()?))
    }
    /// `i`
    pub fn i32(&mut self) -> Result<i32, WireError> {
        Ok(i32::from_le_bytes(self.fixed()?))
    }
    /// `h` (the index into the message's file descriptors; not range-checked)
    pub fn unix_fd(&mut self) -> Result<u32, WireError> {
        self.u32()
    }
    /// `t`
    pub fn u64(&mut self) -> Result<u64, WireError> {
        Ok(u64::from_le_bytes(self.fixed()?))
    }
    /// `x`
    pub fn i64(&mut self) -> Result<i64, WireError> {
        Ok(i64::from_le_bytes(self.fixed()?))
    }
    /// `d`
    pub fn f64(&mut self) -> Result<f64, WireError> {
        Ok(f64::from_le_bytes(self.fixed()?))
    }
    /// Contents of a string-like value of `len` bytes followed by a NUL.
    fn nul_terminated(&mut self, len: usize) -> Result<&'a str, WireError> {
        let bytes = self.take(len)?;
        if self.take(1).map_err(|_| WireError("string missing NUL"))? != [0] {
            return Err(WireError("string missing NUL"));
        }
        if bytes.contains(&0) {
            return Err(WireError("string contains NUL"));
        }
        std::str::from_utf8(bytes).map_err(|_| WireError("string is not valid UTF-8"))
    }
    /// `s` (also checks UTF-8 and the trailing NUL)
    pub fn string(&mut self) -> Result<&'a str, WireError> {
        let len = self.u32()?;
        let len = usize::try_from(len).map_err(|_| WireError("not enough data"))?;
        self.nul_terminated(len)
    }
    /// `o`
    pub fn object_path(&mut self) -> Result<&'a str, WireError> {
        let s = self.string()?;
        validate_object_path(s)?;
        Ok(s)
    }
    /// `g`
    pub fn signature(&mut self) -> Result<&'a str, WireError> {
        let len = self.u8()?;
        let s = self.nul_terminated(usize::from(len))?;
        validate_signature(s.as_bytes())?;
        Ok(s)
    }
    /// Reads the signature of a variant, checks that it is one single
    /// complete type, and aligns to that type; the caller then reads one
    /// value of the returned type.
    pub fn variant(&mut self) -> Result<&'a str, WireError> {
        let sig = self.signature()?;
        let b = sig.as_bytes();
        let first = *b.first().ok_or(WireError("empty variant signature"))?;
        if single_type_len(b)? != b.len() {
            return Err(WireError("variant signature holds more than one type"));
        }
        self.align(alignment(first))?;
        Ok(sig)
    }
    /// Reads an array length and aligns to `elem_align`; returns the offset
    /// where the array ends. Loop `while r.pos() < end`.
    pub fn begin_array(&mut self, elem_align: usize) -> Result<usize, WireError> {
        let len = self.u32()?;
        if len > MAX_ARRAY_LEN {
            return Err(WireError("array length exceeds maximum"));
        }
        self.align(elem_align)?;
        let end = self
            .pos
            .checked_add(len as usize)
            .filter(|&e| e <= self.buf.len())
            .ok_or(WireError("array length past end of data"))?;
        Ok(end)
    }
    /// Skips one value of the single complete type at the start of `sig`
    /// (already validated).
    pub fn skip(&mut self, sig: &[u8]) -> Result<(), WireError> {
        self.skip_depth(sig, 0)
    }

    fn skip_depth(&mut self, sig: &[u8], depth: usize) -> Result<(), WireError> {
        let code = *sig.first().ok_or(WireError("missing type in signature"))?;
        match code {
            b'y' => self.u8().map(drop),
            b'b' => self.bool().map(drop),
            b'n' | b'q' => self.u16().map(drop),
            b'i' | b'u' | b'h' => self.u32().map(drop),
            b'x' | b't' | b'd' => self.u64().map(drop),
            b's' => self.string().map(drop),
            b'o' => self.object_path().map(drop),
            b'g' => self.signature().map(drop),
            b'a' => {
                let elem = sig.get(1).copied().unwrap_or(0);
                let end = self.begin_array(alignment(elem))?;
                self.pos = end;
                Ok(())
            }
            b'(' | b'{' => {
                if depth >= MAX_SKIP_DEPTH {
                    return Err(WireError("nested too deeply"));
                }
                let len = single_type_len(sig)?;
                let mut fields = sig
                    .get(1..len.saturating_sub(1))
                    .ok_or(WireError("bad signature"))?;
                self.align(8)?;
                while !fields.is_empty() {
                    let n = single_type_len(fields)?;
                    self.skip_depth(fields, depth + 1)?;
                    fields = &fields[n..];
                }
                Ok(())
            }
            b'v' => {
                if depth >= MAX_SKIP_DEPTH {
                    return Err(WireError("nested too deeply"));
                }
                let inner = self.variant()?;
                self.skip_depth(inner.as_bytes(), depth + 1)
            }
            _ => Err(WireError("unknown type code in signature")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writer_layout() {
        let mut w = Writer::new();
        w.u8(7);
        w.u32(0x01020304);
        w.string("ab");
        w.signature("a{sv}");
        w.u64(1);
        assert_eq!(
            w.as_bytes(),
            &[
                7, 0, 0, 0, 4, 3, 2, 1, // y, pad, u
                2, 0, 0, 0, b'a', b'b', 0, // s
                5, b'a', b'{', b's', b'v', b'}', 0, // g
                0, 0, // pad to 24
                1, 0, 0, 0, 0, 0, 0, 0, // t
            ][..]
        );
    }

    #[test]
    fn empty_array_of_structs_pads() {
        let mut w = Writer::new();
        w.u8(1);
        let m = w.begin_array(8);
        w.end_array(m);
        // y, pad to 4, len 0, pad to 8.
        assert_eq!(w.as_bytes(), &[1, 0, 0, 0, 0, 0, 0, 0][..]);
        let mut w = Writer::new();
        let m = w.begin_array(8);
        w.end_array(m);
        assert_eq!(w.len(), 8);
    }

    #[test]
    fn array_length_excludes_padding() {
        let mut w = Writer::new();
        let m = w.begin_array(8);
        w.u64(5);
        w.u64(6);
        w.end_array(m);
        assert_eq!(&w.as_bytes()[..4], &16u32.to_le_bytes());
        assert_eq!(w.len(), 24);
    }

    #[test]
    fn round_trip() {
        let mut w = Writer::new();
        w.u8(0xff);
        w.bool(true);
        w.bool(false);
        w.i16(-2);
        w.u16(65535);
        w.i32(-5);
        w.u32(42);
        w.i64(-1 << 40);
        w.u64(u64::MAX);
        w.f64(2.5);
        w.unix_fd(3);
        w.string("héllo");
        w.object_path("/org/freedesktop/DBus");
        w.signature("a{sv}");
        // a{sv} with two entries
        let m = w.begin_array(8);
        w.begin_struct();
        w.string("k1");
        w.variant("u");
        w.u32(9);
        w.begin_struct();
        w.string("k2");
        w.variant("as");
        let m2 = w.begin_array(4);
        w.string("x");
        w.string("yz");
        w.end_array(m2);
        w.end_array(m);
        w.variant("(st)");
        w.begin_struct();
        w.string("s");
        w.u64(7);
        w.string("end");

        let bytes = w.into_bytes();
        let mut r = Reader::new(&bytes, Endian::Little);
        assert_eq!(r.u8(), Ok(0xff));
        assert_eq!(r.bool(), Ok(true));
        assert_eq!(r.bool(), Ok(false));
        assert_eq!(r.i16(), Ok(-2));
        assert_eq!(r.u16(), Ok(65535));
        assert_eq!(r.i32(), Ok(-5));
        assert_eq!(r.u32(), Ok(42));
        assert_eq!(r.i64(), Ok(-1 << 40));
        assert_eq!(r.u64(), Ok(u64::MAX));
        assert_eq!(r.f64(), Ok(2.5));
        assert_eq!(r.unix_fd(), Ok(3));
        assert_eq!(r.string(), Ok("héllo"));
        assert_eq!(r.object_path(), Ok("/org/freedesktop/DBus"));
        assert_eq!(r.signature(), Ok("a{sv}"));
        let end = r.begin_array(8).unwrap();
        let mut keys = Vec::new();
        while r.pos() < end {
            r.align(8).unwrap();
            keys.push(r.string().unwrap());
            let sig = r.variant().unwrap();
            match sig {
                "u" => assert_eq!(r.u32(), Ok(9)),
                "as" => {
                    let e2 = r.begin_array(4).unwrap();
                    let mut v = Vec::new();
                    while r.pos() < e2 {
                        v.push(r.string().unwrap());
                    }
                    assert_eq!(v, ["x", "yz"]);
                }
                other => panic!("unexpected {other}"),
            }
        }
        assert_eq!(r.pos(), end);
        assert_eq!(keys, ["k1", "k2"]);
        assert_eq!(r.variant(), Ok("(st)"));
        r.align(8).unwrap();
        assert_eq!(r.string(), Ok("s"));
        assert_eq!(r.u64(), Ok(7));
        assert_eq!(r.string(), Ok("end"));
        assert!(r.at_end());
        assert_eq!(r.u8(), Err(WireError("not enough data")));
    }

    #[test]
    fn skip_everything() {
        let mut w = Writer::new();
        w.u8(1);
        w.string("abc");
        let m = w.begin_array(8);
        w.begin_struct();
        w.string("k");
        w.variant("v");
        w.variant("ai");
        let m2 = w.begin_array(4);
        w.i32(1);
        w.i32(2);
        w.end_array(m2);
        w.end_array(m);
        w.begin_struct();
        w.i16(1);
        w.f64(1.0);
        w.signature("ss");
        w.u32(0xdead);
        let bytes = w.into_bytes();
        let mut r = Reader::new(&bytes, Endian::Little);
        for sig in ["y", "s", "a{sv}", "(ndg)"] {
            r.skip(sig.as_bytes()).unwrap();
        }
        assert_eq!(r.u32(), Ok(0xdead));
        assert!(r.at_end());
    }

    #[test]
    fn big_endian_reads() {
        let bytes = [
            0, 0, 0, 3, b'a', b'b', b'c', 0, // s
            0, 0, 0, 0, 0, 0, 0, 9, // t
            0, 1, 0, 0, 0, 0, 0, 1, // q, pad, b
            0, 0, 0, 8, 0, 0, 0, 0, // array len 8, pad to 8
            0, 0, 0, 0, 0, 0, 0, 2, // t element
        ];
        let mut r = Reader::new(&bytes, Endian::Big);
        assert_eq!(r.string(), Ok("abc"));
        assert_eq!(r.u64(), Ok(9));
        assert_eq!(r.u16(), Ok(1));
        assert_eq!(r.bool(), Ok(true));
        let end = r.begin_array(8).unwrap();
        assert_eq!(end, 40);
        assert_eq!(r.pos(), 32);
        assert_eq!(r.u64(), Ok(2));
        assert!(r.at_end());
        let mut r = Reader::new(&bytes, Endian::Big);
        r.skip(b"s").unwrap();
        r.skip(b"t").unwrap();
        r.skip(b"q").unwrap();
        r.skip(b"b").unwrap();
        r.skip(b"at").unwrap();
        assert!(r.at_end());
    }

    #[test]
    fn reader_rejects() {
        let r = |b: &'static [u8]| Reader::new(b, Endian::Little);
        assert!(r(&[2, 0, 0, 0]).bool().is_err());
        assert!(r(&[1, 0, 0]).u32().is_err());
        assert!(r(&[0, 1, 0, 0, 0, 0, 0, 0]).u8().and(Ok(())).is_ok());
        // nonzero padding
        let mut x = r(&[0, 1, 0, 0, 5, 0, 0, 0]);
        x.u8().unwrap();
        assert_eq!(x.u32(), Err(WireError("nonzero alignment padding")));
        // string: missing NUL, interior NUL, bad UTF-8, length past end
        assert_eq!(
            r(&[2, 0, 0, 0, b'a', b'b', b'c']).string(),
            Err(WireError("string missing NUL"))
        );
        assert_eq!(
            r(&[2, 0, 0, 0, b'a', b'b']).string(),
            Err(WireError("string missing NUL"))
        );
        assert_eq!(
            r(&[2, 0, 0, 0, b'a', 0, 0]).string(),
            Err(WireError("string contains NUL"))
        );
        assert_eq!(
            r(&[2, 0, 0, 0, 0xc3, 0x28, 0]).string(),
            Err(WireError("string is not valid UTF-8"))
        );
        assert!(r(&[0xff, 0xff, 0xff, 0xff, b'a', 0]).string().is_err());
        assert!(r(&[2, 0, 0, 0, b'a', b'/', 0]).object_path().is_err());
        assert!(r(&[1, b'(', 0]).signature().is_err());
        assert!(r(&[2, b'i', b'i', 0]).variant().is_err());
        assert!(r(&[0, 0]).variant().is_err());
        // array length past end / too long
        assert!(r(&[8, 0, 0, 0, 1, 2, 3, 4]).begin_array(4).is_err());
        assert!(r(&[0, 0, 0, 5]).begin_array(1).is_err());
        // empty array of 8-aligned elements needs its padding
        assert!(r(&[0, 0, 0, 0]).begin_array(8).is_err());
        assert_eq!(r(&[0, 0, 0, 0, 0, 0, 0, 0]).begin_array(8), Ok(8));
        // skip with bad or unknown signatures
        assert!(r(&[0; 8]).skip(b"").is_err());
        assert!(r(&[0; 8]).skip(b"w").is_err());
        assert!(r(&[0; 8]).skip(b"(i").is_err());
        assert!(r(&[0; 8]).skip(b"a").is_ok()); // len 0, element alignment 1
    }

    #[test]
    fn skip_bounded_recursion() {
        // 100 000 nested variants must give an error, not a stack overflow.
        let mut bytes = Vec::new();
        for _ in 0..100_000 {
            bytes.extend_from_slice(&[1, b'v', 0]);
        }
        let mut r = Reader::new(&bytes, Endian::Little);
        assert_eq!(r.skip(b"v"), Err(WireError("nested too deeply")));
    }

    #[test]
    fn patch_out_of_range_is_ignored() {
        let mut w = Writer::new();
        w.u8(1);
        w.patch_u32(0, 5);
        w.patch_u32(usize::MAX, 5);
        assert_eq!(w.as_bytes(), &[1]);
    }
}
