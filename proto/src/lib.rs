//! The hallmark.v1 contract: the gRPC services (proto/hallmark/v1/hallmark.proto,
//! compiled with tonic and prost) and the signed token formats they carry
//! ([`eat`]: attestation evidence and results). Conversions to domain types
//! live in the crates that own those types.
//!
//! # Layout
//! - [`v1`]: generated messages, clients and servers.
//! - [`eat`]: EAT evidence and CWT attestation results as COSE_Sign1.
//! - [`trust`]: rustls verifiers for cloud services, from a trust bundle.

pub mod eat;
pub mod trust;

/// hallmark.v1 messages, clients (`*_client`) and servers (`*_server`).
#[allow(clippy::all, clippy::pedantic, clippy::unwrap_used, missing_docs)]
pub mod v1 {
    tonic::include_proto!("hallmark.v1");

    /// Encoded `FileDescriptorSet` of the contract, for gRPC server reflection.
    pub const FILE_DESCRIPTOR_SET: &[u8] =
        include_bytes!(concat!(env!("OUT_DIR"), "/hallmark_descriptor.bin"));
}
