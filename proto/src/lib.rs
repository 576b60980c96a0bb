//! The `samenop.v1` protocol, generated from the `.proto` files under
//! `proto/samenop/v1/` at build time (protox, no system protoc), and the
//! local agent's `samenop.agent.v1` under `proto/samenop/agent/v1/`.
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

/// The `samenop.agent.v1` package: the local agent's encrypted-thread
/// calls (see `proto/samenop/agent/v1/agent.proto`).
pub mod agent {
    /// Version 1.
    #[allow(missing_docs, unreachable_pub, clippy::all, clippy::pedantic)]
    pub mod v1 {
        tonic::include_proto!("samenop.agent.v1");
    }
}

/// The encoded `FileDescriptorSet` of `samenop.agent.v1` with `samenop.v1`,
/// for the agent's reflection service.
pub const AGENT_FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/samenop_agent_descriptor.bin"));

/// The encoded `FileDescriptorSet` of `samenop.v1`, for gRPC server reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/samenop_v1_descriptor.bin"));

/// The request metadata key that names the acting professional (their id).
pub const PROFESSIONAL_METADATA_KEY: &str = "samenop-professional";
