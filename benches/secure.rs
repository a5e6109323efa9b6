//! secure_tcp frames against legacy_tcp ones, side by side: seal a batch of 8 data packets
//! (`seal_data_batch`), and open the same batch (`feed`). Throughput is in bytes of IP packet,
//! so the README can quote GB/s and the ratio of the two codecs.

use _core::link::{FrameSealer, Opener, Sealer};
use _core::secure::{SecureOpener, SecureSealer};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use std::hint::black_box;

const IV: [u8; 16] = [7; 16];
const KEY: [u8; 32] = [7; 32];
const BATCH: usize = 8;
const TIMESTAMP_MS: u64 = 1_767_225_600_000;

fn body(len: usize) -> Vec<u8> {
    vec![0; len]
}

fn codecs(c: &mut Criterion) {
    let mut group = c.benchmark_group("secure_vs_legacy");
    // 1500 B is an Ethernet-sized packet, 32768 B the node's default MTU.
    for size in [1500usize, 32768] {
        let packets: Vec<Vec<u8>> = (0..BATCH).map(|i| vec![i as u8; size]).collect();
        let refs: Vec<&[u8]> = packets.iter().map(Vec::as_slice).collect();
        group.throughput(Throughput::Bytes((size * BATCH) as u64));

        let mut sealer = SecureSealer::new(&KEY);
        group.bench_function(format!("seal_data_batch/secure/{size}B/x{BATCH}"), |b| {
            b.iter(|| {
                sealer
                    .seal_data_batch(black_box(&refs), TIMESTAMP_MS)
                    .unwrap()
            })
        });
        let mut sealer = Sealer::new(b"psk", &IV);
        group.bench_function(format!("seal_data_batch/legacy/{size}B/x{BATCH}"), |b| {
            b.iter(|| {
                sealer
                    .seal_data_batch(black_box(&refs), TIMESTAMP_MS)
                    .unwrap()
            })
        });

        // Each direction's frames open only once, in order: seal a long run of batches up
        // front, and have the bench open them in turn, starting over with a fresh opener (whose
        // cost, a key schedule, is noise beside 8 packets) when they run out.
        const RUN: usize = 256;
        let mut sealer = SecureSealer::new(&KEY);
        let wires: Vec<Vec<u8>> = (0..RUN)
            .map(|_| sealer.seal_data_batch(&refs, TIMESTAMP_MS).unwrap())
            .collect();
        let mut opener = SecureOpener::new(&KEY);
        let mut next = 0;
        group.bench_function(format!("open/secure/{size}B/x{BATCH}"), |b| {
            b.iter(|| {
                if next == RUN {
                    (opener, next) = (SecureOpener::new(&KEY), 0);
                }
                let got = opener.feed(black_box(&wires[next]), body).unwrap();
                next += 1;
                assert_eq!(got.len(), BATCH);
                got
            })
        });
        let mut sealer = Sealer::new(b"psk", &IV);
        let wires: Vec<Vec<u8>> = (0..RUN)
            .map(|_| sealer.seal_data_batch(&refs, TIMESTAMP_MS).unwrap())
            .collect();
        let mut opener = Opener::new(b"psk", &IV);
        let mut next = 0;
        group.bench_function(format!("open/legacy/{size}B/x{BATCH}"), |b| {
            b.iter(|| {
                if next == RUN {
                    (opener, next) = (Opener::new(b"psk", &IV), 0);
                }
                let got = opener.feed(black_box(&wires[next]), body).unwrap();
                next += 1;
                assert_eq!(got.len(), BATCH);
                got
            })
        });
    }
    group.finish();
}

criterion_group!(benches, codecs);
criterion_main!(benches);
