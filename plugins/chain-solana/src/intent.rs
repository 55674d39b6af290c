//! Checked message → [`Intent`]: what each instruction does for this key, the action, and
//! the most this key can pay in fees. Pure reading of instruction data; the whole-message
//! checks are in `message.rs`.

use crate::message::{malformed, Checked};
use keyrack_plugin::{actions, ChainError, Intent, Transfer, NATIVE};
use solana_message::compiled_instruction::CompiledInstruction;
use solana_message::Address;
use solana_system_interface::instruction::SystemInstruction;
use std::collections::BTreeMap;

const COMPUTE_BUDGET: Address =
    Address::from_str_const("ComputeBudget111111111111111111111111111111");
const TOKEN: Address = Address::from_str_const("TokenkegQfeZyiNwAJbNbGKPFXCWuBvf9Ss623VQ5DA");
const TOKEN_2022: Address = Address::from_str_const("TokenzQdBNbLqP5VEhdkAS6EPFLC1PHnBqCXEpPxuEb");
/// The signature-verification precompiles: each signature they check is charged like a
/// transaction signature; the count is the instruction data's first byte.
const PRECOMPILES: [Address; 3] = [
    Address::from_str_const("Ed25519SigVerify111111111111111111111111111"),
    Address::from_str_const("KeccakSecp256k11111111111111111111111111111"),
    Address::from_str_const("Secp256r1SigVerify1111111111111111111111111"),
];

/// The asset of an SPL `Transfer`/`Approve` (tags 3 and 4): the instruction does not name the
/// mint, so no token rule can match it.
pub const UNKNOWN_ASSET: &str = "unknown";
/// Lamports per signature (the cluster's fee rate since launch).
pub const LAMPORTS_PER_SIGNATURE: u128 = 5000;
/// The default compute-unit limit counted per instruction without `SetComputeUnitLimit`.
pub const DEFAULT_UNITS_PER_INSTRUCTION: u128 = 200_000;
/// The most compute units a transaction can request.
pub const MAX_UNITS: u128 = 1_400_000;

/// What one instruction is, for choosing the action.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// Moves nothing and calls nothing else: compute budget, advancing a durable nonce.
    Neutral,
    /// System `transfer` / `transfer_with_seed`.
    Transfer,
    /// SPL token `Transfer` / `TransferChecked`.
    TokenTransfer,
    /// SPL token `Approve` / `ApproveChecked`.
    TokenApprove,
    /// Anything else.
    Other,
}

struct Step {
    kind: Kind,
    program: Address,
    method: String,
}

/// The compute budget a message asks for.
#[derive(Default)]
struct Budget {
    unit_limit: Option<u32>,
    unit_price: Option<u64>,
}

/// One instruction, with its accounts resolved against the static keys.
struct Ix<'a> {
    n: usize,
    keys: &'a [Address],
    raw: &'a CompiledInstruction,
    what: &'static str,
}

impl Ix<'_> {
    fn account(&self, i: usize) -> Result<&Address, ChainError> {
        let index = self.raw.accounts.get(i).ok_or_else(|| {
            malformed(format!(
                "instruction {} ({}) has {} account(s); it needs at least {}",
                self.n,
                self.what,
                self.raw.accounts.len(),
                i + 1
            ))
        })?;
        // In range: message::check refused indexes past the static keys.
        Ok(&self.keys[usize::from(*index)])
    }

    /// Whether `key` is account `i` or, for an SPL multisig authority, one of the signer
    /// accounts after it.
    fn authorised_by(&self, i: usize, key: &Address, multisig: bool) -> Result<bool, ChainError> {
        if self.account(i)? == key {
            return Ok(true);
        }
        Ok(multisig
            && self.raw.accounts[i + 1..]
                .iter()
                .any(|a| &self.keys[usize::from(*a)] == key))
    }

    fn data(&self, len: usize) -> Result<&[u8], ChainError> {
        self.raw.data.get(..len).ok_or_else(|| {
            malformed(format!(
                "instruction {} ({}) has {} data byte(s); it needs {}",
                self.n,
                self.what,
                self.raw.data.len(),
                len
            ))
        })
    }

    fn u64_at(&self, at: usize) -> Result<u64, ChainError> {
        let bytes = self.data(at + 8)?;
        let mut le = [0u8; 8];
        le.copy_from_slice(&bytes[at..at + 8]);
        Ok(u64::from_le_bytes(le))
    }
}

/// The intent of `checked` for the key in its signer slot.
pub(crate) fn intent(checked: &Checked) -> Result<Intent, ChainError> {
    let keys = checked.keys();
    let key = &keys[checked.signer_index];
    let message = &checked.message;
    let mut transfers = Vec::new();
    let mut steps = Vec::new();
    let mut budget = Budget::default();
    let mut precompile_signatures: u128 = 0;
    let mut details = BTreeMap::new();

    for (n, raw) in message.instructions().iter().enumerate() {
        let program = keys[usize::from(raw.program_id_index)];
        let ix = Ix {
            n,
            keys,
            raw,
            what: "instruction",
        };
        let step = if program == solana_system_interface::program::ID {
            system(ix, key, &mut transfers, &mut details)?
        } else if program == TOKEN || program == TOKEN_2022 {
            token(ix, &program, key, &mut transfers)?
        } else if program == COMPUTE_BUDGET {
            compute_budget(ix, &mut budget)?
        } else {
            if PRECOMPILES.contains(&program) {
                precompile_signatures += u128::from(raw.data.first().copied().unwrap_or(0));
            }
            other(&program, &raw.data)
        };
        details.insert(format!("instruction.{n}"), step.method.clone());
        steps.push(Step { program, ..step });
    }

    let fee = if checked.signer_index == 0 {
        let signatures =
            u128::from(message.header().num_required_signatures) + precompile_signatures;
        let units = match budget.unit_limit {
            Some(limit) => u128::from(limit).min(MAX_UNITS),
            None => (DEFAULT_UNITS_PER_INSTRUCTION * steps.len() as u128).min(MAX_UNITS),
        };
        let price = u128::from(budget.unit_price.unwrap_or(0));
        // Micro-lamports per unit, rounded up as the runtime does.
        let priority = (price * units).div_ceil(1_000_000);
        details.insert("fee.compute_unit_limit".into(), units.to_string());
        details.insert(
            "fee.compute_unit_price_micro_lamports".into(),
            price.to_string(),
        );
        details.insert("fee.signatures".into(), signatures.to_string());
        Some(signatures * LAMPORTS_PER_SIGNATURE + priority)
    } else {
        // Another account pays every fee: this key pays nothing.
        Some(0)
    };

    let (action, contract, method) = classify(&steps);
    let mut programs: Vec<String> = Vec::new();
    for step in &steps {
        let id = step.program.to_string();
        if !programs.contains(&id) {
            programs.push(id);
        }
    }
    details.insert("version".into(), checked.version().into());
    details.insert("fee_payer".into(), keys[0].to_string());
    details.insert(
        "recent_blockhash".into(),
        message.recent_blockhash().to_string(),
    );
    details.insert("programs".into(), programs.join(","));
    details.insert("instructions".into(), steps.len().to_string());
    details.insert(
        "required_signatures".into(),
        message.header().num_required_signatures.to_string(),
    );
    details.insert("signer_index".into(), checked.signer_index.to_string());
    if let Some(lookups) = message.address_table_lookups() {
        details.insert("address_table_lookups".into(), lookups.len().to_string());
    }
    Ok(Intent {
        chain: "solana".into(),
        network: None,
        action: action.into(),
        transfers,
        fee,
        method,
        contract,
        details,
    })
}

/// The action, and the program and method when every non-neutral instruction shares them
/// (else `None`, so rules on them fail closed).
fn classify(steps: &[Step]) -> (&'static str, Option<String>, Option<String>) {
    let mut acting: Vec<&Step> = steps.iter().filter(|s| s.kind != Kind::Neutral).collect();
    let only_neutral = acting.is_empty();
    if only_neutral {
        // Nothing but compute budget or nonce instructions: called programs all the same.
        acting = steps.iter().collect();
    }
    let all = |kind: Kind| !only_neutral && acting.iter().all(|s| s.kind == kind);
    let action = if all(Kind::Transfer) {
        actions::TRANSFER
    } else if all(Kind::TokenTransfer) {
        actions::TOKEN_TRANSFER
    } else if all(Kind::TokenApprove) {
        actions::TOKEN_APPROVE
    } else {
        actions::CONTRACT_CALL
    };
    let first = acting.first();
    let contract = first
        .filter(|f| acting.iter().all(|s| s.program == f.program))
        .map(|f| f.program.to_string());
    let method = first
        .filter(|f| acting.iter().all(|s| s.method == f.method))
        .map(|f| f.method.clone());
    (action, contract, method)
}

fn step(kind: Kind, method: &str) -> Step {
    Step {
        kind,
        program: Address::default(),
        method: method.into(),
    }
}

/// `<program id>:<first data byte>` (decimal), or `<program id>:none` without data.
fn other(program: &Address, data: &[u8]) -> Step {
    let tag = data
        .first()
        .map_or_else(|| "none".to_string(), |b| b.to_string());
    step(Kind::Other, &format!("{program}:{tag}"))
}

fn outgoing(transfers: &mut Vec<Transfer>, key: &Address, to: &Address, asset: &str, amount: u64) {
    if to != key {
        transfers.push(Transfer {
            to: to.to_string(),
            asset: asset.into(),
            amount: u128::from(amount),
        });
    }
}

fn system(
    mut ix: Ix<'_>,
    key: &Address,
    transfers: &mut Vec<Transfer>,
    details: &mut BTreeMap<String, String>,
) -> Result<Step, ChainError> {
    ix.what = "system program";
    // The runtime decodes system instructions leniently (trailing bytes ignored); so does this.
    let decoded: SystemInstruction = wincode::deserialize(&ix.raw.data).map_err(|e| {
        malformed(format!(
            "instruction {} (system program) data does not decode: {e}",
            ix.n
        ))
    })?;
    use SystemInstruction as S;
    Ok(match decoded {
        S::Transfer { lamports } => {
            ix.what = "system.transfer";
            if ix.account(0)? == key {
                outgoing(transfers, key, ix.account(1)?, NATIVE, lamports);
            }
            step(Kind::Transfer, "system.transfer")
        }
        S::TransferWithSeed { lamports, .. } => {
            ix.what = "system.transfer_with_seed";
            // Accounts: funding (derived from the base), base (signer), recipient.
            if ix.account(0)? == key || ix.account(1)? == key {
                outgoing(transfers, key, ix.account(2)?, NATIVE, lamports);
            }
            step(Kind::Transfer, "system.transfer_with_seed")
        }
        S::CreateAccount { lamports, .. } | S::CreateAccountWithSeed { lamports, .. } => {
            // Accounts: funding, new account.
            if ix.account(0)? == key {
                outgoing(transfers, key, ix.account(1)?, NATIVE, lamports);
            }
            step(Kind::Other, "system.create_account")
        }
        S::CreateAccountAllowPrefund { lamports, .. } => {
            // Accounts: new account, funding (present when lamports move).
            if lamports > 0 && ix.account(1)? == key {
                outgoing(transfers, key, ix.account(0)?, NATIVE, lamports);
            }
            step(Kind::Other, "system.create_account_allow_prefund")
        }
        S::WithdrawNonceAccount(lamports) => {
            // Accounts: nonce, recipient, recent blockhashes, rent, nonce authority.
            if ix.account(4)? == key {
                outgoing(transfers, key, ix.account(1)?, NATIVE, lamports);
            }
            step(Kind::Other, "system.withdraw_nonce_account")
        }
        S::AdvanceNonceAccount => {
            if ix.n == 0 {
                details.insert("durable_nonce_account".into(), ix.account(0)?.to_string());
            }
            step(Kind::Neutral, "system.advance_nonce_account")
        }
        S::Assign { .. } => step(Kind::Other, "system.assign"),
        S::InitializeNonceAccount(_) => step(Kind::Other, "system.initialize_nonce_account"),
        S::AuthorizeNonceAccount(_) => step(Kind::Other, "system.authorize_nonce_account"),
        S::Allocate { .. } => step(Kind::Other, "system.allocate"),
        S::AllocateWithSeed { .. } => step(Kind::Other, "system.allocate_with_seed"),
        S::AssignWithSeed { .. } => step(Kind::Other, "system.assign_with_seed"),
        S::UpgradeNonceAccount => step(Kind::Other, "system.upgrade_nonce_account"),
    })
}

/// SPL Token and Token-2022 (same layout for these instructions): a tag byte, a
/// little-endian u64 amount, and for the `Checked` forms a decimals byte; trailing bytes are
/// ignored, as the token programs do.
fn token(
    mut ix: Ix<'_>,
    program: &Address,
    key: &Address,
    transfers: &mut Vec<Transfer>,
) -> Result<Step, ChainError> {
    let Some(&tag) = ix.raw.data.first() else {
        return Ok(other(program, &ix.raw.data));
    };
    // (method, kind, data length, authority account, mint account, `to` account)
    let (method, kind, len, authority, mint, to) = match tag {
        3 => ("spl_token.transfer", Kind::TokenTransfer, 9, 2, None, 1),
        12 => (
            "spl_token.transfer_checked",
            Kind::TokenTransfer,
            10,
            3,
            Some(1),
            2,
        ),
        4 => ("spl_token.approve", Kind::TokenApprove, 9, 2, None, 1),
        13 => (
            "spl_token.approve_checked",
            Kind::TokenApprove,
            10,
            3,
            Some(1),
            2,
        ),
        _ => return Ok(other(program, &ix.raw.data)),
    };
    ix.what = method;
    ix.data(len)?;
    let amount = ix.u64_at(1)?;
    if ix.authorised_by(authority, key, true)? {
        let asset = match mint {
            Some(i) => ix.account(i)?.to_string(),
            None => UNKNOWN_ASSET.to_string(),
        };
        // `to`: the destination token account (a transfer) or the delegate (an approval).
        transfers.push(Transfer {
            to: ix.account(to)?.to_string(),
            asset,
            amount: u128::from(amount),
        });
    }
    Ok(step(kind, method))
}

/// The compute-budget program; data must be exactly what the runtime reads, and each
/// setting may appear once (the runtime rejects duplicates).
fn compute_budget(mut ix: Ix<'_>, budget: &mut Budget) -> Result<Step, ChainError> {
    ix.what = "compute budget";
    let tag = *ix.data(1)?.first().unwrap_or(&0);
    let (method, len) = match tag {
        1 => ("compute_budget.request_heap_frame", 5),
        2 => ("compute_budget.set_compute_unit_limit", 5),
        3 => ("compute_budget.set_compute_unit_price", 9),
        4 => ("compute_budget.set_loaded_accounts_data_size_limit", 5),
        _ => {
            return Err(malformed(format!(
                "instruction {} is compute budget instruction {tag}, which the runtime rejects",
                ix.n
            )))
        }
    };
    ix.what = method;
    if ix.raw.data.len() != len {
        return Err(malformed(format!(
            "instruction {} ({method}) has {} data bytes; it must have {len}",
            ix.n,
            ix.raw.data.len()
        )));
    }
    let duplicate = || {
        malformed(format!(
            "instruction {} repeats {method} (the runtime rejects the transaction)",
            ix.n
        ))
    };
    let repeated = match tag {
        2 => {
            let mut le = [0u8; 4];
            le.copy_from_slice(&ix.raw.data[1..5]);
            budget.unit_limit.replace(u32::from_le_bytes(le)).is_some()
        }
        3 => budget.unit_price.replace(ix.u64_at(1)?).is_some(),
        _ => false,
    };
    if repeated {
        return Err(duplicate());
    }
    Ok(step(Kind::Neutral, method))
}
