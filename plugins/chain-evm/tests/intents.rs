//! Intents of transactions and typed data beyond the published vectors (ERC-20 calls, mixed
//! assets, deployments, EIP-2612 permits), and round trips: a transaction finished by the
//! plugin is read back by alloy's own decoder and recovers to the key's address.
//!
//! Addresses used as expected values come with their EIP-55 form from the EIP-55 spec's
//! examples (https://eips.ethereum.org/EIPS/eip-55) and Etherscan (USDC,
//! 0xA0b86991c6218b36c1d19D4a2e9Eb0cE3606eB48), never from the plugin itself.

mod common;

use alloy_consensus::transaction::SignerRecoverable;
use alloy_consensus::{SignableTransaction, TxEip1559, TxEip2930, TxEnvelope, TxLegacy};
use alloy_eips::eip2718::Decodable2718;
use alloy_primitives::{Address, Bytes, TxKind, U256};
use common::*;
use keyrack_chain_evm::Evm;
use keyrack_plugin::chain::{actions, NATIVE};
use keyrack_plugin::{ChainError, ChainPlugin, PayloadFormat, Transfer};

const TX: PayloadFormat = PayloadFormat::Transaction;
const USDC: &str = "0xA0b86991c6218b36c1d19D4a2e9Eb0cE3606eB48";
const ALICE: &str = "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed";
const SPENDER: &str = "0xfB6916095ca1df60bB79Ce92cE3Ea74c37c5d359";
const OWNER: &str = "0xdbF03B407c01E7cD3CBea99509d93f8DDDC8C6FB";
const BOB: &str = "0xD1220A0cf47c7B9Be7A2E6BA89F429762e7b9aDb";

fn address(text: &str) -> Address {
    text.parse().unwrap()
}

/// ABI words written out by hand: a selector, then each argument left-padded to 32 bytes.
fn calldata(selector: &str, words: &[&str]) -> Bytes {
    let mut data = selector.to_string();
    for word in words {
        let word = word.trim_start_matches("0x").to_lowercase();
        data.push_str(&format!("{word:0>64}"));
    }
    hex(&data).into()
}

fn eip1559(to: TxKind, value: u64, input: Bytes) -> TxEip1559 {
    TxEip1559 {
        chain_id: 10,
        nonce: 7,
        gas_limit: 100_000,
        max_fee_per_gas: 30_000_000_000,
        max_priority_fee_per_gas: 1_000_000_000,
        to,
        value: U256::from(value),
        input,
        access_list: Default::default(),
    }
}

fn transfer(to: &str, asset: &str, amount: u128) -> Transfer {
    Transfer {
        to: to.into(),
        asset: asset.into(),
        amount,
    }
}

/// The intent of an EIP-1559 call of the USDC contract with `data`.
fn usdc_call(data: Bytes) -> keyrack_plugin::Intent {
    intent_of(&eip1559(address(USDC).into(), 0, data))
}

fn intent_of(tx: &impl SignableTransaction<alloy_primitives::Signature>) -> keyrack_plugin::Intent {
    let key = signing_key("intents");
    decode(
        TX,
        &tx.encoded_for_signing(),
        &compressed(key.verifying_key()),
    )
    .intent
}

#[test]
fn erc20_transfer_is_a_token_transfer_of_the_contract_to_the_recipient() {
    let data = calldata("a9059cbb", &[ALICE, "f4240"]);
    let intent = usdc_call(data);
    assert_eq!(intent.action, actions::TOKEN_TRANSFER);
    assert_eq!(intent.method.as_deref(), Some("transfer"));
    assert_eq!(intent.contract.as_deref(), Some(USDC));
    assert_eq!(intent.network.as_deref(), Some("10"));
    assert_eq!(intent.transfers, vec![transfer(ALICE, USDC, 1_000_000)]);
    assert_eq!(intent.asset(), Some(USDC));
    assert_eq!(intent.value(), Some(1_000_000));
    assert_eq!(intent.fee, Some(100_000 * 30_000_000_000));
    assert_eq!(intent.details["data_len"], "68");
}

#[test]
fn erc20_transfer_from_names_the_recipient_and_shows_the_owner() {
    let data = calldata("23b872dd", &[OWNER, BOB, "0de0b6b3a7640000"]);
    let intent = usdc_call(data);
    assert_eq!(intent.action, actions::TOKEN_TRANSFER);
    assert_eq!(intent.method.as_deref(), Some("transferFrom"));
    assert_eq!(
        intent.transfers,
        vec![transfer(BOB, USDC, 1_000_000_000_000_000_000)]
    );
    assert_eq!(intent.details["from"], OWNER);
}

#[test]
fn unlimited_erc20_approve_saturates_at_u128_max() {
    let data = calldata("095ea7b3", &[SPENDER, &"f".repeat(64)]);
    let intent = usdc_call(data);
    assert_eq!(intent.action, actions::TOKEN_APPROVE);
    assert_eq!(intent.method.as_deref(), Some("approve"));
    assert_eq!(intent.transfers, vec![transfer(SPENDER, USDC, u128::MAX)]);
    // An amount just above u128 saturates too; one within it does not.
    let above = format!("1{}", "0".repeat(32));
    let data = calldata("095ea7b3", &[SPENDER, &above]);
    assert_eq!(usdc_call(data).transfers[0].amount, u128::MAX);
    let data = calldata("095ea7b3", &[SPENDER, "2a"]);
    assert_eq!(usdc_call(data).transfers[0].amount, 42);
}

#[test]
fn native_value_beside_a_token_call_is_a_second_asset_so_value_is_undefined() {
    let data = calldata("a9059cbb", &[ALICE, "64"]);
    let intent = intent_of(&eip1559(address(USDC).into(), 5, data));
    assert_eq!(intent.action, actions::TOKEN_TRANSFER);
    assert_eq!(
        intent.transfers,
        vec![transfer(ALICE, USDC, 100), transfer(USDC, NATIVE, 5),]
    );
    assert_eq!(intent.asset(), None);
    assert_eq!(intent.value(), None);
}

#[test]
fn unknown_calldata_is_a_contract_call_named_by_its_selector() {
    let data = calldata("12345678", &["01"]);
    let intent = intent_of(&eip1559(address(BOB).into(), 3, data));
    assert_eq!(intent.action, actions::CONTRACT_CALL);
    assert_eq!(intent.method.as_deref(), Some("0x12345678"));
    assert_eq!(intent.contract.as_deref(), Some(BOB));
    assert_eq!(intent.transfers, vec![transfer(BOB, NATIVE, 3)]);
    // Without value, a call moves nothing the decoder can see.
    let intent = intent_of(&eip1559(address(BOB).into(), 0, calldata("12345678", &[])));
    assert!(intent.transfers.is_empty());
    assert_eq!(intent.value(), Some(0));
}

#[test]
fn malformed_calldata_for_a_known_selector_is_refused() {
    let key = signing_key("intents");
    let public = compressed(key.verifying_key());
    let good = calldata("a9059cbb", &[ALICE, "64"]);
    let mut trailing = good.to_vec();
    trailing.push(0);
    let mut dirty = good.to_vec();
    dirty[4] = 0x01; // a non-zero byte in the address word's padding
    let cases: [(&str, Vec<u8>); 3] = [
        ("truncated", good[..good.len() - 1].to_vec()),
        ("trailing byte", trailing),
        ("dirty address padding", dirty),
    ];
    for (what, data) in cases {
        let tx = eip1559(address(USDC).into(), 0, data.into());
        let err = Evm::new()
            .decode(TX, &tx.encoded_for_signing(), signer(&public))
            .unwrap_err();
        assert!(
            matches!(&err, ChainError::Malformed { reason, .. } if reason.contains("transfer(address,uint256)")),
            "{what}: {err}"
        );
    }
}

#[test]
fn deployment_sends_its_value_to_the_address_the_contract_will_have() {
    let key = signing_key("deployer");
    let public = compressed(key.verifying_key());
    let sender = Address::from_public_key(key.verifying_key());
    let tx = eip1559(TxKind::Create, 9, Bytes::from_static(&[0x60, 0x00]));
    let intent = decode(TX, &tx.encoded_for_signing(), &public).intent;
    assert_eq!(intent.action, actions::CONTRACT_DEPLOY);
    assert_eq!(intent.contract, None);
    let created = sender.create(7).to_checksum(None);
    assert_eq!(intent.details["contract_address"], created);
    assert_eq!(
        intent.transfers,
        vec![Transfer {
            to: created,
            asset: NATIVE.into(),
            amount: 9,
        }]
    );
}

#[test]
fn pre_eip155_legacy_transaction_binds_no_network() {
    let tx = TxLegacy {
        chain_id: None,
        nonce: 0,
        gas_price: 1_000,
        gas_limit: 21_000,
        to: address(BOB).into(),
        value: U256::from(u128::MAX) + U256::from(1u8),
        input: Bytes::new(),
    };
    let intent = intent_of(&tx);
    assert_eq!(intent.network, None);
    assert_eq!(intent.action, actions::TRANSFER);
    assert_eq!(intent.details["type"], "legacy (no chain id)");
    // A value above u128 saturates.
    assert_eq!(intent.transfers[0].amount, u128::MAX);
    assert_eq!(intent.transfers[0].to, BOB);
}

fn permit_json(message: &str, domain: &str) -> String {
    format!(
        r#"{{
      "types": {{
        "EIP712Domain": [
          {{"name": "name", "type": "string"}},
          {{"name": "version", "type": "string"}},
          {{"name": "chainId", "type": "uint256"}},
          {{"name": "verifyingContract", "type": "address"}}
        ],
        "Permit": [
          {{"name": "owner", "type": "address"}},
          {{"name": "spender", "type": "address"}},
          {{"name": "value", "type": "uint256"}},
          {{"name": "nonce", "type": "uint256"}},
          {{"name": "deadline", "type": "uint256"}}
        ]
      }},
      "primaryType": "Permit",
      "domain": {domain},
      "message": {message}
    }}"#
    )
}

/// EIP-2612 (https://eips.ethereum.org/EIPS/eip-2612): `Permit(owner, spender, value, nonce,
/// deadline)` in the token's domain.
#[test]
fn eip2612_permit_is_a_token_approval_of_the_verifying_contract() {
    let domain = format!(
        r#"{{"name": "USD Coin", "version": "2", "chainId": 1, "verifyingContract": "{USDC}"}}"#
    );
    let message = format!(
        r#"{{"owner": "{OWNER}", "spender": "{SPENDER}", "value": "115792089237316195423570985008687907853269984665640564039457584007913129639935", "nonce": 0, "deadline": "1700000000"}}"#
    );
    let json = permit_json(&message, &domain);
    let key = signing_key("permit");
    let public = compressed(key.verifying_key());
    let decoded = decode(PayloadFormat::TypedData, json.as_bytes(), &public);
    let intent = &decoded.intent;
    assert_eq!(intent.action, actions::TOKEN_APPROVE);
    assert_eq!(intent.method.as_deref(), Some("permit"));
    assert_eq!(intent.network.as_deref(), Some("1"));
    assert_eq!(intent.contract.as_deref(), Some(USDC));
    assert_eq!(intent.transfers, vec![transfer(SPENDER, USDC, u128::MAX)]);
    assert_eq!(intent.details["domain.name"], "USD Coin");
    assert_eq!(intent.details["message.deadline"], "\"1700000000\"");

    // The digest is alloy-dyn-abi's EIP-712 signing hash of the same JSON.
    let typed: alloy_dyn_abi::TypedData = serde_json::from_str(&json).unwrap();
    assert_eq!(
        decoded.items[0].message,
        typed.eip712_signing_hash().unwrap().to_vec()
    );

    // A permit whose token cannot be named is refused.
    let json = permit_json(
        &message,
        r#"{"name": "USD Coin", "version": "2", "chainId": 1}"#,
    );
    let err = Evm::new()
        .decode(PayloadFormat::TypedData, json.as_bytes(), signer(&public))
        .unwrap_err();
    assert!(
        matches!(err, ChainError::Unsupported(ref r) if r.contains("verifyingContract")),
        "{err}"
    );
}

/// Finishes a transaction with a k256 signature and reads it back with alloy: the recovered
/// sender is the key's address, the decoded transaction the one given.
fn round_trip(tx: impl SignableTransaction<alloy_primitives::Signature>, label: &str) {
    let key = signing_key(label);
    let public = compressed(key.verifying_key());
    let payload = tx.encoded_for_signing();
    let raw = sign_and_finish(TX, &payload, &key);
    let envelope = TxEnvelope::decode_2718(&mut &raw[..]).unwrap();
    let address = &Evm::new().addresses(signer(&public)).unwrap()[0];
    assert_eq!(
        envelope.recover_signer().unwrap().to_checksum(None),
        *address,
        "{label}"
    );
    assert_eq!(envelope.signature_hash(), tx.signature_hash(), "{label}");
}

#[test]
fn transactions_finished_by_the_plugin_recover_to_the_key_with_alloy() {
    let legacy = |chain_id| TxLegacy {
        chain_id,
        nonce: 1,
        gas_price: 2_000_000_000,
        gas_limit: 21_000,
        to: address(ALICE).into(),
        value: U256::from(1234u64),
        input: Bytes::new(),
    };
    round_trip(legacy(None), "legacy pre-155");
    round_trip(legacy(Some(1)), "legacy chain 1");
    round_trip(legacy(Some(137)), "legacy chain 137");
    round_trip(
        eip1559(
            address(USDC).into(),
            0,
            calldata("a9059cbb", &[ALICE, "64"]),
        ),
        "eip1559",
    );
    round_trip(
        TxEip2930 {
            chain_id: 11_155_111,
            nonce: 0,
            gas_price: 3,
            gas_limit: 50_000,
            to: address(BOB).into(),
            value: U256::ZERO,
            input: Bytes::from_static(&[1, 2, 3, 4]),
            access_list: vec![alloy_eips::eip2930::AccessListItem {
                address: address(USDC),
                storage_keys: vec![Default::default()],
            }]
            .into(),
        },
        "eip2930",
    );
}
