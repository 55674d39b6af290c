//! Policy on a cluster of node processes. (Being written.)
