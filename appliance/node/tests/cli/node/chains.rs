//! Chain payloads signed by a cluster of node processes, checked with each ecosystem's own library. (Being written.)
