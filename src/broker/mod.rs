//! Peers, names, match rules, reply tracking and routing: the single owner of
//! all bus state.

pub mod broadcast;
pub mod bus;
pub mod conn;
pub mod deadlines;
pub mod idmap;
pub mod mac;
pub mod matchindex;
pub mod matchrule;
pub mod names;
pub mod peer;
pub mod quota;
pub mod replies;
pub mod route;
pub mod security;
