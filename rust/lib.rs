//! smolmesh's per-byte and per-packet core: Speck128/128, multispeck, the legacy_tcp and
//! secure_tcp link codecs, mesh packet triage, the duplicate filter and TCP coalescing of TUN
//! writes. Sans-IO: bytes and `now_ms` in, bytes out.
//!
//! Only `python` touches pyo3; everything else is plain Rust, tested with `cargo test`.

pub mod address;
pub mod constants;
pub mod dedup;
pub mod error;
pub mod gro;
pub mod icmp;
pub mod link;
pub mod multispeck;
pub mod packet;
pub mod packet_hash;
pub mod secure;
pub mod speck;

#[cfg(feature = "python")]
mod python;

#[cfg(test)]
mod test_vectors;

pub use error::Error;
