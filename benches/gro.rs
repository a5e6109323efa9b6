//! TCP receive coalescing: planning and filling the TUN writes for a batch of 64 delivered
//! segments of 1448 bytes, all of one flow (super-packets of 45 and 19 segments) and
//! of 8 interleaved flows (8 super-packets of 8). Throughput is per segment.

use _core::gro::Plan;
use _core::icmp::checksum;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use std::hint::black_box;

const BATCH: usize = 64;
const MSS: usize = 1448;

/// A valid IPv4 segment (DF, timestamps option) of flow `flow` at `seq`.
fn segment(flow: u8, seq: u32) -> Vec<u8> {
    let mut p = vec![0u8; 52 + MSS];
    let len = p.len() as u16;
    p[..10].copy_from_slice(&[0x45, 0, 0, 0, 0, 1, 0x40, 0, 64, 6]);
    p[2..4].copy_from_slice(&len.to_be_bytes());
    p[12..20].copy_from_slice(&[10, 250, 0, 1, 10, 250, 0, 2]);
    let sum = checksum(&[&p[..20]]);
    p[10..12].copy_from_slice(&sum.to_be_bytes());
    p[20..24].copy_from_slice(&[0x9c, 0x40, 0x14, flow]);
    p[24..28].copy_from_slice(&seq.to_be_bytes());
    p[32..36].copy_from_slice(&[0x80, 0x10, 0x01, 0xf6]);
    p[40..52].copy_from_slice(&[1, 1, 8, 10, 0, 0, 0, 1, 0, 0, 0, 2]);
    for (i, byte) in p[52..].iter_mut().enumerate() {
        *byte = i as u8;
    }
    let tcp_len = (p.len() - 20) as u16;
    let [hi, lo] = tcp_len.to_be_bytes();
    let sum = checksum(&[&p[12..20], &[0, 6, hi, lo], &p[20..]]);
    p[36..38].copy_from_slice(&sum.to_be_bytes());
    p
}

fn gro(c: &mut Criterion) {
    let one_flow: Vec<Vec<u8>> = (0..BATCH).map(|i| segment(0, (i * MSS) as u32)).collect();
    let mixed_flows: Vec<Vec<u8>> = (0..BATCH)
        .map(|i| segment((i % 8) as u8, (i / 8 * MSS) as u32))
        .collect();
    let mut group = c.benchmark_group("gro");
    group.throughput(Throughput::Elements(BATCH as u64));
    for (name, batch) in [("one_flow", &one_flow), ("mixed_flows", &mixed_flows)] {
        let packets: Vec<&[u8]> = batch.iter().map(|p| p.as_slice()).collect();
        let mut out = vec![0u8; 65535 + 10];
        group.bench_function(format!("{name}/{BATCH}x{MSS}B"), |b| {
            b.iter(|| {
                let plan = Plan::new(black_box(&packets));
                for (index, write) in plan.writes().iter().enumerate() {
                    plan.write_into(index, &mut out[..write.size()]);
                }
                black_box(&out);
            })
        });
    }
    group.finish();
}

criterion_group!(benches, gro);
criterion_main!(benches);
