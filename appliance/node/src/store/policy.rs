//! Policy state: active bundles, approvals, the velocity ledger. (Being written for issue 6.)
