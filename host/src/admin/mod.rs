//! Admin listener: metrics, health, admin API.
