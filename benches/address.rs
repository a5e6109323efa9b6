//! name_to_ipv6: about 65,536 Speck rounds on average, which is why callers cache it; and
//! names_to_ipv6, the same for many names with the searches side by side in vector lanes.

use _core::address::{name_to_ipv6, names_to_ipv6};
use criterion::{criterion_group, criterion_main, Criterion};
use std::hint::black_box;

fn address(c: &mut Criterion) {
    for name in ["example_node", "alice"] {
        c.bench_function(&format!("name_to_ipv6/{name}"), |b| {
            b.iter(|| name_to_ipv6(black_box(name.as_bytes())))
        });
    }
    // Per batch; the figure per name is the batch's divided by its size. The same 256 names one
    // by one are the yardstick.
    let names: Vec<Vec<u8>> = (0..256)
        .map(|n| format!("mesh-node-{n:05}").into_bytes())
        .collect();
    for size in [16, 256] {
        let batch: Vec<&[u8]> = names[..size].iter().map(Vec::as_slice).collect();
        c.bench_function(&format!("names_to_ipv6/{size} names"), |b| {
            b.iter(|| names_to_ipv6(black_box(&batch)))
        });
    }
    c.bench_function("name_to_ipv6/256 names one by one", |b| {
        b.iter(|| {
            for name in &names {
                black_box(name_to_ipv6(black_box(name)));
            }
        })
    });
}

criterion_group!(benches, address);
criterion_main!(benches);
