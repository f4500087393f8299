//! Addresses, listeners, SASL, credentials and socket I/O with fd passing.

pub mod address;
pub mod cookie;
pub mod keyring_worker;
pub mod listener;
pub mod pool;
pub mod rxbuf;
pub mod sasl;
pub mod spill;
pub mod splice;
pub mod stream;
