//! Pooled upstream client and health tracking.
