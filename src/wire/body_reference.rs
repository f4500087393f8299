//! The body validator as it was before signatures were compiled
//! ([`super::sigprog`]): it walks the signature text for every value, so it
//! is quadratic in the nesting depth, but it is simple. Kept for tests
//! only, as the reference the fast validator is compared against on random
//! input.

use super::body::MAX_BODY_DEPTH;
use super::names::validate_object_path;
use super::signature::{alignment, fixed_size, single_type_len, validate_signature};
use super::{Endian, WireError, MAX_ARRAY_LEN};

/// What [`super::body::validate_body`] returned before it compiled
/// signatures.
pub fn validate_body_reference(sig: &[u8], body: &[u8], endian: Endian) -> Result<(), WireError> {
    validate_signature(sig)?;
    let mut v = Validator {
        buf: body,
        pos: 0,
        endian,
    };
    v.values(sig, 0)?;
    if v.pos != body.len() {
        return Err(WireError("body has trailing bytes"));
    }
    Ok(())
}

struct Validator<'a> {
    buf: &'a [u8],
    pos: usize,
    endian: Endian,
}

const NOT_ENOUGH: WireError = WireError("not enough data in body");

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

    /// A sequence of complete types.
    fn values(&mut self, mut sig: &[u8], depth: usize) -> Result<(), WireError> {
        while !sig.is_empty() {
            let n = single_type_len(sig)?;
            let (one, rest) = sig.split_at_checked(n).ok_or(WireError("bad signature"))?;
            self.value(one, depth)?;
            sig = rest;
        }
        Ok(())
    }

    /// One value of the single complete type `sig`, at nesting `depth`.
    fn value(&mut self, sig: &[u8], depth: usize) -> Result<(), WireError> {
        let code = *sig.first().ok_or(WireError("bad signature"))?;
        if let Some(size) = fixed_size(code) {
            self.pad(size)?;
            let b = self.take(size)?;
            return self.check_fixed(code, b);
        }
        match code {
            b's' => {
                let len = self.u32()? as usize;
                let s = self.string_bytes(len)?;
                if s.contains(&0) {
                    return Err(WireError("string contains NUL"));
                }
                std::str::from_utf8(s).map_err(|_| WireError("string is not valid UTF-8"))?;
                Ok(())
            }
            b'o' => {
                let len = self.u32()? as usize;
                let s = self.string_bytes(len)?;
                let s = std::str::from_utf8(s).map_err(|_| WireError("bad object path"))?;
                validate_object_path(s).map_err(|_| WireError("bad object path"))
            }
            b'g' => {
                let len = usize::from(*self.take(1)?.first().ok_or(NOT_ENOUGH)?);
                let s = self.string_bytes(len)?;
                validate_signature(s)
            }
            b'v' => {
                let len = usize::from(*self.take(1)?.first().ok_or(NOT_ENOUGH)?);
                let inner = self.string_bytes(len)?;
                validate_signature(inner).map_err(|_| WireError("bad variant signature"))?;
                let first = *inner.first().ok_or(WireError("empty variant signature"))?;
                if single_type_len(inner)? != inner.len() {
                    return Err(WireError("variant signature holds more than one type"));
                }
                if depth >= MAX_BODY_DEPTH {
                    return Err(WireError("body nested too deeply"));
                }
                self.pad(alignment(first))?;
                self.value(inner, depth + 1)
            }
            b'(' | b'{' => {
                let fields = sig
                    .get(1..sig.len() - 1)
                    .ok_or(WireError("bad signature"))?;
                if depth >= MAX_BODY_DEPTH {
                    return Err(WireError("body nested too deeply"));
                }
                self.pad(8)?;
                self.values(fields, depth + 1)
            }
            b'a' => self.array(&sig[1..], depth),
            _ => Err(WireError("unknown type code in signature")),
        }
    }

    /// An array whose element type is `elem`.
    fn array(&mut self, elem: &[u8], depth: usize) -> Result<(), WireError> {
        let code = *elem.first().ok_or(WireError("bad signature"))?;
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
            return Err(WireError("body nested too deeply"));
        }
        while self.pos < end {
            self.value(elem, depth + 1)?;
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
    use crate::wire::body::validate_body;

    /// xorshift64*: deterministic, so a failure can be replayed.
    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
        }
        fn below(&mut self, n: usize) -> usize {
            (self.next() % n as u64) as usize
        }
    }

    const BASIC: &[u8] = b"ybnqiuxtdhsog";

    fn gen_type(r: &mut Rng, budget: usize, out: &mut Vec<u8>) {
        let pick = if budget == 0 { 0 } else { r.below(10) };
        match pick {
            0..=4 => out.push(BASIC[r.below(BASIC.len())]),
            5 => out.push(b'v'),
            6 | 7 => {
                out.push(b'a');
                gen_type(r, budget - 1, out);
            }
            8 => {
                out.extend_from_slice(b"a{");
                out.push(BASIC[r.below(BASIC.len())]);
                gen_type(r, budget - 1, out);
                out.push(b'}');
            }
            _ => {
                out.push(b'(');
                for _ in 0..1 + r.below(3) {
                    gen_type(r, budget - 1, out);
                }
                out.push(b')');
            }
        }
    }

    fn pad(b: &mut Vec<u8>, n: usize) {
        while !b.len().is_multiple_of(n) {
            b.push(0);
        }
    }

    fn u32(b: &mut Vec<u8>, v: u32) {
        pad(b, 4);
        b.extend_from_slice(&v.to_le_bytes());
    }

    /// Writes one value of the single complete type at the start of `sig`
    /// and returns the rest of `sig`.
    fn gen_value<'s>(r: &mut Rng, sig: &'s [u8], b: &mut Vec<u8>, vdepth: usize) -> &'s [u8] {
        let c = sig[0];
        match c {
            b'y' => b.push(r.next() as u8),
            b'b' => u32(b, r.below(2) as u32),
            b'h' => u32(b, r.below(4) as u32),
            b'n' | b'q' => {
                pad(b, 2);
                b.extend_from_slice(&(r.next() as u16).to_le_bytes());
            }
            b'i' | b'u' => u32(b, r.next() as u32),
            b'x' | b't' | b'd' => {
                pad(b, 8);
                b.extend_from_slice(&r.next().to_le_bytes());
            }
            b's' => {
                let s = ["", "a", "héllo", "x y"][r.below(4)];
                u32(b, s.len() as u32);
                b.extend_from_slice(s.as_bytes());
                b.push(0);
            }
            b'o' => {
                let s = ["/", "/a", "/a/b_c"][r.below(3)];
                u32(b, s.len() as u32);
                b.extend_from_slice(s.as_bytes());
                b.push(0);
            }
            b'g' => {
                let s = ["", "a{sv}", "(ii)"][r.below(3)];
                b.push(s.len() as u8);
                b.extend_from_slice(s.as_bytes());
                b.push(0);
            }
            b'v' => {
                let mut inner = Vec::new();
                gen_type(r, if vdepth > 3 { 0 } else { 2 }, &mut inner);
                b.push(inner.len() as u8);
                b.extend_from_slice(&inner);
                b.push(0);
                gen_value(r, &inner, b, vdepth + 1);
            }
            b'a' => {
                let elem = &sig[1..];
                let n = single_type_len(elem).unwrap();
                u32(b, 0);
                let len_at = b.len() - 4;
                pad(b, alignment(elem[0]));
                let start = b.len();
                for _ in 0..r.below(4) {
                    gen_value(r, &elem[..n], b, vdepth);
                }
                let len = (b.len() - start) as u32;
                b[len_at..len_at + 4].copy_from_slice(&len.to_le_bytes());
                return &elem[n..];
            }
            b'(' | b'{' => {
                pad(b, 8);
                let mut rest = &sig[1..];
                while !matches!(rest[0], b')' | b'}') {
                    rest = gen_value(r, rest, b, vdepth);
                }
                return &rest[1..];
            }
            _ => unreachable!(),
        }
        &sig[1..]
    }

    fn check(sig: &[u8], body: &[u8]) {
        for e in [Endian::Little, Endian::Big] {
            assert_eq!(
                validate_body(sig, body, e),
                validate_body_reference(sig, body, e),
                "sig {:?} body {body:?}",
                String::from_utf8_lossy(sig)
            );
        }
    }

    #[test]
    fn compiled_validator_agrees_with_the_reference() {
        let mut r = Rng(0x9e37_79b9_7f4a_7c15);
        let mut valid = 0;
        for _ in 0..20_000 {
            let mut sig = Vec::new();
            for _ in 0..1 + r.below(3) {
                gen_type(&mut r, 4, &mut sig);
            }
            if validate_signature(&sig).is_err() {
                continue;
            }
            let mut body = Vec::new();
            let mut rest = &sig[..];
            while !rest.is_empty() {
                rest = gen_value(&mut r, rest, &mut body, 0);
            }
            if validate_body_reference(&sig, &body, Endian::Little).is_ok() {
                valid += 1;
            }
            check(&sig, &body);
            // Mutations: flipped bytes, truncation, extension.
            for _ in 0..4 {
                let mut m = body.clone();
                match r.below(3) {
                    0 if !m.is_empty() => {
                        let i = r.below(m.len());
                        m[i] = [0, 1, 2, 0x7f, 0xff, r.next() as u8][r.below(6)];
                    }
                    1 if !m.is_empty() => m.truncate(r.below(m.len())),
                    _ => m.extend_from_slice(&[0; 8][..r.below(9)]),
                }
                check(&sig, &m);
            }
            // Random bytes against the signature.
            let junk: Vec<u8> = (0..r.below(64)).map(|_| r.next() as u8 & 0x0f).collect();
            check(&sig, &junk);
        }
        assert!(valid > 5_000, "only {valid} valid bodies generated");
    }

    #[test]
    fn agrees_on_deep_nesting() {
        // Nested variants and containers around the depth limit.
        for n in [30usize, 31, 32, 33, 62, 63, 64, 65] {
            let mut body = Vec::new();
            for _ in 0..n {
                body.extend_from_slice(&[1, b'v', 0]);
            }
            body.extend_from_slice(&[1, b'y', 0, 7]);
            check(b"v", &body);
        }
        for k in 1..=32 {
            let sig = format!("{}y{}", "a(".repeat(k), ")".repeat(k));
            let mut body = Vec::new();
            let mut lens = Vec::new();
            for _ in 0..k {
                pad(&mut body, 4);
                lens.push(body.len());
                body.extend_from_slice(&[0; 4]);
                pad(&mut body, 8);
            }
            body.push(1);
            for &at in lens.iter().rev() {
                let len = (body.len() - (at + 4).next_multiple_of(8)) as u32;
                body[at..at + 4].copy_from_slice(&len.to_le_bytes());
            }
            check(sig.as_bytes(), &body);
            let sig = format!("{}v{}", "a(".repeat(k), ")".repeat(k));
            check(sig.as_bytes(), &body);
            let sig = format!("a{}y{}", "(".repeat(k), ")".repeat(k));
            let mut b2 = vec![8, 0, 0, 0, 0, 0, 0, 0, 5, 0, 0, 0, 0, 0, 0, 0];
            check(sig.as_bytes(), &b2);
            b2[9] = 1;
            check(sig.as_bytes(), &b2);
        }
    }
}
