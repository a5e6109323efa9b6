//! name_to_ipv6: about 65,536 Speck rounds on average, which is why callers cache it.

use _core::address::name_to_ipv6;
use criterion::{criterion_group, criterion_main, Criterion};
use std::hint::black_box;

fn address(c: &mut Criterion) {
    for name in ["example_node", "alice"] {
        c.bench_function(&format!("name_to_ipv6/{name}"), |b| {
            b.iter(|| name_to_ipv6(black_box(name.as_bytes())))
        });
    }
}

criterion_group!(benches, address);
criterion_main!(benches);
