//! Short-lived "this operation already ended" markers, the in-process twin of the Redis
//! `op:<id>` / `freed:<id>` keys with a TTL.

use std::collections::{HashMap, VecDeque};

use uuid::Uuid;

#[derive(Debug, Default)]
pub(crate) struct Markers {
    expires_ms: HashMap<Uuid, i64>,
    /// Insertion order. Every marker gets the same TTL from a clock that never goes back, so
    /// this is also expiry order and pruning only ever looks at the front.
    order: VecDeque<(i64, Uuid)>,
}

impl Markers {
    pub fn contains(&mut self, op: Uuid, now_ms: i64) -> bool {
        self.prune(now_ms);
        self.expires_ms.contains_key(&op)
    }

    pub fn insert(&mut self, op: Uuid, expires_ms: i64) {
        self.expires_ms.insert(op, expires_ms);
        self.order.push_back((expires_ms, op));
    }

    fn prune(&mut self, now_ms: i64) {
        while let Some(&(at, op)) = self.order.front() {
            if at > now_ms {
                break;
            }
            self.order.pop_front();
            // Only remove the marker if it was not set again later with a later expiry.
            if self.expires_ms.get(&op) == Some(&at) {
                self.expires_ms.remove(&op);
            }
        }
    }
}
