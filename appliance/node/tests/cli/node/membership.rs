//! Membership changes on real node processes (issue 5; being built).
