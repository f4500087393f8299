//! The D-Bus wire format: header view, validation, rewriting, and the small
//! (de)marshaller the driver uses for its own replies.
//!
//! Nothing here knows about names owned on the bus or policy.

pub mod body;
#[cfg(test)]
mod body_reference;
pub mod header;
pub mod marshal;
pub mod names;
pub mod parsed;
pub mod signature;
pub mod sigprog;

/// Byte order of a message, from its first byte.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Endian {
    /// `l`
    Little,
    /// `B`
    Big,
}

impl Endian {
    /// The marker byte of this byte order.
    pub fn marker(self) -> u8 {
        match self {
            Endian::Little => b'l',
            Endian::Big => b'B',
        }
    }
    /// The byte order named by a marker byte.
    pub fn from_marker(b: u8) -> Option<Endian> {
        match b {
            b'l' => Some(Endian::Little),
            b'B' => Some(Endian::Big),
            _ => None,
        }
    }
    /// Reads a u32 at `pos` (caller guarantees bounds).
    pub fn u32(self, b: &[u8]) -> u32 {
        let a = [b[0], b[1], b[2], b[3]];
        match self {
            Endian::Little => u32::from_le_bytes(a),
            Endian::Big => u32::from_be_bytes(a),
        }
    }
}

/// Why some bytes are not a valid D-Bus message (or part of one).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WireError(pub &'static str);

impl std::fmt::Display for WireError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.0)
    }
}

impl std::error::Error for WireError {}

/// Maximum size of a whole message (header + body), per the specification.
pub const MAX_MESSAGE_SIZE: usize = 128 * 1024 * 1024;
/// Maximum length of one array's contents in bytes.
pub const MAX_ARRAY_LEN: u32 = 64 * 1024 * 1024;
