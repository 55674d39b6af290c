//! A message that decodes but carries wrong values (not garbage bytes): the honest parties
//! must abort and name the sender.

mod common;

use std::sync::Arc;
use std::time::Duration;

use ciborium::Value;
use common::*;
use keyrack_plugin::sim::Faults;
use keyrack_plugin::ProtocolError;

/// Flips one bit of the last 16+-byte value found in a CBOR message (a byte string, an array
/// of byte-sized integers, or a hex string), and re-encodes it: still a well-formed message,
/// with one value changed.
fn alter_a_value(payload: &mut Vec<u8>) {
    fn walk(v: &mut Value) -> bool {
        match v {
            Value::Bytes(b) if b.len() >= 16 => {
                let last = b.len() - 1;
                b[last] ^= 0x01;
                true
            }
            Value::Array(items)
                if items.len() >= 16 && items.iter().all(|i| matches!(i, Value::Integer(_))) =>
            {
                if let Some(Value::Integer(last)) = items.last_mut() {
                    let byte = u8::try_from(i128::from(*last)).unwrap_or(0);
                    *last = (byte ^ 0x01).into();
                }
                true
            }
            Value::Text(t) if t.len() >= 32 && t.bytes().all(|c| c.is_ascii_hexdigit()) => {
                let last = if t.ends_with('0') { '1' } else { '0' };
                t.pop();
                t.push(last);
                true
            }
            Value::Array(items) => items.iter_mut().rev().any(walk),
            Value::Map(entries) => entries.iter_mut().rev().any(|(_, v)| walk(v)),
            Value::Tag(_, inner) => walk(inner),
            _ => false,
        }
    }
    let mut value: Value = ciborium::from_reader(payload.as_slice()).expect("a CBOR message");
    assert!(walk(&mut value), "no value to alter in the message");
    payload.clear();
    ciborium::into_writer(&value, payload).expect("re-encode");
}

#[test]
fn an_altered_keygen_value_names_its_sender() {
    let plugin = plugin();
    let mut outcomes = vec![];
    for round in 0..4u16 {
        let faults = Faults {
            tamper: Some((1, round, Arc::new(alter_a_value))),
            ..Faults::default()
        };
        let results = keygen_with(&plugin, 2, 3, &faults, Duration::from_secs(3));
        for me in [0usize, 2] {
            outcomes.push((
                round,
                me,
                results[me].as_ref().unwrap().as_ref().err().cloned(),
            ));
        }
    }
    for (round, me, outcome) in &outcomes {
        match outcome {
            Some(ProtocolError::Misbehaved { party: 1, .. } | ProtocolError::Malformed { party: 1, .. }) => {}
            other => panic!("round {round}, party {me}: expected party 1 blamed, got {other:?}\nall: {outcomes:#?}"),
        }
    }
}
