//! The duplicate filter: checking and inserting packets of announcement, data and jumbo sizes,
//! and its keyed hash side by side with the others it was chosen over.

use _core::constants::DUPLICATE_FILTER_CAPACITY;
use _core::dedup::DuplicateFilter;
use _core::packet_hash::PacketHasher;
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use polyval::universal_hash::UniversalHash;
use polyval::Polyval;
use siphasher::sip128::{Hasher128, SipHasher13};
use std::hash::Hasher;
use std::hint::black_box;

const SIZES: [usize; 4] = [64, 1400, 32768, 65535];

fn dedup(c: &mut Criterion) {
    let mut group = c.benchmark_group("dedup");
    for size in SIZES {
        let mut filter = DuplicateFilter::new(DUPLICATE_FILTER_CAPACITY, None);
        let mut packet = vec![0u8; size];
        for i in 0..DUPLICATE_FILTER_CAPACITY as u64 {
            packet[..8].copy_from_slice(&i.to_le_bytes());
            filter.insert(&packet);
        }
        group.throughput(Throughput::Bytes(size as u64));
        group.bench_function(format!("contains/{size}B"), |b| {
            b.iter(|| filter.contains(black_box(&packet)))
        });
        // New packets into a full filter: every insert also evicts the oldest.
        let mut n = u64::MAX / 2;
        group.bench_function(format!("insert_new/{size}B"), |b| {
            b.iter(|| {
                n += 1;
                packet[..8].copy_from_slice(&n.to_le_bytes());
                filter.insert(black_box(&packet))
            })
        });
    }
    group.finish();
}

/// 128-bit keyed hashes of one packet. Only `nh_poly127` (the filter's) and `polyval` (with a
/// length block) are almost-universal with a provable bound; SipHash-1-3 is the filter's
/// previous hash, and aHash (two 64-bit states, without AES unless built for a CPU that has it)
/// is here for its speed only.
fn hashes(c: &mut Criterion) {
    let seed = [7u8; 16];
    let nh_poly127 = PacketHasher::new(&seed);
    let siphash = SipHasher13::new_with_key(&seed);
    let polyval = Polyval::new(&seed.into());
    let ahash = [
        ahash::RandomState::with_seeds(1, 2, 3, 4),
        ahash::RandomState::with_seeds(5, 6, 7, 8),
    ];
    let mut group = c.benchmark_group("dedup_hash");
    for size in SIZES {
        let packet: Vec<u8> = (0..size).map(|i| i as u8).collect();
        group.throughput(Throughput::Bytes(size as u64));
        group.bench_with_input(BenchmarkId::new("nh_poly127", size), &packet, |b, p| {
            b.iter(|| nh_poly127.hash(black_box(p)))
        });
        group.bench_with_input(BenchmarkId::new("siphash13_128", size), &packet, |b, p| {
            b.iter(|| {
                let mut hasher = siphash;
                hasher.write(black_box(p));
                hasher.finish128().as_u128()
            })
        });
        group.bench_with_input(BenchmarkId::new("polyval", size), &packet, |b, p| {
            b.iter(|| {
                let mut hasher = polyval.clone();
                hasher.update_padded(black_box(p));
                hasher.update(&[((p.len() as u128) << 3).to_le_bytes().into()]);
                u128::from_le_bytes(hasher.finalize().into())
            })
        });
        group.bench_with_input(BenchmarkId::new("ahash_2x64", size), &packet, |b, p| {
            b.iter(|| {
                let [low, high] = ahash.each_ref().map(|s| s.hash_one(black_box(p)));
                (high as u128) << 64 | low as u128
            })
        });
    }
    group.finish();
}

criterion_group!(benches, dedup, hashes);
criterion_main!(benches);
