//! Message header view and rewriting.
