//! Keystream throughput: XOR of the Speck128/128 counter-mode keystream into a buffer.

use _core::speck::Keystream;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use std::hint::black_box;

fn keystream(c: &mut Criterion) {
    let mut group = c.benchmark_group("keystream");
    for size in [64usize, 1400, 65536] {
        let mut data = vec![0u8; size];
        let mut stream = Keystream::new(b"0123456789abcdef");
        group.throughput(Throughput::Bytes(size as u64));
        group.bench_function(format!("{size}B"), |b| {
            b.iter(|| stream.apply(black_box(&mut data)))
        });
    }
    group.finish();
}

criterion_group!(benches, keystream);
criterion_main!(benches);
