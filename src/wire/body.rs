//! Validation of a message body against its signature, in one pass and
//! without allocating.
//!
//! The checks mirror libdbus's `validate_body_helper`, with one deliberate
//! addition: the length of an array of fixed-size elements must be a
//! multiple of the element size (libdbus skips such arrays without looking).
//!
//! A unix fd (`h`) value is not checked against the message's UNIX_FDS
//! count. The specification says the index must be below it, but
//! dbus-daemon does not check: it routes the message and leaves the check to
//! the recipient's library (libdbus and dbus-python refuse to demarshal such
//! a value). busbar follows dbus-daemon, so such a sender is not
//! disconnected.

use super::names::validate_object_path;
use super::signature::{alignment, fixed_size, single_type_len, validate_signature};
use super::sigprog::{with_compiled, Op, Program};
use super::{Endian, WireError, MAX_ARRAY_LEN};

/// Maximum total nesting of arrays, structs, dict entries and variants in a
/// body (libdbus: twice `DBUS_MAXIMUM_TYPE_RECURSION_DEPTH`).
pub const MAX_BODY_DEPTH: usize = 64;

/// Checks that `body` is exactly a valid marshalling of values of type `sig`
/// in byte order `endian`: alignment padding is zero, booleans are 0 or 1,
/// strings are valid UTF-8 without interior NUL and are NUL-terminated,
/// object paths and signatures are valid, array lengths are <= 64 MiB and
/// consistent with their elements, variants hold one valid single complete
/// type, total nesting (arrays + structs + variants) stays within 64, and
/// no bytes are left over. Unix fd indices are not range-checked (see the
/// module documentation). The body starts at an 8-aligned offset of the
/// message.
///
/// The cost is linear in the body's length whatever the signature: the
/// signature (and each variant's) is compiled once into a [`Program`].
pub fn validate_body(sig: &[u8], body: &[u8], endian: Endian) -> Result<(), WireError> {
    if validate_leading_values(sig, body, endian)? != body.len() {
        return Err(TRAILING);
    }
    Ok(())
}

/// Validates the values of type `sig` at the start of `prefix` as
/// [`validate_body`] does, and returns the offset where they end; what
/// follows is not looked at. `prefix` starts at the body's start (an
/// 8-aligned offset of the message). Too few bytes is an error.
pub fn validate_leading_values(
    sig: &[u8],
    prefix: &[u8],
    endian: Endian,
) -> Result<usize, WireError> {
    if sig.is_empty() {
        // No values (most method returns): nothing to compile.
        return Ok(0);
    }
    let mut v = Validator {
        buf: prefix,
        pos: 0,
        endian,
    };
    with_compiled(sig, |prog| v.run(prog.ops(), 0, prog.ops().len(), 0))??;
    Ok(v.pos)
}

const TRAILING: WireError = WireError("body has trailing bytes");

struct Validator<'a> {
    buf: &'a [u8],
    pos: usize,
    endian: Endian,
}

const NOT_ENOUGH: WireError = WireError("not enough data in body");
const TOO_DEEP: WireError = WireError("body nested too deeply");

impl<'a> Validator<'a> {
    /// Skips zero padding up to a multiple of `n`.
    fn pad(&mut self, n: usize) -> Result<(), WireError> {
        let target = self.pos.next_multiple_of(n.max(1));
        let pad = self.buf.get(self.pos..target).ok_or(NOT_ENOUGH)?;
        if pad.iter().any(|&b| b != 0) {
            return Err(WireError("alignment padding not zero"));
        }
        self.pos = target;
        Ok(())
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], WireError> {
        let end = self.pos.checked_add(n).ok_or(NOT_ENOUGH)?;
        let s = self.buf.get(self.pos..end).ok_or(NOT_ENOUGH)?;
        self.pos = end;
        Ok(s)
    }

    fn u32_at(&self, b: &[u8]) -> u32 {
        let a = [b[0], b[1], b[2], b[3]];
        match self.endian {
            Endian::Little => u32::from_le_bytes(a),
            Endian::Big => u32::from_be_bytes(a),
        }
    }

    fn u32(&mut self) -> Result<u32, WireError> {
        self.pad(4)?;
        let b = self.take(4)?;
        Ok(self.u32_at(b))
    }

    /// Validates a fixed-size value whose bytes are `b` (type `code`).
    fn check_fixed(&self, code: u8, b: &[u8]) -> Result<(), WireError> {
        match code {
            b'b' if self.u32_at(b) > 1 => Err(WireError("boolean is not 0 or 1")),
            _ => Ok(()),
        }
    }

    /// Validates the `len` bytes of a string-like value and its NUL.
    fn string_bytes(&mut self, len: usize) -> Result<&'a [u8], WireError> {
        let s = self
            .take(len)
            .map_err(|_| WireError("string length out of bounds"))?;
        match self.take(1) {
            Ok([0]) => Ok(s),
            _ => Err(WireError("string missing NUL")),
        }
    }

    /// Runs the steps `ops[start..stop]` (values in sequence) inside
    /// containers that add `base` to their static depths.
    fn run(&mut self, ops: &[Op], start: usize, stop: usize, base: usize) -> Result<(), WireError> {
        let mut i = start;
        while i < stop {
            let op = *ops.get(i).ok_or(WireError("bad signature"))?;
            i += 1;
            match op {
                Op::Enter(outer, inner) => {
                    if base + usize::from(outer) >= MAX_BODY_DEPTH {
                        return Err(TOO_DEEP);
                    }
                    self.pad(8)?;
                    // The inner structs start where the outer one does, so
                    // their padding is empty; only their depth can fail.
                    if base + usize::from(inner) >= MAX_BODY_DEPTH {
                        return Err(TOO_DEEP);
                    }
                }
                Op::Array { depth, elem, end } => {
                    let end = usize::from(end);
                    if end < i || end > stop {
                        return Err(WireError("bad signature"));
                    }
                    self.array(ops, (i, end), elem, base + usize::from(depth), base)?;
                    i = end;
                }
                Op::Variant(depth) => self.variant(base + usize::from(depth))?,
                _ => self.basic(op)?,
            }
        }
        Ok(())
    }

    /// One basic value.
    fn basic(&mut self, op: Op) -> Result<(), WireError> {
        match op {
            Op::Fixed(code) => {
                let size = fixed_size(code).ok_or(WireError("bad signature"))?;
                self.pad(size)?;
                let b = self.take(size)?;
                self.check_fixed(code, b)
            }
            Op::Str => {
                let len = self.u32()? as usize;
                let s = self.string_bytes(len)?;
                if s.contains(&0) {
                    return Err(WireError("string contains NUL"));
                }
                std::str::from_utf8(s).map_err(|_| WireError("string is not valid UTF-8"))?;
                Ok(())
            }
            Op::Path => {
                let len = self.u32()? as usize;
                let s = self.string_bytes(len)?;
                let s = std::str::from_utf8(s).map_err(|_| WireError("bad object path"))?;
                validate_object_path(s).map_err(|_| WireError("bad object path"))
            }
            Op::Sig => {
                let len = usize::from(*self.take(1)?.first().ok_or(NOT_ENOUGH)?);
                let s = self.string_bytes(len)?;
                validate_signature(s)
            }
            _ => Err(WireError("bad signature")),
        }
    }

    /// A variant at nesting `depth`: its signature, then one value of it.
    fn variant(&mut self, depth: usize) -> Result<(), WireError> {
        let len = usize::from(*self.take(1)?.first().ok_or(NOT_ENOUGH)?);
        let inner = self.string_bytes(len)?;
        validate_signature(inner).map_err(|_| WireError("bad variant signature"))?;
        let first = *inner.first().ok_or(WireError("empty variant signature"))?;
        if single_type_len(inner)? != inner.len() {
            return Err(WireError("variant signature holds more than one type"));
        }
        if depth >= MAX_BODY_DEPTH {
            return Err(TOO_DEEP);
        }
        self.pad(alignment(first))?;
        match inner {
            // The common case needs no compiled program.
            [b's'] => self.basic(Op::Str),
            [b'o'] => self.basic(Op::Path),
            [b'g'] => self.basic(Op::Sig),
            [b'v'] => self.variant(depth + 1),
            [c] => self.basic(Op::Fixed(*c)),
            _ => {
                let prog = Program::compile(inner)?;
                self.run(prog.ops(), 0, prog.ops().len(), depth + 1)
            }
        }
    }

    /// An array at nesting `depth` whose element type starts with `code`
    /// and whose element's steps are `ops[start..stop]` (at static depths
    /// + `base`).
    fn array(
        &mut self,
        ops: &[Op],
        (start, stop): (usize, usize),
        code: u8,
        depth: usize,
        base: usize,
    ) -> Result<(), WireError> {
        let len = self.u32()?;
        self.pad(alignment(code))?;
        if len as usize > self.buf.len() - self.pos {
            return Err(WireError("array length out of bounds"));
        }
        if len == 0 {
            return Ok(());
        }
        if len > MAX_ARRAY_LEN {
            return Err(WireError("array length exceeds maximum"));
        }
        let end = self.pos + len as usize;
        if let Some(size) = fixed_size(code) {
            let data = self.take(len as usize)?;
            if data.len() % size != 0 {
                return Err(WireError("array length incorrect"));
            }
            if matches!(code, b'b' | b'h') {
                for chunk in data.chunks_exact(size) {
                    self.check_fixed(code, chunk)?;
                }
            }
            return Ok(());
        }
        if depth >= MAX_BODY_DEPTH {
            return Err(TOO_DEEP);
        }
        while self.pos < end {
            self.run(ops, start, stop, base)?;
        }
        if self.pos != end {
            return Err(WireError("array length incorrect"));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::marshal::Writer;

    const LE: Endian = Endian::Little;

    fn ok(sig: &str, body: &[u8]) {
        assert_eq!(validate_body(sig.as_bytes(), body, LE), Ok(()), "{sig}");
        let be = to_big_endian(sig.as_bytes(), body);
        assert_eq!(
            validate_body(sig.as_bytes(), &be, Endian::Big),
            Ok(()),
            "{sig} (big endian)"
        );
    }

    fn bad(sig: &str, body: &[u8], why: &'static str) {
        assert_eq!(
            validate_body(sig.as_bytes(), body, LE),
            Err(WireError(why)),
            "{sig} {body:?}"
        );
    }

    /// Converts a valid little-endian body to big endian by reversing every
    /// multi-byte integer in place (padding is identical in both orders).
    fn to_big_endian(sig: &[u8], body: &[u8]) -> Vec<u8> {
        fn swap(b: &mut [u8], pos: &mut usize, n: usize) -> u64 {
            *pos = pos.next_multiple_of(n);
            let s = &mut b[*pos..*pos + n];
            let mut v = [0u8; 8];
            v[..n].copy_from_slice(s);
            s.reverse();
            *pos += n;
            u64::from_le_bytes(v)
        }
        fn values(b: &mut [u8], pos: &mut usize, mut sig: &[u8]) {
            while !sig.is_empty() {
                let n = single_type_len(sig).unwrap();
                value(b, pos, &sig[..n]);
                sig = &sig[n..];
            }
        }
        fn value(b: &mut [u8], pos: &mut usize, sig: &[u8]) {
            match sig[0] {
                b'y' => *pos += 1,
                c if fixed_size(c).is_some() => {
                    swap(b, pos, fixed_size(c).unwrap());
                }
                b's' | b'o' => *pos += swap(b, pos, 4) as usize + 1,
                b'g' => *pos += b[*pos] as usize + 2,
                b'v' => {
                    let len = b[*pos] as usize;
                    let inner = b[*pos + 1..*pos + 1 + len].to_vec();
                    *pos += len + 2;
                    value(b, pos, &inner);
                }
                b'(' | b'{' => {
                    *pos = pos.next_multiple_of(8);
                    values(b, pos, &sig[1..sig.len() - 1]);
                }
                b'a' => {
                    let len = swap(b, pos, 4) as usize;
                    *pos = pos.next_multiple_of(alignment(sig[1]));
                    let end = *pos + len;
                    while *pos < end {
                        value(b, pos, &sig[1..]);
                    }
                }
                c => panic!("bad code {c}"),
            }
        }
        let mut b = body.to_vec();
        let mut pos = 0;
        values(&mut b, &mut pos, sig);
        assert_eq!(pos, b.len());
        b
    }

    fn w(f: impl FnOnce(&mut Writer)) -> Vec<u8> {
        let mut w = Writer::new();
        f(&mut w);
        w.into_bytes()
    }

    #[test]
    fn empty() {
        ok("", &[]);
        bad("", &[0], "body has trailing bytes");
        bad("y", &[], "not enough data in body");
        bad("s", &[], "not enough data in body");
    }

    #[test]
    fn basic_types() {
        let body = w(|w| {
            w.u8(1);
            w.bool(true);
            w.i16(-1);
            w.u16(2);
            w.i32(3);
            w.u32(4);
            w.i64(5);
            w.u64(6);
            w.f64(7.5);
            w.unix_fd(3);
            w.string("str ✓");
            w.object_path("/a/b");
            w.signature("a{sv}(i)");
            w.u8(9);
        });
        ok("ybnqiuxtdhsogy", &body);
    }

    #[test]
    fn containers() {
        // a{sv} with nested variants, structs, arrays and dicts
        let body = w(|w| {
            let m = w.begin_array(8);
            w.begin_struct();
            w.string("a");
            w.variant("v");
            w.variant("v");
            w.variant("(ybt)");
            w.begin_struct();
            w.u8(1);
            w.bool(false);
            w.u64(2);
            w.begin_struct();
            w.string("b");
            w.variant("a{oas}");
            let m2 = w.begin_array(8);
            w.begin_struct();
            w.object_path("/");
            let m3 = w.begin_array(4);
            w.string("x");
            w.string("");
            w.end_array(m3);
            w.begin_struct();
            w.object_path("/x");
            let m3 = w.begin_array(4);
            w.end_array(m3);
            w.end_array(m2);
            w.begin_struct();
            w.string("c");
            w.variant("at");
            let m2 = w.begin_array(8);
            w.end_array(m2);
            w.end_array(m);
            w.u8(7);
        });
        ok("a{sv}y", &body);

        // struct arrays, byte arrays, bool arrays, fd arrays, empty arrays
        let body = w(|w| {
            w.u8(0);
            let m = w.begin_array(8);
            for i in 0..3 {
                w.begin_struct();
                w.u8(i);
                w.string("s");
            }
            w.end_array(m);
            let m = w.begin_array(1);
            w.raw(b"bytes");
            w.end_array(m);
            let m = w.begin_array(4);
            w.bool(true);
            w.bool(false);
            w.end_array(m);
            let m = w.begin_array(4);
            w.unix_fd(0);
            w.unix_fd(3);
            w.end_array(m);
            let m = w.begin_array(8);
            w.end_array(m);
            let m = w.begin_array(8);
            w.u64(1);
            w.end_array(m);
            let m = w.begin_array(2);
            w.u16(1);
            w.end_array(m);
            let m = w.begin_array(4);
            let m2 = w.begin_array(4);
            w.i32(1);
            w.end_array(m2);
            let m2 = w.begin_array(4);
            w.end_array(m2);
            w.end_array(m);
        });
        ok("ya(ys)ayabaha(ii)atanaai", &body);

        // a{yg}, a{ds}: every basic type can be a key
        let body = w(|w| {
            let m = w.begin_array(8);
            w.begin_struct();
            w.u8(1);
            w.signature("g");
            w.end_array(m);
            let m = w.begin_array(8);
            w.begin_struct();
            w.f64(1.0);
            w.string("d");
            w.end_array(m);
        });
        ok("a{yg}a{ds}", &body);
    }

    #[test]
    fn empty_array_of_8_aligned_needs_padding() {
        ok("at", &[0, 0, 0, 0, 0, 0, 0, 0]);
        ok("a(i)", &[0, 0, 0, 0, 0, 0, 0, 0]);
        bad("at", &[0, 0, 0, 0], "not enough data in body");
        bad("a{sv}", &[0, 0, 0, 0], "not enough data in body");
        bad(
            "at",
            &[0, 0, 0, 0, 1, 0, 0, 0],
            "alignment padding not zero",
        );
        // after a byte the length is padded too
        ok("yai", &[1, 0, 0, 0, 0, 0, 0, 0]);
        bad(
            "yai",
            &[1, 0, 1, 0, 0, 0, 0, 0],
            "alignment padding not zero",
        );
    }

    #[test]
    fn padding() {
        bad(
            "yu",
            &[1, 1, 0, 0, 5, 0, 0, 0],
            "alignment padding not zero",
        );
        bad(
            "yt",
            &[1, 0, 0, 0, 0, 0, 0, 9, 5, 0, 0, 0, 0, 0, 0, 0],
            "alignment padding not zero",
        );
        bad(
            "y(y)",
            &[1, 0, 0, 0, 0, 0, 0, 1, 5],
            "alignment padding not zero",
        );
        bad(
            "yv",
            &[1, 1, b't', 0, 1, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0],
            "alignment padding not zero",
        );
        ok("yv", &[1, 1, b'u', 0, 7, 0, 0, 0]);
        ok("yv", &[1, 1, b't', 0, 0, 0, 0, 0, 7, 0, 0, 0, 0, 0, 0, 0]);
        bad("yn", &[1, 1, 0, 0], "alignment padding not zero");
        // padding that runs past the end
        bad("yu", &[1, 0, 0], "not enough data in body");
        bad("u", &[1, 0, 0], "not enough data in body");
        bad("t", &[1, 0, 0, 0, 0, 0, 0], "not enough data in body");
    }

    #[test]
    fn booleans() {
        ok("b", &[1, 0, 0, 0]);
        ok("b", &[0, 0, 0, 0]);
        bad("b", &[2, 0, 0, 0], "boolean is not 0 or 1");
        bad("b", &[0, 0, 0, 1], "boolean is not 0 or 1");
        assert_eq!(validate_body(b"b", &[0, 0, 0, 1], Endian::Big), Ok(()));
        bad(
            "ab",
            &[8, 0, 0, 0, 1, 0, 0, 0, 2, 0, 0, 0],
            "boolean is not 0 or 1",
        );
        bad("ab", &[2, 0, 0, 0, 1, 0], "array length incorrect");
    }

    #[test]
    fn strings() {
        ok("s", &[0, 0, 0, 0, 0]);
        bad("s", &[2, 0, 0, 0, b'a', b'b', 1], "string missing NUL");
        bad("s", &[2, 0, 0, 0, b'a', b'b'], "string missing NUL");
        bad("s", &[2, 0, 0, 0, b'a', 0, 0], "string contains NUL");
        bad(
            "s",
            &[2, 0, 0, 0, 0xc3, 0x28, 0],
            "string is not valid UTF-8",
        );
        // surrogate, overlong, beyond U+10FFFF
        bad(
            "s",
            &[3, 0, 0, 0, 0xed, 0xa0, 0x80, 0],
            "string is not valid UTF-8",
        );
        bad(
            "s",
            &[2, 0, 0, 0, 0xc0, 0x80, 0],
            "string is not valid UTF-8",
        );
        bad(
            "s",
            &[4, 0, 0, 0, 0xf4, 0x90, 0x80, 0x80, 0],
            "string is not valid UTF-8",
        );
        bad("s", &[9, 0, 0, 0, b'a', 0], "string length out of bounds");
        bad(
            "s",
            &[0xff, 0xff, 0xff, 0xff, b'a', 0],
            "string length out of bounds",
        );
        ok("o", &[1, 0, 0, 0, b'/', 0]);
        bad("o", &[2, 0, 0, 0, b'/', b'/', 0], "bad object path");
        bad("o", &[0, 0, 0, 0, 0], "bad object path");
        bad("o", &[2, 0, 0, 0, b'/', 0xff, 0], "bad object path");
        bad("o", &[2, 0, 0, 0, b'/', b'a', 1], "string missing NUL");
        ok("g", &[0, 0]);
        ok("g", &[2, b'a', b'y', 0]);
        bad("g", &[1, b'a', 0], "missing array element type");
        bad("g", &[1, b'y', 1], "string missing NUL");
        bad("g", &[5, b'y', 0], "string length out of bounds");
        bad("g", &[1, 0, 0], "unknown type code in signature");
    }

    #[test]
    fn variants() {
        bad("v", &[0, 0], "empty variant signature");
        bad(
            "v",
            &[2, b'i', b'i', 0, 0, 0, 0, 0, 0, 0, 0, 0],
            "variant signature holds more than one type",
        );
        bad("v", &[1, b'(', 0], "bad variant signature");
        bad("v", &[1, b'w', 0], "bad variant signature");
        bad(
            "v",
            &[5, b'a', b'{', b's', 0],
            "string length out of bounds",
        );
        bad("v", &[0xff, 0, 0], "string length out of bounds");
        bad("v", &[4, b'a', b'{', b's', 0], "string missing NUL");
        bad("v", &[1, b'y', 1, 0], "string missing NUL");
        bad("v", &[1, b'u', 0, 0, 1, 0], "not enough data in body");
        // variant whose value is invalid
        bad("v", &[1, b'b', 0, 0, 3, 0, 0, 0], "boolean is not 0 or 1");
        // nested bad signature
        let body = w(|w| {
            w.variant("v");
            w.variant("a{vs}");
            let m = w.begin_array(8);
            w.end_array(m);
        });
        bad("v", &body, "bad variant signature");
        // variant holding a signature value holding garbage
        let body = w(|w| {
            w.variant("g");
            w.signature("(}");
        });
        bad("v", &body, "dict entry ended but not started");
    }

    #[test]
    fn fds() {
        // Any index is accepted, whatever the message's UNIX_FDS count: the
        // recipient's library checks it (as with dbus-daemon).
        ok("h", &w(|w| w.unix_fd(3)));
        ok("h", &[0, 0, 0, 0]);
        ok("h", &[0xff, 0xff, 0xff, 0xff]);
        let body = w(|w| {
            let m = w.begin_array(4);
            w.unix_fd(0);
            w.unix_fd(7);
            w.end_array(m);
        });
        ok("ah", &body);
        ok(
            "v",
            &w(|w| {
                w.variant("h");
                w.unix_fd(1);
            }),
        );
        // The other checks still apply around an fd.
        bad("h", &[0, 0, 0], "not enough data in body");
        bad("(hb)", &[0, 0, 0, 0, 2, 0, 0, 0], "boolean is not 0 or 1");
    }

    #[test]
    fn arrays() {
        bad("ay", &[5, 0, 0, 0, 1, 2, 3], "array length out of bounds");
        bad(
            "ay",
            &[0xff, 0xff, 0xff, 0xff, 1],
            "array length out of bounds",
        );
        bad("ai", &[3, 0, 0, 0, 1, 2, 3], "array length incorrect");
        bad(
            "at",
            &[5, 0, 0, 0, 0, 0, 0, 0, 1, 2, 3, 4, 5],
            "array length incorrect",
        );
        bad("an", &[3, 0, 0, 0, 1, 0, 1], "array length incorrect");
        // element straddles the array end
        let mut body = w(|w| {
            let m = w.begin_array(4);
            w.string("abc");
            w.end_array(m);
        });
        body[0] = 6;
        bad("as", &body, "array length incorrect");
        body[0] = 9;
        bad("as", &body, "array length out of bounds");
        // trailing bytes after an array
        let mut body = w(|w| {
            let m = w.begin_array(4);
            w.u32(1);
            w.end_array(m);
        });
        body.push(0);
        bad("au", &body, "body has trailing bytes");
    }

    #[test]
    fn max_array_len() {
        let n = MAX_ARRAY_LEN as usize;
        let mut body = vec![0u8; 4 + n + 1];
        body[..4].copy_from_slice(&(n as u32 + 1).to_le_bytes());
        bad("ay", &body, "array length exceeds maximum");
        body[..4].copy_from_slice(&(n as u32).to_le_bytes());
        body.pop();
        ok("ay", &body);
    }

    #[test]
    fn structs_and_dicts() {
        let body = w(|w| {
            w.u8(1);
            w.begin_struct();
            w.u8(2);
            w.begin_struct();
            w.u32(3);
        });
        ok("y(y(u))", &body);
        bad(
            "y(y(u))",
            &body[..body.len() - 1],
            "not enough data in body",
        );
        // dict key must be valid for its type
        let body = w(|w| {
            let m = w.begin_array(8);
            w.begin_struct();
            w.string("a\u{0}");
            w.u8(1);
            w.end_array(m);
        });
        bad("a{sy}", &body, "string contains NUL");
        let body = w(|w| {
            let m = w.begin_array(8);
            w.begin_struct();
            w.bool(true);
            w.u8(1);
            w.end_array(m);
        });
        ok("a{by}", &body);
        let mut body = body;
        body[8] = 2;
        bad("a{by}", &body, "boolean is not 0 or 1");
    }

    /// `n` variants nested in each other around a byte.
    fn nested_variants(n: usize) -> Vec<u8> {
        w(|w| {
            for _ in 0..n {
                w.variant("v");
            }
            w.variant("y");
            w.u8(0);
        })
    }

    #[test]
    fn depth_limit() {
        // 64 levels of containers are fine, 65 are not (as libdbus).
        ok("v", &nested_variants(63));
        bad("v", &nested_variants(64), "body nested too deeply");
        bad("v", &nested_variants(100_000), "body nested too deeply");

        // 32 structs and 32 arrays from the signature alone: depth 64.
        let sig = format!("{}y{}", "a(".repeat(32), ")".repeat(32));
        let body = w(|w| {
            let mut marks = Vec::new();
            for _ in 0..32 {
                marks.push(w.begin_array(8));
                w.begin_struct();
            }
            w.u8(1);
            for m in marks.into_iter().rev() {
                w.end_array(m);
            }
        });
        ok(&sig, &body);
        // The same with a variant at the bottom goes one level too deep.
        let sig = format!("{}v{}", "a(".repeat(32), ")".repeat(32));
        let body = w(|w| {
            let mut marks = Vec::new();
            for _ in 0..32 {
                marks.push(w.begin_array(8));
                w.begin_struct();
            }
            w.variant("y");
            w.u8(1);
            for m in marks.into_iter().rev() {
                w.end_array(m);
            }
        });
        bad(&sig, &body, "body nested too deeply");
        // ...but empty arrays are not descended into.
        ok(&sig, &[0; 8]);
    }

    #[test]
    fn invalid_signature_argument() {
        bad("(", &[0; 8], "struct started but not ended");
        bad("w", &[0; 8], "unknown type code in signature");
        assert!(validate_body(&[b'y'; 256], &[0; 256], LE).is_err());
    }

    #[test]
    fn truncation_never_panics() {
        let body = w(|w| {
            w.u8(1);
            let m = w.begin_array(8);
            w.begin_struct();
            w.string("k");
            w.variant("(ayv)");
            w.begin_struct();
            let m2 = w.begin_array(1);
            w.raw(b"xyz");
            w.end_array(m2);
            w.variant("as");
            let m2 = w.begin_array(4);
            w.string("q");
            w.end_array(m2);
            w.end_array(m);
            w.object_path("/p");
            w.signature("ii");
            w.bool(true);
        });
        let sig = b"ya{sv}ogb";
        assert_eq!(validate_body(sig, &body, LE), Ok(()));
        for n in 0..body.len() {
            assert!(validate_body(sig, &body[..n], LE).is_err(), "{n}");
        }
        // Flipping any single byte must not panic (it may still be valid).
        for i in 0..body.len() {
            for v in [0u8, 1, 0x7f, 0x80, 0xff] {
                let mut b = body.clone();
                b[i] = v;
                let _ = validate_body(sig, &b, LE);
                let _ = validate_body(sig, &b, Endian::Big);
            }
        }
    }
}
