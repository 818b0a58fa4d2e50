//! Hallmark's server: factory provisioning, administration, and (as they
//! land) enrollment, attestation and verification, over gRPC with mTLS; plus
//! the station tool's client side.
//!
//! # Layout
//! - [`server`]: binds gRPC (TLS 1.3, client certificates) and HTTP; graceful shutdown.
//! - [`tls`]: the one rustls policy of every endpoint.
//! - [`auth`]: the caller's role from its certificate, looked up in the store.
//! - [`provision`]: the provisioning flow (pure of the wire; store + CA).
//! - [`setup_code`]: unique per-device setup codes and their keyed hash.
//! - [`enrollment`]: challenges, enrollment, renewal, attestation (flows 2-4).
//! - [`attestation`]: evidence checks and appraisal (pure), result signing.
//! - [`admin`], [`revoke`]: administration and revocation.
//! - [`verify`]: the Verify answer for cloud services.
//! - [`ownership`]: owner claims with brute-force protection.
//! - [`ocsp`]: the OCSP responder with delegated signers.
//! - [`publish`]: CRLs and the TLS configuration that honours them.
//! - [`service`]: the gRPC services, thin over the modules above.
//! - [`convert`]: protobuf <-> domain types, in one place.
//! - [`http`], [`metrics`]: health, Prometheus metrics.
//! - [`ratelimit`]: token buckets.
//! - [`admission`]: the enrollment gate that spreads a storm with retry hints.
//! - [`state`]: what a running server holds.
//! - [`station`]: the station tool's logic (single and batch provisioning).
//! - [`label`]: QR-code labels (PNG) with device ID and setup code.
//! - [`demo`]: `hallmark-provisioner demo`, the whole lifecycle in a temp folder.
//! - [`error`]: the crate's error and its mapping to gRPC statuses.

pub mod admin;
pub mod admission;
pub mod attestation;
pub mod auth;
pub mod convert;
pub mod demo;
pub mod enrollment;
pub mod error;
pub mod http;
pub mod label;
pub mod metrics;
pub mod ocsp;
pub mod ownership;
pub mod provision;
pub mod publish;
pub mod ratelimit;
pub mod revoke;
pub mod server;
pub mod service;
pub mod setup_code;
pub mod state;
pub mod station;
pub mod tls;
pub mod verify;

pub use error::{Error, Result};
