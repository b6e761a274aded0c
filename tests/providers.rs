//! Provider adapters, the pooled upstream client and health tracking, tested
//! against real loopback servers that record exactly what they receive.

mod providers {
    pub mod client;
    pub mod health;
    pub mod mock;
    pub mod sigv4;
    pub mod support;
    pub mod wire;
}
