//! Type signatures: validation and walking single complete types.

use super::WireError;

/// Maximum length of a signature.
pub const MAX_SIGNATURE_LEN: usize = 255;
/// Maximum nesting of arrays, and separately of structs, in one signature.
pub const MAX_NESTING: usize = 32;

/// Validates a whole signature (zero or more complete types): allowed type
/// codes, balanced structs and dict entries, dict entries only as array
/// elements with a basic key, no empty structs, nesting limits, length <= 255.
pub fn validate_signature(sig: &[u8]) -> Result<(), WireError> {
    let _ = sig;
    todo!()
}

/// Length in bytes of the single complete type at the start of `sig`.
/// `sig` must already be valid.
pub fn single_type_len(sig: &[u8]) -> Result<usize, WireError> {
    let _ = sig;
    todo!()
}

/// Alignment in bytes of values of the type whose code is `code`.
pub fn alignment(code: u8) -> usize {
    let _ = code;
    todo!()
}
