//! Hallmark on the device: the birth key and CSR, first-boot enrollment with
//! attestation evidence, renewal for life, factory reset. Depends only on the
//! contract crate (hallmark-proto), never on the CA or the server.
//!
//! # Layout
//! - [`device`]: the device's life (init, enroll, attest, renew, reset, status).
//! - [`keystore`]: the key-store trait and its file backend.
//! - [`tls`]: the mTLS client, with a time floor for clockless devices.
//! - [`schedule`]: renewal timing and reconnection backoff with jitter (pure).
//! - [`runner`]: `run`: stay enrolled, renew, reconnect with backoff.
//! - [`layout`]: the state folder.
//! - [`error`]: the crate's error type.

pub mod device;
pub mod error;
pub mod keystore;
pub mod layout;
pub mod runner;
pub mod schedule;
pub mod tls;

pub use error::{Error, Result};
