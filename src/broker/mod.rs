//! Peers, names, match rules, reply tracking and routing: the single owner of
//! all bus state.

pub mod matchrule;
