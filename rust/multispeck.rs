//! multispeck (PROTOCOL.md §1): the hash smolmesh2 uses as KDF (3 parts) and as frame MAC
//! (2 parts: the MAC key, then the packet).
//!
//! The MAC is one Speck round per byte, each depending on the one before, so one MAC cannot go
//! faster than the latency of a round. Many MACs can: `MacKey::mac_many` runs `LANES` messages in
//! lockstep, one vector lane each, compiled for AVX-512 or AVX2 when the CPU has them.

use crate::constants::MAC_LEN;
use crate::speck::ernd;

/// Messages whose MACs are computed side by side: one AVX-512 register of u64 per word.
pub const LANES: usize = 8;

const START_A: u64 = 69;

/// Absorbs one part: its length, its bytes, then a zero round.
#[inline(always)]
fn absorb_part(mut a: u64, mut b: u64, part: &[u8]) -> (u64, u64) {
    (a, b) = ernd(a, b, part.len() as u64);
    for &c in part {
        (a, b) = ernd(a, b, c as u64);
    }
    ernd(a, b, 0)
}

fn digest(a: u64, b: u64) -> [u8; MAC_LEN] {
    let mut out = [0u8; MAC_LEN];
    out[..8].copy_from_slice(&a.to_le_bytes());
    out[8..].copy_from_slice(&b.to_le_bytes());
    out
}

/// multispeck of any number of parts.
pub fn multispeck(parts: &[&[u8]]) -> [u8; MAC_LEN] {
    let (mut a, mut b) = (START_A, parts.len() as u64);
    for part in parts {
        (a, b) = absorb_part(a, b, part);
    }
    digest(a, b)
}

/// A MAC key, absorbed once: the state of `multispeck(mac_key, message)` before the message.
#[derive(Clone, Copy, Debug)]
pub struct MacKey {
    a: u64,
    b: u64,
}

impl MacKey {
    pub fn new(mac_key: &[u8]) -> Self {
        let (a, b) = absorb_part(START_A, 2, mac_key);
        MacKey { a, b }
    }

    /// `multispeck(mac_key, message)`.
    pub fn mac(&self, message: &[u8]) -> [u8; MAC_LEN] {
        let (a, b) = absorb_part(self.a, self.b, message);
        digest(a, b)
    }

    /// The MACs of `messages`, in order, computed `LANES` at a time.
    pub fn mac_many(&self, messages: &[&[u8]]) -> Vec<[u8; MAC_LEN]> {
        let mut out = vec![[0u8; MAC_LEN]; messages.len()];
        if messages.len() < LANES / 2 {
            for (m, o) in messages.iter().zip(&mut out) {
                *o = self.mac(m);
            }
            return out;
        }
        // Lanes run in lockstep for the shortest message of a group, so group similar lengths.
        let mut order: Vec<usize> = (0..messages.len()).collect();
        order.sort_by_key(|&i| messages[i].len());
        for group in order.chunks(LANES) {
            // A short last group repeats its last message in the spare lanes: same cost.
            let pick = |lane: usize| group[lane.min(group.len() - 1)];
            let lanes: [&[u8]; LANES] = std::array::from_fn(|lane| messages[pick(lane)]);
            let macs = mac_lanes(*self, &lanes);
            for (lane, &i) in group.iter().enumerate() {
                out[i] = macs[lane];
            }
        }
        out
    }
}

fn mac_lanes(key: MacKey, messages: &[&[u8]; LANES]) -> [[u8; MAC_LEN]; LANES] {
    #[cfg(target_arch = "x86_64")]
    if crate::speck::avx512::available() {
        // SAFETY: the CPU has the features the function is compiled for.
        return unsafe { mac_lanes_avx512(key, messages) };
    }
    mac_lanes_portable(key, messages)
}

/// The lockstep loop of `mac_lanes_portable` with one message per 64-bit lane of a register.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bw")]
fn mac_lanes_avx512(key: MacKey, messages: &[&[u8]; LANES]) -> [[u8; MAC_LEN]; LANES] {
    use crate::speck::avx512::round;
    use std::arch::x86_64::*;

    let lens: [u64; LANES] = std::array::from_fn(|i| messages[i].len() as u64);
    // SAFETY: an unaligned load of 8 u64s from an array of 8 u64s.
    let lens = unsafe { _mm512_loadu_si512(lens.as_ptr().cast()) };
    let (mut a, mut b) = round(
        _mm512_set1_epi64(key.a as i64),
        _mm512_set1_epi64(key.b as i64),
        lens,
    );
    // Byte `s` of each lane, moved to the bottom of the lane: one shuffle per round. The
    // shuffle indexes bytes within 128 bits, so odd lanes find their bytes 8 further on.
    let pick: [__m512i; 8] = std::array::from_fn(|s| {
        let even = (0x8080_8080_8080_8000u64 | s as u64) as i64;
        let odd = even + 8;
        _mm512_set_epi64(odd, even, odd, even, odd, even, odd, even)
    });
    let common = messages.iter().map(|m| m.len()).min().unwrap_or(0);
    let words = common / 8;
    for w in 0..words {
        let word = |i: usize| {
            let bytes: [u8; 8] = messages[i][w * 8..w * 8 + 8].try_into().expect("8 bytes");
            i64::from_le_bytes(bytes)
        };
        let bytes = _mm512_set_epi64(
            word(7),
            word(6),
            word(5),
            word(4),
            word(3),
            word(2),
            word(1),
            word(0),
        );
        for p in pick {
            (a, b) = round(a, b, _mm512_shuffle_epi8(bytes, p));
        }
    }
    let (mut a_out, mut b_out) = ([0u64; LANES], [0u64; LANES]);
    // SAFETY: unaligned stores of 8 u64s into arrays of 8 u64s.
    unsafe {
        _mm512_storeu_si512(a_out.as_mut_ptr().cast(), a);
        _mm512_storeu_si512(b_out.as_mut_ptr().cast(), b);
    }
    std::array::from_fn(|i| {
        let (mut ai, mut bi) = (a_out[i], b_out[i]);
        for &c in &messages[i][words * 8..] {
            (ai, bi) = ernd(ai, bi, c as u64);
        }
        (ai, bi) = ernd(ai, bi, 0);
        digest(ai, bi)
    })
}

#[inline(always)]
fn mac_lanes_portable(key: MacKey, messages: &[&[u8]; LANES]) -> [[u8; MAC_LEN]; LANES] {
    let mut a = [0u64; LANES];
    let mut b = [0u64; LANES];
    for i in 0..LANES {
        (a[i], b[i]) = ernd(key.a, key.b, messages[i].len() as u64);
    }
    let common = messages.iter().map(|m| m.len()).min().unwrap_or(0);
    let words = common / 8;
    for w in 0..words {
        // Eight bytes of every lane per load, then eight rounds on shifted copies.
        let mut bytes = [0u64; LANES];
        for i in 0..LANES {
            bytes[i] = u64::from_le_bytes(messages[i][w * 8..w * 8 + 8].try_into().expect("8"));
        }
        for _ in 0..8 {
            for i in 0..LANES {
                (a[i], b[i]) = ernd(a[i], b[i], bytes[i] & 0xff);
                bytes[i] >>= 8;
            }
        }
    }
    let mut out = [[0u8; MAC_LEN]; LANES];
    for i in 0..LANES {
        let (mut ai, mut bi) = (a[i], b[i]);
        for &c in &messages[i][words * 8..] {
            (ai, bi) = ernd(ai, bi, c as u64);
        }
        (ai, bi) = ernd(ai, bi, 0);
        out[i] = digest(ai, bi);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_vectors::{hex, vectors};

    #[test]
    fn multispeck_vectors() {
        for v in vectors()["multispeck"].as_array().unwrap() {
            let parts: Vec<Vec<u8>> = v["parts"].as_array().unwrap().iter().map(hex).collect();
            let refs: Vec<&[u8]> = parts.iter().map(Vec::as_slice).collect();
            assert_eq!(multispeck(&refs).to_vec(), hex(&v["out"]));
            if refs.len() == 2 {
                assert_eq!(MacKey::new(refs[0]).mac(refs[1]).to_vec(), hex(&v["out"]));
            }
        }
    }

    #[test]
    fn mac_many_matches_one_by_one() {
        let key = MacKey::new(b"mac key");
        let messages: Vec<Vec<u8>> = (0..40)
            .map(|i| (0..(i * 37) % 301).map(|j| (i * 7 + j) as u8).collect())
            .collect();
        for count in [0, 1, 3, 4, 7, 8, 9, 17, 40] {
            let refs: Vec<&[u8]> = messages[..count].iter().map(Vec::as_slice).collect();
            let want: Vec<_> = refs.iter().map(|m| key.mac(m)).collect();
            assert_eq!(key.mac_many(&refs), want, "{count} messages");
            let portable: Vec<&[u8]> = refs.iter().copied().cycle().take(LANES).collect();
            if count > 0 {
                let got = mac_lanes_portable(key, &portable.try_into().unwrap());
                for (lane, mac) in got.iter().enumerate() {
                    assert_eq!(*mac, want[lane % count]);
                }
            }
        }
    }
}
