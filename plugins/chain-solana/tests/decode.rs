//! Messages built with Solana's own libraries (solana-message, solana-system-interface;
//! SPL token instructions laid out as spl-token documents them: tag byte, little-endian u64
//! amount, decimals for the `Checked` forms) → decoded intent.

mod common;

use common::{base58, decode, signing_key};
use keyrack_plugin::{actions, Transfer, NATIVE};
use solana_message::compiled_instruction::CompiledInstruction;
use solana_message::VersionedMessage;
use solana_message::{v0, AccountMeta, Address, Hash, Instruction, Message, MessageHeader};
use solana_system_interface::instruction as system;

const TOKEN: Address = Address::from_str_const("TokenkegQfeZyiNwAJbNbGKPFXCWuBvf9Ss623VQ5DA");
const TOKEN_2022: Address = Address::from_str_const("TokenzQdBNbLqP5VEhdkAS6EPFLC1PHnBqCXEpPxuEb");
const COMPUTE_BUDGET: Address =
    Address::from_str_const("ComputeBudget111111111111111111111111111111");

fn addr(seed: u8) -> Address {
    Address::new_from_array([seed; 32])
}

fn me() -> (Address, [u8; 32]) {
    let public = signing_key(7).verifying_key().to_bytes();
    (Address::new_from_array(public), public)
}

fn legacy(instructions: &[Instruction], payer: &Address) -> Vec<u8> {
    Message::new_with_blockhash(instructions, Some(payer), &Hash::new_from_array([9; 32]))
        .serialize()
}

/// spl-token `TokenInstruction::TransferChecked` (tag 12): accounts source, mint,
/// destination, authority; data tag, amount (u64 LE), decimals.
fn transfer_checked(
    program: Address,
    source: Address,
    mint: Address,
    to: Address,
    authority: Address,
    amount: u64,
    decimals: u8,
) -> Instruction {
    let mut data = vec![12];
    data.extend_from_slice(&amount.to_le_bytes());
    data.push(decimals);
    Instruction::new_with_bytes(
        program,
        &data,
        vec![
            AccountMeta::new(source, false),
            AccountMeta::new_readonly(mint, false),
            AccountMeta::new(to, false),
            AccountMeta::new_readonly(authority, true),
        ],
    )
}

/// spl-token `Transfer` (tag 3) / `Approve` (tag 4): accounts source, destination or
/// delegate, authority; data tag, amount.
fn token_unchecked(
    tag: u8,
    source: Address,
    to: Address,
    authority: Address,
    amount: u64,
) -> Instruction {
    let mut data = vec![tag];
    data.extend_from_slice(&amount.to_le_bytes());
    Instruction::new_with_bytes(
        TOKEN,
        &data,
        vec![
            AccountMeta::new(source, false),
            AccountMeta::new(to, false),
            AccountMeta::new_readonly(authority, true),
        ],
    )
}

/// Compute budget `SetComputeUnitLimit` (tag 2, u32 LE) and `SetComputeUnitPrice` (tag 3,
/// u64 LE micro-lamports), as solana-compute-budget-interface encodes them (borsh).
fn unit_limit(units: u32) -> Instruction {
    let mut data = vec![2];
    data.extend_from_slice(&units.to_le_bytes());
    Instruction::new_with_bytes(COMPUTE_BUDGET, &data, vec![])
}

fn unit_price(micro_lamports: u64) -> Instruction {
    let mut data = vec![3];
    data.extend_from_slice(&micro_lamports.to_le_bytes());
    Instruction::new_with_bytes(COMPUTE_BUDGET, &data, vec![])
}

#[test]
fn system_transfer_is_a_native_transfer_with_the_signature_fee() {
    let (me, public) = me();
    let payload = legacy(&[system::transfer(&me, &addr(2), 1_500_000_000)], &me);
    let decoded = decode(&payload, &public).unwrap();
    assert_eq!(decoded.items.len(), 1);
    assert_eq!(decoded.items[0].message, payload);
    let intent = decoded.intent;
    assert_eq!(intent.action, actions::TRANSFER);
    assert_eq!(
        intent.transfers,
        vec![Transfer {
            to: addr(2).to_string(),
            asset: NATIVE.into(),
            amount: 1_500_000_000
        }]
    );
    assert_eq!(intent.value(), Some(1_500_000_000));
    assert_eq!(intent.fee, Some(5000));
    assert_eq!(intent.method.as_deref(), Some("system.transfer"));
    assert_eq!(intent.details["fee_payer"], base58(&public));
    assert_eq!(
        intent.details["recent_blockhash"],
        Hash::new_from_array([9; 32]).to_string()
    );
    assert_eq!(
        intent.details["programs"],
        "11111111111111111111111111111111"
    );
    assert_eq!(intent.details["version"], "legacy");
}

#[test]
fn transfer_to_self_and_transfers_of_other_signers_are_not_outgoing() {
    let (me, public) = me();
    let payload = legacy(
        &[
            system::transfer(&me, &me, 10),
            system::transfer(&addr(3), &addr(4), 20),
            system::transfer(&me, &addr(5), 30),
        ],
        &me,
    );
    let intent = decode(&payload, &public).unwrap().intent;
    assert_eq!(intent.action, actions::TRANSFER);
    assert_eq!(
        intent.transfers,
        vec![Transfer {
            to: addr(5).to_string(),
            asset: NATIVE.into(),
            amount: 30
        }]
    );
    // Two required signers: this key and addr(3).
    assert_eq!(intent.fee, Some(10_000));
}

#[test]
fn spl_transfer_checked_names_the_mint_for_both_token_programs() {
    let (me, public) = me();
    for program in [TOKEN, TOKEN_2022] {
        let payload = legacy(
            &[transfer_checked(
                program,
                addr(1),
                addr(2),
                addr(3),
                me,
                1_000_000,
                6,
            )],
            &me,
        );
        let intent = decode(&payload, &public).unwrap().intent;
        assert_eq!(intent.action, actions::TOKEN_TRANSFER);
        assert_eq!(
            intent.transfers,
            vec![Transfer {
                to: addr(3).to_string(),
                asset: addr(2).to_string(),
                amount: 1_000_000
            }]
        );
        assert_eq!(intent.asset(), Some(addr(2).to_string().as_str()));
        assert_eq!(intent.method.as_deref(), Some("spl_token.transfer_checked"));
        assert_eq!(intent.contract, Some(program.to_string()));
    }
}

#[test]
fn spl_transfer_without_mint_has_the_unknown_asset_and_approve_names_the_delegate() {
    let (me, public) = me();
    let intent = decode(
        &legacy(&[token_unchecked(3, addr(1), addr(2), me, 77)], &me),
        &public,
    )
    .unwrap()
    .intent;
    assert_eq!(intent.action, actions::TOKEN_TRANSFER);
    assert_eq!(
        intent.transfers[0].asset,
        keyrack_chain_solana::UNKNOWN_ASSET
    );
    assert_eq!(intent.method.as_deref(), Some("spl_token.transfer"));

    let intent = decode(
        &legacy(&[token_unchecked(4, addr(1), addr(6), me, u64::MAX)], &me),
        &public,
    )
    .unwrap()
    .intent;
    assert_eq!(intent.action, actions::TOKEN_APPROVE);
    assert_eq!(
        intent.transfers,
        vec![Transfer {
            to: addr(6).to_string(),
            asset: "unknown".into(),
            amount: u128::from(u64::MAX)
        }]
    );
    assert_eq!(intent.method.as_deref(), Some("spl_token.approve"));
}

#[test]
fn priority_fee_is_price_times_limit_rounded_up() {
    let (me, public) = me();
    let payload = legacy(
        &[
            unit_limit(300_000),
            unit_price(1_000_001),
            system::transfer(&me, &addr(2), 1),
        ],
        &me,
    );
    let intent = decode(&payload, &public).unwrap().intent;
    // ⌈1_000_001 × 300_000 / 10⁶⌉ = 300_001 (300_000.3 rounded up), plus one signature.
    assert_eq!(intent.fee, Some(5000 + 300_001));
    assert_eq!(
        intent.action,
        actions::TRANSFER,
        "compute budget instructions are neutral"
    );
    assert_eq!(intent.method.as_deref(), Some("system.transfer"));

    // No limit: 200_000 per instruction (2 instructions here), price 10 micro-lamports.
    let payload = legacy(&[unit_price(10), system::transfer(&me, &addr(2), 1)], &me);
    assert_eq!(
        decode(&payload, &public).unwrap().intent.fee,
        Some(5000 + 4)
    );
}

#[test]
fn another_fee_payer_means_this_key_pays_no_fee() {
    let (me, public) = me();
    let payload = legacy(&[system::transfer(&me, &addr(2), 5)], &addr(8));
    let intent = decode(&payload, &public).unwrap().intent;
    assert_eq!(intent.fee, Some(0));
    assert_eq!(intent.details["fee_payer"], addr(8).to_string());
    assert_eq!(intent.details["signer_index"], "1");
}

#[test]
fn other_programs_are_contract_calls_and_mixes_leave_contract_and_method_unset() {
    let (me, public) = me();
    let program = addr(42);
    let call = Instruction::new_with_bytes(program, &[229, 1, 2], vec![AccountMeta::new(me, true)]);
    let intent = decode(&legacy(&[unit_price(1), call.clone()], &me), &public)
        .unwrap()
        .intent;
    assert_eq!(intent.action, actions::CONTRACT_CALL);
    assert_eq!(intent.contract, Some(program.to_string()));
    assert_eq!(intent.method, Some(format!("{program}:229")));

    let payload = legacy(&[call, system::transfer(&me, &addr(2), 9)], &me);
    let intent = decode(&payload, &public).unwrap().intent;
    assert_eq!(intent.action, actions::CONTRACT_CALL);
    assert_eq!(intent.contract, None);
    assert_eq!(intent.method, None);
    assert_eq!(
        intent.transfers.len(),
        1,
        "the system transfer still counts"
    );

    // Creating an account funded by this key moves lamports to it.
    let create = system::create_account(&me, &addr(3), 2_039_280, 165, &TOKEN);
    let intent = decode(&legacy(&[create], &me), &public).unwrap().intent;
    assert_eq!(intent.action, actions::CONTRACT_CALL);
    assert_eq!(intent.method.as_deref(), Some("system.create_account"));
    assert_eq!(
        intent.transfers,
        vec![Transfer {
            to: addr(3).to_string(),
            asset: NATIVE.into(),
            amount: 2_039_280
        }]
    );
}

/// A v0 message whose lookup table no instruction uses decodes like a legacy one.
#[test]
fn v0_message_with_an_unused_lookup_table_decodes() {
    let (me, public) = me();
    let message = v0::Message {
        header: MessageHeader {
            num_required_signatures: 1,
            num_readonly_signed_accounts: 0,
            num_readonly_unsigned_accounts: 1,
        },
        account_keys: vec![me, addr(2), solana_system_interface::program::ID],
        recent_blockhash: Hash::new_from_array([1; 32]),
        instructions: vec![CompiledInstruction {
            program_id_index: 2,
            accounts: vec![0, 1],
            data: [2u32.to_le_bytes().as_slice(), &700u64.to_le_bytes()].concat(),
        }],
        address_table_lookups: vec![v0::MessageAddressTableLookup {
            account_key: addr(50),
            writable_indexes: vec![0],
            readonly_indexes: vec![],
        }],
    };
    let payload = VersionedMessage::V0(message).serialize();
    assert_eq!(payload[0], 0x80, "v0 prefix");
    let intent = decode(&payload, &public).unwrap().intent;
    assert_eq!(intent.details["version"], "v0");
    assert_eq!(intent.details["address_table_lookups"], "1");
    assert_eq!(
        intent.transfers,
        vec![Transfer {
            to: addr(2).to_string(),
            asset: NATIVE.into(),
            amount: 700
        }]
    );
}

#[test]
fn addresses_and_schemes() {
    use keyrack_plugin::ChainPlugin;
    let plugin = keyrack_chain_solana::Solana::new();
    let (me, public) = me();
    assert_eq!(plugin.id(), "solana");
    assert_eq!(plugin.schemes(), &["ed25519"]);
    assert_eq!(
        plugin.addresses(common::key(&public)).unwrap(),
        vec![me.to_string()]
    );
    assert_eq!(me.to_string(), base58(&public));
    // The System Program's id is the all-zero key in base58.
    assert_eq!(
        plugin.addresses(common::key(&[0; 32])).unwrap(),
        vec!["11111111111111111111111111111111".to_string()]
    );
}
