//! The one error type of the crate. `python.rs` maps each case to an exception class.

use std::fmt;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Error {
    /// The peer's side: a frame's MAC did not verify, now or earlier on this link.
    BadMac,
    /// Our side: a packet too long for a frame's u16 length.
    PacketTooLong(usize),
    /// Our side: a key, IV or hello of the wrong size.
    WrongSize {
        what: &'static str,
        expected: usize,
        got: usize,
    },
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::BadMac => write!(
                f,
                "frame MAC mismatch: the link stream is forged or corrupt"
            ),
            Error::PacketTooLong(len) => write!(
                f,
                "packet of {len} bytes is longer than the {} a frame can carry",
                crate::constants::MAX_PACKET_LEN
            ),
            Error::WrongSize {
                what,
                expected,
                got,
            } => write!(f, "{what} must be {expected} bytes, not {got}"),
        }
    }
}

impl std::error::Error for Error {}

/// `bytes` as a fixed-size array, or `WrongSize` naming `what`.
pub fn sized<const N: usize>(what: &'static str, bytes: &[u8]) -> Result<[u8; N], Error> {
    bytes.try_into().map_err(|_| Error::WrongSize {
        what,
        expected: N,
        got: bytes.len(),
    })
}
