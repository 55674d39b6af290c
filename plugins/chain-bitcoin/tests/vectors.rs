//! The plugin against published test vectors: BIP-174 and BIP-371 PSBTs, the BIP-143 native
//! P2WPKH example and the BIP-341 key-path spending vectors.

mod common;

use base64::Engine as _;
use bitcoin::consensus::encode::{deserialize, serialize_hex};
use bitcoin::psbt::PsbtSighashType;
use bitcoin::{Amount, Psbt, ScriptBuf, Transaction, TxOut};
use common::{unhex, vector_lines, EcdsaKey, ECDSA, SCHNORR};
use keyrack_chain_bitcoin::Bitcoin;
use keyrack_plugin::{ChainError, ChainPlugin, PayloadFormat, SignerKey};

const TX: PayloadFormat = PayloadFormat::Transaction;

/// Any valid keys: the vectors' inputs are not theirs.
const SOME_ECDSA: &str = "0279be667ef9dcbbac55a06295ce870b07029bfcdb2dce28d959f2815b16f81798";
const SOME_SCHNORR: &str = "79be667ef9dcbbac55a06295ce870b07029bfcdb2dce28d959f2815b16f81798";

fn mainnet() -> Bitcoin {
    Bitcoin::new("bitcoin").expect("network")
}

fn decode_with_both(payload: &[u8]) -> [Result<keyrack_plugin::Decoded, ChainError>; 2] {
    let (e, s) = (unhex(SOME_ECDSA), unhex(SOME_SCHNORR));
    let plugin = mainnet();
    [
        plugin.decode(
            TX,
            payload,
            SignerKey {
                scheme: ECDSA,
                public_key: &e,
            },
        ),
        plugin.decode(
            TX,
            payload,
            SignerKey {
                scheme: SCHNORR,
                public_key: &s,
            },
        ),
    ]
}

/// Valid BIP-174 and BIP-371 PSBTs parse: what the plugin says of them is about their inputs
/// (none is this key's, or one carries no UTXO), never that they are malformed; their
/// base64 text form reads the same.
#[test]
fn bip174_and_bip371_valid_vectors_parse() {
    let files = [
        include_str!("data/bip174-valid.hex"),
        include_str!("data/bip371-valid.hex"),
    ];
    let mut count = 0;
    for line in files.iter().flat_map(|f| vector_lines(f)) {
        let binary = unhex(line);
        let text = base64::engine::general_purpose::STANDARD.encode(&binary);
        for payload in [binary, text.into_bytes()] {
            for result in decode_with_both(&payload) {
                match result {
                    Ok(_) | Err(ChainError::Unsupported(_)) => {}
                    Err(e) => panic!("valid vector {line:.40}… refused: {e}"),
                }
            }
        }
        count += 1;
    }
    assert_eq!(count, 12);
}

/// Invalid BIP-174 (binary and base64) and BIP-371 PSBTs are `Malformed`.
#[test]
fn bip174_and_bip371_invalid_vectors_are_malformed() {
    let mut payloads: Vec<Vec<u8>> = Vec::new();
    for file in [
        include_str!("data/bip174-invalid.hex"),
        include_str!("data/bip371-invalid.hex"),
    ] {
        payloads.extend(vector_lines(file).into_iter().map(unhex));
    }
    payloads.extend(
        vector_lines(include_str!("data/bip174-invalid.base64"))
            .into_iter()
            .map(|l| l.as_bytes().to_vec()),
    );
    assert_eq!(payloads.len(), 20);
    for payload in payloads {
        for result in decode_with_both(&payload) {
            assert!(
                matches!(
                    result,
                    Err(ChainError::Malformed {
                        format: "transaction",
                        ..
                    })
                ),
                "invalid vector {:.40}… gave {result:?}",
                hex::encode(&payload)
            );
        }
    }
}

/// BIP-371 "PSBT with one P2TR key only input with internal key and its derivation path": its
/// input spends P2TR output key 5a2c2cf5…0757 (50 BTC) and pays 49.99997 BTC to one P2WPKH.
#[test]
fn bip371_key_path_input_decodes_for_its_output_key() {
    let payload = unhex(vector_lines(include_str!("data/bip371-valid.hex"))[0]);
    let q = unhex("5a2c2cf5b52cf31f83ad2e8da63ff03183ecd8f609c7510ae8a48e03910a0757");
    let key = SignerKey {
        scheme: SCHNORR,
        public_key: &q,
    };
    let plugin = mainnet();
    let decoded = plugin.decode(TX, &payload, key).expect("decodes");
    assert_eq!(decoded.items.len(), 1);
    assert_eq!(decoded.items[0].label, "input 0");
    let intent = &decoded.intent;
    assert_eq!(intent.fee, Some(5_000_000_000 - 4_999_997_000));
    assert_eq!(intent.transfers.len(), 1);
    assert_eq!(intent.transfers[0].amount, 4_999_997_000);
    let expected_to = bitcoin::Address::from_script(
        &ScriptBuf::from_bytes(unhex("0014768e1eeb4cf420866033f80aceff0f9720744969")),
        bitcoin::Network::Bitcoin,
    )
    .expect("address");
    assert_eq!(intent.transfers[0].to, expected_to.to_string());
    assert!(intent.transfers[0].to.starts_with("bc1q"));
    assert_eq!(intent.details["sighash.input 0"], "SIGHASH_DEFAULT");
    assert_eq!(
        plugin.addresses(key).expect("address"),
        vec![bitcoin::Address::from_script(
            &ScriptBuf::from_bytes(unhex(
                "51205a2c2cf5b52cf31f83ad2e8da63ff03183ecd8f609c7510ae8a48e03910a0757"
            )),
            bitcoin::Network::Bitcoin
        )
        .expect("address")
        .to_string()]
    );
}

// BIP-143 "Native P2WPKH" example (https://github.com/bitcoin/bips/blob/master/bip-0143.mediawiki).
const BIP143_UNSIGNED: &str = "0100000002fff7f7881a8099afa6940d42d1e7f6362bec38171ea3edf433541db4e4ad969f0000000000eeffffffef51e1b804cc89d182d279655c3aa89e815b1b309fe287d9b2b55d57b90ec68a0100000000ffffffff02202cb206000000001976a9148280b37df378db99f66f85c95a783a76ac7a6d5988ac9093510d000000001976a9143bde42dbee7e4dbe6a21b2d50ce2f0167faa815988ac11000000";
const BIP143_P2PK_SCRIPT: &str =
    "2103c9f4836b9a4f77fc0d81f7bcb01b7f1b35916864b9476c241ce9fc198bd25432ac";
const BIP143_P2WPKH_SCRIPT: &str = "00141d0f172a0ecb48aee1be1f2687d2963ae33f71a1";
const BIP143_PRIVATE_KEY: &str = "619c335025c7f4012e556c2a58b2506e30b8511b53ade95ea316fd8c3286feb9";
const BIP143_PUBLIC_KEY: &str =
    "025476c2e83188368da1ff3e292e7acafcdb3566bb0ad253f62fc70f07aeee6357";
const BIP143_SIGHASH: &str = "c37af31116d1b27caf68aae9e3ac82f1477929014d5b917657d0eb49478cb670";
const BIP143_SIGNATURE: &str = "304402203609e17b84f6a7d30c80bfa610b5b4542f32a8a0d5447a12fb1366d7f01cc44a0220573a954c4518331561406f90300e8f3358f51928d43c212a8caed02de67eebee";
/// Input 0's scriptSig in the published signed transaction (signed by the P2PK key).
const BIP143_INPUT0_SCRIPT_SIG: &str = "4830450221008b9d1dc26ba6a9cb62127b02742fa9d754cd3bebf337f7a55d114c8e5cdd30be022040529b194ba3f9281a99f2b1c0a19c0489bc22ede944ccf4ecbab4cc618ef3ed01";
const BIP143_SIGNED: &str = "01000000000102fff7f7881a8099afa6940d42d1e7f6362bec38171ea3edf433541db4e4ad969f00000000494830450221008b9d1dc26ba6a9cb62127b02742fa9d754cd3bebf337f7a55d114c8e5cdd30be022040529b194ba3f9281a99f2b1c0a19c0489bc22ede944ccf4ecbab4cc618ef3ed01eeffffffef51e1b804cc89d182d279655c3aa89e815b1b309fe287d9b2b55d57b90ec68a0100000000ffffffff02202cb206000000001976a9148280b37df378db99f66f85c95a783a76ac7a6d5988ac9093510d000000001976a9143bde42dbee7e4dbe6a21b2d50ce2f0167faa815988ac000247304402203609e17b84f6a7d30c80bfa610b5b4542f32a8a0d5447a12fb1366d7f01cc44a0220573a954c4518331561406f90300e8f3358f51928d43c212a8caed02de67eebee0121025476c2e83188368da1ff3e292e7acafcdb3566bb0ad253f62fc70f07aeee635711000000";

fn bip143_psbt() -> Psbt {
    let tx: Transaction = deserialize(&unhex(BIP143_UNSIGNED)).expect("tx");
    let mut psbt = Psbt::from_unsigned_tx(tx).expect("psbt");
    psbt.inputs[0].witness_utxo = Some(TxOut {
        value: Amount::from_sat(625_000_000),
        script_pubkey: ScriptBuf::from_bytes(unhex(BIP143_P2PK_SCRIPT)),
    });
    psbt.inputs[1].witness_utxo = Some(TxOut {
        value: Amount::from_sat(600_000_000),
        script_pubkey: ScriptBuf::from_bytes(unhex(BIP143_P2WPKH_SCRIPT)),
    });
    psbt
}

/// The BIP-143 native P2WPKH example through decode and finish: the sighash of input 1 is the
/// published one, k256's RFC 6979 signature is the published one, and with the other
/// signer's published scriptSig the extracted transaction is the published signed one.
#[test]
fn bip143_native_p2wpkh_example_decodes_and_finishes_to_the_published_transaction() {
    let key = EcdsaKey::new(&unhex(BIP143_PRIVATE_KEY));
    assert_eq!(key.public, unhex(BIP143_PUBLIC_KEY));
    let plugin = mainnet();
    let payload = bip143_psbt().serialize();
    let decoded = plugin.decode(TX, &payload, key.signer()).expect("decodes");
    assert_eq!(decoded.items.len(), 1);
    assert_eq!(decoded.items[0].label, "input 1");
    assert_eq!(hex::encode(&decoded.items[0].message), BIP143_SIGHASH);

    let intent = &decoded.intent;
    let fee = 625_000_000 + 600_000_000 - 112_340_000 - 223_450_000;
    // Only witness_utxos: the BIP-143 sighash does not bind input 0's amount, so no fee.
    assert_eq!(intent.fee, None);
    assert_eq!(intent.details["fee_unverified_sat"], fee.to_string());
    let amounts: Vec<u128> = intent.transfers.iter().map(|t| t.amount).collect();
    assert_eq!(amounts, [112_340_000, 223_450_000]);
    assert!(intent.transfers.iter().all(|t| t.to.starts_with('1')));
    assert_eq!(intent.details["own_inputs"], "1");
    assert_eq!(intent.details["other_inputs"], "0");
    assert_eq!(intent.details["locktime"], "17");
    assert_eq!(intent.details["version"], "1");

    let signature = key.sign(&decoded.items[0].message);
    let der = bitcoin::secp256k1::ecdsa::Signature::from_compact(&signature[..64])
        .expect("r ‖ s")
        .serialize_der();
    assert_eq!(hex::encode(der), BIP143_SIGNATURE);

    let signed = plugin
        .finish(TX, &payload, key.signer(), &[signature])
        .expect("finishes");
    let mut psbt = Psbt::deserialize(&signed).expect("PSBT");
    assert!(psbt.inputs[1].final_script_witness.is_some());
    // The other signer's part, from the published transaction.
    psbt.inputs[0].final_script_sig = Some(ScriptBuf::from_bytes(unhex(BIP143_INPUT0_SCRIPT_SIG)));
    // The example's fee (8.9 BTC) is far above extract_tx's absurd-fee guard.
    let tx = psbt.extract_tx_unchecked_fee_rate();
    assert_eq!(serialize_hex(&tx), BIP143_SIGNED);
}

// BIP-341 wallet test vectors, keyPathSpending[0]
// (https://github.com/bitcoin/bips/blob/master/bip-0341/wallet-test-vectors.json, also
// bitcoin/bitcoin src/test/data/bip341_wallet_vectors.json).
const BIP341_UNSIGNED: &str = "02000000097de20cbff686da83a54981d2b9bab3586f4ca7e48f57f5b55963115f3b334e9c010000000000000000d7b7cab57b1393ace2d064f4d4a2cb8af6def61273e127517d44759b6dafdd990000000000fffffffff8e1f583384333689228c5d28eac13366be082dc57441760d957275419a418420000000000fffffffff0689180aa63b30cb162a73c6d2a38b7eeda2a83ece74310fda0843ad604853b0100000000feffffffaa5202bdf6d8ccd2ee0f0202afbbb7461d9264a25e5bfd3c5a52ee1239e0ba6c0000000000feffffff956149bdc66faa968eb2be2d2faa29718acbfe3941215893a2a3446d32acd050000000000000000000e664b9773b88c09c32cb70a2a3e4da0ced63b7ba3b22f848531bbb1d5d5f4c94010000000000000000e9aa6b8e6c9de67619e6a3924ae25696bb7b694bb677a632a74ef7eadfd4eabf0000000000ffffffffa778eb6a263dc090464cd125c466b5a99667720b1c110468831d058aa1b82af10100000000ffffffff0200ca9a3b000000001976a91406afd46bcdfd22ef94ac122aa11f241244a37ecc88ac807840cb0000000020ac9a87f5594be208f8532db38cff670c450ed2fea8fcdefcc9a663f78bab962b0065cd1d";
const BIP341_UTXOS: [(&str, u64); 9] = [
    (
        "512053a1f6e454df1aa2776a2814a721372d6258050de330b3c6d10ee8f4e0dda343",
        420_000_000,
    ),
    (
        "5120147c9c57132f6e7ecddba9800bb0c4449251c92a1e60371ee77557b6620f3ea3",
        462_000_000,
    ),
    (
        "76a914751e76e8199196d454941c45d1b3a323f1433bd688ac",
        294_000_000,
    ),
    (
        "5120e4d810fd50586274face62b8a807eb9719cef49c04177cc6b76a9a4251d5450e",
        504_000_000,
    ),
    (
        "512091b64d5324723a985170e4dc5a0f84c041804f2cd12660fa5dec09fc21783605",
        630_000_000,
    ),
    ("00147dd65592d0ab2fe0d0257d571abf032cd9db93dc", 378_000_000),
    (
        "512075169f4001aa68f15bbed28b218df1d0a62cbbcf1188c6665110c293c907b831",
        672_000_000,
    ),
    (
        "5120712447206d7a5238acc7ff53fbe94a3b64539ad291c7cdbc490b7577e4b17df5",
        546_000_000,
    ),
    (
        "512077e30a5522dd9f894c3f8b8bd4c4b2cf82ca7da8a3ea6a239655c39c050ab220",
        588_000_000,
    ),
];
const BIP341_SIGNED: &str = "020000000001097de20cbff686da83a54981d2b9bab3586f4ca7e48f57f5b55963115f3b334e9c010000000000000000d7b7cab57b1393ace2d064f4d4a2cb8af6def61273e127517d44759b6dafdd990000000000fffffffff8e1f583384333689228c5d28eac13366be082dc57441760d957275419a41842000000006b4830450221008f3b8f8f0537c420654d2283673a761b7ee2ea3c130753103e08ce79201cf32a022079e7ab904a1980ef1c5890b648c8783f4d10103dd62f740d13daa79e298d50c201210279be667ef9dcbbac55a06295ce870b07029bfcdb2dce28d959f2815b16f81798fffffffff0689180aa63b30cb162a73c6d2a38b7eeda2a83ece74310fda0843ad604853b0100000000feffffffaa5202bdf6d8ccd2ee0f0202afbbb7461d9264a25e5bfd3c5a52ee1239e0ba6c0000000000feffffff956149bdc66faa968eb2be2d2faa29718acbfe3941215893a2a3446d32acd050000000000000000000e664b9773b88c09c32cb70a2a3e4da0ced63b7ba3b22f848531bbb1d5d5f4c94010000000000000000e9aa6b8e6c9de67619e6a3924ae25696bb7b694bb677a632a74ef7eadfd4eabf0000000000ffffffffa778eb6a263dc090464cd125c466b5a99667720b1c110468831d058aa1b82af10100000000ffffffff0200ca9a3b000000001976a91406afd46bcdfd22ef94ac122aa11f241244a37ecc88ac807840cb0000000020ac9a87f5594be208f8532db38cff670c450ed2fea8fcdefcc9a663f78bab962b0141ed7c1647cb97379e76892be0cacff57ec4a7102aa24296ca39af7541246d8ff14d38958d4cc1e2e478e4d4a764bbfd835b16d4e314b72937b29833060b87276c030141052aedffc554b41f52b521071793a6b88d6dbca9dba94cf34c83696de0c1ec35ca9c5ed4ab28059bd606a4f3a657eec0bb96661d42921b5f50a95ad33675b54f83000141ff45f742a876139946a149ab4d9185574b98dc919d2eb6754f8abaa59d18b025637a3aa043b91817739554f4ed2026cf8022dbd83e351ce1fabc272841d2510a010140b4010dd48a617db09926f729e79c33ae0b4e94b79f04a1ae93ede6315eb3669de185a17d2b0ac9ee09fd4c64b678a0b61a0a86fa888a273c8511be83bfd6810f0247304402202b795e4de72646d76eab3f0ab27dfa30b810e856ff3a46c9a702df53bb0d8cc302203ccc4d822edab5f35caddb10af1be93583526ccfbade4b4ead350781e2f8adcd012102f9308a019258c31049344f85f89d5229b531c845836f99b08601f113bce036f90141a3785919a2ce3c4ce26f298c3d51619bc474ae24014bcdd31328cd8cfbab2eff3395fa0a16fe5f486d12f22a9cedded5ae74feb4bbe5351346508c5405bcfee0020141ea0c6ba90763c2d3a296ad82ba45881abb4f426b3f87af162dd24d5109edc1cdd11915095ba47c3a9963dc1e6c432939872bc49212fe34c632cd3ab9fed429c4820141bbc9584a11074e83bc8c6759ec55401f0ae7b03ef290c3139814f545b58a9f8127258000874f44bc46db7646322107d4d86aec8e73b8719a61fff761d75b5dd9810065cd1d";

/// The PSBT of keyPathSpending[0], with the given sighash type on one input.
fn bip341_psbt(sighash: Option<(usize, u32)>) -> Vec<u8> {
    let tx: Transaction = deserialize(&unhex(BIP341_UNSIGNED)).expect("tx");
    let mut psbt = Psbt::from_unsigned_tx(tx).expect("psbt");
    for (input, (script, sats)) in psbt.inputs.iter_mut().zip(BIP341_UTXOS) {
        input.witness_utxo = Some(TxOut {
            value: Amount::from_sat(sats),
            script_pubkey: ScriptBuf::from_bytes(unhex(script)),
        });
    }
    if let Some((index, ty)) = sighash {
        psbt.inputs[index].sighash_type = Some(PsbtSighashType::from_u32(ty));
    }
    psbt.serialize()
}

/// keyPathSpending[0] inputs 3 (hashType 1, SIGHASH_ALL) and 4 (hashType 0, SIGHASH_DEFAULT):
/// the plugin's item is the published sigHash, the published signature finishes the input,
/// and the finalised witness is the one in the published fully signed transaction.
#[test]
fn bip341_key_path_sighashes_and_witnesses_match_the_published_vectors() {
    let published: Transaction = deserialize(&unhex(BIP341_SIGNED)).expect("signed tx");
    let plugin = mainnet();
    let cases = [
        // (txinIndex, hashType, sigHash, expected witness)
        (3, 1, "bf013ea93474aa67815b1b6cc441d23b64fa310911d991e713cd34c7f5d46669", "ff45f742a876139946a149ab4d9185574b98dc919d2eb6754f8abaa59d18b025637a3aa043b91817739554f4ed2026cf8022dbd83e351ce1fabc272841d2510a01"),
        (4, 0, "4f900a0bae3f1446fd48490c2958b5a023228f01661cda3496a11da502a7f7ef", "b4010dd48a617db09926f729e79c33ae0b4e94b79f04a1ae93ede6315eb3669de185a17d2b0ac9ee09fd4c64b678a0b61a0a86fa888a273c8511be83bfd6810f"),
    ];
    for (index, hash_type, sighash, witness) in cases {
        let payload = bip341_psbt(Some((index, hash_type)));
        // The output key Q is the P2TR script's program.
        let q = unhex(&BIP341_UTXOS[index].0[4..]);
        let key = SignerKey {
            scheme: SCHNORR,
            public_key: &q,
        };
        let decoded = plugin.decode(TX, &payload, key).expect("decodes");
        assert_eq!(decoded.items.len(), 1);
        assert_eq!(decoded.items[0].label, format!("input {index}"));
        assert_eq!(hex::encode(&decoded.items[0].message), sighash);
        let intent = &decoded.intent;
        // Sum of utxosSpent (4,494,000,000) − outputs (1,000,000,000 + 3,410,000,000).
        assert_eq!(intent.fee, Some(84_000_000));
        assert_eq!(intent.transfers.len(), 2);
        assert_eq!(intent.transfers[0].amount, 1_000_000_000);
        assert!(intent.transfers[0].to.starts_with('1'));
        assert_eq!(intent.transfers[1].amount, 3_410_000_000);
        assert_eq!(
            intent.transfers[1].to,
            "script:ac9a87f5594be208f8532db38cff670c450ed2fea8fcdefcc9a663f78bab962b"
        );
        let expected_type = if hash_type == 1 {
            "SIGHASH_ALL"
        } else {
            "SIGHASH_DEFAULT"
        };
        assert_eq!(
            intent.details[&format!("sighash.input {index}")],
            expected_type
        );
        assert_eq!(intent.details["inputs"], "9");

        let signature = unhex(&witness[..128]);
        common::verify_schnorr(&q, &decoded.items[0].message, &signature);
        let signed = plugin
            .finish(TX, &payload, key, &[signature])
            .expect("finishes");
        let psbt = Psbt::deserialize(&signed).expect("PSBT");
        let final_witness = psbt.inputs[index]
            .final_script_witness
            .as_ref()
            .expect("finalised");
        assert_eq!(final_witness.to_vec(), vec![unhex(witness)]);
        assert_eq!(*final_witness, published.input[index].witness);
        assert!(psbt.inputs[index].sighash_type.is_none());
        let unsigned: Transaction = deserialize(&unhex(BIP341_UNSIGNED)).expect("tx");
        assert_eq!(intent.details["txid"], unsigned.compute_txid().to_string());
    }
}

/// keyPathSpending[0] input 0 asks for hashType 3 (SIGHASH_SINGLE): refused.
#[test]
fn bip341_sighash_single_input_is_refused() {
    let payload = bip341_psbt(Some((0, 3)));
    let q = unhex(&BIP341_UTXOS[0].0[4..]);
    let err = mainnet()
        .decode(
            TX,
            &payload,
            SignerKey {
                scheme: SCHNORR,
                public_key: &q,
            },
        )
        .expect_err("refused");
    assert!(
        matches!(&err, ChainError::Unsupported(m) if m.contains("input 0") && m.contains("0x03")),
        "{err}"
    );
}
