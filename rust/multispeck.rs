//! multispeck (PROTOCOL.md §1): the hash smolmesh2 uses as KDF (3 parts) and as frame MAC
//! (2 parts: the MAC key, then the packet).
//!
//! The MAC is one Speck round per byte, each depending on the one before, so one MAC cannot go
//! faster than the latency of a round. Many MACs can, one per lane of a vector register, and
//! `MacKey::mac_many` keeps the lanes busy the way a multi-buffer hash does:
//!
//! - Each lane holds a MAC in progress: its state `(a, b)` and the unread rest of its message.
//!   Messages enter the lanes longest first, so the short ones fill the gaps at the end.
//! - A step runs every lane in lockstep for as many whole 8-byte words as the lane with the
//!   fewest has left. Then each lane with less than a word left absorbs its last bytes and the
//!   final zero round (masked rounds: the other lanes wait), hands in its MAC and takes the next
//!   message. Idle lanes read zeros and their results are dropped.
//! - With no message waiting, the lanes narrow as they drain (AVX-512: two registers of 8 lanes,
//!   then one; portable: 8 lanes, then 4), and the last message alone is finished by scalar rounds,
//!   which beat a vector of mostly idle lanes.
//!
//! With AVX-512 two registers of 8 lanes run interleaved, because one register's round is about
//! as long as the dependency chain of a round and the second fills the gaps in the pipeline.
//!
//! Short messages (up to `LOCKSTEP_MAX` bytes: ACKs, pings) skip the scheduler on AVX-512, whose
//! bookkeeping per step costs more than their few rounds: sorted by length, they run in groups
//! of 16 lanes in lockstep, each lane masked off after its own zero round, the state never
//! leaving the registers. Longer messages of the same batch still go through the scheduler.

use crate::constants::MAC_LEN;
use crate::speck::ernd;

const START_A: u64 = 69;

/// Messages up to this long skip the scheduler on AVX-512 and run in lockstep groups.
const LOCKSTEP_MAX: usize = 256;
/// Lanes of the widest kernel.
const MAX_LANES: usize = 16;
/// Idle lanes read zeros from here, so a lockstep run is at most this long.
const IDLE_BYTES: usize = 8192;
static IDLE: [u8; IDLE_BYTES] = [0; IDLE_BYTES];

/// Absorbs one part: its length, its bytes, then a zero round.
#[inline(always)]
fn absorb_part(a: u64, b: u64, part: &[u8]) -> (u64, u64) {
    let (a, b) = ernd(a, b, part.len() as u64);
    absorb_rest(a, b, part)
}

/// Absorbs the bytes of a part after its length, then the zero round.
#[inline(always)]
fn absorb_rest(mut a: u64, mut b: u64, rest: &[u8]) -> (u64, u64) {
    for &c in rest {
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

    /// The MACs of `messages`, in order, computed side by side in vector lanes.
    pub fn mac_many(&self, messages: &[&[u8]]) -> Vec<[u8; MAC_LEN]> {
        if messages.len() < 2 {
            return messages.iter().map(|m| self.mac(m)).collect();
        }
        let mut out = vec![[0u8; MAC_LEN]; messages.len()];
        let queue: Vec<(usize, &[u8])> = messages.iter().copied().enumerate().collect();
        #[cfg(target_arch = "x86_64")]
        if let Some(kernel) = avx512::Avx512::detect() {
            let (short, long) = if messages.iter().all(|m| m.len() <= LOCKSTEP_MAX) {
                (queue, Vec::new())
            } else if messages.iter().all(|m| m.len() > LOCKSTEP_MAX) {
                (Vec::new(), queue)
            } else {
                queue
                    .into_iter()
                    .partition(|(_, m)| m.len() <= LOCKSTEP_MAX)
            };
            avx512::mac_in_lockstep(kernel, *self, short, &mut out);
            mac_in_lanes(kernel, *self, long, &mut out);
            return out;
        }
        mac_in_lanes(Portable, *self, queue, &mut out);
        out
    }
}

/// The MACs in progress, one per lane; a kernel uses the first `width` lanes.
struct Lanes<'m> {
    a: [u64; MAX_LANES],
    b: [u64; MAX_LANES],
    /// The unread bytes of each lane's message; idle lanes read `IDLE`.
    rest: [&'m [u8]; MAX_LANES],
    /// Index of the lane's message, `None` when the lane is idle.
    message: [Option<usize>; MAX_LANES],
}

impl<'m> Lanes<'m> {
    fn start(&mut self, lane: usize, key: MacKey, next: Option<(usize, &'m [u8])>) {
        (self.rest[lane], self.message[lane]) = match next {
            Some((i, m)) => {
                (self.a[lane], self.b[lane]) = ernd(key.a, key.b, m.len() as u64);
                (m, Some(i))
            }
            None => (&IDLE[..], None),
        };
    }

    /// Moves the busy lanes of `..width` to the front.
    fn compact(&mut self, width: usize) {
        let mut to = 0;
        for from in 0..width {
            if self.message[from].is_some() {
                self.a.swap(to, from);
                self.b.swap(to, from);
                self.rest.swap(to, from);
                self.message.swap(to, from);
                to += 1;
            }
        }
    }
}

/// A lockstep engine: the rounds of `Lanes` in vector registers, or in plain integers.
trait Kernel: Copy {
    /// Lanes while messages wait; lanes once no more than `NARROW` are busy.
    const WIDE: usize;
    const NARROW: usize;
    /// Lanes `..width` absorb `words` 8-byte words from the front of their `rest`, which holds
    /// that many; then the lanes of `ending`, left with under 8 bytes, absorb those and the zero
    /// round.
    fn step(self, lanes: &mut Lanes, width: usize, words: usize, ending: u32);
}

/// Sorts `(index, message)` pairs longest first, unless they already are.
fn longest_first(queue: &mut [(usize, &[u8])]) {
    if !queue.is_sorted_by(|x, y| x.1.len() >= y.1.len()) {
        queue.sort_unstable_by_key(|&(_, m)| std::cmp::Reverse(m.len()));
    }
}

/// The multi-buffer scheduler: `out[i]` gets the MAC of each `(i, message)` of `queue`.
fn mac_in_lanes<K: Kernel>(
    kernel: K,
    key: MacKey,
    mut queue: Vec<(usize, &[u8])>,
    out: &mut [[u8; MAC_LEN]],
) {
    longest_first(&mut queue);
    let mut queue = queue.into_iter();
    let mut lanes = Lanes {
        a: [0; MAX_LANES],
        b: [0; MAX_LANES],
        rest: [&IDLE[..]; MAX_LANES],
        message: [None; MAX_LANES],
    };
    let mut width = K::WIDE;
    for lane in 0..width {
        lanes.start(lane, key, queue.next());
    }
    loop {
        if queue.len() == 0 {
            let busy = lanes.message[..width].iter().flatten().count();
            if busy <= 1 {
                break;
            }
            if busy <= K::NARROW && width > K::NARROW {
                lanes.compact(width);
                width = K::NARROW;
            }
        }
        let words = (0..width)
            .filter(|&l| lanes.message[l].is_some())
            .map(|l| lanes.rest[l].len() / 8)
            .min()
            .unwrap_or(0)
            .min(IDLE_BYTES / 8);
        let ending = (0..width)
            .filter(|&l| lanes.message[l].is_some() && lanes.rest[l].len() / 8 == words)
            .fold(0, |mask, l| mask | 1 << l);
        kernel.step(&mut lanes, width, words, ending);
        for lane in 0..width {
            if ending & 1 << lane != 0 {
                let i = lanes.message[lane].expect("an ending lane is busy");
                out[i] = digest(lanes.a[lane], lanes.b[lane]);
                lanes.start(lane, key, queue.next());
            } else if lanes.message[lane].is_none() {
                lanes.rest[lane] = &IDLE[..];
            }
        }
    }
    for lane in 0..width {
        if let Some(i) = lanes.message[lane] {
            let (a, b) = absorb_rest(lanes.a[lane], lanes.b[lane], lanes.rest[lane]);
            out[i] = digest(a, b);
        }
    }
}

/// Plain integer rounds; several independent chains still keep the scalar ALUs busy.
#[derive(Clone, Copy)]
struct Portable;

impl Kernel for Portable {
    const WIDE: usize = 8;
    const NARROW: usize = 4;

    fn step(self, lanes: &mut Lanes, width: usize, words: usize, ending: u32) {
        match width {
            8 => words_portable::<8>(lanes, words),
            _ => words_portable::<4>(lanes, words),
        }
        for lane in (0..width).filter(|l| ending & 1 << l != 0) {
            let rest = std::mem::take(&mut lanes.rest[lane]);
            (lanes.a[lane], lanes.b[lane]) = absorb_rest(lanes.a[lane], lanes.b[lane], rest);
        }
    }
}

#[inline(always)]
fn words_portable<const N: usize>(lanes: &mut Lanes, words: usize) {
    let mut a: [u64; N] = std::array::from_fn(|i| lanes.a[i]);
    let mut b: [u64; N] = std::array::from_fn(|i| lanes.b[i]);
    let rest: [&[u8]; N] = std::array::from_fn(|i| &lanes.rest[i][..8 * words]);
    for w in 0..words {
        // Eight bytes of every lane per load, then eight rounds on shifted copies.
        let mut bytes: [u64; N] = std::array::from_fn(|i| {
            u64::from_le_bytes(rest[i][8 * w..8 * w + 8].try_into().expect("8 bytes"))
        });
        for _ in 0..8 {
            for i in 0..N {
                (a[i], b[i]) = ernd(a[i], b[i], bytes[i] & 0xff);
                bytes[i] >>= 8;
            }
        }
    }
    for i in 0..N {
        (lanes.a[i], lanes.b[i]) = (a[i], b[i]);
        lanes.rest[i] = &lanes.rest[i][8 * words..];
    }
}

#[cfg(target_arch = "x86_64")]
mod avx512 {
    use super::{digest, longest_first, Kernel, Lanes, MacKey, IDLE, MAC_LEN, MAX_LANES};
    use crate::speck::avx512::round;
    use std::arch::x86_64::*;

    /// The AVX-512 kernel; a value exists only on a CPU with the features it is compiled for.
    #[derive(Clone, Copy)]
    pub struct Avx512(());

    impl Avx512 {
        pub fn detect() -> Option<Self> {
            let f = std::arch::is_x86_feature_detected!("avx512f");
            (f && std::arch::is_x86_feature_detected!("avx512bw")).then_some(Avx512(()))
        }
    }

    impl Kernel for Avx512 {
        const WIDE: usize = 16;
        const NARROW: usize = 8;

        fn step(self, lanes: &mut Lanes, width: usize, words: usize, ending: u32) {
            // SAFETY: `self` exists, so the CPU has AVX-512F and BW.
            unsafe {
                match width {
                    16 => step_avx512::<2>(lanes, words, ending),
                    _ => step_avx512::<1>(lanes, words, ending),
                }
            }
        }
    }

    /// Byte `s` of each u64 lane, moved to the bottom of the lane. The shuffle indexes bytes
    /// within 128 bits, so odd lanes find their bytes 8 further on.
    #[inline(always)]
    fn pick(s: usize) -> __m512i {
        let even = (0x8080_8080_8080_8000u64 | s as u64) as i64;
        let odd = even + 8;
        // SAFETY (for the callers' `target_feature`): pure register arithmetic.
        unsafe { _mm512_set_epi64(odd, even, odd, even, odd, even, odd, even) }
    }

    /// Word `w` of 8 lanes, one scalar load each (for the few words after the last block).
    ///
    /// # Safety
    /// Each `ptrs[lane]` is valid for reading 8 bytes at `8 * w`.
    #[inline(always)]
    unsafe fn load_word(ptrs: &[*const u8], w: usize) -> __m512i {
        // SAFETY: the caller's promise.
        let word = |l: usize| unsafe { ptrs[l].add(8 * w).cast::<i64>().read_unaligned() };
        let w: [i64; 8] = std::array::from_fn(word);
        // SAFETY (for the callers' `target_feature`): pure register arithmetic.
        unsafe { _mm512_set_epi64(w[7], w[6], w[5], w[4], w[3], w[2], w[1], w[0]) }
    }

    /// Words `8 * block..` of 8 lanes, transposed: element `w` holds word `w` of every lane.
    /// Eight 64-byte loads and 24 shuffles are fewer shuffle-port operations than the 56 that
    /// build the 8 registers from scalar loads.
    ///
    /// # Safety
    /// Each `ptrs[lane]` is valid for reading 64 bytes at `64 * block`.
    #[inline(always)]
    unsafe fn load_block(ptrs: &[*const u8], block: usize) -> [__m512i; 8] {
        // SAFETY: the caller's promise; unaligned loads.
        let row = |l: usize| unsafe { _mm512_loadu_si512(ptrs[l].add(64 * block).cast()) };
        // SAFETY: the callers run with AVX-512F and BW.
        unsafe { transpose(std::array::from_fn(row)) }
    }

    /// Rows of 8 words of 8 lanes, transposed: element `w` holds word `w` of every lane.
    /// (`target_feature` rather than `inline(always)`, so that its closures inline the
    /// intrinsics too.)
    #[inline]
    #[target_feature(enable = "avx512f,avx512bw")]
    fn transpose(rows: [__m512i; 8]) -> [__m512i; 8] {
        {
            // Pairs of lanes: t[2p] has words 0, 2, 4, 6 and t[2p + 1] words 1, 3, 5, 7 of
            // lanes 2p and 2p + 1, interleaved.
            let t: [__m512i; 8] = std::array::from_fn(|i| {
                let (x, y) = (rows[i & !1], rows[i | 1]);
                if i % 2 == 0 {
                    _mm512_unpacklo_epi64(x, y)
                } else {
                    _mm512_unpackhi_epi64(x, y)
                }
            });
            // Quads: words w and w + 4 of lanes 4q..4q + 4.
            let low = _mm512_set_epi64(13, 12, 5, 4, 9, 8, 1, 0);
            let high = _mm512_set_epi64(15, 14, 7, 6, 11, 10, 3, 2);
            let quad = |q: usize, odd: usize, idx| {
                _mm512_permutex2var_epi64(t[4 * q + odd], idx, t[4 * q + 2 + odd])
            };
            // u[q][k]: k = 0 words 0|4, 1 words 1|5, 2 words 2|6, 3 words 3|7.
            let u: [[__m512i; 4]; 2] = std::array::from_fn(|q| {
                [
                    quad(q, 0, low),
                    quad(q, 1, low),
                    quad(q, 0, high),
                    quad(q, 1, high),
                ]
            });
            std::array::from_fn(|w| {
                let (a, b) = (u[0][w % 4], u[1][w % 4]);
                if w < 4 {
                    _mm512_shuffle_i64x2::<0b01_00_01_00>(a, b)
                } else {
                    _mm512_shuffle_i64x2::<0b11_10_11_10>(a, b)
                }
            })
        }
    }

    #[inline(always)]
    unsafe fn load_state<const G: usize>(lanes: &Lanes) -> ([__m512i; G], [__m512i; G]) {
        // SAFETY: unaligned loads of 8 u64s from arrays of `MAX_LANES >= 8 * G` u64s.
        unsafe {
            (
                std::array::from_fn(|g| _mm512_loadu_si512(lanes.a[8 * g..].as_ptr().cast())),
                std::array::from_fn(|g| _mm512_loadu_si512(lanes.b[8 * g..].as_ptr().cast())),
            )
        }
    }

    #[inline(always)]
    unsafe fn store_state<const G: usize>(lanes: &mut Lanes, a: [__m512i; G], b: [__m512i; G]) {
        for g in 0..G {
            // SAFETY: unaligned stores of 8 u64s into arrays of `MAX_LANES >= 8 * G` u64s.
            unsafe {
                _mm512_storeu_si512(lanes.a[8 * g..].as_mut_ptr().cast(), a[g]);
                _mm512_storeu_si512(lanes.b[8 * g..].as_mut_ptr().cast(), b[g]);
            }
        }
    }

    /// `Kernel::step` for `8 * G` lanes, the `G` registers' rounds interleaved.
    #[target_feature(enable = "avx512f,avx512bw")]
    fn step_avx512<const G: usize>(lanes: &mut Lanes, words: usize, ending: u32) {
        const { assert!(8 * G <= MAX_LANES) };
        let ptrs: [*const u8; MAX_LANES] = std::array::from_fn(|l| {
            if l < 8 * G {
                assert!(lanes.rest[l].len() >= 8 * words, "lane {l} has the words");
            }
            lanes.rest[l].as_ptr()
        });
        let picks: [__m512i; 8] = std::array::from_fn(pick);
        // SAFETY: the state arrays hold `8 * G` lanes.
        let (mut a, mut b) = unsafe { load_state::<G>(lanes) };
        let mut word_rounds = |bytes: [__m512i; G]| {
            for p in picks {
                for g in 0..G {
                    (a[g], b[g]) = round(a[g], b[g], _mm512_shuffle_epi8(bytes[g], p));
                }
            }
        };
        // SAFETY (both loops): each lane's rest holds `8 * words` bytes (asserted above).
        for block in 0..words / 8 {
            let blocks: [[__m512i; 8]; G] =
                std::array::from_fn(|g| unsafe { load_block(&ptrs[8 * g..8 * g + 8], block) });
            let by_word: [[__m512i; G]; 8] =
                std::array::from_fn(|w| std::array::from_fn(|g| blocks[g][w]));
            for bytes in by_word {
                word_rounds(bytes);
            }
        }
        for w in words / 8 * 8..words {
            word_rounds(std::array::from_fn(|g| unsafe {
                load_word(&ptrs[8 * g..8 * g + 8], w)
            }));
        }
        for rest in &mut lanes.rest[..8 * G] {
            *rest = &rest[8 * words..];
        }
        if ending != 0 {
            last_words::<G>(lanes, ending, &mut a, &mut b);
        }
        // SAFETY: as for the load.
        unsafe { store_state::<G>(lanes, a, b) };
    }

    /// The end of `step_avx512`: round `j` runs in the ending lanes that have `j` or more bytes
    /// left (round `j` of a lane with `j` left is its zero round).
    #[inline]
    #[target_feature(enable = "avx512f,avx512bw")]
    fn last_words<const G: usize>(
        lanes: &mut Lanes,
        ending: u32,
        x: &mut [__m512i; G],
        y: &mut [__m512i; G],
    ) {
        let mut tails = [0u64; MAX_LANES];
        let mut left = [0u64; MAX_LANES];
        let mut rounds = 0;
        for lane in (0..8 * G).filter(|l| ending & 1 << l != 0) {
            let rest = std::mem::take(&mut lanes.rest[lane]);
            tails[lane] = rest.iter().rev().fold(0, |word, &c| word << 8 | c as u64);
            left[lane] = rest.len() as u64;
            rounds = rounds.max(rest.len() + 1);
        }
        // SAFETY: unaligned loads of 8 u64s from arrays of `MAX_LANES >= 8 * G` u64s.
        let (bytes, left): ([__m512i; G], [__m512i; G]) = unsafe {
            (
                std::array::from_fn(|g| _mm512_loadu_si512(tails[8 * g..].as_ptr().cast())),
                std::array::from_fn(|g| _mm512_loadu_si512(left[8 * g..].as_ptr().cast())),
            )
        };
        for j in 0..rounds {
            for g in 0..G {
                let ending = (ending >> (8 * g)) as __mmask8;
                let m = _mm512_mask_cmpge_epu64_mask(ending, left[g], _mm512_set1_epi64(j as i64));
                let k = _mm512_shuffle_epi8(bytes[g], pick(j));
                (x[g], y[g]) = masked_round(x[g], y[g], k, m);
            }
        }
    }

    /// `round` in the lanes of `m`; the other lanes keep their state.
    #[inline(always)]
    fn masked_round(x: __m512i, y: __m512i, k: __m512i, m: __mmask8) -> (__m512i, __m512i) {
        // SAFETY (for the callers' `target_feature`): pure register arithmetic.
        unsafe {
            let s = _mm512_add_epi64(_mm512_ror_epi64::<8>(x), y);
            let x = _mm512_mask_xor_epi64(x, m, s, k);
            let y = _mm512_mask_xor_epi64(y, m, _mm512_rol_epi64::<3>(y), x);
            (x, y)
        }
    }

    /// `out[i]` gets the MAC of each `(i, message)` of `queue`, all of them short: groups of
    /// similar length run in lockstep, 16 lanes at a time, with no state outside registers.
    pub fn mac_in_lockstep(
        kernel: Avx512,
        key: MacKey,
        mut queue: Vec<(usize, &[u8])>,
        out: &mut [[u8; MAC_LEN]],
    ) {
        longest_first(&mut queue);
        for group in queue.chunks(MAX_LANES) {
            match group {
                [] => {}
                [(i, m)] => out[*i] = key.mac(m),
                // SAFETY (both): `kernel` exists, so the CPU has AVX-512F and BW.
                _ if group.len() <= 8 => unsafe { lockstep::<1>(kernel, key, group, out) },
                _ => unsafe { lockstep::<2>(kernel, key, group, out) },
            }
        }
    }

    /// Bytes `64 * block..` of `m`, zeros past its end.
    #[inline]
    #[target_feature(enable = "avx512f,avx512bw")]
    fn load_row(m: &[u8], block: usize) -> __m512i {
        let at = (64 * block).min(m.len());
        let mask = match m.len() - at {
            64.. => u64::MAX,
            left => (1u64 << left) - 1,
        };
        // SAFETY: `at <= m.len()`, and the mask reads only bytes of `m`.
        unsafe { _mm512_maskz_loadu_epi8(mask, m.as_ptr().add(at).cast()) }
    }

    /// Byte `j` of a message is absorbed by round `j`, after the length round; round `len` is
    /// the zero round, which reads the zeros the masked loads put after the message. A lane
    /// runs the rounds up to its own length; lanes past the group get no message.
    #[target_feature(enable = "avx512f,avx512bw")]
    fn lockstep<const G: usize>(
        _: Avx512,
        key: MacKey,
        group: &[(usize, &[u8])],
        out: &mut [[u8; MAC_LEN]],
    ) {
        const { assert!(8 * G <= MAX_LANES) };
        assert!(group.len() <= 8 * G, "a lane per message");
        let messages: [&[u8]; MAX_LANES] = std::array::from_fn(|l| match group.get(l) {
            Some(&(_, m)) => m,
            None => &IDLE[..0],
        });
        let lens: [u64; MAX_LANES] = std::array::from_fn(|l| messages[l].len() as u64);
        let longest = group.iter().map(|(_, m)| m.len()).max().unwrap_or(0);
        let shortest = group.iter().map(|(_, m)| m.len()).min().unwrap_or(0);
        // SAFETY: unaligned loads of 8 u64s from an array of `MAX_LANES >= 8 * G` u64s.
        let len: [__m512i; G] =
            std::array::from_fn(|g| unsafe { _mm512_loadu_si512(lens[8 * g..].as_ptr().cast()) });
        let mut a = [_mm512_set1_epi64(key.a as i64); G];
        let mut b = [_mm512_set1_epi64(key.b as i64); G];
        for g in 0..G {
            (a[g], b[g]) = round(a[g], b[g], len[g]);
        }
        let picks: [__m512i; 8] = std::array::from_fn(pick);
        for block in 0..=longest / 64 {
            // words[w][g]: word `w` of the block in each lane of register `g`.
            let mut words = [[_mm512_setzero_si512(); G]; 8];
            if 64 * block < longest {
                for g in 0..G {
                    let mut rows = [_mm512_setzero_si512(); 8];
                    for (l, row) in rows.iter_mut().enumerate() {
                        *row = load_row(messages[8 * g + l], block);
                    }
                    for (word, t) in words.iter_mut().zip(transpose(rows)) {
                        word[g] = t;
                    }
                }
            }
            for (w, bytes) in words.iter().enumerate() {
                let first = 64 * block + 8 * w;
                if first > longest {
                    break;
                }
                if first + 7 <= shortest {
                    for p in picks {
                        for g in 0..G {
                            let k = _mm512_shuffle_epi8(bytes[g], p);
                            (a[g], b[g]) = round(a[g], b[g], k);
                        }
                    }
                } else {
                    for (s, p) in picks.into_iter().take(longest + 1 - first).enumerate() {
                        let j = _mm512_set1_epi64((first + s) as i64);
                        for g in 0..G {
                            let m = _mm512_cmpge_epu64_mask(len[g], j);
                            let k = _mm512_shuffle_epi8(bytes[g], p);
                            (a[g], b[g]) = masked_round(a[g], b[g], k, m);
                        }
                    }
                }
            }
        }
        let (mut a_out, mut b_out) = ([0u64; MAX_LANES], [0u64; MAX_LANES]);
        for g in 0..G {
            // SAFETY: unaligned stores of 8 u64s into arrays of `MAX_LANES >= 8 * G` u64s.
            unsafe {
                _mm512_storeu_si512(a_out[8 * g..].as_mut_ptr().cast(), a[g]);
                _mm512_storeu_si512(b_out[8 * g..].as_mut_ptr().cast(), b[g]);
            }
        }
        for (l, &(i, _)) in group.iter().enumerate() {
            out[i] = digest(a_out[l], b_out[l]);
        }
    }
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
                let many = MacKey::new(refs[0]).mac_many(&[refs[1], refs[1], b"", refs[1]]);
                assert_eq!(many[3].to_vec(), hex(&v["out"]));
            }
        }
    }

    /// `mac_many` with every kernel this CPU can run, checked against `mac` one by one.
    fn check_all_kernels(key: MacKey, messages: &[&[u8]], what: &str) {
        let want: Vec<_> = messages.iter().map(|m| key.mac(m)).collect();
        assert_eq!(key.mac_many(messages), want, "mac_many, {what}");
        let mut got = vec![[0u8; MAC_LEN]; messages.len()];
        mac_in_lanes(Portable, key, queue(messages), &mut got);
        assert_eq!(got, want, "portable, {what}");
        #[cfg(target_arch = "x86_64")]
        if let Some(kernel) = avx512::Avx512::detect() {
            let mut got = vec![[0u8; MAC_LEN]; messages.len()];
            mac_in_lanes(kernel, key, queue(messages), &mut got);
            assert_eq!(got, want, "avx512, {what}");
            let mut got = vec![[0u8; MAC_LEN]; messages.len()];
            avx512::mac_in_lockstep(kernel, key, queue(messages), &mut got);
            assert_eq!(got, want, "avx512 lockstep, {what}");
        }
    }

    fn queue<'m>(messages: &[&'m [u8]]) -> Vec<(usize, &'m [u8])> {
        messages.iter().copied().enumerate().collect()
    }

    /// Every length around the word and block edges, in groups that fill one register, two,
    /// and two plus a few lanes; and batches at `LOCKSTEP_MAX`, which split there.
    #[test]
    fn mac_many_of_short_messages() {
        let key = MacKey::new(b"short");
        let bytes: Vec<u8> = (0..=LOCKSTEP_MAX + 1)
            .map(|i| (i * 131 + 7) as u8)
            .collect();
        let all: Vec<&[u8]> = (0..=200).map(|len| &bytes[..len]).collect();
        for count in [2, 5, 8, 9, 16, 17, 20] {
            for chunk in all.chunks(count) {
                check_all_kernels(key, chunk, &format!("{} B and on", chunk[0].len()));
                let same = vec![chunk[chunk.len() - 1]; count];
                check_all_kernels(key, &same, &format!("{count} x {} B", same[0].len()));
            }
        }
        let edge = [&bytes[..LOCKSTEP_MAX], &bytes[..LOCKSTEP_MAX + 1]];
        let edge: Vec<&[u8]> = edge.iter().copied().cycle().take(35).collect();
        check_all_kernels(key, &edge, "at LOCKSTEP_MAX");
    }

    #[test]
    fn mac_many_matches_one_by_one() {
        let key = MacKey::new(b"mac key");
        let messages: Vec<Vec<u8>> = (0..40)
            .map(|i| (0..(i * 37) % 301).map(|j| (i * 7 + j) as u8).collect())
            .collect();
        for count in [0, 1, 2, 3, 4, 7, 8, 9, 16, 17, 40] {
            let refs: Vec<&[u8]> = messages[..count].iter().map(Vec::as_slice).collect();
            check_all_kernels(key, &refs, &format!("{count} messages"));
        }
    }

    #[test]
    fn mac_many_of_mixed_lengths() {
        let key = MacKey::new(b"another key");
        let big: Vec<u8> = (0..70_000u32)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
            .collect();
        let mut seed = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = move |below: usize| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            (seed % below as u64) as usize
        };
        for case in 0..24 {
            let count = next(41);
            // Mostly short messages with a few long ones, as a link's batches are.
            let refs: Vec<&[u8]> = (0..count)
                .map(|_| {
                    let len = if next(4) == 0 {
                        next(70_001)
                    } else {
                        next(200)
                    };
                    let at = next(big.len() - len + 1);
                    &big[at..at + len]
                })
                .collect();
            check_all_kernels(key, &refs, &format!("case {case}, {count} messages"));
        }
        // The one short message among full ones, and lanes that all end together.
        let (small, full) = (&big[..60], &big[..32768]);
        let mut mixed = vec![small];
        mixed.extend([full; 7]);
        check_all_kernels(key, &mixed, "60 B and 7 x 32 KiB");
        check_all_kernels(key, &[&big[..64]; 33], "33 x 64 B");
        check_all_kernels(key, &[&big[..7], &big[..0], &big[..8]], "under a word");
    }
}
