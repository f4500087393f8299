//! Exec line splitting (placeholder).
