//! Generates the committed fixtures in testdata/ (run once; the normal suite only reads them):
//!
//! ```text
//! cargo test -p keyrack-ecdsa-cggmp21 --test fixtures -- --ignored --nocapture
//! ```
//!
//! Writes `primes.cbor` (5 pairs of safe primes, generated for real), `aux-{3,4,5}.cbor`
//! (committee setup of 3, 4 and 5 parties; the committee of n uses pairs 0..n — fixtures
//! only, a real node never reuses primes across committees) and `golden-2of3.cbor` (a 2-of-3
//! share set in the share format of this version).

mod common;

use std::time::{Duration, Instant};

use common::*;
use keyrack_ecdsa_cggmp21::{committee_setup, SafePrimes};
use keyrack_plugin::sim::{self, Faults};

#[test]
#[ignore = "generates testdata/ (minutes of CPU)"]
fn generate_fixtures() {
    let started = Instant::now();
    let primes: Vec<SafePrimes> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..5).map(|_| s.spawn(SafePrimes::generate)).collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    eprintln!("5 pairs of safe primes: {:?}", started.elapsed());
    write_list(
        "primes.cbor",
        &primes
            .iter()
            .map(|p| p.to_bytes().unwrap().to_vec())
            .collect::<Vec<_>>(),
    );
    for n in [3u16, 4, 5] {
        let started = Instant::now();
        let id = session_id();
        let aux = all_ok(sim::run(
            n,
            Duration::from_secs(600),
            &Faults::default(),
            |me, ch| committee_setup(&session(id, me, n), ch, primes[usize::from(me)].clone()),
        ));
        eprintln!("committee setup n={n}: {:?}", started.elapsed());
        write_list(
            &format!("aux-{n}.cbor"),
            &aux.iter()
                .map(|a| a.to_bytes().unwrap().to_vec())
                .collect::<Vec<_>>(),
        );
    }
    let plugin = plugin();
    let shares = keygen(&plugin, 2, 3);
    let mut out = Vec::new();
    ciborium::into_writer(&shares, &mut out).unwrap();
    std::fs::write(testdata("golden-2of3.cbor"), out).unwrap();
}
