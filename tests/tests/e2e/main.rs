//! End-to-end tests of samenop: a real server on loopback, real mutual TLS,
//! real storage on disk. One test binary; one module per concern.

#![allow(clippy::expect_used, clippy::unwrap_used, missing_docs)]

mod audit;
mod audit_family;
mod consult;
mod device_power;
mod directory;
mod events;
mod family;
mod handshake;
mod identity;
mod input;
mod kept;
mod matrix;
mod metrics;
mod posts;
mod raw;
mod restart;
mod retention;
mod rights;
mod sends;
mod service;
mod thread;
mod undecodable;
