//! Speck128/128 (PROTOCOL.md §1): the round, the key schedule, one block, and the counter-mode
//! keystream that encrypts each direction of a link.
//!
//! The keystream is the hot path of every byte on a link, so blocks are made `BATCH_BLOCKS` at a
//! time in lockstep: the loops over the batch have no dependencies between lanes and the compiler
//! turns them into vector code. The same portable function is compiled again with AVX2 and with
//! AVX-512 enabled and picked at run time, which gives the 64-bit vector rotates Speck wants.

use crate::constants::KEY_LEN;

/// Rounds of Speck128/128.
pub const ROUNDS: usize = 32;
/// Blocks the keystream makes per step; 16 blocks fill two AVX-512 registers per word.
const BATCH_BLOCKS: usize = 16;
const BATCH_BYTES: usize = BATCH_BLOCKS * 16;

/// One Speck round: `x = (ror(x, 8) + y) ^ k; y = rol(y, 3) ^ x`.
#[inline(always)]
pub fn ernd(x: u64, y: u64, k: u64) -> (u64, u64) {
    let x = x.rotate_right(8).wrapping_add(y) ^ k;
    let y = y.rotate_left(3) ^ x;
    (x, y)
}

/// The 32 round keys of a 16-byte key.
pub fn round_keys(key: &[u8; KEY_LEN]) -> [u64; ROUNDS] {
    let mut b = u64::from_le_bytes(key[..8].try_into().expect("8 bytes"));
    let mut a = u64::from_le_bytes(key[8..].try_into().expect("8 bytes"));
    let mut rk = [0u64; ROUNDS];
    for (i, slot) in rk.iter_mut().enumerate() {
        *slot = b;
        (a, b) = ernd(a, b, i as u64);
    }
    rk
}

/// Encrypts the block `(x, y)`, `x` being the high word.
pub fn encrypt_block(rk: &[u64; ROUNDS], mut x: u64, mut y: u64) -> (u64, u64) {
    for &k in rk {
        (x, y) = ernd(x, y, k);
    }
    (x, y)
}

/// Speck128/128 in counter mode. The counter is incremented before each block, so the first
/// block encrypts 1. A keystream runs on across calls: bytes made but not used yet are kept.
#[derive(Clone)]
pub struct Keystream {
    rk: [u64; ROUNDS],
    /// Counter value of the last block made.
    counter: u128,
    spare: [u8; BATCH_BYTES],
    /// First unused byte of `spare`; `BATCH_BYTES` when all are used.
    spare_at: usize,
}

impl Keystream {
    pub fn new(key: &[u8; KEY_LEN]) -> Self {
        Keystream {
            rk: round_keys(key),
            counter: 0,
            spare: [0; BATCH_BYTES],
            spare_at: BATCH_BYTES,
        }
    }

    /// XORs the next `data.len()` keystream bytes into `data`.
    pub fn apply(&mut self, data: &mut [u8]) {
        let at = data.as_mut_ptr();
        // SAFETY: `data` is `data.len()` readable and writable bytes; source and destination
        // being the same bytes is allowed.
        unsafe { self.xor_next(at, at, data.len()) }
    }

    /// Writes `src` XOR the next `src.len()` keystream bytes into `dst`: decryption or
    /// encryption and a copy in one pass over the bytes.
    pub fn apply_copy(&mut self, src: &[u8], dst: &mut [u8]) {
        assert_eq!(
            src.len(),
            dst.len(),
            "source and destination of equal length"
        );
        // SAFETY: both are `src.len()` bytes; `dst` is writable and, being `&mut`, distinct.
        unsafe { self.xor_next(src.as_ptr(), dst.as_mut_ptr(), src.len()) }
    }

    /// `dst[i] = src[i] ^ keystream` for the next `len` bytes.
    ///
    /// # Safety
    /// `src` is valid for reading and `dst` for writing `len` bytes; they are the same bytes or
    /// do not overlap.
    unsafe fn xor_next(&mut self, src: *const u8, dst: *mut u8, len: usize) {
        let take = len.min(BATCH_BYTES - self.spare_at);
        // SAFETY (this function): the caller's promise; every offset below stays under `len`.
        unsafe {
            xor_raw(src, dst, &self.spare[self.spare_at..self.spare_at + take]);
            self.spare_at += take;
            let mut at = take;
            while len - at >= BATCH_BYTES {
                xor_counters(
                    &self.rk,
                    self.counter.wrapping_add(1),
                    src.add(at),
                    dst.add(at),
                );
                self.counter = self.counter.wrapping_add(BATCH_BLOCKS as u128);
                at += BATCH_BYTES;
            }
            if at < len {
                let mut spare = [0u8; BATCH_BYTES];
                self.next_batch(&mut spare);
                xor_raw(src.add(at), dst.add(at), &spare[..len - at]);
                self.spare = spare;
                self.spare_at = len - at;
            }
        }
    }

    fn next_batch(&mut self, out: &mut [u8; BATCH_BYTES]) {
        encrypt_counters(&self.rk, self.counter.wrapping_add(1), out);
        self.counter = self.counter.wrapping_add(BATCH_BLOCKS as u128);
    }
}

/// The first `len` bytes of the keystream of `key`.
pub fn keystream(key: &[u8; KEY_LEN], len: usize) -> Vec<u8> {
    let mut out = vec![0u8; len];
    Keystream::new(key).apply(&mut out);
    out
}

/// `dst[i] = src[i] ^ key[i]` for each byte of `key`, a word at a time: the head and tail of a
/// packet's stretch of keystream go through here, up to 255 bytes each.
///
/// # Safety
/// As for `Keystream::xor_next`, over `key.len()` bytes.
#[inline(always)]
unsafe fn xor_raw(src: *const u8, dst: *mut u8, key: &[u8]) {
    let words = key.len() / 8;
    for w in 0..words {
        let k = u64::from_ne_bytes(key[8 * w..8 * w + 8].try_into().expect("8 bytes"));
        // SAFETY: the caller's promise; unaligned 8-byte access within the `key.len()` bytes.
        unsafe {
            let d = src.add(8 * w).cast::<u64>().read_unaligned();
            dst.add(8 * w).cast::<u64>().write_unaligned(d ^ k);
        }
    }
    for (i, k) in key.iter().enumerate().skip(8 * words) {
        // SAFETY: the caller's promise.
        unsafe { *dst.add(i) = *src.add(i) ^ k };
    }
}

/// Encrypts counters `first..first + BATCH_BLOCKS` into `out`, with AVX-512 when the CPU has it.
fn encrypt_counters(rk: &[u64; ROUNDS], first: u128, out: &mut [u8; BATCH_BYTES]) {
    #[cfg(target_arch = "x86_64")]
    {
        // The vector path keeps the high word fixed across the batch.
        let no_carry = (first as u64)
            .checked_add(BATCH_BLOCKS as u64 - 1)
            .is_some();
        if no_carry && avx512::available() {
            // SAFETY: the CPU has the features the function is compiled for.
            return unsafe { avx512::encrypt_counters(rk, first, out) };
        }
    }
    encrypt_counters_portable(rk, first, out)
}

/// `dst = src ^` the encryption of counters `first..first + BATCH_BLOCKS`.
///
/// # Safety
/// As for `Keystream::xor_next`, over `BATCH_BYTES` bytes.
unsafe fn xor_counters(rk: &[u64; ROUNDS], first: u128, src: *const u8, dst: *mut u8) {
    #[cfg(target_arch = "x86_64")]
    {
        let no_carry = (first as u64)
            .checked_add(BATCH_BLOCKS as u64 - 1)
            .is_some();
        if no_carry && avx512::available() {
            // SAFETY: the CPU has the features the function is compiled for; the caller's promise.
            return unsafe { avx512::xor_counters(rk, first, src, dst) };
        }
    }
    let mut block = [0u8; BATCH_BYTES];
    encrypt_counters_portable(rk, first, &mut block);
    // SAFETY: the caller's promise.
    unsafe { xor_raw(src, dst, &block) }
}

#[cfg(target_arch = "x86_64")]
pub(crate) mod avx512 {
    use super::{BATCH_BYTES, ROUNDS};
    use std::arch::x86_64::*;

    pub fn available() -> bool {
        std::arch::is_x86_feature_detected!("avx512f")
    }

    /// One Speck round on eight lanes.
    #[inline(always)]
    pub fn round(x: __m512i, y: __m512i, k: __m512i) -> (__m512i, __m512i) {
        // SAFETY (for the callers' `target_feature`): pure register arithmetic.
        unsafe {
            let x = _mm512_xor_si512(_mm512_add_epi64(_mm512_ror_epi64::<8>(x), y), k);
            let y = _mm512_xor_si512(_mm512_rol_epi64::<3>(y), x);
            (x, y)
        }
    }

    /// `first` must not carry into the high word within the batch.
    #[target_feature(enable = "avx512f")]
    pub fn encrypt_counters(rk: &[u64; ROUNDS], first: u128, out: &mut [u8; BATCH_BYTES]) {
        for (chunk, w) in out.chunks_exact_mut(64).zip(blocks(rk, first)) {
            // SAFETY: `chunk` is 64 writable bytes; the store is unaligned.
            unsafe { _mm512_storeu_si512(chunk.as_mut_ptr().cast(), w) };
        }
    }

    /// As `encrypt_counters`, XORed with `src` into `dst` without a trip through memory.
    ///
    /// # Safety
    /// `src` is valid for reading and `dst` for writing `BATCH_BYTES` bytes (the same bytes or
    /// apart); `first` must not carry into the high word within the batch.
    #[target_feature(enable = "avx512f")]
    pub unsafe fn xor_counters(rk: &[u64; ROUNDS], first: u128, src: *const u8, dst: *mut u8) {
        for (i, w) in blocks(rk, first).into_iter().enumerate() {
            // SAFETY: the caller's promise; unaligned access to bytes `64 * i..64 * i + 64`.
            unsafe {
                let d = _mm512_loadu_si512(src.add(64 * i).cast());
                _mm512_storeu_si512(dst.add(64 * i).cast(), _mm512_xor_si512(d, w));
            }
        }
    }

    /// The 16 keystream blocks of counters `first..`, in wire order, 4 per register.
    #[target_feature(enable = "avx512f")]
    fn blocks(rk: &[u64; ROUNDS], first: u128) -> [__m512i; 4] {
        let high = _mm512_set1_epi64((first >> 64) as i64);
        let low = _mm512_add_epi64(
            _mm512_set1_epi64(first as u64 as i64),
            _mm512_set_epi64(7, 6, 5, 4, 3, 2, 1, 0),
        );
        let (mut x0, mut y0) = (high, low);
        let (mut x1, mut y1) = (high, _mm512_add_epi64(low, _mm512_set1_epi64(8)));
        for &k in rk {
            let k = _mm512_set1_epi64(k as i64);
            (x0, y0) = round(x0, y0, k);
            (x1, y1) = round(x1, y1, k);
        }
        // Block i is x[i] || y[i]: interleave the words of each pair of registers.
        let first_half = _mm512_set_epi64(11, 3, 10, 2, 9, 1, 8, 0);
        let second_half = _mm512_set_epi64(15, 7, 14, 6, 13, 5, 12, 4);
        [
            _mm512_permutex2var_epi64(x0, first_half, y0),
            _mm512_permutex2var_epi64(x0, second_half, y0),
            _mm512_permutex2var_epi64(x1, first_half, y1),
            _mm512_permutex2var_epi64(x1, second_half, y1),
        ]
    }
}

#[inline(always)]
fn encrypt_counters_portable(rk: &[u64; ROUNDS], first: u128, out: &mut [u8; BATCH_BYTES]) {
    let mut x = [0u64; BATCH_BLOCKS];
    let mut y = [0u64; BATCH_BLOCKS];
    for i in 0..BATCH_BLOCKS {
        let counter = first.wrapping_add(i as u128);
        x[i] = (counter >> 64) as u64;
        y[i] = counter as u64;
    }
    for &k in rk {
        for i in 0..BATCH_BLOCKS {
            (x[i], y[i]) = ernd(x[i], y[i], k);
        }
    }
    for (i, block) in out.chunks_exact_mut(16).enumerate() {
        block[..8].copy_from_slice(&x[i].to_le_bytes());
        block[8..].copy_from_slice(&y[i].to_le_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_vectors::{hex, key16, vectors};

    #[test]
    fn ernd_vectors() {
        for v in vectors()["ernd"].as_array().unwrap() {
            let n = |k: &str| v[k].as_u64().unwrap();
            assert_eq!(ernd(n("x"), n("y"), n("k")), (n("out_x"), n("out_y")));
        }
    }

    #[test]
    fn speck128_128_vectors() {
        for v in vectors()["speck128_128"].as_array().unwrap() {
            let word = |k: &str| u64::from_str_radix(v[k].as_str().unwrap(), 16).unwrap();
            let rk = round_keys(&key16(&v["key"]));
            for (i, want) in v["round_keys_first4"]
                .as_array()
                .unwrap()
                .iter()
                .enumerate()
            {
                assert_eq!(
                    rk[i],
                    u64::from_str_radix(want.as_str().unwrap(), 16).unwrap()
                );
            }
            assert_eq!(
                encrypt_block(&rk, word("pt_x"), word("pt_y")),
                (word("ct_x"), word("ct_y"))
            );
        }
    }

    #[test]
    fn keystream_vectors() {
        for v in vectors()["keystream"].as_array().unwrap() {
            let want = hex(&v["first_bytes"]);
            assert_eq!(keystream(&key16(&v["enc_key"]), want.len()), want);
        }
    }

    /// Block by block from the definition, to check the batched and vector paths against.
    fn keystream_by_blocks(key: &[u8; KEY_LEN], len: usize) -> Vec<u8> {
        let rk = round_keys(key);
        let mut out = Vec::new();
        let mut counter = 0u128;
        while out.len() < len {
            counter += 1;
            let (x, y) = encrypt_block(&rk, (counter >> 64) as u64, counter as u64);
            out.extend_from_slice(&x.to_le_bytes());
            out.extend_from_slice(&y.to_le_bytes());
        }
        out.truncate(len);
        out
    }

    #[test]
    fn keystream_runs_on_across_calls_of_any_size() {
        let key = *b"0123456789abcdef";
        let want = keystream_by_blocks(&key, 5000);
        assert_eq!(keystream(&key, 5000), want);
        assert_eq!(encrypt_counters_portable_bytes(&key), want[..BATCH_BYTES]);
        for step in [1, 2, 15, 16, 17, 255, 256, 257, 1000] {
            let mut ks = Keystream::new(&key);
            let mut got = vec![0u8; 5000];
            for (n, piece) in got.chunks_mut(step).enumerate() {
                // Vary the sizes so every alignment of call and batch boundary occurs.
                let (a, b) = piece.split_at_mut(piece.len().min(n % 3));
                ks.apply(a);
                ks.apply(b);
            }
            assert_eq!(got, want, "step {step}");
        }
    }

    #[test]
    fn apply_copy_is_apply_on_a_copy() {
        let key = *b"0123456789abcdef";
        let src: Vec<u8> = (0..5000u32).map(|i| (i * 7 + i / 256) as u8).collect();
        let mut want = src.clone();
        Keystream::new(&key).apply(&mut want);
        for step in [1, 2, 15, 16, 17, 255, 256, 257, 1000] {
            let (mut copying, mut got) = (Keystream::new(&key), vec![0u8; src.len()]);
            for (from, to) in src.chunks(step).zip(got.chunks_mut(step)) {
                copying.apply_copy(from, to);
            }
            assert_eq!(got, want, "step {step}");
        }
    }

    fn encrypt_counters_portable_bytes(key: &[u8; KEY_LEN]) -> [u8; BATCH_BYTES] {
        let mut out = [0u8; BATCH_BYTES];
        encrypt_counters_portable(&round_keys(key), 1, &mut out);
        out
    }

    #[test]
    fn counter_carries_into_the_high_word() {
        let rk = round_keys(b"0123456789abcdef");
        let mut out = [0u8; BATCH_BYTES];
        encrypt_counters(&rk, u64::MAX as u128, &mut out);
        let (x, y) = encrypt_block(&rk, 1, 0);
        assert_eq!(out[16..24], x.to_le_bytes());
        assert_eq!(out[24..32], y.to_le_bytes());
        let mut data = [0u8; BATCH_BYTES];
        let at = data.as_mut_ptr();
        // SAFETY: `data` is BATCH_BYTES bytes, XORed in place.
        unsafe { xor_counters(&rk, u64::MAX as u128, at, at) };
        assert_eq!(data, out);
    }
}
