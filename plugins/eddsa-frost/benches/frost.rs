//! Criterion benchmarks of the FROST schemes: each operation run by all its parties over the
//! in-process network (so a number is the wall time of one whole protocol run on this
//! machine, all parties sharing its cores). `cargo bench -p keyrack-eddsa-frost`.

use std::time::Duration;

use criterion::{criterion_group, criterion_main, BatchSize, Criterion};
use keyrack_plugin::scheme::{ReshareMember, ReshareParams};
use keyrack_plugin::sim::{self, Faults};
use keyrack_plugin::{KeyShare, KeygenParams, SchemePlugin, Session, SignRequest};

const TIMEOUT: Duration = Duration::from_secs(30);

fn session(me: u16, parties: u16) -> Session {
    Session {
        id: [1; 32],
        me,
        parties,
    }
}

fn keygen(p: &dyn SchemePlugin, t: u16, n: u16) -> Vec<KeyShare> {
    sim::run(n, TIMEOUT, &Faults::default(), |me, ch| {
        p.keygen(&session(me, n), ch, &KeygenParams { threshold: t })
    })
    .into_iter()
    .map(|r| r.unwrap().unwrap())
    .collect()
}

fn bench_scheme(c: &mut Criterion, name: &str, p: &dyn SchemePlugin) {
    let mut g = c.benchmark_group(name);
    g.sample_size(20);
    g.bench_function("keygen 2-of-3", |b| b.iter(|| keygen(p, 2, 3)));
    g.bench_function("keygen 3-of-5", |b| b.iter(|| keygen(p, 3, 5)));
    let shares = keygen(p, 2, 3);
    let signers = [0u16, 2];
    let message = [0x42u8; 32];
    let request = SignRequest {
        signers: signers.to_vec(),
        message: message.to_vec(),
        derivation_path: vec![],
    };
    g.bench_function("sign 2-of-3", |b| {
        b.iter(|| {
            sim::run(2, TIMEOUT, &Faults::default(), |me, ch| {
                p.sign(
                    &session(me, 2),
                    ch,
                    &shares[signers[me as usize] as usize],
                    &request,
                )
                .map(|_| ())
            })
        })
    });
    g.bench_function("presign 2-of-3", |b| {
        b.iter(|| {
            sim::run(2, TIMEOUT, &Faults::default(), |me, ch| {
                p.presign(
                    &session(me, 2),
                    ch,
                    &shares[signers[me as usize] as usize],
                    &signers,
                )
                .map(|_| ())
            })
        })
    });
    g.bench_function("sign from presignature 2-of-3", |b| {
        b.iter_batched(
            || {
                sim::run(2, TIMEOUT, &Faults::default(), |me, ch| {
                    p.presign(
                        &session(me, 2),
                        ch,
                        &shares[signers[me as usize] as usize],
                        &signers,
                    )
                })
                .into_iter()
                .map(|r| std::sync::Mutex::new(Some(r.unwrap().unwrap())))
                .collect::<Vec<_>>()
            },
            |presigs| {
                sim::run(2, TIMEOUT, &Faults::default(), |me, ch| {
                    let presig = presigs[me as usize].lock().unwrap().take().unwrap();
                    p.sign_presigned(
                        &session(me, 2),
                        ch,
                        &shares[signers[me as usize] as usize],
                        presig,
                        &message,
                        &[],
                    )
                    .map(|_| ())
                })
            },
            BatchSize::SmallInput,
        )
    });
    let params = ReshareParams {
        members: (0..3)
            .map(|i| ReshareMember {
                old: Some(i),
                new: Some(i),
            })
            .collect(),
        old_threshold: 2,
        new_parties: 3,
        new_threshold: 2,
        public_key: shares[0].public_key.clone(),
        chain_code: shares[0].chain_code,
    };
    g.bench_function("refresh 2-of-3", |b| {
        b.iter(|| {
            sim::run(3, TIMEOUT, &Faults::default(), |me, ch| {
                p.reshare(&session(me, 3), ch, Some(&shares[me as usize]), &params)
                    .map(|_| ())
            })
        })
    });
    g.finish();
}

fn benches(c: &mut Criterion) {
    bench_scheme(c, "ed25519", &keyrack_eddsa_frost::ed25519());
    bench_scheme(
        c,
        "schnorr-secp256k1",
        &keyrack_eddsa_frost::schnorr_secp256k1(),
    );
}

criterion_group!(frost, benches);
criterion_main!(frost);
