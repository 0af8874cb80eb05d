//! Quota check-and-reserve + commit, one round per simulated save, three ways:
//! (a) `RedisQuotaStore` (one Lua script per decision), (b) `MemoryQuotaStore`, and
//! (c) counting in PostgreSQL inside a transaction, as Nova does since Pike: lock the tenant's
//! row, count its states, check, insert, commit; then mark the state available.
//!
//! Needs Redis at 127.0.0.1:6379 and PostgreSQL at 127.0.0.1:5432 (user postgres, trust).
//! Run: `cargo bench -p snapgate-benches --bench quota` (release). Writes nothing it keeps: a
//! random Redis key prefix and a fresh database `snapgate_bench_<random>`, both removed after.

use std::error::Error;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use sea_orm::{
    ConnectionTrait, Database, DatabaseConnection, DbBackend, Statement, TransactionTrait,
};
use snapgate_core::ports::{QuotaLimits, QuotaReservation, QuotaStore};
use snapgate_quota::{MemoryQuotaStore, RedisQuotaConfig, RedisQuotaStore};
use uuid::Uuid;

type BoxError = Box<dyn Error + Send + Sync>;

const REDIS_URL: &str = "redis://127.0.0.1:6379";
const PG_ADMIN_URL: &str = "postgres://postgres@127.0.0.1:5432/postgres";
const WARMUP: usize = 500;
const ROUNDS: usize = 5_000;
/// Rounds spread over this many tenants, so each ends with ~55 states (a realistic count for
/// PostgreSQL to scan) instead of one tenant with thousands.
const TENANTS: usize = 100;
const CONCURRENT_CLIENTS: usize = 16;
const LEASE: Duration = Duration::from_secs(900);
/// High enough never to refuse: we measure the check, not refusals.
const LIMITS: QuotaLimits = QuotaLimits {
    states: 1_000_000,
    state_bytes: 1 << 60,
    concurrent_operations: 1_000_000,
    saves_per_hour: 1_000_000,
};
const SAVE_BYTES: i64 = 256 << 20;

#[derive(Debug)]
struct Stats {
    name: String,
    p50: Duration,
    p99: Duration,
    mean: Duration,
    per_sec: f64,
}

fn stats(name: impl Into<String>, mut samples: Vec<Duration>, wall: Duration) -> Stats {
    samples.sort();
    let n = samples.len();
    let total: Duration = samples.iter().sum();
    Stats {
        name: name.into(),
        p50: samples[n * 50 / 100],
        p99: samples[(n * 99 / 100).min(n - 1)],
        mean: total / n as u32,
        per_sec: n as f64 / wall.as_secs_f64(),
    }
}

/// Runs `round(i)` WARMUP times unmeasured, then ROUNDS times measured, one after another.
async fn sequential<F, Fut>(name: &str, round: F) -> Result<Stats, BoxError>
where
    F: Fn(usize) -> Fut,
    Fut: Future<Output = Result<(), BoxError>>,
{
    for i in 0..WARMUP {
        round(i).await?;
    }
    let mut samples = Vec::with_capacity(ROUNDS);
    let start = Instant::now();
    for i in WARMUP..WARMUP + ROUNDS {
        let t = Instant::now();
        round(i).await?;
        samples.push(t.elapsed());
    }
    Ok(stats(name, samples, start.elapsed()))
}

/// CONCURRENT_CLIENTS tasks hammer one tenant (the worst case: every decision contends).
async fn contended<F, Fut>(name: &str, round: F) -> Result<Stats, BoxError>
where
    F: Fn(usize) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<(), BoxError>> + Send,
{
    let round = Arc::new(round);
    let per_client = ROUNDS / CONCURRENT_CLIENTS;
    let start = Instant::now();
    let tasks: Vec<_> = (0..CONCURRENT_CLIENTS)
        .map(|_| {
            let round = round.clone();
            tokio::spawn(async move {
                let mut samples = Vec::with_capacity(per_client);
                for _ in 0..per_client {
                    let t = Instant::now();
                    // Index 0: every client on the same tenant.
                    round(0).await?;
                    samples.push(t.elapsed());
                }
                Ok::<_, BoxError>(samples)
            })
        })
        .collect();
    let mut samples = Vec::with_capacity(ROUNDS);
    for task in tasks {
        samples.extend(task.await??);
    }
    Ok(stats(name, samples, start.elapsed()))
}

fn tenant_of(i: usize) -> String {
    format!("bench-tenant-{}", i % TENANTS)
}

fn save(i: usize) -> QuotaReservation {
    QuotaReservation {
        tenant: tenant_of(i),
        operation: Uuid::new_v4(),
        states: 1,
        bytes: SAVE_BYTES,
        operations: 1,
        saves: 1,
    }
}

/// One round through the `QuotaStore` trait: reserve a save, then commit it with its real size.
async fn store_round(store: &dyn QuotaStore, i: usize) -> Result<(), BoxError> {
    let r = save(i);
    store.reserve(&r, &LIMITS, LEASE).await?;
    store
        .commit(&r.tenant, r.operation, Some(SAVE_BYTES - 1))
        .await?;
    Ok(())
}

// ---- PostgreSQL, counting inside a transaction ---------------------------------------------

const SCHEMA: &str = "
CREATE TABLE tenants (tenant text PRIMARY KEY);
CREATE TABLE states (
    id uuid PRIMARY KEY,
    tenant text NOT NULL REFERENCES tenants,
    size bigint NOT NULL,
    status text NOT NULL
);
CREATE INDEX states_by_tenant_status ON states (tenant, status);
";

async fn pg_round(db: &DatabaseConnection, i: usize) -> Result<(), BoxError> {
    let tenant = tenant_of(i);
    let id = Uuid::new_v4();
    let pg = |sql: &str, values: Vec<sea_orm::Value>| {
        Statement::from_sql_and_values(DbBackend::Postgres, sql, values)
    };

    let txn = db.begin().await?;
    // Serializes decisions of one tenant: without it two transactions both count N and both
    // insert, the race Nova's counting has to close too.
    txn.query_one(pg(
        "SELECT tenant FROM tenants WHERE tenant = $1 FOR UPDATE",
        vec![tenant.clone().into()],
    ))
    .await?;
    let row = txn
        .query_one(pg(
            "SELECT count(*), coalesce(sum(size), 0)::bigint FROM states \
             WHERE tenant = $1 AND status IN ('available', 'saving')",
            vec![tenant.clone().into()],
        ))
        .await?
        .ok_or("count returned no row")?;
    let (count, bytes): (i64, i64) = (row.try_get_by_index(0)?, row.try_get_by_index(1)?);
    if count + 1 > LIMITS.states || bytes + SAVE_BYTES > LIMITS.state_bytes {
        return Err("quota exceeded (limits are set so this never happens)".into());
    }
    txn.execute(pg(
        "INSERT INTO states (id, tenant, size, status) VALUES ($1, $2, $3, 'saving')",
        vec![id.into(), tenant.into(), SAVE_BYTES.into()],
    ))
    .await?;
    txn.commit().await?;
    // The save finished: what "commit" is in the reserve/commit model.
    db.execute(pg(
        "UPDATE states SET status = 'available', size = $2 WHERE id = $1",
        vec![id.into(), (SAVE_BYTES - 1).into()],
    ))
    .await?;
    Ok(())
}

struct BenchDatabase {
    admin: DatabaseConnection,
    name: String,
    db: DatabaseConnection,
}

impl BenchDatabase {
    async fn create() -> Result<Self, BoxError> {
        let admin = Database::connect(PG_ADMIN_URL).await?;
        let name = format!("snapgate_bench_{}", Uuid::new_v4().simple());
        admin
            .execute_unprepared(&format!("CREATE DATABASE {name}"))
            .await?;
        let db = Database::connect(format!("postgres://postgres@127.0.0.1:5432/{name}")).await?;
        db.execute_unprepared(SCHEMA).await?;
        for t in 0..TENANTS {
            db.execute(Statement::from_sql_and_values(
                DbBackend::Postgres,
                "INSERT INTO tenants (tenant) VALUES ($1)",
                vec![tenant_of(t).into()],
            ))
            .await?;
        }
        Ok(Self { admin, name, db })
    }

    async fn drop_database(self) -> Result<(), BoxError> {
        self.db.close().await?;
        self.admin
            .execute_unprepared(&format!("DROP DATABASE {} WITH (FORCE)", self.name))
            .await?;
        Ok(())
    }
}

async fn delete_redis_prefix(prefix: &str) -> Result<(), BoxError> {
    let mut con = redis::Client::open(REDIS_URL)?
        .get_multiplexed_async_connection()
        .await?;
    let mut cursor = 0_u64;
    loop {
        let (next, keys): (u64, Vec<String>) = redis::cmd("SCAN")
            .arg(cursor)
            .arg("MATCH")
            .arg(format!("{prefix}:*"))
            .arg("COUNT")
            .arg(1000)
            .query_async(&mut con)
            .await?;
        if !keys.is_empty() {
            redis::cmd("DEL")
                .arg(&keys)
                .query_async::<()>(&mut con)
                .await?;
        }
        if next == 0 {
            return Ok(());
        }
        cursor = next;
    }
}

fn print_table(title: &str, rows: &[Stats]) {
    println!("\n{title}");
    println!("| store | p50 µs | p99 µs | mean µs | rounds/s |");
    println!("|---|---:|---:|---:|---:|");
    for s in rows {
        let us = |d: Duration| d.as_secs_f64() * 1e6;
        println!(
            "| {} | {:.1} | {:.1} | {:.1} | {:.0} |",
            s.name,
            us(s.p50),
            us(s.p99),
            us(s.mean),
            s.per_sec
        );
    }
}

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    println!(
        "quota check-and-reserve + commit: {ROUNDS} rounds after {WARMUP} warm-up, {TENANTS} tenants; \
         contended: {CONCURRENT_CLIENTS} clients on one tenant"
    );

    let prefix = format!("sgbench-{}", Uuid::new_v4().simple());
    let redis_store: Arc<RedisQuotaStore> = Arc::new(RedisQuotaStore::new(RedisQuotaConfig::new(
        REDIS_URL,
        prefix.as_str(),
    ))?);
    redis_store.connect().await?;
    let memory_store = Arc::new(MemoryQuotaStore::new());
    let pg = BenchDatabase::create().await?;
    let pg_db = Arc::new(pg.db.clone());

    let result = async {
        let mut sequential_rows = Vec::new();
        sequential_rows.push(
            sequential("(a) Redis, Lua scripts", |i| {
                store_round(redis_store.as_ref(), i)
            })
            .await?,
        );
        sequential_rows
            .push(sequential("(b) in-process", |i| store_round(memory_store.as_ref(), i)).await?);
        sequential_rows
            .push(sequential("(c) PostgreSQL count in txn", |i| pg_round(&pg_db, i)).await?);
        print_table("one client, sequential rounds:", &sequential_rows);

        let mut contended_rows = Vec::new();
        let s = redis_store.clone();
        contended_rows.push(
            contended("(a) Redis, Lua scripts", move |i| {
                let s = s.clone();
                async move { store_round(s.as_ref(), i).await }
            })
            .await?,
        );
        let s = memory_store.clone();
        contended_rows.push(
            contended("(b) in-process", move |i| {
                let s = s.clone();
                async move { store_round(s.as_ref(), i).await }
            })
            .await?,
        );
        let db = pg_db.clone();
        contended_rows.push(
            contended("(c) PostgreSQL count in txn", move |i| {
                let db = db.clone();
                async move { pg_round(&db, i).await }
            })
            .await?,
        );
        print_table(
            &format!("{CONCURRENT_CLIENTS} clients, one tenant:"),
            &contended_rows,
        );
        Ok::<_, BoxError>(())
    }
    .await;

    // Clean up whatever happened above.
    delete_redis_prefix(&prefix).await?;
    drop(pg_db);
    pg.drop_database().await?;
    result
}
