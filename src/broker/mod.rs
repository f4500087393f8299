//! Peers, names, match rules, reply tracking and routing: the single owner of
//! all bus state.

pub mod activation;
pub mod broadcast;
pub mod build;
pub mod bus;
pub mod conn;
pub mod deadlines;
pub mod errors;
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
pub mod services;
pub mod snapshot;
pub mod splice;
pub mod state;
pub mod upcalls;
