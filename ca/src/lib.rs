//! Hallmark's CA: keys, certificate profiles, issuance, revocation, storage
//! and audit. Pure logic (profiles, validation, audit chaining) does no I/O;
//! the store and the offline operations are thin layers around it.
//!
//! # Layout
//! - [`profile`]: the certificate profiles as pure functions (build + check).
//! - [`authority`]: the unlocked hierarchy and issuance through the signer seam.
//! - [`signer`]: the [`signer::CaSigner`] trait (HSM seam) and the software key.
//! - [`sealed`]: CA keys and secrets encrypted at rest (Argon2id + ChaCha20-Poly1305).
//! - [`keys`]: key algorithms, generation, 0600 writes.
//! - [`serial`], [`random`], [`clock`]: serial numbers, CSPRNG helpers, time.
//! - [`validate`]: input validation for names that reach certificates.
//! - [`csr`]: PKCS#10 checks (proof of possession, allowed key types).
//! - [`crl`]: CRLs per issuing CA.
//! - [`records`]: the records kept in the store.
//! - [`store`]: storage traits, the sled backend, the conformance suite.
//! - [`audit`]: the hash-chained audit log (pure).
//! - [`config`], [`layout`], [`identity`]: hallmark.toml, the CA folder, identity folders.
//! - [`ops`]: the offline operations behind the `hallmark-ca` binary.
//! - [`client`]: mTLS gRPC channels for the operator and station tools.
//! - [`der`]: the few DER encodings done by hand.

pub mod audit;
pub mod authority;
pub mod client;
pub mod clock;
pub mod config;
pub mod crl;
pub mod csr;
pub mod der;
pub mod error;
pub mod identity;
pub mod keys;
pub mod layout;
pub mod ops;
pub mod profile;
pub mod random;
pub mod records;
pub mod sealed;
pub mod serial;
pub mod signer;
pub mod store;
pub mod validate;

pub use error::{Error, Result};
