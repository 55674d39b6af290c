//! The velocity ledger as the policy reads it: what was signed, when, by which key, for
//! which initiator, to where. The node keeps the real one (SQLite, with reservations that a
//! failed signing releases); [`MemoryLedger`] serves tests and fixtures.

use serde::Serialize;

use crate::eval::Request;
pub use crate::file::Per;

/// One usage question: how much did this scope move (and how many requests) since
/// `since_ms`?
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UsageQuery<'a> {
    /// Which scope: entries of this key, of this initiator, or to this destination.
    pub per: Per,
    /// The request's key (scope for [`Per::Key`]).
    pub key_id: &'a str,
    /// The request's initiator (scope for [`Per::Initiator`]).
    pub initiator: &'a str,
    /// The destination (scope for [`Per::Destination`]; `Some` exactly then).
    pub destination: Option<&'a str>,
    /// The asset whose amounts to sum, as [`ledger_asset`] names it (`evm:native`);
    /// `None` = a count-only query (value 0).
    pub asset: Option<&'a str>,
    /// Entries recorded at or after this instant (ms since the epoch) count.
    pub since_ms: u64,
}

/// The answer to a [`UsageQuery`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Usage {
    /// Sum of the amounts of the scope's entries in `asset` (saturating); 0 for a count-only
    /// query.
    pub value: u128,
    /// Distinct requests with at least one entry in the scope (whatever their asset).
    pub count: u64,
}

/// Where a policy reads past usage. Reservations of requests being signed count as usage.
pub trait Ledger {
    /// Usage of a scope in a window. An error makes the limit fail closed.
    fn usage(&self, q: &UsageQuery<'_>) -> Result<Usage, String>;
}

/// One row the node records when it signs a request.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct LedgerEntry {
    /// The key that signed.
    pub key_id: String,
    /// Who asked.
    pub initiator: String,
    /// The transfer's destination (`None` for a request without transfers).
    pub destination: Option<String>,
    /// The transfer's asset, qualified by its chain as [`ledger_asset`] names it
    /// (`evm:native`, `solana:<mint>`); `None` for a request without transfers.
    pub asset: Option<String>,
    /// The transfer's amount (0 for a request without transfers).
    pub amount: u128,
}

/// What the node records if it signs `req`: one entry per transfer of the intent; a single
/// entry with no destination or asset and amount 0 when there are none (a message, a
/// digest, a call without value), so that every signed request counts once. Requests of
/// other kinds record nothing: limits count signing only.
pub fn ledger_entries(req: &Request<'_>) -> Vec<LedgerEntry> {
    if req.operation != crate::file::Operation::Sign {
        return Vec::new();
    }
    let entry = |destination: Option<String>, asset: Option<String>, amount: u128| LedgerEntry {
        key_id: req.key_id.to_owned(),
        initiator: req.initiator.to_owned(),
        destination,
        asset,
        amount,
    };
    let transfers = req.intent.map(|i| i.transfers.as_slice()).unwrap_or(&[]);
    if transfers.is_empty() {
        return vec![entry(None, None, 0)];
    }
    transfers
        .iter()
        .map(|t| {
            let chain = req.intent.map_or("", |i| i.chain.as_str());
            entry(
                Some(t.to.clone()),
                Some(ledger_asset(chain, &t.asset)),
                t.amount,
            )
        })
        .collect()
}

/// How the ledger names an asset: `<chain>:<asset>`, so that one key's coins on two chains
/// (Bitcoin and Solana, say) never add up; EVM token contracts lower-cased (their checksum is
/// letter case). The EVM networks share one name per asset (`evm:native` is the native coin
/// of every chain id): amounts on several EVM networks count against one limit, which only
/// makes a limit stricter; give a rule a `networks` condition to keep a network apart.
pub fn ledger_asset(chain: &str, asset: &str) -> String {
    if chain == "evm" {
        format!("{chain}:{}", asset.to_ascii_lowercase())
    } else {
        format!("{chain}:{asset}")
    }
}

/// A ledger in memory: each recorded request is a list of entries at one instant.
#[derive(Clone, Debug, Default)]
pub struct MemoryLedger {
    requests: Vec<(u64, Vec<LedgerEntry>)>,
}

impl MemoryLedger {
    /// An empty ledger.
    pub fn new() -> Self {
        Self::default()
    }

    /// Records one request's entries at `at_ms`.
    pub fn record(&mut self, at_ms: u64, entries: Vec<LedgerEntry>) {
        self.requests.push((at_ms, entries));
    }

    /// Records what the node would record for `req`, at `req.now_ms`.
    pub fn record_request(&mut self, req: &Request<'_>) {
        self.record(req.now_ms, ledger_entries(req));
    }

    /// How many requests are recorded.
    pub fn len(&self) -> usize {
        self.requests.len()
    }

    /// Whether nothing is recorded.
    pub fn is_empty(&self) -> bool {
        self.requests.is_empty()
    }
}

fn in_scope(q: &UsageQuery<'_>, e: &LedgerEntry) -> bool {
    match q.per {
        Per::Key => e.key_id == q.key_id,
        Per::Initiator => e.initiator == q.initiator,
        Per::Destination => q.destination.is_some() && e.destination.as_deref() == q.destination,
    }
}

impl Ledger for MemoryLedger {
    fn usage(&self, q: &UsageQuery<'_>) -> Result<Usage, String> {
        let mut usage = Usage::default();
        for (at, entries) in &self.requests {
            if *at < q.since_ms {
                continue;
            }
            let mut counted = false;
            for e in entries.iter().filter(|e| in_scope(q, e)) {
                if !counted {
                    usage.count += 1;
                    counted = true;
                }
                if q.asset.is_some() && e.asset.as_deref() == q.asset {
                    usage.value = usage.value.saturating_add(e.amount);
                }
            }
        }
        Ok(usage)
    }
}
