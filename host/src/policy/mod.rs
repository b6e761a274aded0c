//! The policy engine and chain runner.
