//! Lint: warnings about a policy that parses but does not say what its author meant.
//!
//! The implication check is conservative and syntactic: rule A "implies" rule B when every
//! condition B has, A has too and at least as narrow (a sub-list, a tighter bound, the same
//! time range, …). It never claims an implication that does not hold, but it misses some
//! that do (it does not reason across different condition kinds, e.g. a key tag and the key
//! patterns it stands for).

use serde::Serialize;

use crate::file::{chain_schemes, Conditions, Effect, Limit, Policy, Rule};
use crate::pattern::glob_match;

/// One lint warning.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Finding {
    /// The rule it is about, if any.
    pub rule: Option<String>,
    /// What is wrong.
    pub message: String,
}

fn subset(a: &Option<Vec<String>>, b: &Option<Vec<String>>) -> bool {
    match (a, b) {
        (_, None) => true,
        (None, Some(_)) => false,
        (Some(a), Some(b)) => a.iter().all(|x| b.contains(x)),
    }
}

fn superset(a: &Option<Vec<String>>, b: &Option<Vec<String>>) -> bool {
    match (a, b) {
        (_, None) => true,
        (None, Some(_)) => false,
        (Some(a), Some(b)) => b.iter().all(|x| a.contains(x)),
    }
}

fn patterns_within(a: &Option<Vec<String>>, b: &Option<Vec<String>>) -> bool {
    match (a, b) {
        (_, None) => true,
        (None, Some(_)) => false,
        (Some(a), Some(b)) => a.iter().all(|p| {
            b.iter()
                .any(|q| q == p || (!p.contains('*') && glob_match(q, p)))
        }),
    }
}

fn at_most(a: Option<u128>, b: Option<u128>) -> bool {
    match (a, b) {
        (_, None) => true,
        (None, Some(_)) => false,
        (Some(a), Some(b)) => a <= b,
    }
}

fn limits_cover(a: &Option<Vec<Limit>>, b: &Option<Vec<Limit>>) -> bool {
    match (a, b) {
        (_, None) => true,
        (None, Some(_)) => false,
        (Some(a), Some(b)) => b.iter().all(|l| a.contains(l)),
    }
}

/// Whether every request that satisfies `a` satisfies `b` (conservatively).
pub(crate) fn implies(a: &Conditions, b: &Conditions) -> bool {
    subset(&a.initiators, &b.initiators)
        && subset(&a.roles, &b.roles)
        && patterns_within(&a.keys, &b.keys)
        && subset(&a.key_tags, &b.key_tags)
        && subset(&a.schemes, &b.schemes)
        && subset(&a.chains, &b.chains)
        && subset(&a.networks, &b.networks)
        && subset(&a.actions, &b.actions)
        && subset(&a.destinations_in, &b.destinations_in)
        && superset(&a.destinations_not_in, &b.destinations_not_in)
        && subset(&a.tokens, &b.tokens)
        && subset(&a.methods, &b.methods)
        && subset(&a.contracts, &b.contracts)
        && match (a.min_value, b.min_value) {
            (_, None) => true,
            (None, Some(_)) => false,
            (Some(x), Some(y)) => x >= y,
        }
        && at_most(a.max_value, b.max_value)
        && at_most(a.max_fee, b.max_fee)
        && patterns_within(&a.derivation_paths, &b.derivation_paths)
        && (b.hours_utc.is_none() || a.hours_utc == b.hours_utc)
        && subset(&a.weekdays, &b.weekdays)
        && limits_cover(&a.within_limits, &b.within_limits)
        && match (&a.over_limits, &b.over_limits) {
            (_, None) => true,
            (None, Some(_)) => false,
            (Some(x), Some(y)) => x.iter().all(|l| y.contains(l)),
        }
        && at_least_u16(a.min_new_threshold, b.min_new_threshold)
        && at_most(
            a.max_new_threshold.map(u128::from),
            b.max_new_threshold.map(u128::from),
        )
        && at_least_u16(a.min_new_committee, b.min_new_committee)
        && at_most(
            a.max_new_committee.map(u128::from),
            b.max_new_committee.map(u128::from),
        )
        && subset(&a.threshold_change, &b.threshold_change)
        && subset(&a.committee_change, &b.committee_change)
}

/// A lower bound `a` at least as tight as `b`.
fn at_least_u16(a: Option<u16>, b: Option<u16>) -> bool {
    match (a, b) {
        (_, None) => true,
        (None, Some(_)) => false,
        (Some(a), Some(b)) => a >= b,
    }
}

/// Whether deny rule `d` matches every request that rule `r` matches.
fn deny_covers(d: &Rule, r: &Rule) -> bool {
    // A deny rule with raw_digest, plain_message or reuse_deleted_id = true applies to those
    // requests only; r also matches others. It covers only the kinds it governs.
    !d.raw_digest
        && !d.plain_message
        && !d.reuse_deleted_id
        && r.operations.iter().all(|o| d.operations.contains(o))
        && implies(&r.conditions, &d.conditions)
}

impl Policy {
    /// Warnings: rules that can never take effect, contradictions, a deny of everything.
    /// Errors are [`Policy::from_toml`]'s.
    pub fn lint(&self) -> Vec<Finding> {
        let mut out = Vec::new();
        let warn = |out: &mut Vec<Finding>, rule: &Rule, message: String| {
            out.push(Finding {
                rule: Some(rule.id.clone()),
                message,
            })
        };
        for r in &self.rules {
            let c = &r.conditions;
            if r.effect == Effect::Deny
                && c.is_empty()
                && !r.raw_digest
                && !r.plain_message
                && !r.reuse_deleted_id
            {
                let kinds: Vec<&str> = r.operations.iter().map(|o| o.as_str()).collect();
                warn(
                    &mut out,
                    r,
                    format!(
                        "deny rule '{}' has no conditions: it denies every request ({})",
                        r.id,
                        kinds.join(", ")
                    ),
                );
            }
            for (name, min, max) in [
                ("threshold", c.min_new_threshold, c.max_new_threshold),
                ("committee", c.min_new_committee, c.max_new_committee),
            ] {
                if let (Some(min), Some(max)) = (min, max) {
                    if min > max {
                        warn(&mut out, r, format!(
                            "rule '{}' can never match: min_new_{name} {min} > max_new_{name} {max}",
                            r.id
                        ));
                    }
                }
            }
            if let (Some(min), Some(max)) = (c.min_value, c.max_value) {
                if min > max {
                    warn(
                        &mut out,
                        r,
                        format!(
                            "rule '{}' can never match: min_value {min} > max_value {max}",
                            r.id
                        ),
                    );
                }
            }
            if let Some(a) = &r.approvals {
                let size = self.approver_group(&a.group).map_or(0, <[String]>::len);
                if size < usize::from(a.required) {
                    warn(&mut out, r, format!(
                        "rule '{}' can never be approved: it needs {} approvers but group '{}' has {size} member(s)",
                        r.id, a.required, a.group
                    ));
                }
            }
            if let (Some(chains), Some(schemes)) = (&c.chains, &c.schemes) {
                let signable = chains.iter().any(|ch| {
                    chain_schemes(ch)
                        .iter()
                        .any(|s| schemes.iter().any(|x| x == s))
                });
                if !signable {
                    warn(&mut out, r, format!(
                        "rule '{}' can never match: none of the chains {} can be signed by the schemes {} (evm: ecdsa-secp256k1; bitcoin: ecdsa-secp256k1, schnorr-secp256k1; solana: ed25519)",
                        r.id, chains.join(", "), schemes.join(", ")
                    ));
                }
            }
            if r.effect != Effect::Deny {
                if let Some(d) = self
                    .rules
                    .iter()
                    .find(|d| d.effect == Effect::Deny && deny_covers(d, r))
                {
                    warn(&mut out, r, format!(
                        "rule '{}' is unreachable: every request it matches is also matched by deny rule '{}', which wins",
                        r.id, d.id
                    ));
                    continue;
                }
            }
            if r.effect == Effect::Allow {
                if let Some(s) = self.rules.iter().find(|s| {
                    s.effect == Effect::AllowWithApprovals
                        && (!r.raw_digest || s.raw_digest)
                        && (!r.plain_message || s.plain_message)
                        && (!r.reuse_deleted_id || s.reuse_deleted_id)
                        && r.operations.iter().all(|o| s.operations.contains(o))
                        && implies(&r.conditions, &s.conditions)
                }) {
                    warn(&mut out, r, format!(
                        "allow rule '{}' never allows on its own: every request it matches also matches '{}', which needs approvals (the most restrictive effect applies)",
                        r.id, s.id
                    ));
                }
            }
        }
        out
    }
}
