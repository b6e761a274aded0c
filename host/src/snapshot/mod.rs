//! Snapshots of config and policies, and reloads.
