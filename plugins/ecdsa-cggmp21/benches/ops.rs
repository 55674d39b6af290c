//! Per-operation costs over the in-process network, using the committed fixtures (no prime
//! generation or committee setup is measured). Each iteration is one whole protocol run:
//! every party on its own thread, on however many cores the machine has.
//!
//! `cargo bench -p keyrack-ecdsa-cggmp21`

#[path = "../tests/common/mod.rs"]
mod common;

use std::time::Duration;

use common::*;
use criterion::{criterion_group, criterion_main, BatchSize, Criterion};

fn ops(c: &mut Criterion) {
    let plugin = plugin();
    let shares = keygen(&plugin, 2, 3);
    let msg = message("bench");
    let mut g = c.benchmark_group("ecdsa-secp256k1 2-of-3");
    g.sample_size(10).measurement_time(Duration::from_secs(10));
    g.bench_function("keygen (3 parties)", |b| b.iter(|| keygen(&plugin, 2, 3)));
    g.bench_function("sign (2 signers)", |b| {
        b.iter(|| sign(&plugin, &shares, &[0, 1], msg, &[]))
    });
    g.bench_function("presign (2 signers)", |b| {
        b.iter(|| presign(&plugin, &shares, &[0, 1]))
    });
    g.bench_function("sign_presigned (2 signers)", |b| {
        b.iter_batched(
            || presign(&plugin, &shares, &[0, 1]),
            |pres| sign_presigned(&plugin, &shares, pres, msg, &[]),
            BatchSize::PerIteration,
        )
    });
    g.finish();
}

criterion_group!(benches, ops);
criterion_main!(benches);
