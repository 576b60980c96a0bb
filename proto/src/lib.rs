//! The `samenop.v1` protocol, generated from the `.proto` files under
//! `proto/samenop/v1/` at build time (protox, no system protoc).
//!
//! Server and client both use this crate: the messages are prost types, the
//! services tonic clients and servers. Calls that no server version implements
//! yet answer UNIMPLEMENTED through tonic's default stubs.

pub mod codec;

/// The `samenop.v1` package: messages, enums, service clients and servers.
#[allow(missing_docs, unreachable_pub, clippy::all, clippy::pedantic)]
pub mod v1 {
    tonic::include_proto!("samenop.v1");
}

/// The encoded `FileDescriptorSet` of `samenop.v1`, for gRPC server reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/samenop_v1_descriptor.bin"));

/// The request metadata key that names the acting professional (their id).
pub const PROFESSIONAL_METADATA_KEY: &str = "samenop-professional";
