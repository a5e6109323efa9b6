//! The duplicate filter's packet hash: a keyed 127-bit hash of all of a packet's bytes with a
//! provable collision bound.
//!
//! Every received packet is checked, up to 64 KiB each, so the hash must run near memory speed
//! and still have a provable collision bound. It is UMAC's two layers (Black, Halevi, Krawczyk,
//! Krovetz, Rogaway, "UMAC: Fast and secure message authentication", CRYPTO '99):
//!
//! 1. NH with Toeplitz extension on each 4 KiB block (the last one zero-padded to 64 bytes):
//!    for lane `t` in 0..4, `Σ_j ((m_2j + k_2j+2t) mod 2^32) · ((m_2j+1 + k_2j+1+2t) mod 2^32)
//!    mod 2^64` over the block's 32-bit little-endian words. NH is 2^-32-almost-universal on
//!    equal-length strings and its 4-lane Toeplitz extension 2^-128: two distinct blocks of
//!    equal length give the same four outputs with probability at most 2^-128. It costs one
//!    32x32->64 multiply per 8 bytes and lane, 8 lanes per AVX-512 instruction (`pmuludq`),
//!    picked at run time like `speck`'s keystream, with AVX2 and portable fallbacks.
//! 2. A polynomial over GF(2^127 - 1) at a secret point `r` of all lane outputs, block by
//!    block, then the packet's length: `H = Σ_i s_i r^(N+1-i) + offset`, N = 4 · blocks + 1.
//!    Every coefficient is below 2^64, so distinct sequences are distinct polynomials. The length
//!    is always the coefficient of `r^1`, so packets of different lengths (say a packet and the
//!    same bytes plus trailing zeros, which the padding would otherwise confuse) differ there,
//!    and equal-length packets with different lane outputs differ in some coefficient too: the
//!    difference is a non-zero polynomial of degree at most N, with at most N roots `r`.
//!
//! Two distinct packets of at most 64 KiB (N <= 65) thus collide with probability at most
//! 2^-128 + 66 · 2^-127 < 2^-120 over the key (`r` is drawn from 2^127 values, two of which are
//! 0), for an attacker who knows neither the key nor any hash value; hashes never leave the
//! filter. The key (4 KiB of NH key, `r`, `offset`) is the Speck128/128 counter-mode keystream
//! of the 16-byte seed (`speck::keystream`), drawn per filter unless the caller gives one.
//!
//! Why this one (`benches/dedup.rs`, `dedup_hash`): SipHash-1-3, the previous hash, is a PRF
//! with no collision bound beyond that and runs at ~0.35 ns per byte here; POLYVAL over
//! GF(2^128) with a length block (the `polyval` crate) has a bound as good but took 2-3 times
//! as long from 1400 bytes up; aHash is fast on short input but has no bound at all, and
//! without AES compiled in it is no faster than SipHash on long input. NH + polynomial was 3-5
//! times faster than SipHash from 1400 bytes to 64 KiB, and no slower at 64 bytes.

use crate::constants::KEY_LEN;
use crate::speck;

/// Bytes NH compresses to one set of lane outputs; the NH key is this long plus the lane shifts.
const BLOCK_BYTES: usize = 4096;
/// Bytes NH takes per step: one AVX-512 register of message words.
const CHUNK_BYTES: usize = 64;
const CHUNK_WORDS: usize = CHUNK_BYTES / 8;
/// Toeplitz lanes of NH, each keyed one 32-bit pair further along.
const LANES: usize = 4;
/// NH key in 64-bit words, each a pair of 32-bit key words.
const KEY_WORDS: usize = BLOCK_BYTES / 8 + LANES - 1;
/// The polynomial's field, GF(2^127 - 1).
const P: u128 = (1 << 127) - 1;

type NhKey = [u64; KEY_WORDS];

/// The keyed packet hash described in the module documentation.
#[derive(Clone)]
pub struct PacketHasher {
    /// NH key as little-endian 64-bit words, each a pair of 32-bit key words like the message.
    nh_key: NhKey,
    /// `r, r^2, .., r^5` in GF(2^127 - 1).
    powers: [u128; LANES + 1],
    /// Added to every hash so that none is the same under every key (the empty packet's
    /// polynomial is 0); it cancels out of any collision, so the bound stays.
    offset: u128,
    simd: Simd,
}

#[derive(Clone, Copy)]
enum Simd {
    Portable,
    #[cfg(target_arch = "x86_64")]
    Avx2,
    #[cfg(target_arch = "x86_64")]
    Avx512,
}

impl PacketHasher {
    /// The hash keyed by the keystream of `seed`: the NH key, 16 bytes for `r`, 16 for the offset.
    pub fn new(seed: &[u8; KEY_LEN]) -> Self {
        let material = speck::keystream(seed, KEY_WORDS * 8 + 32);
        let (nh_key, rest) = material.split_at(KEY_WORDS * 8);
        let (r, offset) = rest.split_at(16);
        let u128_at = |b: &[u8]| u128::from_le_bytes(b.try_into().expect("16 bytes"));
        // 127 uniform bits; P itself is 0 in the field, which only doubles the odds of r = 0.
        let r = reduce(u128_at(r) & P);
        let mut powers = [r; LANES + 1];
        for i in 1..powers.len() {
            powers[i] = mul(powers[i - 1], r);
        }
        PacketHasher {
            nh_key: std::array::from_fn(|i| word(nh_key, i)),
            powers,
            offset: reduce(u128_at(offset)),
            simd: Simd::detect(),
        }
    }

    pub fn hash(&self, packet: &[u8]) -> u128 {
        match self.simd {
            Simd::Portable => hash(self, packet, nh_portable),
            // SAFETY: `Simd::detect` saw the CPU features these are compiled for.
            #[cfg(target_arch = "x86_64")]
            Simd::Avx2 => unsafe { x86::hash_avx2(self, packet) },
            #[cfg(target_arch = "x86_64")]
            Simd::Avx512 => unsafe { x86::hash_avx512(self, packet) },
        }
    }
}

impl Simd {
    fn detect() -> Self {
        #[cfg(target_arch = "x86_64")]
        {
            if std::arch::is_x86_feature_detected!("avx512f")
                && std::arch::is_x86_feature_detected!("avx512bw")
            {
                return Simd::Avx512;
            }
            if std::arch::is_x86_feature_detected!("avx2") {
                return Simd::Avx2;
            }
        }
        Simd::Portable
    }
}

/// Horner's rule, one block (four coefficients) per step with `r^4`; the last block and the
/// length are folded in with `r^5 .. r` so that a one-block packet costs no serial products.
#[inline(always)]
fn hash(hasher: &PacketHasher, packet: &[u8], nh: impl Fn(&NhKey, &[u8]) -> [u64; LANES]) -> u128 {
    let [r1, r2, r3, r4, r5] = hasher.powers;
    let mut blocks = packet.chunks(BLOCK_BYTES);
    let last = blocks.next_back();
    let mut acc = 0;
    for block in blocks {
        let [h0, h1, h2, h3] = nh(&hasher.nh_key, block);
        let mut sum = Wide::from(mul(acc, r4));
        sum.mul_add(h0, r4);
        sum.mul_add(h1, r3);
        sum.mul_add(h2, r2);
        sum.mul_add(h3, r1);
        acc = sum.reduce();
    }
    let mut sum = Wide::from(hasher.offset);
    if acc != 0 {
        sum.add(mul(acc, r5));
    }
    if let Some(block) = last {
        let [h0, h1, h2, h3] = nh(&hasher.nh_key, block);
        sum.mul_add(h0, r5);
        sum.mul_add(h1, r4);
        sum.mul_add(h2, r3);
        sum.mul_add(h3, r2);
    }
    sum.mul_add(packet.len() as u64, r1);
    sum.reduce()
}

#[inline(always)]
fn word(bytes: &[u8], i: usize) -> u64 {
    u64::from_le_bytes(bytes[8 * i..8 * i + 8].try_into().expect("8 bytes"))
}

/// Calls `step(chunk, first key word)` on each chunk of a block, the last one zero-padded.
#[inline(always)]
fn for_each_chunk(block: &[u8], mut step: impl FnMut(&[u8; CHUNK_BYTES], usize)) {
    let mut chunks = block.chunks_exact(CHUNK_BYTES);
    let mut at = 0;
    for chunk in &mut chunks {
        step(chunk.try_into().expect("a chunk"), at);
        at += CHUNK_WORDS;
    }
    let rest = chunks.remainder();
    if !rest.is_empty() {
        let mut padded = [0u8; CHUNK_BYTES];
        padded[..rest.len()].copy_from_slice(rest);
        step(&padded, at);
    }
}

/// The four NH lane outputs of a block of at most `BLOCK_BYTES`, one pair at a time.
fn nh_portable(key: &NhKey, block: &[u8]) -> [u64; LANES] {
    let mut sums = [0u64; LANES];
    for_each_chunk(block, |chunk, at| {
        for j in 0..CHUNK_WORDS {
            let m = word(chunk, j);
            for (lane, sum) in sums.iter_mut().enumerate() {
                let k = key[at + j + lane];
                let a = (m as u32).wrapping_add(k as u32) as u64;
                let b = ((m >> 32) as u32).wrapping_add((k >> 32) as u32) as u64;
                *sum = sum.wrapping_add(a * b);
            }
        }
    });
    sums
}

/// NH with a 32-bit add on the packed pairs, then each pair's low word times its high word
/// (`pmuludq`), 4 or 8 pairs per instruction.
#[cfg(target_arch = "x86_64")]
mod x86 {
    use super::*;
    use std::arch::x86_64::*;

    #[target_feature(enable = "avx2")]
    pub fn hash_avx2(hasher: &PacketHasher, packet: &[u8]) -> u128 {
        hash(hasher, packet, |key, block| nh_avx2(key, block))
    }

    #[target_feature(enable = "avx512f,avx512bw")]
    pub fn hash_avx512(hasher: &PacketHasher, packet: &[u8]) -> u128 {
        hash(hasher, packet, |key, block| nh_avx512(key, block))
    }

    #[target_feature(enable = "avx2")]
    fn nh_avx2(key: &NhKey, block: &[u8]) -> [u64; LANES] {
        let mut sums = [[_mm256_setzero_si256(); 2]; LANES];
        for_each_chunk(block, |chunk, at| {
            for (half, offset) in [0, 4].into_iter().enumerate() {
                // SAFETY: unaligned 32-byte loads from slices of 32 bytes.
                unsafe {
                    let m = _mm256_loadu_si256(chunk[8 * offset..][..32].as_ptr().cast());
                    for (lane, sums) in sums.iter_mut().enumerate() {
                        let k = key[at + offset + lane..][..4].as_ptr();
                        let k = _mm256_loadu_si256(k.cast());
                        let s = _mm256_add_epi32(m, k);
                        let p = _mm256_mul_epu32(s, _mm256_srli_epi64::<32>(s));
                        sums[half] = _mm256_add_epi64(sums[half], p);
                    }
                }
            }
        });
        let [s0, s1, s2, s3] = sums.map(|[a, b]| _mm256_add_epi64(a, b));
        // Transpose and add: [s0 s1 s0 s1] and [s2 s3 s2 s3] by 128-bit lane, then the lanes.
        let pair =
            |x, y| _mm256_add_epi64(_mm256_unpacklo_epi64(x, y), _mm256_unpackhi_epi64(x, y));
        let (a, b) = (pair(s0, s1), pair(s2, s3));
        let lanes = _mm256_add_epi64(
            _mm256_permute2x128_si256::<0x20>(a, b),
            _mm256_permute2x128_si256::<0x31>(a, b),
        );
        let mut out = [0u64; LANES];
        // SAFETY: a 32-byte store into `out`.
        unsafe { _mm256_storeu_si256(out.as_mut_ptr().cast(), lanes) };
        out
    }

    /// As `nh_avx2`, a chunk per step; the last chunk is a masked load, which zero-pads.
    #[target_feature(enable = "avx512f,avx512bw")]
    fn nh_avx512(key: &NhKey, block: &[u8]) -> [u64; LANES] {
        let mut sums = [_mm512_setzero_si512(); LANES];
        let mut step = |m: __m512i, at: usize| {
            for (lane, sum) in sums.iter_mut().enumerate() {
                let k = key[at + lane..][..CHUNK_WORDS].as_ptr();
                // SAFETY: an unaligned 64-byte load from a slice of 64 bytes.
                let k = unsafe { _mm512_loadu_si512(k.cast()) };
                let s = _mm512_add_epi32(m, k);
                let p = _mm512_mul_epu32(s, _mm512_srli_epi64::<32>(s));
                *sum = _mm512_add_epi64(*sum, p);
            }
        };
        let mut chunks = block.chunks_exact(CHUNK_BYTES);
        let mut at = 0;
        for chunk in &mut chunks {
            // SAFETY: an unaligned 64-byte load from a chunk of 64 bytes.
            step(unsafe { _mm512_loadu_si512(chunk.as_ptr().cast()) }, at);
            at += CHUNK_WORDS;
        }
        let rest = chunks.remainder();
        if !rest.is_empty() {
            let mask = u64::MAX >> (CHUNK_BYTES - rest.len());
            // SAFETY: the mask reads only the `rest.len()` bytes of `rest`, the others are 0.
            step(
                unsafe { _mm512_maskz_loadu_epi8(mask, rest.as_ptr().cast()) },
                at,
            );
        }
        let [s0, s1, s2, s3] = sums;
        // Transpose and add: [s0 s1] and [s2 s3] in each 128-bit lane, then across lanes.
        let pair =
            |x, y| _mm512_add_epi64(_mm512_unpacklo_epi64(x, y), _mm512_unpackhi_epi64(x, y));
        let (a, b) = (pair(s0, s1), pair(s2, s3));
        // 128-bit lanes [a0+a1, a2+a3, b0+b1, b2+b3], then [a0..a3, b0..b3] in the low half.
        let c = _mm512_add_epi64(
            _mm512_shuffle_i64x2::<0b10_00_10_00>(a, b),
            _mm512_shuffle_i64x2::<0b11_01_11_01>(a, b),
        );
        let d = _mm512_add_epi64(
            _mm512_shuffle_i64x2::<0b00_00_10_00>(c, c),
            _mm512_shuffle_i64x2::<0b00_00_11_01>(c, c),
        );
        let mut out = [0u64; LANES];
        // SAFETY: a 32-byte store into `out`.
        unsafe { _mm256_storeu_si256(out.as_mut_ptr().cast(), _mm512_castsi512_si256(d)) };
        out
    }
}

/// `x mod P` for `x < 2^128`.
#[inline(always)]
fn reduce(x: u128) -> u128 {
    let x = (x & P) + (x >> 127);
    if x >= P {
        x - P
    } else {
        x
    }
}

/// `a · b mod P` for `a, b < P`.
#[inline(always)]
fn mul(a: u128, b: u128) -> u128 {
    let (a0, a1) = (a as u64 as u128, a >> 64);
    let (b0, b1) = (b as u64 as u128, b >> 64);
    // Each cross product is below 2^127, so their sum fits.
    let middle = a0 * b1 + a1 * b0;
    let mut product = Wide::from(a0 * b0);
    product.add(middle << 64);
    product.high += a1 * b1 + (middle >> 64);
    product.reduce()
}

/// A sum of a few products, `high · 2^128 + low`, reduced once at the end.
#[derive(Clone, Copy)]
struct Wide {
    low: u128,
    high: u128,
}

impl From<u128> for Wide {
    fn from(low: u128) -> Self {
        Wide { low, high: 0 }
    }
}

impl Wide {
    #[inline(always)]
    fn add(&mut self, x: u128) {
        let (low, carry) = self.low.overflowing_add(x);
        self.low = low;
        self.high += carry as u128;
    }

    /// Adds `h · b` for `b < P`: below 2^191, so many fit before `high` could overflow.
    #[inline(always)]
    fn mul_add(&mut self, h: u64, b: u128) {
        let upper = h as u128 * (b >> 64);
        self.add(h as u128 * b as u64 as u128);
        self.add(upper << 64);
        self.high += upper >> 64;
    }

    /// The sum mod P, for `high < 2^126`: 2^128 = 2 mod P.
    #[inline(always)]
    fn reduce(self) -> u128 {
        reduce((self.low & P) + (self.low >> 127) + (self.high << 1))
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::collections::HashSet;

    /// `a + b mod P` for `a, b < P`.
    fn add(a: u128, b: u128) -> u128 {
        reduce(a + b)
    }

    /// Bytes that differ from position to position, so a misplaced key or word shows.
    pub(crate) fn bytes(len: usize, salt: u8) -> Vec<u8> {
        (0..len)
            .map(|i| (i as u8).wrapping_mul(31) ^ (i >> 8) as u8 ^ salt)
            .collect()
    }

    #[test]
    fn lengths_and_trailing_zeros_do_not_collide() {
        let hasher = PacketHasher::new(&[9; 16]);
        let mut seen = HashSet::new();
        // All-zero packets of every length up to past two blocks: only the length differs.
        for len in 0..=2 * BLOCK_BYTES + 70 {
            assert!(seen.insert(hasher.hash(&vec![0; len])), "zeros {len}");
        }
        // A packet and the same bytes with zeros appended up to and past chunk and block ends.
        for len in [1, 5, 63, 64, 100, 1400, 4000, 4096, 32768] {
            let p = bytes(len, 1);
            for extra in 1..=CHUNK_BYTES + 1 {
                let mut longer = p.clone();
                longer.resize(len + extra, 0);
                assert!(seen.insert(hasher.hash(&longer)), "{len} + {extra}");
            }
        }
        assert!(seen.insert(hasher.hash(&[0, 0, 0, 1])));
        assert!(seen.insert(hasher.hash(&[2, 0, 0, 0])));
        assert!(seen.insert(hasher.hash(&[1])));
    }

    /// The definition, one 32-bit pair and one coefficient at a time, with the field product
    /// as double-and-add: the fast path's word order, key offsets and batched Horner agree.
    fn reference_hash(hasher: &PacketHasher, packet: &[u8]) -> u128 {
        let slow_mul = |a: u128, b: u128| {
            let mut product = 0;
            for bit in (0..127).rev() {
                product = add(product, product);
                if b >> bit & 1 == 1 {
                    product = add(product, a);
                }
            }
            product
        };
        let key = |i: usize| (hasher.nh_key[i / 2] >> (32 * (i % 2))) as u32;
        let r = hasher.powers[0];
        assert_eq!(
            hasher.powers[4],
            slow_mul(slow_mul(slow_mul(slow_mul(r, r), r), r), r)
        );
        let mut acc = 0;
        for block in packet.chunks(BLOCK_BYTES) {
            let mut padded = block.to_vec();
            padded.resize(block.len().div_ceil(CHUNK_BYTES) * CHUNK_BYTES, 0);
            let m: Vec<u32> = padded
                .chunks(4)
                .map(|w| u32::from_le_bytes(w.try_into().unwrap()))
                .collect();
            for lane in 0..LANES {
                let mut sum = 0u64;
                for j in 0..m.len() / 2 {
                    let a = m[2 * j].wrapping_add(key(2 * j + 2 * lane)) as u64;
                    let b = m[2 * j + 1].wrapping_add(key(2 * j + 1 + 2 * lane)) as u64;
                    sum = sum.wrapping_add(a * b);
                }
                acc = slow_mul(add(acc, sum as u128), r);
            }
        }
        add(slow_mul(add(acc, packet.len() as u128), r), hasher.offset)
    }

    #[test]
    fn every_path_computes_the_definition() {
        let hasher = PacketHasher::new(&[3; 16]);
        for len in [
            0,
            1,
            8,
            63,
            64,
            65,
            1023,
            1024,
            1025,
            1400,
            4096 + 17,
            65535,
        ] {
            let p = bytes(len, 2);
            let expected = reference_hash(&hasher, &p);
            assert_eq!(hash(&hasher, &p, nh_portable), expected, "portable {len}");
            assert_eq!(hasher.hash(&p), expected, "detected {len}");
            #[cfg(target_arch = "x86_64")]
            {
                if std::arch::is_x86_feature_detected!("avx2") {
                    // SAFETY: the CPU has AVX2.
                    assert_eq!(
                        unsafe { x86::hash_avx2(&hasher, &p) },
                        expected,
                        "avx2 {len}"
                    );
                }
                if std::arch::is_x86_feature_detected!("avx512bw") {
                    // SAFETY: the CPU has AVX-512F and BW.
                    assert_eq!(
                        unsafe { x86::hash_avx512(&hasher, &p) },
                        expected,
                        "avx512 {len}"
                    );
                }
            }
        }
    }

    #[test]
    fn field_arithmetic_wraps_at_p() {
        assert_eq!(mul(P - 1, P - 1), 1);
        assert_eq!(mul(1 << 126, 2), 1);
        let mut sum = Wide::from(P - 1);
        sum.mul_add(u64::MAX, P - 1);
        assert_eq!(sum.reduce(), P - 1 - u64::MAX as u128);
        assert_eq!(add(P - 1, 1), 0);
        assert_eq!(reduce(P), 0);
        assert_eq!(reduce(u128::MAX), 1);
    }
}
