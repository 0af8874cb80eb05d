//! Per-tenant token buckets for requests that cost the gateway work but change nothing (dry
//! runs): a burst of `per_minute`, refilled evenly. Kept in process: the bound is per gateway.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Instant;

/// Beyond this many tenants, full buckets (tenants idle for a minute) are forgotten.
const PRUNE_ABOVE: usize = 10_000;

pub(super) struct TenantBuckets {
    per_minute: u32,
    buckets: Mutex<HashMap<String, Bucket>>,
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

impl TenantBuckets {
    pub fn per_minute(per_minute: u32) -> Self {
        Self {
            per_minute,
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// Takes one token of `tenant`'s bucket, or says in how many whole seconds one is back
    /// (at least 1).
    pub fn take(&self, tenant: &str) -> Result<(), u64> {
        self.take_at(tenant, Instant::now())
    }

    fn take_at(&self, tenant: &str, now: Instant) -> Result<(), u64> {
        if self.per_minute == 0 {
            return Err(60);
        }
        let capacity = f64::from(self.per_minute);
        let per_sec = capacity / 60.0;
        let mut buckets = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        if buckets.len() > PRUNE_ABOVE {
            buckets.retain(|_, b| {
                b.tokens + now.duration_since(b.at).as_secs_f64() * per_sec < capacity
            });
        }
        let bucket = buckets.entry(tenant.to_owned()).or_insert(Bucket {
            tokens: capacity,
            at: now,
        });
        let refilled = now.duration_since(bucket.at).as_secs_f64() * per_sec;
        bucket.tokens = (bucket.tokens + refilled).min(capacity);
        bucket.at = now;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            Ok(())
        } else {
            let secs = ((1.0 - bucket.tokens) / per_sec).ceil();
            Err((secs as u64).max(1))
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn a_burst_then_refusal_then_refill() {
        let b = TenantBuckets::per_minute(3);
        let t0 = Instant::now();
        for _ in 0..3 {
            assert_eq!(b.take_at("a", t0), Ok(()));
        }
        assert_eq!(b.take_at("a", t0), Err(20), "one token every 20 s");
        assert_eq!(b.take_at("b", t0), Ok(()), "tenants are apart");
        assert_eq!(b.take_at("a", t0 + Duration::from_secs(20)), Ok(()));
        assert!(TenantBuckets::per_minute(0).take_at("a", t0).is_err());
    }
}
