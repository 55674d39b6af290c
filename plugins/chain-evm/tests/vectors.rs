//! Published vectors: each decoded, its digest compared with the published one, re-signed or
//! re-finished, and the result compared byte for byte with the published signed form.

mod common;

use alloy_primitives::{keccak256, Address};
use common::*;
use keyrack_chain_evm::Evm;
use keyrack_plugin::chain::{actions, NATIVE};
use keyrack_plugin::{ChainPlugin, PayloadFormat, Transfer};

const TX: PayloadFormat = PayloadFormat::Transaction;

/// Decodes a published transaction's unsigned form, checks the digest, then finishes it with
/// the published signature for the key that signature recovers to: the output must be the
/// published raw transaction, whose keccak-256 is the published transaction hash.
fn refinish(raw: &[u8], published: Published, digest: &str, tx_hash: &str, sender: &str) {
    let digest = hex(digest);
    let signer_key = recover(&digest, &published.signature);
    let public = compressed(&signer_key);
    let evm = Evm::new();
    let addresses = evm.addresses(signer(&public)).unwrap();
    assert_eq!(addresses[0].to_lowercase(), sender.to_lowercase());
    let decoded = decode(TX, &published.unsigned, &public);
    assert_eq!(decoded.items[0].label, "transaction");
    assert_eq!(decoded.items[0].message, digest);
    let finished = evm
        .finish(
            TX,
            &published.unsigned,
            signer(&public),
            &[published.signature],
        )
        .unwrap();
    assert_eq!(hex::encode(&finished), hex::encode(raw));
    assert_eq!(keccak256(&finished).to_vec(), hex(tx_hash));
}

/// EIP-155's own example (https://eips.ethereum.org/EIPS/eip-155, "Example"): nonce 9, gas
/// price 20 gwei, gas 21000, to 0x3535…35, 1 ether, chain id 1, private key 0x46…46.
#[test]
fn eip155_example_signed_with_k256_matches_the_published_transaction() {
    let payload = hex("ec098504a817c800825208943535353535353535353535353535353535353535880de0b6b3a764000080018080");
    let published = hex("f86c098504a817c800825208943535353535353535353535353535353535353535880de0b6b3a76400008025a028ef61340bd939bc2195fe537567866003e1a15d3c71ff63e1590620aa636276a067cbe9d8997f761aecb703304b3800ccf555c9f3dc64214b297fb1966a3b6d83");
    let key = k256::ecdsa::SigningKey::from_slice(&[0x46; 32]).unwrap();
    let public = compressed(key.verifying_key());

    // The EIP's sender address.
    let address = &Evm::new().addresses(signer(&public)).unwrap()[0];
    assert_eq!(
        address.to_lowercase(),
        "0x9d8a62f656a8d1615c1294fd71e9cfb3e4855a4f"
    );
    assert!(Address::parse_checksummed(address, None).is_ok());

    let decoded = decode(TX, &payload, &public);
    assert_eq!(
        hex::encode(&decoded.items[0].message),
        "daf5a779ae972f972197303d7b574746c7ef83eadac0f2791ad23db92e4c8e53"
    );
    let intent = &decoded.intent;
    assert_eq!(intent.chain, "evm");
    assert_eq!(intent.network.as_deref(), Some("1"));
    assert_eq!(intent.action, actions::TRANSFER);
    assert_eq!(
        intent.transfers,
        vec![Transfer {
            to: "0x3535353535353535353535353535353535353535".into(),
            asset: NATIVE.into(),
            amount: 1_000_000_000_000_000_000,
        }]
    );
    assert_eq!(intent.value(), Some(1_000_000_000_000_000_000));
    assert_eq!(intent.fee, Some(21_000 * 20_000_000_000));
    assert_eq!(intent.method, None);
    assert_eq!(intent.contract, None);
    assert_eq!(intent.details["nonce"], "9");
    assert_eq!(intent.details["gas_limit"], "21000");
    assert_eq!(intent.details["gas_price"], "20000000000");
    assert_eq!(intent.details["data_len"], "0");

    // k256 signs deterministically (RFC 6979), as the EIP's example did.
    let finished = sign_and_finish(TX, &payload, &key);
    assert_eq!(hex::encode(finished), hex::encode(published));
}

/// Mainnet EIP-1559 transaction 0xce4dc6d7a7549a98ee3b071b67e970879ff51b5b95d1c340bacd80fa1e1aab31
/// (https://etherscan.io/tx/0xce4dc6d7a7549a98ee3b071b67e970879ff51b5b95d1c340bacd80fa1e1aab31;
/// also alloy-consensus `test_decode_live_1559_tx`), sender 0x001e2b7dE757bA469a57bF6b23d982458a07eFcE.
#[test]
fn mainnet_eip1559_transaction_refinishes_to_its_published_bytes_and_hash() {
    let raw = hex("02f86f0102843b9aca0085029e7822d68298f094d9e1459a7a482635700cbc20bbaf52d495ab9c9680841b55ba3ac080a0c199674fcb29f353693dd779c017823b954b3c69dffa3cd6b2a6ff7888798039a028ca912de909e7e6cdef9cdcaf24c54dd8c1032946dfa1d85c206b32a9064fe8");
    let published = split_typed(&raw);
    let unsigned = published.unsigned.clone();
    // The signing hash as alloy computes it from the library's own decoding of the signed tx.
    let envelope =
        <alloy_consensus::TxEnvelope as alloy_eips::eip2718::Decodable2718>::decode_2718(
            &mut &raw[..],
        )
        .unwrap();
    let digest = hex::encode(envelope.signature_hash());
    refinish(
        &raw,
        published,
        &digest,
        "ce4dc6d7a7549a98ee3b071b67e970879ff51b5b95d1c340bacd80fa1e1aab31",
        "0x001e2b7dE757bA469a57bF6b23d982458a07eFcE",
    );

    let intent = decode(
        TX,
        &unsigned,
        &compressed(&signing_key("any").verifying_key().clone()),
    )
    .intent;
    assert_eq!(intent.network.as_deref(), Some("1"));
    assert_eq!(intent.action, actions::CONTRACT_CALL);
    assert_eq!(intent.method.as_deref(), Some("0x1b55ba3a"));
    assert_eq!(
        intent.contract.as_deref(),
        Some("0xD9e1459A7A482635700cBc20BBAF52D495Ab9C96")
    );
    assert!(intent.transfers.is_empty());
    assert_eq!(intent.details["type"], "eip1559");
    assert_eq!(intent.details["nonce"], "2");
    assert_eq!(intent.details["max_priority_fee_per_gas"], "1000000000");
    assert_eq!(intent.details["max_fee_per_gas"], "11248607958");
    assert_eq!(intent.details["gas_limit"], "39152");
    assert_eq!(intent.details["access_list_len"], "0");
    assert_eq!(intent.fee, Some(39_152 * 11248607958));
}

/// go-ethereum core/types/transaction_test.go (`signedEip2718Tx`, `TestEIP2718TransactionSigHash`,
/// `TestEIP2718TransactionEncode`; the same vector is in ethers-rs): an EIP-2930 transaction on
/// chain 1, signing hash 49b486f0…69f3, published encoding 01f863….
#[test]
fn go_ethereum_eip2930_vector_refinishes_to_its_published_bytes() {
    let raw = hex("01f8630103018261a894b94f5374fce5edbc8e2a8697c15331677e6ebf0b0a825544c001a0c9519f4f2b30335884581971573fadf60c6204f59a911df35ee8a540456b2660a032f1e8e2c5dd761f9e4f88f41c8310aeaba26a8bfcdacfedfa12ec3862d37521");
    let published = split_typed(&raw);
    let unsigned = published.unsigned.clone();
    let digest = "49b486f0ec0a60dfbbca2d30cb07c9e8ffb2a2ff41f29a1ab6737475f6ff69f3";
    let sender = Address::from_public_key(&recover(&hex(digest), &published.signature));
    refinish(
        &raw,
        published,
        digest,
        &hex::encode(keccak256(&raw)),
        &sender.to_string(),
    );

    let intent = decode(
        TX,
        &unsigned,
        &compressed(signing_key("any").verifying_key()),
    )
    .intent;
    assert_eq!(intent.details["type"], "eip2930");
    assert_eq!(intent.details["gas_price"], "1");
    assert_eq!(intent.details["gas_limit"], "25000");
    assert_eq!(intent.details["data_len"], "2");
    // Two bytes of calldata: a call with no selector, which still moves 10 wei.
    assert_eq!(intent.action, actions::CONTRACT_CALL);
    assert_eq!(intent.method, None);
    assert_eq!(intent.transfers.len(), 1);
    let transfer = &intent.transfers[0];
    assert_eq!((transfer.asset.as_str(), transfer.amount), (NATIVE, 10));
    assert_eq!(
        transfer.to.to_lowercase(),
        "0xb94f5374fce5edbc8e2a8697c15331677e6ebf0b"
    );
    // EIP-55 checked by alloy's parser.
    assert!(Address::parse_checksummed(&transfer.to, None).is_ok());
}

/// Mainnet legacy EIP-155 transaction 0x280cde7cdefe4b188750e76c888f13bd05ce9a4d7767730feefe8a0e50ca6fc4
/// (https://etherscan.io/tx/0x280cde7cdefe4b188750e76c888f13bd05ce9a4d7767730feefe8a0e50ca6fc4;
/// also alloy-consensus `test_decode_live_legacy_tx`), a Uniswap V2 router call.
#[test]
fn mainnet_legacy_transaction_refinishes_to_its_published_bytes_and_hash() {
    let raw = hex("f9015482078b8505d21dba0083022ef1947a250d5630b4cf539739df2c5dacb4c659f2488d880c46549a521b13d8b8e47ff36ab50000000000000000000000000000000000000000000066ab5a608bd00a23f2fe000000000000000000000000000000000000000000000000000000000000008000000000000000000000000048c04ed5691981c42154c6167398f95e8f38a7ff00000000000000000000000000000000000000000000000000000000632ceac70000000000000000000000000000000000000000000000000000000000000002000000000000000000000000c02aaa39b223fe8d0a0e5c4f27ead9083c756cc20000000000000000000000006c6ee5e31d828de241282b9606c8e98ea48526e225a0c9077369501641a92ef7399ff81c21639ed4fd8fc69cb793cfa1dbfab342e10aa0615facb2f1bcf3274a354cfe384a38d0cc008a11c2dd23a69111bc6930ba27a8");
    let published = split_eip155(&raw);
    let unsigned = published.unsigned.clone();
    let digest = hex::encode(keccak256(&unsigned));
    refinish(
        &raw,
        published,
        &digest,
        "280cde7cdefe4b188750e76c888f13bd05ce9a4d7767730feefe8a0e50ca6fc4",
        "0xa12e1462d0ceD572f396F58B6E2D03894cD7C8a4",
    );
    let intent = decode(
        TX,
        &unsigned,
        &compressed(signing_key("any").verifying_key()),
    )
    .intent;
    assert_eq!(intent.action, actions::CONTRACT_CALL);
    // swapExactETHForTokens(uint256,address[],address,uint256)
    assert_eq!(intent.method.as_deref(), Some("0x7ff36ab5"));
    assert_eq!(
        intent.contract.as_deref(),
        Some("0x7a250d5630B4cF539739dF2C5dAcb4c659F2488D")
    );
    assert_eq!(intent.transfers.len(), 1);
    assert_eq!(intent.transfers[0].asset, NATIVE);
    assert_eq!(intent.transfers[0].amount, 0x0c46549a521b13d8);
}

/// EIP-712's example (https://eips.ethereum.org/EIPS/eip-712, assets/eip-712/Example.js):
/// the "Mail" message from Cow to Bob; signing hash be609aee…7bd2; signed by the key
/// keccak256("cow") with v 28, r 0x4355c47d…1c9d, s 0x07299936…1562.
#[test]
fn eip712_mail_example_hash_and_published_signature() {
    let json = r#"{
      "types": {
        "EIP712Domain": [
          {"name": "name", "type": "string"},
          {"name": "version", "type": "string"},
          {"name": "chainId", "type": "uint256"},
          {"name": "verifyingContract", "type": "address"}
        ],
        "Person": [
          {"name": "name", "type": "string"},
          {"name": "wallet", "type": "address"}
        ],
        "Mail": [
          {"name": "from", "type": "Person"},
          {"name": "to", "type": "Person"},
          {"name": "contents", "type": "string"}
        ]
      },
      "primaryType": "Mail",
      "domain": {
        "name": "Ether Mail",
        "version": "1",
        "chainId": 1,
        "verifyingContract": "0xCcCCccccCCCCcCCCCCCcCcCccCcCCCcCcccccccC"
      },
      "message": {
        "from": {"name": "Cow", "wallet": "0xCD2a3d9F938E13CD947Ec05AbC7FE734Df8DD826"},
        "to": {"name": "Bob", "wallet": "0xbBbBBBBbbBBBbbbBbbBbbbbBBbBbbbbBbBbbBBbB"},
        "contents": "Hello, Bob!"
      }
    }"#;
    let cow = signing_key("cow");
    let public = compressed(cow.verifying_key());
    let evm = Evm::new();
    assert_eq!(
        evm.addresses(signer(&public)).unwrap(),
        vec!["0xCD2a3d9F938E13CD947Ec05AbC7FE734Df8DD826".to_string()]
    );
    let decoded = decode(PayloadFormat::TypedData, json.as_bytes(), &public);
    assert_eq!(decoded.items[0].label, "typed_data");
    assert_eq!(
        hex::encode(&decoded.items[0].message),
        "be609aee343fb3c4b28e1df9e632fca64fcfaede20f02e86244efddf30957bd2"
    );
    let intent = &decoded.intent;
    assert_eq!(intent.action, actions::TYPED_DATA);
    assert_eq!(intent.network.as_deref(), Some("1"));
    assert_eq!(
        intent.contract.as_deref(),
        Some("0xCcCCccccCCCCcCCCCCCcCcCccCcCCCcCcccccccC")
    );
    assert!(intent.transfers.is_empty());
    assert_eq!(intent.value(), Some(0));
    assert_eq!(intent.details["primary_type"], "Mail");
    assert_eq!(intent.details["domain.name"], "Ether Mail");
    assert_eq!(intent.details["domain.version"], "1");
    assert_eq!(intent.details["domain.chain_id"], "1");
    assert_eq!(intent.details["message.contents"], "\"Hello, Bob!\"");
    let to: serde_json::Value = serde_json::from_str(&intent.details["message.to"]).unwrap();
    assert_eq!(to["name"], "Bob");

    // The EIP's published signature, handed over as the scheme plugin would (recovery id 1).
    let published = hex("4355c47d63924e8a72e509b65029052eb6c299d53a04e167c5775fd466751c9d07299936d304c153f6443dfa05f40ff007d72911b6f72307f996231605b915621c");
    let mut as_scheme = published.clone();
    as_scheme[64] = 1;
    let finished = evm
        .finish(
            PayloadFormat::TypedData,
            json.as_bytes(),
            signer(&public),
            &[as_scheme],
        )
        .unwrap();
    assert_eq!(hex::encode(&finished), hex::encode(&published));

    // And our own k256 signature finishes to a signature that recovers to Cow.
    let finished = sign_and_finish(PayloadFormat::TypedData, json.as_bytes(), &cow);
    assert_eq!(finished.len(), 65);
    let signature = alloy_primitives::Signature::from_raw(&finished).unwrap();
    let digest = alloy_primitives::B256::from_slice(&decoded.items[0].message);
    assert_eq!(
        signature
            .recover_address_from_prehash(&digest)
            .unwrap()
            .to_string(),
        "0xCD2a3d9F938E13CD947Ec05AbC7FE734Df8DD826"
    );
}

/// EIP-191: hashMessage("Hello World") = 0xa1de9886…78f2 (ethers.js `hashMessage` docs; alloy-
/// primitives `eip191_hash_message` test).
#[test]
fn eip191_hello_world_hash_and_signature_recovers_with_alloy() {
    let key = signing_key("personal");
    let public = compressed(key.verifying_key());
    let decoded = decode(PayloadFormat::PersonalMessage, b"Hello World", &public);
    assert_eq!(decoded.items[0].label, "message");
    assert_eq!(
        hex::encode(&decoded.items[0].message),
        "a1de988600a42c4b4ab089b619297c17d53cffae5d5120d82d8a92d0bb3b78f2"
    );
    let intent = &decoded.intent;
    assert_eq!(intent.action, actions::MESSAGE);
    assert_eq!(intent.network, None);
    assert!(intent.transfers.is_empty());
    assert_eq!(intent.details["message"], "Hello World");
    assert_eq!(intent.details["length"], "11");

    let finished = sign_and_finish(PayloadFormat::PersonalMessage, b"Hello World", &key);
    assert!(matches!(finished[64], 27 | 28));
    let signature = alloy_primitives::Signature::from_raw(&finished).unwrap();
    let recovered = signature.recover_address_from_msg("Hello World").unwrap();
    assert_eq!(
        recovered.to_checksum(None),
        Evm::new().addresses(signer(&public)).unwrap()[0]
    );

    // Bytes that are not UTF-8 are shown as hex.
    let decoded = decode(PayloadFormat::PersonalMessage, &[0xff, 0x00, 0x01], &public);
    assert_eq!(decoded.intent.details["message"], "0xff0001");
    assert_eq!(decoded.intent.details["length"], "3");
}
