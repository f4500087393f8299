//! Validation of a message body against its signature, in one pass and
//! without allocating.

use super::{Endian, WireError};

/// Checks that `body` is exactly a valid marshalling of values of type `sig`
/// in byte order `endian`: alignment padding is zero, booleans are 0 or 1,
/// strings are valid UTF-8 without interior NUL and are NUL-terminated,
/// object paths and signatures are valid, array lengths are <= 64 MiB and
/// consistent with their elements, variants hold one valid single complete
/// type, total nesting (arrays + structs + variants) stays within 64,
/// unix fd indices are < `n_fds`, and no bytes are left over.
/// The body starts at an 8-aligned offset of the message.
pub fn validate_body(sig: &[u8], body: &[u8], endian: Endian, n_fds: u32) -> Result<(), WireError> {
    let _ = (sig, body, endian, n_fds);
    todo!()
}
