//! The audit log: a hash chain of signed entries. (Being written for issue 6.)
