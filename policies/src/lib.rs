//! keyrack's policy engine: what a node will do.
//!
//! Every node evaluates every request — keygen, sign, reshare, refresh, delete, status —
//! against the active signed policy before it takes part, so the signing threshold is also a
//! policy quorum, for creating, moving and destroying keys as for signing. This crate owns the
//! policy file format, its evaluation, lint, signed bundles and the fixtures that
//! `keyrack policy test` runs. It knows nothing of NATS, SQLite, HSMs or chain plugins: the
//! node decodes payloads (chain plugins) and keeps the velocity ledger and the approvals;
//! this crate only decides, deterministically, from what it is given (the clock included).
//!
//! # Semantics (fixed)
//!
//! - **Every rule governs some request kinds** (`operations`; a rule that names none governs
//!   `sign`, so policies written before rules had a scope keep their meaning). A rule is
//!   read only for the kinds it governs.
//! - **Default deny**, for every kind. A request no rule allows is refused.
//! - **Any matching deny wins.** The outcome names the first matching deny rule by id.
//! - **Otherwise the most restrictive matching effect**, `allow < allow-with-approvals <
//!   deny`: if an approval rule matches, its approvals are needed even when an allow rule
//!   matches too. With several approval rules matching, every one must be met;
//!   [`Outcome::NeedsApprovals`] names the first unmet one by id.
//! - **Rule order never matters**: rules are a set, kept and traced sorted by id.
//! - **A rule matches when all its conditions hold**; a list means "any of".
//! - **Fail closed.** A condition on an intent field the decoder did not produce (the value
//!   or token of transfers in several assets, a fee, a method, a contract, a network; no
//!   intent at all for a plain message or a raw digest; no transfers for a destination
//!   condition or a per-destination limit) does **not hold** in an allow or approval rule
//!   and **does hold** in a deny rule (the deny applies). A limit whose ledger query fails
//!   is treated the same way, and so is `chains` for a plain message or a digest (no decoder
//!   read them: a deny scoped to a chain applies, since the bytes could be that chain's
//!   transaction).
//! - **Raw digests and plain messages are off unless allowed**: an allow or approval rule
//!   matches a raw-digest request only if it says `raw_digest = true`, a plain message only
//!   if it says `plain_message = true`. Deny rules match them regardless; a deny rule that
//!   says `raw_digest = true` (`plain_message = true`) applies to those requests only.
//! - **Approvals** counted for a rule: distinct approvers of its group, not the request's
//!   initiator, bound to this request's hash, not expired (`now_ms < expires_at_ms`).
//! - **Limits** are rolling windows: usage recorded at or after `now − window`, plus this
//!   request, must stay within `max_value` (the intent's single asset only; a request whose
//!   value is not known fails closed) and `max_count` (requests). `per = "destination"`
//!   checks each destination of the request separately. `within_limits` holds when the
//!   request stays within every limit listed; `over_limits` when it would exceed any.
//! - **Time** conditions (`hours_utc`, `weekdays`) read the request's `now_ms` in UTC.
//! - **Schemes**: an allow or approval rule matches a request only if it lists every scheme
//!   the request names; a deny rule applies if it lists any.
//! - **Lifecycle** conditions read what a keygen or reshare makes (`min_new_threshold`,
//!   `max_new_committee`, …; `threshold_change`, `committee_change`) from the request and
//!   the deciding node's own store; in rules governing reshare they go in deny rules only,
//!   and a node that holds no share of the key does not judge them ([`Lifecycle`]). A keygen
//!   that may re-create a deleted key id matches an allow or approval rule only if it says
//!   `reuse_deleted_id = true`.
//! - **Delays**: an approval rule may set `delay`; an allowed request whose matched approval
//!   rules set one is carried out only once the longest has passed since its approvals were
//!   met ([`Outcome::Allow`]'s `delay`), and a member of any matched approval rule's group
//!   ([`Decision::veto_groups`]) may veto it meanwhile. The node keeps the time and the
//!   vetoes; this crate only says how long.
//!
//! policies/README.md describes the file format with examples; policies/examples/ holds
//! documented policies and their fixtures.

#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod bundle;
mod eval;
mod file;
mod fixture;
mod ledger;
mod lint;
mod pattern;
mod time;

pub use bundle::{
    Bundle, BundleError, PolicyAdmin, SignedBundle, VerifiedBundle, BUNDLE_DOMAIN, BUNDLE_FORMAT,
};
pub use eval::{
    Approval, ApprovalTrace, Committee, ConditionTrace, Decision, Lifecycle, Outcome, Request,
    RuleDelay, RuleTrace,
};
pub use file::{
    chain_schemes, parse_amount, Amount, ApprovalRequirement, Conditions, Delay, Effect, Limit,
    Operation, Per, Policy, PolicyError, Rule, CHAINS, COMMITTEE_CHANGES, MAX_DELAY_MS,
    POLICY_FORMAT, SCHEMES, THRESHOLD_CHANGES,
};
pub use fixture::{Decoder, Expectation, Fixture, FixtureError, FixtureResult};
pub use ledger::{
    ledger_asset, ledger_entries, Ledger, LedgerEntry, MemoryLedger, Usage, UsageQuery,
};
pub use lint::Finding;
pub use time::{format_rfc3339_ms, parse_duration_ms, parse_rfc3339_ms};
