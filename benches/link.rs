//! A link's per-packet work: seal a batch of packets into frames, then open the stream again.
//! Throughput is in packets (elements) per second.

use _core::link::{FrameSealer, Opener, Sealer};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use std::hint::black_box;

const IV: [u8; 16] = [7; 16];

fn seal_and_open(c: &mut Criterion) {
    let mut group = c.benchmark_group("link");
    // 32768 B is the node's default MTU; "mixed" puts one 60-byte packet among full ones.
    let cases: [(&str, usize, usize); 6] = [
        ("1400B", 1400, 1),
        ("1400B", 1400, 16),
        ("1400B", 1400, 64),
        ("64B", 64, 64),
        ("32768B", 32768, 8),
        ("mixed60B+32768B", 32768, 8),
    ];
    for (label, size, batch) in cases {
        let mixed = label.starts_with("mixed");
        let packets: Vec<Vec<u8>> = (0..batch)
            .map(|i| vec![i as u8; if mixed && i == 0 { 60 } else { size }])
            .collect();
        let refs: Vec<&[u8]> = packets.iter().map(Vec::as_slice).collect();
        let mut sealer = Sealer::new(b"psk", &IV);
        let mut opener = Opener::new(b"psk", &IV);
        group.throughput(Throughput::Elements(batch as u64));
        group.bench_function(format!("seal+open/{label}/x{batch}"), |b| {
            b.iter(|| {
                let wire = sealer.seal_batch(black_box(&refs)).unwrap();
                assert_eq!(opener.feed(&wire, |n| vec![0; n]).unwrap().len(), batch);
            })
        });
        let mut sealer = Sealer::new(b"psk", &IV);
        group.bench_function(format!("seal/{label}/x{batch}"), |b| {
            b.iter(|| sealer.seal_batch(black_box(&refs)).unwrap())
        });
    }
    group.finish();
}

criterion_group!(benches, seal_and_open);
criterion_main!(benches);
