//! Addresses, listeners, SASL, credentials and socket I/O with fd passing.

pub mod cookie;
pub mod sasl;
