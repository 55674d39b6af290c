//! Reshare, refresh and delete on real node processes (issue 5; being built).
