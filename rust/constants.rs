//! The numbers PROTOCOL.md fixes. Implementation tuning lives beside the code it tunes.

/// Bytes of a link IV (PROTOCOL.md §2).
pub const IV_LEN: usize = 16;
/// Bytes of a hello: `iv || keyfinder`.
pub const HELLO_LEN: usize = 32;
/// Bytes of a keyfinder, a derived key, a frame MAC: one multispeck output.
pub const MAC_LEN: usize = 16;
/// Bytes of a Speck128/128 key.
pub const KEY_LEN: usize = 16;
/// Bytes of a frame's length prefix (u16 LE).
pub const LENGTH_LEN: usize = 2;
/// Bytes of a mesh packet header: `timestamp_ms (u64 LE) || cmd (u8)`.
pub const HEADER_LEN: usize = 9;
/// Largest mesh packet a frame can carry.
pub const MAX_PACKET_LEN: usize = 65535;
/// Packets older or newer than this, relative to now, are dropped (PROTOCOL.md §3 step 2).
pub const WINDOW_MS: u64 = 180_000;
/// Distinct packets the duplicate filter remembers (PROTOCOL.md §3 step 3).
pub const DUPLICATE_FILTER_CAPACITY: usize = 16384;

/// "I am this node": payload is the node name, UTF-8.
pub const CMD_NAME: u8 = 0;
/// "I handle this IPv6 address": payload is 16 bytes.
pub const CMD_IPV6: u8 = 1;
/// "I handle this IPv4 address": payload is 4 bytes.
pub const CMD_IPV4: u8 = 2;
/// Data: payload is an IPv4 or IPv6 packet.
pub const CMD_DATA: u8 = 3;
