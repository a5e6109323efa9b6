//! The frame MAC (multispeck): one message at a time, and many side by side.

use _core::multispeck::MacKey;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use std::hint::black_box;

fn mac(c: &mut Criterion) {
    let key = MacKey::new(b"0123456789abcdef");
    let mut group = c.benchmark_group("mac");
    for size in [64usize, 1400, 65535] {
        let message = vec![0x5au8; size];
        group.throughput(Throughput::Bytes(size as u64));
        group.bench_function(format!("one/{size}B"), |b| {
            b.iter(|| key.mac(black_box(&message)))
        });
        let batch = vec![message.as_slice(); 64];
        group.throughput(Throughput::Bytes(64 * size as u64));
        group.bench_function(format!("many64/{size}B"), |b| {
            b.iter(|| key.mac_many(black_box(&batch)))
        });
    }
    group.finish();
}

criterion_group!(benches, mac);
criterion_main!(benches);
