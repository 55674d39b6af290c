//! Bad input: every refusal is a clear error of the right kind.

mod common;

use common::{decode, finish, key, sign, signing_key};
use keyrack_chain_solana::Solana;
use keyrack_plugin::{ChainError, ChainPlugin, PayloadFormat, SignerKey};
use solana_message::compiled_instruction::CompiledInstruction;
use solana_message::{v0, Address, Hash, Message, MessageHeader, VersionedMessage};
use solana_system_interface::instruction as system;

fn me() -> (Address, [u8; 32]) {
    let public = signing_key(5).verifying_key().to_bytes();
    (Address::new_from_array(public), public)
}

fn transfer_payload(from: &Address, payer: &Address) -> Vec<u8> {
    Message::new_with_blockhash(
        &[system::transfer(
            from,
            &Address::new_from_array([2; 32]),
            10,
        )],
        Some(payer),
        &Hash::new_from_array([1; 32]),
    )
    .serialize()
}

fn malformed(result: Result<impl std::fmt::Debug, ChainError>) -> String {
    match result {
        Err(ChainError::Malformed { format, reason }) => {
            assert_eq!(format, "transaction");
            reason
        }
        other => panic!("expected Malformed, got {other:?}"),
    }
}

fn unsupported(result: Result<impl std::fmt::Debug, ChainError>) -> String {
    match result {
        Err(ChainError::Unsupported(reason)) => reason,
        other => panic!("expected Unsupported, got {other:?}"),
    }
}

#[test]
fn garbage_bytes_are_malformed() {
    let (_, public) = me();
    for garbage in [
        &b""[..],
        b"\x01",
        b"hello, not a solana message",
        &[0xff; 40],
    ] {
        let reason = malformed(decode(garbage, &public));
        assert!(!reason.is_empty());
    }
}

#[test]
fn trailing_bytes_are_malformed() {
    let (me, public) = me();
    let mut payload = transfer_payload(&me, &me);
    payload.extend_from_slice(&[0, 0]);
    let reason = malformed(decode(&payload, &public));
    assert!(reason.contains("2 trailing byte(s)"), "{reason}");
}

#[test]
fn a_signed_wire_transaction_is_not_a_message() {
    let (me, public) = me();
    let payload = transfer_payload(&me, &me);
    let mut wire = vec![1];
    wire.extend_from_slice(&[7; 64]);
    wire.extend_from_slice(&payload);
    assert!(decode(&wire, &public).is_err());
}

#[test]
fn key_that_is_not_a_signer_is_unsupported_and_named() {
    let (me, public) = me();
    let other = Address::new_from_array([9; 32]);
    let reason = unsupported(decode(&transfer_payload(&other, &other), &public));
    assert!(reason.contains(&me.to_string()), "{reason}");
    assert!(reason.contains("not a required signer"), "{reason}");

    // Present, but only as the (non-signing) recipient.
    let payload = Message::new_with_blockhash(
        &[system::transfer(&other, &me, 10)],
        Some(&other),
        &Hash::default(),
    )
    .serialize();
    let reason = unsupported(decode(&payload, &public));
    assert!(
        reason.contains(&me.to_string()) && reason.contains("non-signing"),
        "{reason}"
    );
}

#[test]
fn lookup_table_accounts_used_by_an_instruction_are_refused() {
    let (me, public) = me();
    let message = v0::Message {
        header: MessageHeader {
            num_required_signatures: 1,
            num_readonly_signed_accounts: 0,
            num_readonly_unsigned_accounts: 1,
        },
        account_keys: vec![me, solana_system_interface::program::ID],
        recent_blockhash: Hash::new_from_array([1; 32]),
        // Account 2 is the first account loaded from the lookup table.
        instructions: vec![CompiledInstruction {
            program_id_index: 1,
            accounts: vec![0, 2],
            data: [2u32.to_le_bytes().as_slice(), &700u64.to_le_bytes()].concat(),
        }],
        address_table_lookups: vec![v0::MessageAddressTableLookup {
            account_key: Address::new_from_array([50; 32]),
            writable_indexes: vec![0],
            readonly_indexes: vec![],
        }],
    };
    let payload = VersionedMessage::V0(message).serialize();
    let reason = unsupported(decode(&payload, &public));
    assert!(reason.contains("lookup table"), "{reason}");
}

#[test]
fn wrong_signature_in_finish_is_refused() {
    let (me, public) = me();
    let payload = transfer_payload(&me, &me);
    let finish_err = |result: Result<Vec<u8>, ChainError>| match result {
        Err(ChainError::Finish(reason)) => reason,
        other => panic!("expected Finish, got {other:?}"),
    };
    // Signed by another key.
    let reason = finish_err(finish(&payload, &public, sign(&signing_key(6), &payload)));
    assert!(reason.contains("does not verify"), "{reason}");
    // Right key, other message.
    let other = transfer_payload(&me, &Address::new_from_array([3; 32]));
    assert!(matches!(
        finish(&other, &public, sign(&signing_key(5), &payload)),
        Err(ChainError::Unsupported(_) | ChainError::Finish(_))
    ));
    let mut wrong = sign(&signing_key(5), &payload);
    wrong[10] ^= 1;
    finish_err(finish(&payload, &public, wrong));
    // Wrong length and wrong count.
    let reason = finish_err(finish(&payload, &public, vec![0; 63]));
    assert!(reason.contains("64 bytes"), "{reason}");
    let good = sign(&signing_key(5), &payload);
    let reason = finish_err(Solana::new().finish(
        PayloadFormat::Transaction,
        &payload,
        key(&public),
        &[good.clone(), good],
    ));
    assert!(reason.contains("got 2"), "{reason}");
}

#[test]
fn other_formats_schemes_and_key_sizes_are_unsupported() {
    let (me, public) = me();
    let payload = transfer_payload(&me, &me);
    let plugin = Solana::new();
    unsupported(plugin.decode(PayloadFormat::PersonalMessage, &payload, key(&public)));
    unsupported(plugin.decode(PayloadFormat::TypedData, &payload, key(&public)));
    let secp = SignerKey {
        scheme: "ecdsa-secp256k1",
        public_key: &[2; 33],
    };
    unsupported(plugin.decode(PayloadFormat::Transaction, &payload, secp));
    unsupported(plugin.addresses(secp));
    unsupported(plugin.addresses(key(&public[..31])));
}

#[test]
fn instructions_the_runtime_would_reject_are_malformed() {
    let (me, public) = me();
    let budget = Address::from_str_const("ComputeBudget111111111111111111111111111111");
    let price = |p: u64| {
        solana_message::Instruction::new_with_bytes(
            budget,
            &[&[3u8][..], &p.to_le_bytes()].concat(),
            vec![],
        )
    };
    let pay = system::transfer(&me, &Address::new_from_array([2; 32]), 1);
    let build = |ixs: &[solana_message::Instruction]| {
        Message::new_with_blockhash(ixs, Some(&me), &Hash::default()).serialize()
    };
    let reason = malformed(decode(&build(&[price(1), price(2), pay.clone()]), &public));
    assert!(reason.contains("repeats"), "{reason}");
    // A token TransferChecked with a short amount.
    let token = Address::from_str_const("TokenkegQfeZyiNwAJbNbGKPFXCWuBvf9Ss623VQ5DA");
    let short = solana_message::Instruction::new_with_bytes(
        token,
        &[12, 1, 2],
        vec![
            solana_message::AccountMeta::new(Address::new_from_array([1; 32]), false),
            solana_message::AccountMeta::new_readonly(Address::new_from_array([2; 32]), false),
            solana_message::AccountMeta::new(Address::new_from_array([3; 32]), false),
            solana_message::AccountMeta::new_readonly(me, true),
        ],
    );
    let reason = malformed(decode(&build(&[short]), &public));
    assert!(reason.contains("spl_token.transfer_checked"), "{reason}");
}
