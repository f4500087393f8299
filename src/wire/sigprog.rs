//! A signature compiled once into a flat list of steps, so that validating
//! a body costs O(its bytes) whatever the signature's shape.
//!
//! Walking the signature text for every value (finding where each complete
//! type ends) costs O(signature length) per array element, which made a
//! deeply nested `a((((…(y)…))))` quadratic in the nesting depth for every
//! element. Here the structure is worked out once: an array knows where its
//! element's steps end, and a run of structs that directly open each other
//! (`((((`) is one step, since only the outermost can need padding. So one
//! element of `a((((…(y)…))))` is two steps at any depth, like `a(y)`.
//!
//! The program lives in a fixed-size table (a signature is at most 255
//! bytes, and each byte gives at most one step), so compiling allocates
//! nothing.

use std::cell::RefCell;

use super::signature::{validate_signature, MAX_SIGNATURE_LEN};
use super::WireError;

/// How many recently compiled top-level signatures each thread keeps.
const CACHED: usize = 4;

/// A signature and its program.
struct Entry {
    sig: [u8; MAX_SIGNATURE_LEN],
    len: usize,
    prog: Program,
}

/// The last few signatures compiled by [`with_compiled`]: a bus sees the
/// same few signatures over and over, and compiling one (which fills a
/// 255-step table) costs more than validating a short body.
struct Cache {
    entries: [Option<Entry>; CACHED],
    next: usize,
}

thread_local! {
    static CACHE: RefCell<Cache> = const {
        RefCell::new(Cache {
            entries: [const { None }; CACHED],
            next: 0,
        })
    };
}

/// Validates `sig` and calls `f` with its compiled program, reusing the
/// program of a recent identical signature (which was validated when it
/// was compiled). Allocates nothing.
pub fn with_compiled<R>(sig: &[u8], f: impl FnOnce(&Program) -> R) -> Result<R, WireError> {
    CACHE.with(|cache| {
        let Ok(mut cache) = cache.try_borrow_mut() else {
            // Re-entered from `f` (the validator compiles variants itself,
            // so this does not happen): compile afresh.
            validate_signature(sig)?;
            return Ok(f(&Program::compile(sig)?));
        };
        let hit = cache
            .entries
            .iter()
            .position(|e| e.as_ref().is_some_and(|e| e.sig.get(..e.len) == Some(sig)));
        let at = match hit {
            Some(i) => i,
            None => {
                validate_signature(sig)?;
                let prog = Program::compile(sig)?;
                let mut key = [0u8; MAX_SIGNATURE_LEN];
                key.get_mut(..sig.len()).ok_or(BAD)?.copy_from_slice(sig);
                let i = cache.next;
                cache.next = (i + 1) % CACHED;
                cache.entries[i] = Some(Entry {
                    sig: key,
                    len: sig.len(),
                    prog,
                });
                i
            }
        };
        match &cache.entries[at] {
            Some(e) => Ok(f(&e.prog)),
            None => Err(BAD),
        }
    })
}

/// One step of a compiled signature. Depths are static: the number of
/// containers (arrays, structs, dict entries) around the value within its
/// signature; the validator adds the depth of any enclosing variant.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    /// A fixed-size basic value (`y b n q i u x t d h`), by type code.
    Fixed(u8),
    /// `s`
    Str,
    /// `o`
    Path,
    /// `g`
    Sig,
    /// `v`, at this depth.
    Variant(u8),
    /// One or more structs or dict entries, each the first field of the one
    /// before: the depth of the outermost and of the innermost.
    Enter(u8, u8),
    /// An array at `depth` whose element type starts with `elem`; the
    /// element's steps follow this one and end before step `end`.
    Array {
        /// Depth of the array itself.
        depth: u8,
        /// First type code of the element type.
        elem: u8,
        /// Index of the first step after the element's steps.
        end: u8,
    },
}

/// A compiled signature.
#[derive(Clone, Debug)]
pub struct Program {
    ops: [Op; MAX_SIGNATURE_LEN],
    len: usize,
}

const BAD: WireError = WireError("bad signature");

/// Marks a struct or dict entry on the compile stack (arrays store the
/// index of their step, always < 255).
const OPEN_STRUCT: u8 = u8::MAX;

impl Program {
    /// Compiles `sig`, which must already have passed
    /// [`validate_signature`](super::signature::validate_signature). Malformed
    /// input gives an error, never a panic.
    pub fn compile(sig: &[u8]) -> Result<Program, WireError> {
        let mut p = Program {
            ops: [Op::Str; MAX_SIGNATURE_LEN],
            len: 0,
        };
        if sig.len() > MAX_SIGNATURE_LEN {
            return Err(BAD);
        }
        // Open containers: OPEN_STRUCT, or the step index of an array whose
        // element is not complete yet. Its length is the current depth.
        let mut open = [0u8; MAX_SIGNATURE_LEN];
        let mut depth = 0usize;
        let mut prev = 0u8;
        for &c in sig {
            let d = u8::try_from(depth).map_err(|_| BAD)?;
            let mut complete = true;
            match c {
                b'a' => {
                    let idx = u8::try_from(p.len).map_err(|_| BAD)?;
                    // `elem` is filled in by the next byte.
                    p.push(Op::Array {
                        depth: d,
                        elem: 0,
                        end: 0,
                    })?;
                    *open.get_mut(depth).ok_or(BAD)? = idx;
                    depth += 1;
                    complete = false;
                }
                b'(' | b'{' => {
                    match p.last_mut() {
                        Some(Op::Enter(_, inner)) if matches!(prev, b'(' | b'{') => *inner = d,
                        _ => p.push(Op::Enter(d, d))?,
                    }
                    *open.get_mut(depth).ok_or(BAD)? = OPEN_STRUCT;
                    depth += 1;
                    complete = false;
                }
                b')' | b'}' => {
                    depth = depth.checked_sub(1).ok_or(BAD)?;
                    if open[depth] != OPEN_STRUCT {
                        return Err(BAD);
                    }
                }
                b's' => p.push(Op::Str)?,
                b'o' => p.push(Op::Path)?,
                b'g' => p.push(Op::Sig)?,
                b'v' => p.push(Op::Variant(d))?,
                b'y' | b'b' | b'n' | b'q' | b'i' | b'u' | b'x' | b't' | b'd' | b'h' => {
                    p.push(Op::Fixed(c))?
                }
                _ => return Err(BAD),
            }
            // The array just opened by the previous byte learns its element.
            if prev == b'a' {
                p.set_elem(depth, &open, c)?;
            }
            if complete {
                // Arrays whose element just ended are complete types too.
                while let Some(d) = depth.checked_sub(1) {
                    let idx = open[d];
                    if idx == OPEN_STRUCT {
                        break;
                    }
                    let end = u8::try_from(p.len).map_err(|_| BAD)?;
                    match p.ops.get_mut(usize::from(idx)) {
                        Some(Op::Array { end: e, .. }) => *e = end,
                        _ => return Err(BAD),
                    }
                    depth = d;
                }
            }
            prev = c;
        }
        if depth != 0 {
            return Err(BAD);
        }
        Ok(p)
    }

    fn push(&mut self, op: Op) -> Result<(), WireError> {
        *self.ops.get_mut(self.len).ok_or(BAD)? = op;
        self.len += 1;
        Ok(())
    }

    fn last_mut(&mut self) -> Option<&mut Op> {
        let i = self.len.checked_sub(1)?;
        self.ops.get_mut(i)
    }

    /// Sets the element code of the array opened just before `code`.
    fn set_elem(&mut self, depth: usize, open: &[u8], code: u8) -> Result<(), WireError> {
        // The array is the innermost open container before `code` opened
        // anything itself.
        let at = if matches!(code, b'a' | b'(' | b'{') {
            depth.checked_sub(2)
        } else {
            depth.checked_sub(1)
        };
        let idx = *at.and_then(|d| open.get(d)).ok_or(BAD)?;
        match self.ops.get_mut(usize::from(idx)) {
            Some(Op::Array { elem, .. }) => {
                *elem = code;
                Ok(())
            }
            _ => Err(BAD),
        }
    }

    /// The steps.
    pub fn ops(&self) -> &[Op] {
        &self.ops[..self.len]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ops(sig: &str) -> Vec<Op> {
        Program::compile(sig.as_bytes()).unwrap().ops().to_vec()
    }

    #[test]
    fn steps() {
        use Op::*;
        assert_eq!(ops(""), vec![]);
        assert_eq!(ops("yso"), vec![Fixed(b'y'), Str, Path]);
        assert_eq!(
            ops("ai"),
            vec![
                Array {
                    depth: 0,
                    elem: b'i',
                    end: 2
                },
                Fixed(b'i')
            ]
        );
        assert_eq!(
            ops("a{sv}g"),
            vec![
                Array {
                    depth: 0,
                    elem: b'{',
                    end: 4
                },
                Enter(1, 1),
                Str,
                Variant(2),
                Sig
            ]
        );
        assert_eq!(
            ops("aai"),
            vec![
                Array {
                    depth: 0,
                    elem: b'a',
                    end: 3
                },
                Array {
                    depth: 1,
                    elem: b'i',
                    end: 3
                },
                Fixed(b'i')
            ]
        );
        // A run of structs opening each other is one step...
        let deep = format!("a{}y{}", "(".repeat(32), ")".repeat(32));
        assert_eq!(
            ops(&deep),
            vec![
                Array {
                    depth: 0,
                    elem: b'(',
                    end: 3
                },
                Enter(1, 32),
                Fixed(b'y')
            ]
        );
        // ...but a struct after another field is not.
        assert_eq!(
            ops("((y)(y))v"),
            vec![
                Enter(0, 1),
                Fixed(b'y'),
                Enter(1, 1),
                Fixed(b'y'),
                Variant(0)
            ]
        );
        assert_eq!(
            ops("a(ai)y"),
            vec![
                Array {
                    depth: 0,
                    elem: b'(',
                    end: 4
                },
                Enter(1, 1),
                Array {
                    depth: 2,
                    elem: b'i',
                    end: 4
                },
                Fixed(b'i'),
                Fixed(b'y')
            ]
        );
    }

    #[test]
    fn malformed_input_is_an_error_not_a_panic() {
        for s in ["a", "(", ")", "a)", "(y", "y)", "{", "w", "aa", "(a)"] {
            assert!(Program::compile(s.as_bytes()).is_err(), "{s}");
        }
        assert!(Program::compile(&[b'y'; 256]).is_err());
        assert!(Program::compile(&[b'y'; 255]).is_ok());
        let nested = format!("{}y{}", "(".repeat(127), ")".repeat(127));
        assert!(Program::compile(nested.as_bytes()).is_ok());
    }

    #[test]
    fn cached_programs_match_fresh_ones() {
        // More signatures than the cache holds, each asked for twice, in
        // an order that makes entries both hit and get evicted.
        let sigs = ["ay", "s", "a{sv}", "(ii)", "as", "u", "a(oa{sa{sv}})"];
        for round in 0..3 {
            for s in sigs.iter().chain(sigs.iter().rev()) {
                let got = with_compiled(s.as_bytes(), |p| p.ops().to_vec()).unwrap();
                assert_eq!(got, ops(s), "{s} in round {round}");
            }
        }
    }

    #[test]
    fn cache_never_accepts_an_invalid_signature() {
        with_compiled(b"ay", |_| ()).unwrap();
        for bad in ["a", "(", "a{vs}", "z", "ay)"] {
            assert!(with_compiled(bad.as_bytes(), |_| ()).is_err(), "{bad}");
            // A second time, now that it could have been cached.
            assert!(with_compiled(bad.as_bytes(), |_| ()).is_err(), "{bad}");
        }
        assert!(with_compiled(&[b'y'; 256], |_| ()).is_err());
        // A prefix of a cached signature is not a hit.
        with_compiled(b"(ii)", |_| ()).unwrap();
        assert!(with_compiled(b"(i", |_| ()).is_err());
    }
}
