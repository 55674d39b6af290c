//! Round trip: decode → sign the item with ed25519-dalek → finish → the wire transaction
//! deserializes with solana-transaction and passes Solana's own signature verification, and
//! its transaction id (the first signature, base58) is this key's signature.

mod common;

use common::{base58, decode, finish, sign, signing_key};
use solana_message::{Address, Hash, Message};
use solana_system_interface::instruction as system;
use solana_transaction::versioned::VersionedTransaction;

#[test]
fn signed_transfer_verifies_with_solana_and_its_id_is_the_signature() {
    let key = signing_key(11);
    let public = key.verifying_key().to_bytes();
    let me = Address::new_from_array(public);
    let to = Address::new_from_array([4; 32]);
    let payload = Message::new_with_blockhash(
        &[system::transfer(&me, &to, 123_456)],
        Some(&me),
        &Hash::new_from_array([3; 32]),
    )
    .serialize();
    let decoded = decode(&payload, &public).unwrap();
    let signature = sign(&key, &decoded.items[0].message);
    let wire = finish(&payload, &public, signature.clone()).unwrap();

    let tx: VersionedTransaction = wincode::deserialize_exact(&wire).unwrap();
    tx.verify_and_hash_message()
        .expect("Solana's verification accepts the signed transaction");
    assert!(tx.is_signed());
    assert_eq!(tx.message.serialize(), payload);
    // The transaction id is the fee payer's signature in base58.
    assert_eq!(base58(tx.signatures[0].as_ref()), base58(&signature));
}

/// With a second signer, this key's signature goes into its own slot and the other stays
/// zero for the co-signer; Solana verifies this key's slot.
#[test]
fn second_signer_slot_is_filled_and_the_others_left_zero() {
    let payer = signing_key(21);
    let key = signing_key(22);
    let payer_address = Address::new_from_array(payer.verifying_key().to_bytes());
    let public = key.verifying_key().to_bytes();
    let me = Address::new_from_array(public);
    let payload = Message::new_with_blockhash(
        &[system::transfer(&me, &Address::new_from_array([4; 32]), 1)],
        Some(&payer_address),
        &Hash::new_from_array([3; 32]),
    )
    .serialize();
    let signature = sign(&key, &payload);
    let wire = finish(&payload, &public, signature.clone()).unwrap();
    let mut tx: VersionedTransaction = wincode::deserialize_exact(&wire).unwrap();
    assert_eq!(tx.signatures.len(), 2);
    assert_eq!(tx.signatures[0].as_ref(), &[0u8; 64][..]);
    assert_eq!(tx.signatures[1].as_ref(), signature.as_slice());
    assert!(!tx.is_signed());
    // Once the payer adds its signature, Solana verifies the whole transaction.
    tx.signatures[0] = sign(&payer, &payload).as_slice().try_into().unwrap();
    tx.verify_and_hash_message()
        .expect("both signatures verify");
}
