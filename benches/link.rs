//! A link's per-packet work: seal a batch of packets into frames, then open the stream again.
//! Throughput is in packets (elements) per second.

use _core::link::{Opener, Sealer};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use std::hint::black_box;

const IV: [u8; 16] = [7; 16];

fn seal_and_open(c: &mut Criterion) {
    let mut group = c.benchmark_group("link");
    for (size, batch) in [(1400usize, 1), (1400, 16), (1400, 64), (64, 64)] {
        let packets: Vec<Vec<u8>> = (0..batch).map(|i| vec![i as u8; size]).collect();
        let refs: Vec<&[u8]> = packets.iter().map(Vec::as_slice).collect();
        let mut sealer = Sealer::new(b"psk", &IV);
        let mut opener = Opener::new(b"psk", &IV);
        group.throughput(Throughput::Elements(batch as u64));
        group.bench_function(format!("seal+open/{size}B/x{batch}"), |b| {
            b.iter(|| {
                let wire = sealer.seal_batch(black_box(&refs)).unwrap();
                assert_eq!(opener.feed(&wire).unwrap().len(), batch);
            })
        });
        let mut sealer = Sealer::new(b"psk", &IV);
        group.bench_function(format!("seal/{size}B/x{batch}"), |b| {
            b.iter(|| sealer.seal_batch(black_box(&refs)).unwrap())
        });
    }
    group.finish();
}

criterion_group!(benches, seal_and_open);
criterion_main!(benches);
