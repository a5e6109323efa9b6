//! A node's IPv6 address from its name (PROTOCOL.md §1).
//!
//! The search for a state whose `b` starts `fd 00` takes about 65,536 rounds: callers cache it.

use crate::speck::ernd;

/// Zero rounds after each byte of the name, and again after the whole name.
const STIR_ROUNDS: usize = 32;

/// The 16-byte address of `name` (its UTF-8 bytes); it always starts `fd00`.
pub fn name_to_ipv6(name: &[u8]) -> [u8; 16] {
    let (mut a, mut b) = (69u64, name.len() as u64);
    for &c in name {
        (a, b) = ernd(a, b, c as u64);
        for _ in 0..STIR_ROUNDS {
            (a, b) = ernd(a, b, 0);
        }
    }
    for _ in 0..STIR_ROUNDS {
        (a, b) = ernd(a, b, 0);
    }
    // Low two bytes of `b`, little-endian, must read fd 00.
    while b & 0xffff != 0x00fd {
        (a, b) = ernd(a, b, 0);
    }
    let mut address = [0u8; 16];
    address[..8].copy_from_slice(&b.to_le_bytes());
    address[8..].copy_from_slice(&a.to_le_bytes());
    address
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_vectors::vectors;

    fn groups(address: &[u8; 16]) -> String {
        let groups: Vec<String> = address
            .chunks(2)
            .map(|g| format!("{:02x}{:02x}", g[0], g[1]))
            .collect();
        groups.join(":")
    }

    #[test]
    fn name_to_ipv6_vectors() {
        for v in vectors()["name_to_ipv6"].as_array().unwrap() {
            let name = v["name"].as_str().unwrap();
            assert_eq!(
                groups(&name_to_ipv6(name.as_bytes())),
                v["ipv6"].as_str().unwrap()
            );
        }
    }
}
