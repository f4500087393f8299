//! `.service` files (placeholder).
