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
    // Batches as a node at its default MTU of 32768 makes them: all full, or one small packet
    // (an ACK, a ping) among full ones, which must not leave the full ones to a single lane.
    let full = vec![0x5au8; 32768];
    let small = vec![0xa5u8; 60];
    let batches: [(&str, Vec<&[u8]>); 3] = [
        ("many8/32768B", vec![full.as_slice(); 8]),
        ("mixed/60B+7x32768B", {
            let mut v = vec![small.as_slice()];
            v.extend([full.as_slice(); 7]);
            v
        }),
        ("mixed/5x60B+5x32768B", {
            let mut v = vec![small.as_slice(); 5];
            v.extend([full.as_slice(); 5]);
            v
        }),
    ];
    for (name, batch) in &batches {
        let bytes: usize = batch.iter().map(|m| m.len()).sum();
        group.throughput(Throughput::Bytes(bytes as u64));
        group.bench_function(*name, |b| b.iter(|| key.mac_many(black_box(batch))));
    }
    group.finish();
}

criterion_group!(benches, mac);
criterion_main!(benches);
