//! Type signatures: validation and walking single complete types.

use super::WireError;

/// Maximum length of a signature.
pub const MAX_SIGNATURE_LEN: usize = 255;
/// Maximum nesting of arrays, and separately of structs, in one signature.
pub const MAX_NESTING: usize = 32;

/// Whether `code` is a basic type code (may be a dict entry key).
pub fn is_basic(code: u8) -> bool {
    matches!(
        code,
        b'y' | b'b' | b'n' | b'q' | b'i' | b'u' | b'x' | b't' | b'd' | b'h' | b's' | b'o' | b'g'
    )
}

/// Whether `code` is a fixed-size basic type; returns its size in bytes.
pub fn fixed_size(code: u8) -> Option<usize> {
    match code {
        b'y' => Some(1),
        b'n' | b'q' => Some(2),
        b'b' | b'i' | b'u' | b'h' => Some(4),
        b'x' | b't' | b'd' => Some(8),
        _ => None,
    }
}

/// Validates a whole signature (zero or more complete types): allowed type
/// codes, balanced structs and dict entries, dict entries only as array
/// elements with a basic key, no empty structs, nesting limits, length <= 255.
///
/// The nesting limits are those of libdbus: at most 32 open structs, at most
/// 32 open dict entries, and at most 32 consecutive `a` codes. (Unlike
/// libdbus, mismatched brackets such as `(a{ss)s}` are rejected.)
pub fn validate_signature(sig: &[u8]) -> Result<(), WireError> {
    if sig.len() > MAX_SIGNATURE_LEN {
        return Err(WireError("signature too long"));
    }
    // Open structs/dict entries: (bracket, number of complete types so far).
    // At most 32 + 32 can be open at once.
    let mut stack = [(0u8, 0u8); 2 * MAX_NESTING];
    let mut depth = 0usize;
    let mut struct_depth = 0usize;
    let mut dict_depth = 0usize;
    let mut array_run = 0usize;
    let mut last = 0u8;

    for (i, &c) in sig.iter().enumerate() {
        match c {
            b'y' | b'b' | b'n' | b'q' | b'i' | b'u' | b'x' | b't' | b'd' | b'h' | b's' | b'o'
            | b'g' | b'v' => {}
            b'a' => {
                array_run += 1;
                if array_run > MAX_NESTING {
                    return Err(WireError("signature exceeds maximum array nesting"));
                }
            }
            b'(' => {
                struct_depth += 1;
                if struct_depth > MAX_NESTING {
                    return Err(WireError("signature exceeds maximum struct nesting"));
                }
                let slot = stack
                    .get_mut(depth)
                    .ok_or(WireError("signature nested too deeply"))?;
                *slot = (b'(', 0);
                depth += 1;
            }
            b')' => {
                if depth == 0 || stack[depth - 1].0 != b'(' {
                    return Err(WireError("struct ended but not started"));
                }
                if last == b'(' {
                    return Err(WireError("struct has no fields"));
                }
                depth -= 1;
                struct_depth -= 1;
            }
            b'{' => {
                if last != b'a' {
                    return Err(WireError("dict entry not inside array"));
                }
                dict_depth += 1;
                if dict_depth > MAX_NESTING {
                    return Err(WireError("signature exceeds maximum dict entry nesting"));
                }
                let slot = stack
                    .get_mut(depth)
                    .ok_or(WireError("signature nested too deeply"))?;
                *slot = (b'{', 0);
                depth += 1;
            }
            b'}' => {
                if depth == 0 || stack[depth - 1].0 != b'{' {
                    return Err(WireError("dict entry ended but not started"));
                }
                match stack[depth - 1].1 {
                    2 => {}
                    0 => return Err(WireError("dict entry has no fields")),
                    1 => return Err(WireError("dict entry has only one field")),
                    _ => return Err(WireError("dict entry has too many fields")),
                }
                depth -= 1;
                dict_depth -= 1;
            }
            _ => return Err(WireError("unknown type code in signature")),
        }

        // A complete type ended here: count it in the enclosing container.
        if !matches!(c, b'a' | b'(' | b'{') && depth > 0 {
            let count = &mut stack[depth - 1].1;
            *count = count.saturating_add(1);
        }

        if array_run > 0 {
            if c == b'a' {
                if matches!(sig.get(i + 1), Some(b')') | Some(b'}')) {
                    return Err(WireError("missing array element type"));
                }
            } else {
                array_run = 0;
            }
        }

        if last == b'{' && !is_basic(c) {
            return Err(WireError("dict key must be a basic type"));
        }
        last = c;
    }

    if array_run > 0 {
        return Err(WireError("missing array element type"));
    }
    if depth > 0 {
        return Err(if stack[depth - 1].0 == b'(' {
            WireError("struct started but not ended")
        } else {
            WireError("dict entry started but not ended")
        });
    }
    Ok(())
}

/// Length in bytes of the single complete type at the start of `sig`.
/// `sig` must already be valid; malformed input gives an error (never a
/// panic), but not every malformation is detected.
pub fn single_type_len(sig: &[u8]) -> Result<usize, WireError> {
    let mut i = 0;
    while sig.get(i) == Some(&b'a') {
        i += 1;
    }
    match sig.get(i) {
        None => Err(WireError("missing type in signature")),
        Some(b'(') | Some(b'{') => {
            let mut depth = 0usize;
            for (j, &c) in sig.iter().enumerate().skip(i) {
                match c {
                    b'(' | b'{' => depth += 1,
                    b')' | b'}' => {
                        depth -= 1;
                        if depth == 0 {
                            return Ok(j + 1);
                        }
                    }
                    _ => {}
                }
            }
            Err(WireError("unterminated container in signature"))
        }
        Some(&c) if is_basic(c) || c == b'v' => Ok(i + 1),
        Some(_) => Err(WireError("unknown type code in signature")),
    }
}

/// Where the last single complete type of `sig` (a valid signature, not
/// empty) starts.
pub fn last_type_start(sig: &[u8]) -> Result<usize, WireError> {
    let mut start = 0;
    loop {
        let rest = sig.get(start..).ok_or(WireError("bad signature"))?;
        let n = single_type_len(rest)?;
        if start + n >= sig.len() {
            return Ok(start);
        }
        start += n;
    }
}

/// Alignment in bytes of values of the type whose code is `code`.
/// Unknown codes give 1.
pub fn alignment(code: u8) -> usize {
    match code {
        b'n' | b'q' => 2,
        b'b' | b'i' | b'u' | b'h' | b's' | b'o' | b'a' => 4,
        b'x' | b't' | b'd' | b'(' | b'{' | b'r' | b'e' => 8,
        // y, g, v and anything unknown
        _ => 1,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn last_type_start_finds_the_last_complete_type() {
        for (sig, start) in [
            ("ay", 0),
            ("say", 1),
            ("a{sv}ay", 5),
            ("(su)ay", 4),
            ("aay", 0),
            ("a(ay)", 0),
            ("ayu", 2),
            ("s", 0),
        ] {
            assert_eq!(last_type_start(sig.as_bytes()), Ok(start), "{sig}");
        }
    }

    #[test]
    fn libdbus_signature_vectors() {
        let valid: &[&str] = &[
            "",
            "sss",
            "i",
            "b",
            "ai",
            "(i)",
            "a{sv}",
            "a{s(ii)}",
            "a{sa{sv}}",
            "aai",
            "(ia{ss}av)",
            "yybnqiuxtdhsogv",
            "a(oa{sa{sv}})",
            "((((i))))",
            "a{yv}",
            "a{ha(i)}",
        ];
        for s in valid {
            assert_eq!(validate_signature(s.as_bytes()), Ok(()), "{s}");
        }
        let invalid: &[(&str, &str)] = &[
            ("w", "unknown type code in signature"),
            ("a", "missing array element type"),
            ("aaaaaa", "missing array element type"),
            ("ii(ii)a", "missing array element type"),
            ("ia", "missing array element type"),
            (
                "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
                "signature exceeds maximum array nesting",
            ),
            (")", "struct ended but not started"),
            ("i)", "struct ended but not started"),
            ("a)", "missing array element type"),
            ("(", "struct started but not ended"),
            ("(i", "struct started but not ended"),
            ("(iiiii", "struct started but not ended"),
            ("(ai", "struct started but not ended"),
            ("()", "struct has no fields"),
            ("(())", "struct has no fields"),
            ("a()", "struct has no fields"),
            ("i()", "struct has no fields"),
            ("()i", "struct has no fields"),
            ("(a)", "missing array element type"),
            ("a{ia}", "missing array element type"),
            ("a{}", "dict entry has no fields"),
            ("a{aii}", "dict key must be a basic type"),
            (" ", "unknown type code in signature"),
            ("not a valid signature", "unknown type code in signature"),
            ("123", "unknown type code in signature"),
            (".", "unknown type code in signature"),
            ("a{(ii)i}", "dict key must be a basic type"),
            ("a{vi}", "dict key must be a basic type"),
            ("a{i}", "dict entry has only one field"),
            ("{is}", "dict entry not inside array"),
            ("a{isi}", "dict entry has too many fields"),
            ("a{is", "dict entry started but not ended"),
            ("a{is)", "struct ended but not started"),
            ("(a{ss)s}", "struct ended but not started"),
            ("(is}", "dict entry ended but not started"),
            ("a{s}i", "dict entry has only one field"),
            ("({ss})", "dict entry not inside array"),
            ("r", "unknown type code in signature"),
            ("e", "unknown type code in signature"),
            ("\0", "unknown type code in signature"),
        ];
        for (s, why) in invalid {
            assert_eq!(validate_signature(s.as_bytes()), Err(WireError(why)), "{s}");
        }
    }

    #[test]
    fn nesting_limits() {
        let deep = |n: usize| format!("{}i{}", "(".repeat(n), ")".repeat(n));
        assert!(validate_signature(deep(32).as_bytes()).is_ok());
        assert_eq!(
            validate_signature(deep(33).as_bytes()),
            Err(WireError("signature exceeds maximum struct nesting"))
        );
        let arr = |n: usize| format!("{}i", "a".repeat(n));
        assert!(validate_signature(arr(32).as_bytes()).is_ok());
        assert!(validate_signature(arr(33).as_bytes()).is_err());
        let dict = |n: usize| format!("{}i{}", "a{s".repeat(n), "}".repeat(n));
        assert!(validate_signature(dict(32).as_bytes()).is_ok());
        assert_eq!(
            validate_signature(dict(33).as_bytes()),
            Err(WireError("signature exceeds maximum dict entry nesting"))
        );
        // 32 structs and 32 dict entries open at once.
        let both = format!(
            "{}{}i{}{}",
            "(".repeat(32),
            "a{s".repeat(32),
            "}".repeat(32),
            ")".repeat(32)
        );
        assert!(validate_signature(both.as_bytes()).is_ok());
        assert_eq!(
            validate_signature(&[b'y'; 256]),
            Err(WireError("signature too long"))
        );
        assert!(validate_signature(&[b'y'; 255]).is_ok());
    }

    #[test]
    fn single_types() {
        let cases: &[(&str, usize)] = &[
            ("i", 1),
            ("ii", 1),
            ("ai", 2),
            ("aai", 3),
            ("a{sv}i", 5),
            ("(i(ss))y", 7),
            ("a(ia{sv})s", 9),
            ("v", 1),
            ("g", 1),
        ];
        for (s, n) in cases {
            assert_eq!(single_type_len(s.as_bytes()), Ok(*n), "{s}");
        }
        for s in ["", "a", "aa", "(ii", "w", ")", "a{s"] {
            assert!(single_type_len(s.as_bytes()).is_err(), "{s}");
        }
    }

    #[test]
    fn alignments() {
        for (c, a) in [
            (b'y', 1),
            (b'g', 1),
            (b'v', 1),
            (b'n', 2),
            (b'q', 2),
            (b'b', 4),
            (b'i', 4),
            (b'u', 4),
            (b'h', 4),
            (b's', 4),
            (b'o', 4),
            (b'a', 4),
            (b'x', 8),
            (b't', 8),
            (b'd', 8),
            (b'(', 8),
            (b'{', 8),
        ] {
            assert_eq!(alignment(c), a, "{}", c as char);
        }
    }
}
