//! Decoding real, published Solana transactions: each vector is a signed wire transaction
//! with a known signature (= its transaction id). The message is cut out of the wire bytes,
//! the published signature is verified over it with ed25519-dalek, and the decoded intent is
//! checked against what the transaction is known to do.

mod common;

use common::{base58, decode, finish};
use ed25519_dalek::{Signature, VerifyingKey};
use keyrack_plugin::{actions, Transfer, NATIVE};
use solana_transaction::versioned::VersionedTransaction;

/// The message of a one-signer wire transaction, its signer and its signature, after
/// checking the published signature over the message with ed25519-dalek.
fn message_of(wire_base58: &str, published_signature: &str) -> (Vec<u8>, [u8; 32], Vec<u8>) {
    let wire = bs58::decode(wire_base58).into_vec().unwrap();
    assert_eq!(wire[0], 1, "one signature");
    let signature = wire[1..65].to_vec();
    assert_eq!(base58(&signature), published_signature);
    let message = wire[65..].to_vec();
    let signer: [u8; 32] = message[4..36].try_into().unwrap(); // header (3), key count (1)
    VerifyingKey::from_bytes(&signer)
        .unwrap()
        .verify_strict(&message, &Signature::from_slice(&signature).unwrap())
        .expect("the published signature verifies over the message");
    // finish() rebuilds exactly the published wire transaction from the message and signature.
    assert_eq!(finish(&message, &signer, signature.clone()).unwrap(), wire);
    (message, signer, signature)
}

/// A mainnet SPL token TransferChecked (4000 base units of SRM, 6 decimals):
/// https://explorer.solana.com/tx/3vZ67CGoRYkuT76TtpP2VrtTPBfnvG2xj6mUTvvux46qbnpThgQDgm27nC3yQVUZrABFjT9Qo7vA74tCjtV5P9Xg
/// Wire bytes from Trust Wallet wallet-core, tests/chains/Solana/TransactionTests.cpp,
/// `TransferTokenTransaction_3vZ67C` ("test data obtained from spl-token transfer").
#[test]
fn mainnet_spl_transfer_checked_3vz67c() {
    let (message, signer, _) = message_of(
        concat!(
            "PGfKqEaH2zZXDMZLcU6LUKdBSzU1GJWJ1CJXtRYCxaCH7k8uok38WSadZfrZw3TGejiau7nSpan2GvbK26hQim24jR",
            "e2AupmcYJFrgsdaCt1Aqs5kpGjPqzgj9krgxTZwwob3xgC1NdHK5BcNwhxwRtrCphGEH7zUFpGFrFrHzgpf2KY8FvP",
            "iPELQyxzTBuyNtjLjMMreehSKShEjD9Xzp1QeC1pEF8JL6vUKzxMXuveoEYem8q8JiWszYzmTMfDk13JPgv7pXFGMq",
            "DV3yNGCLsWccBeSFKN4UKECre6x2QbUEiKGkHkMc4zQwwyD8tGmEMBAGm339qdANssEMNpDeJp2LxLDStSoWShHnot",
            "crH7pUa94xCVvCPPaomF"
        ),
        "3vZ67CGoRYkuT76TtpP2VrtTPBfnvG2xj6mUTvvux46qbnpThgQDgm27nC3yQVUZrABFjT9Qo7vA74tCjtV5P9Xg",
    );
    assert_eq!(
        base58(&signer),
        "B1iGmDJdvmxyUiYM8UEo2Uw2D58EmUrw4KyLYMmrhf8V"
    );
    let decoded = decode(&message, &signer).unwrap();
    assert_eq!(decoded.items.len(), 1);
    assert_eq!(decoded.items[0].label, "message");
    assert_eq!(decoded.items[0].message, message);
    let intent = decoded.intent;
    assert_eq!(intent.chain, "solana");
    assert_eq!(intent.network, None);
    assert_eq!(intent.action, actions::TOKEN_TRANSFER);
    assert_eq!(
        intent.transfers,
        vec![Transfer {
            to: "3WUX9wASxyScbA7brDipioKfXS1XEYkQ4vo3Kej9bKei".into(),
            asset: "SRMuApVNdxXokk5GT7XD5cUUgXMBCoAz2LHeuAoKWRt".into(),
            amount: 4000,
        }]
    );
    assert_eq!(intent.method.as_deref(), Some("spl_token.transfer_checked"));
    assert_eq!(
        intent.contract.as_deref(),
        Some("TokenkegQfeZyiNwAJbNbGKPFXCWuBvf9Ss623VQ5DA")
    );
    // One signature, no compute budget: 5000 lamports (the fee the explorer shows).
    assert_eq!(intent.fee, Some(5000));
    assert_eq!(intent.details["version"], "legacy");
    assert_eq!(intent.details["fee_payer"], base58(&signer));
    assert_eq!(
        intent.details["recent_blockhash"],
        "CNaHfvqePgGYMvtYi9RuUdVxDYttr1zs4TWrTXYabxZi"
    );
    assert_eq!(intent.details["instructions"], "1");
}

/// A system transfer of 1000 lamports after advancing a durable nonce. Wire bytes and
/// signature from Trust Wallet wallet-core, tests/chains/Solana/TransactionTests.cpp,
/// `TransferWithDurableNonce`.
#[test]
fn durable_nonce_system_transfer_4c4lhp() {
    let (message, signer, _) = message_of(
        concat!(
            "6zRqmNP5waeyartbf8GuQrWxdSy4SCYBTEmGhiXfYNxQTuUrvrBjia18YoCM367AQZWZ5yTjcN6FaXuaPWju7aVZNF",
            "jyqpuMZLNEbpm8ZNmKP4Na2VzR59iAdSPEZGTPuesZEniNMAD7ZSux6fayxgwrEwMWjeiskFQEwdvFzKNHfNLbjoVp",
            "dSTxhKiqfbwxnFBpBxNE4nqMj3bUR37cYJAFoDFokxy23HGpV93V9mbGG89aLBNQnd9LKTjpYFv49VMd48mptUd7uy",
            "rRwZLMneew2Bxq3PLsj9SaJyCWbsnqYj6bBahhsErz67PJTJepx4BEhqRxHGUSbpeNiL7qyERri1GZsXhN8fgU3nPi",
            "Yr7tMMxuLAoUFRMJ79HCex7vxhf7SapvcP"
        ),
        "4c4LhPFsDQdwZnVqKtgDC1GVR63GU5REFvonAW3RF7Quo4b1YbUrsXMmwYCfD3LGrUawThPaAixCUKnoGdMMQ7BQ",
    );
    assert_eq!(
        base58(&signer),
        "sp6VUqq1nDEuU83bU2hstmEYrJNipJYpwS7gZ7Jv7ZH"
    );
    let intent = decode(&message, &signer).unwrap().intent;
    assert_eq!(intent.action, actions::TRANSFER);
    assert_eq!(
        intent.transfers,
        vec![Transfer {
            to: "3UVYmECPPMZSCqWKfENfuoTv51fTDTWicX9xmBD2euKe".into(),
            asset: NATIVE.into(),
            amount: 1000,
        }]
    );
    assert_eq!(intent.method.as_deref(), Some("system.transfer"));
    assert_eq!(
        intent.contract.as_deref(),
        Some("11111111111111111111111111111111")
    );
    assert_eq!(
        intent.details["durable_nonce_account"],
        "ALAaqqt4Cc8hWH22GT2L16xKNAn6gv7XCTF7JkbfWsc"
    );
    assert_eq!(
        intent.details["instruction.0"],
        "system.advance_nonce_account"
    );
    // Two instructions, no compute budget, no price: the signature fee only.
    assert_eq!(intent.fee, Some(5000));
}

/// A system transfer of 42 lamports. Wire bytes and signature from Trust Wallet
/// wallet-core, tests/chains/Solana/TransactionTests.cpp, `TransferSerializeTransaction`.
#[test]
fn system_transfer_46sriq() {
    let (message, signer, _) = message_of(
        concat!(
            "5SiHeYyuDgjHxWHbYXSSPfmYc8s7EYZ8bdZ7j15z9Bj1yyZA3Bia9uWkRdXVkuqifXiiQj6fVKy",
            "7UkCL5kvv6iKrfjWTZ3szMVssTFxgJ7p8UJ7Mgg2uhHejVJvbzbiHHLbNVuJFs6kBxddnJ2yjWU",
            "Cp2dYJgjmphfA8hRHHdPH4Rv6znxEhD8q9XY4nByRPL7oMCo32oxeJn5rGbUZdCkapRUXG7zU9w",
            "hv6KjBktcUQZRCahhowGJT4UM5yCNCsUcqY9yan7UxqPyJgaFPuq4duqWJtQ39bTQ36X"
        ),
        "46SRiQGvtPb1iivDfnuC3dW1GzXkfQPTjdUyvFqF2sdPvFrsfx94fys2xpNKR6UiAj7RgKWdJG6mEfe85up6i1JT",
    );
    assert_eq!(
        base58(&signer),
        "41a5jYky56M6EWDsFfLaZRxoRtgAJSRWxJnxaJNJELn5"
    );
    let intent = decode(&message, &signer).unwrap().intent;
    assert_eq!(intent.action, actions::TRANSFER);
    assert_eq!(
        intent.transfers,
        vec![Transfer {
            to: "4iSnyfDKaejniaPc2pBBckwQqV3mDS93go15NdxWJq2y".into(),
            asset: NATIVE.into(),
            amount: 42,
        }]
    );
}

/// solana-transaction 6.0.0, src/lib.rs, `create_sample_transaction` / `test_sdk_serialize`:
/// a fixed keypair signs a call to a made-up program; the SDK pins the serialized bytes.
/// Ed25519 is deterministic, so signing the decoded item with that keypair and finishing must
/// give exactly those bytes, and Solana's own verification accepts them.
#[test]
fn solana_sdk_sample_transaction_round_trips_byte_for_byte() {
    let keypair: [u8; 64] = [
        255, 101, 36, 24, 124, 23, 167, 21, 132, 204, 155, 5, 185, 58, 121, 75, 156, 227, 116, 193,
        215, 38, 142, 22, 8, 14, 229, 239, 119, 93, 5, 218, 36, 100, 158, 252, 33, 161, 97, 185,
        62, 89, 99, 195, 250, 249, 187, 189, 171, 118, 241, 90, 248, 14, 68, 219, 231, 62, 157, 5,
        142, 27, 210, 117,
    ];
    let expected: Vec<u8> = vec![
        1, 120, 138, 162, 185, 59, 209, 241, 157, 71, 157, 74, 131, 4, 87, 54, 28, 38, 180, 222,
        82, 64, 62, 61, 62, 22, 46, 17, 203, 187, 136, 62, 43, 11, 38, 235, 17, 239, 82, 240, 139,
        130, 217, 227, 214, 9, 242, 141, 223, 94, 29, 184, 110, 62, 32, 87, 137, 63, 139, 100, 221,
        20, 137, 4, 5, 1, 0, 1, 3, 36, 100, 158, 252, 33, 161, 97, 185, 62, 89, 99, 195, 250, 249,
        187, 189, 171, 118, 241, 90, 248, 14, 68, 219, 231, 62, 157, 5, 142, 27, 210, 117, 1, 1, 1,
        4, 5, 6, 7, 8, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 8, 7, 6, 5, 4, 1, 1, 1, 2,
        2, 2, 4, 5, 6, 7, 8, 9, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 9, 8, 7, 6, 5, 4, 2, 2,
        2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
        0, 0, 0, 1, 2, 2, 0, 1, 3, 1, 2, 3,
    ];
    let signing = ed25519_dalek::SigningKey::from_keypair_bytes(&keypair).unwrap();
    let public = signing.verifying_key().to_bytes();
    let message = &expected[65..];
    let decoded = decode(message, &public).unwrap();
    let intent = decoded.intent;
    // The sample's program id bytes, as the SDK test writes them.
    let program = base58(&[
        2, 2, 2, 4, 5, 6, 7, 8, 9, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 9, 8, 7, 6, 5, 4, 2,
        2, 2,
    ]);
    assert_eq!(intent.action, actions::CONTRACT_CALL);
    assert_eq!(intent.contract.as_deref(), Some(program.as_str()));
    // Instruction data (1u8, 2u8, 3u8): first byte 1.
    assert_eq!(
        intent.method.as_deref(),
        Some(format!("{program}:1").as_str())
    );
    assert!(intent.transfers.is_empty());
    let signature = common::sign(&signing, &decoded.items[0].message);
    let wire = finish(message, &public, signature).unwrap();
    assert_eq!(wire, expected);
    let tx: VersionedTransaction = wincode::deserialize_exact(&wire).unwrap();
    tx.verify_and_hash_message().expect("Solana verifies it");
}
