//! The client-facing data path.
