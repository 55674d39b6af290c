//! PUBLIC test-fixture safe primes, for development clusters and tests only.
//!
//! These primes are in this repository for anyone to read: a Paillier key made from them is
//! no secret. They exist so that `keyrack dev` and tests can run committee setup without
//! waiting minutes for prime generation. Whoever uses them must say so visibly; a production
//! node never does.

use keyrack_plugin::ProtocolError;

use crate::SafePrimes;

/// How many pairs [`primes`] holds.
pub const COUNT: usize = 5;

/// The fixture pairs (in a fixed order: give each party a different one).
pub fn primes() -> Result<Vec<SafePrimes>, ProtocolError> {
    let list: Vec<Vec<u8>> = ciborium::from_reader(&include_bytes!("../testdata/primes.cbor")[..])
        .map_err(|e| ProtocolError::InvalidMaterial(format!("fixture primes: {e}")))?;
    list.iter().map(|b| SafePrimes::from_bytes(b)).collect()
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_fixture_primes_decode_and_are_distinct() {
        let primes = super::primes().unwrap();
        assert_eq!(primes.len(), super::COUNT);
        let encoded: std::collections::BTreeSet<Vec<u8>> = primes
            .iter()
            .map(|p| p.to_bytes().unwrap().to_vec())
            .collect();
        assert_eq!(encoded.len(), super::COUNT);
    }
}
