//! What the bus needs from the user database and the login state, kept in
//! memory so that accepting a connection costs no lookup and no file read
//! on the event loop: a cache of user answers (primary group, supplementary
//! groups, name) that expires after a time-to-live and is flushed on
//! reload, filled by a worker thread (see [`worker`]), and the set of users
//! at a console, kept current by inotify (see [`console`]).
//!
//! dbus-daemon caches user database answers too (its user database is
//! flushed on reload); the TTL is ours, so a change in /etc/group or in
//! LDAP is picked up without a reload after at most [`cache::TTL`].

pub mod cache;
pub mod console;
pub mod worker;

pub use cache::UserDb;
pub use console::{Console, ConsoleWatch};
