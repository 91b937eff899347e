//! A hasher for the tables keyed by request ids and slots: numbers a peer or this side hands
//! out in sequence, for which SipHash's resistance to chosen keys buys nothing but time.
//! (A peer choosing slots to collide can slow down only its own connection's table.)

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

/// One multiplication per key (Fibonacci hashing): spreads sequential ids over the high bits
/// the hash table uses.
#[derive(Default)]
pub(crate) struct IdHasher(u64);

impl Hasher for IdHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for byte in bytes {
            self.write_u64(self.0.rotate_left(8) ^ u64::from(*byte));
        }
    }

    fn write_u32(&mut self, n: u32) {
        self.write_u64(u64::from(n));
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = n.wrapping_mul(0x9e37_79b9_7f4a_7c15);
    }
}

/// A map keyed by request id or slot.
pub(crate) type IdMap<K, V> = HashMap<K, V, BuildHasherDefault<IdHasher>>;
