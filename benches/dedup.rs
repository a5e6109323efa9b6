//! The duplicate filter: checking and inserting packets of announcement and data sizes.

use _core::constants::DUPLICATE_FILTER_CAPACITY;
use _core::dedup::DuplicateFilter;
use criterion::{criterion_group, criterion_main, Criterion};
use std::hint::black_box;

fn dedup(c: &mut Criterion) {
    let mut group = c.benchmark_group("dedup");
    for size in [64usize, 1400] {
        let mut filter = DuplicateFilter::new(DUPLICATE_FILTER_CAPACITY, None);
        let mut packet = vec![0u8; size];
        for i in 0..DUPLICATE_FILTER_CAPACITY as u64 {
            packet[..8].copy_from_slice(&i.to_le_bytes());
            filter.insert(&packet);
        }
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

criterion_group!(benches, dedup);
criterion_main!(benches);
