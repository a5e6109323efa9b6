//! The duplicate filter (PROTOCOL.md §3 step 3): the most recent `capacity` distinct packets.
//!
//! A packet is remembered by a keyed 127-bit hash of all its bytes (`packet_hash`), not by its
//! bytes: 16 bytes per packet instead of up to 64 KiB, and, unlike the unkeyed hash of the
//! reference, a peer cannot craft packets that collide with ones it has not seen (PROTOCOL.md
//! §5). The hashes sit in a ring, oldest first, and in a hash set for O(1) lookup; inserting
//! into a full filter evicts the oldest.

use crate::packet_hash::PacketHasher;
use std::collections::HashSet;
use std::hash::{BuildHasher, BuildHasherDefault, Hasher};

pub struct DuplicateFilter {
    hasher: PacketHasher,
    /// Hashes, oldest at `next` once the ring is full.
    ring: Vec<u128>,
    next: usize,
    capacity: usize,
    known: HashSet<u128, BuildHasherDefault<AlreadyHashed>>,
}

impl DuplicateFilter {
    /// `seed` keys the hash; `None` draws a key that differs per process and per filter.
    pub fn new(capacity: usize, seed: Option<[u8; 16]>) -> Self {
        let seed = seed.unwrap_or_else(random_seed);
        DuplicateFilter {
            hasher: PacketHasher::new(&seed),
            ring: Vec::with_capacity(capacity),
            next: 0,
            capacity,
            known: HashSet::with_capacity_and_hasher(capacity, Default::default()),
        }
    }

    /// True if `packet` is new (and is now remembered), false if it was seen.
    pub fn insert(&mut self, packet: &[u8]) -> bool {
        let hash = self.hasher.hash(packet);
        if self.capacity == 0 || !self.known.insert(hash) {
            return self.capacity == 0;
        }
        if self.ring.len() < self.capacity {
            self.ring.push(hash);
        } else {
            let oldest = std::mem::replace(&mut self.ring[self.next], hash);
            self.known.remove(&oldest);
            self.next = (self.next + 1) % self.capacity;
        }
        true
    }

    pub fn contains(&self, packet: &[u8]) -> bool {
        self.known.contains(&self.hasher.hash(packet))
    }

    pub fn len(&self) -> usize {
        self.ring.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ring.is_empty()
    }

    pub fn capacity(&self) -> usize {
        self.capacity
    }
}

/// 16 unpredictable bytes from std's per-process random SipHash keys, so no RNG crate is needed.
fn random_seed() -> [u8; 16] {
    let state = std::collections::hash_map::RandomState::new();
    let mut seed = [0u8; 16];
    seed[..8].copy_from_slice(&state.hash_one(0u8).to_le_bytes());
    seed[8..].copy_from_slice(&state.hash_one(1u8).to_le_bytes());
    seed
}

/// The set's keys are already keyed hashes: use their low bits as they are.
#[derive(Default)]
struct AlreadyHashed(u64);

impl Hasher for AlreadyHashed {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = self.0.rotate_left(8) ^ b as u64;
        }
    }
    fn write_u128(&mut self, n: u128) {
        self.0 = n as u64;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::packet_hash::tests::bytes;

    fn packet(i: u32) -> [u8; 4] {
        i.to_le_bytes()
    }

    #[test]
    fn insert_reports_new_then_seen() {
        let mut filter = DuplicateFilter::new(4, None);
        assert!(filter.is_empty());
        assert!(filter.insert(b"a"));
        assert!(!filter.insert(b"a"));
        assert!(filter.contains(b"a"));
        assert!(!filter.contains(b"b"));
        assert_eq!(filter.len(), 1);
    }

    #[test]
    fn evicts_the_oldest_at_capacity() {
        let capacity = crate::constants::DUPLICATE_FILTER_CAPACITY;
        let mut filter = DuplicateFilter::new(capacity, Some([5; 16]));
        for i in 0..capacity as u32 {
            assert!(filter.insert(&packet(i)));
        }
        assert_eq!(filter.len(), capacity);
        assert!(
            !filter.insert(&packet(0)),
            "a duplicate does not refresh or evict"
        );
        assert!(filter.insert(&packet(capacity as u32)));
        assert!(!filter.contains(&packet(0)));
        assert!(filter.contains(&packet(1)));
        assert_eq!(filter.len(), capacity);
        for i in 1..=capacity as u32 {
            assert!(filter.contains(&packet(i)), "{i}");
        }
        // Round the ring twice more: exactly the last `capacity` stay.
        for i in capacity as u32 + 1..3 * capacity as u32 {
            assert!(filter.insert(&packet(i)));
        }
        assert!(!filter.contains(&packet(2 * capacity as u32 - 1)));
        assert!(filter.contains(&packet(2 * capacity as u32)));
        assert_eq!(filter.known.len(), capacity);
    }

    #[test]
    fn large_packets_are_told_apart_by_one_bit() {
        let mut filter = DuplicateFilter::new(64, None);
        let base = bytes(65535, 0);
        assert!(filter.insert(&base));
        for at in [0, 1, 63, 64, 4095, 4096, 32767, 65534] {
            let mut other = base.clone();
            other[at] ^= 0x80;
            assert!(filter.insert(&other), "{at}");
            assert!(!filter.insert(&other), "{at}");
        }
        assert!(!filter.insert(&base));
    }

    #[test]
    fn seeds_key_the_hash() {
        let a = DuplicateFilter::new(1, Some([1; 16]));
        let b = DuplicateFilter::new(1, Some([2; 16]));
        let again = DuplicateFilter::new(1, Some([1; 16]));
        for len in [0, 1, 64, 1400, 65535] {
            let p = bytes(len, 7);
            assert_eq!(a.hasher.hash(&p), again.hasher.hash(&p), "{len}");
            assert_eq!(a.hasher.hash(&p), a.hasher.hash(&p.clone()), "{len}");
            assert_ne!(a.hasher.hash(&p), b.hasher.hash(&p), "{len}");
        }
        assert_ne!(random_seed(), random_seed());
        let (x, y) = (DuplicateFilter::new(1, None), DuplicateFilter::new(1, None));
        assert_ne!(x.hasher.hash(b"x"), y.hasher.hash(b"x"));
    }

    #[test]
    fn zero_capacity_remembers_nothing() {
        let mut filter = DuplicateFilter::new(0, None);
        assert!(filter.insert(b"a") && filter.insert(b"a"));
        assert!(!filter.contains(b"a"));
    }
}
