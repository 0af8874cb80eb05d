//! Idempotency keys: a claim per (tenant, key) while the first request runs, then its answer,
//! written in the transaction of the operation it accepted (`store_answer`).
//!
//! Every step is one conditional statement, so two gateways racing for a key cannot both win:
//! `INSERT … ON CONFLICT DO NOTHING` makes the claim, an `UPDATE` guarded by the takeover
//! condition replaces an expired or abandoned row, and the answer is written only where the
//! row still carries the claim's token.

use chrono::{DateTime, Utc};
use sea_orm::sea_query::{Expr, OnConflict, Order, Query};
use sea_orm::ActiveValue::Set;
use sea_orm::{
    ColumnTrait, Condition, ConnectionTrait, DatabaseConnection, EntityTrait, QueryFilter,
};
use snapgate_core::ports::{IdempotencyClaim, IdempotencyRecord, KeyClaim, KeyedAnswer, RepoError};

use super::SeaRepository;
use crate::convert::micros;
use crate::entity::idempotency_keys;
use crate::errors::db_error;

use idempotency_keys::Column as K;

/// A row can vanish between a failed claim and its read (purged, or released by its holder);
/// the claim is then tried again. More rounds than this means the key is fought over.
const CLAIM_ATTEMPTS: usize = 5;

pub(super) async fn claim(
    repo: &SeaRepository,
    claim: &IdempotencyClaim,
    stale_before: DateTime<Utc>,
) -> Result<KeyClaim, RepoError> {
    for _ in 0..CLAIM_ATTEMPTS {
        {
            let _gate = repo.write_gate().await;
            if insert_claim(&repo.db, claim).await?
                || take_over(&repo.db, claim, stale_before).await?
            {
                return Ok(KeyClaim::Claimed);
            }
        }
        if let Some(row) = find(&repo.db, &claim.tenant, &claim.key).await? {
            return Ok(KeyClaim::Held(IdempotencyRecord {
                fingerprint: row.fingerprint,
                answer: row.answer,
                claimed_at: row.claimed_at,
            }));
        }
    }
    Err(RepoError::IdempotencyKeyTaken)
}

fn claim_row(claim: &IdempotencyClaim) -> idempotency_keys::ActiveModel {
    idempotency_keys::ActiveModel {
        tenant_id: Set(claim.tenant.clone()),
        idempotency_key: Set(claim.key.clone()),
        fingerprint: Set(claim.fingerprint.clone()),
        claim_token: Set(claim.token),
        claimed_at: Set(micros(claim.claimed_at)),
        expires_at: Set(micros(claim.expires_at)),
        operation_uuid: Set(None),
        answer: Set(None),
    }
}

/// A new row for the key; false when one exists.
async fn insert_claim(
    db: &impl ConnectionTrait,
    claim: &IdempotencyClaim,
) -> Result<bool, RepoError> {
    let inserted = idempotency_keys::Entity::insert(claim_row(claim))
        .on_conflict(
            OnConflict::columns([K::TenantId, K::IdempotencyKey])
                .do_nothing()
                .to_owned(),
        )
        .exec_without_returning(db)
        .await
        .map_err(db_error)?;
    Ok(inserted == 1)
}

/// Replaces a row that no longer binds its key: expired (answered or not), or a claim made
/// before `stale_before` whose request never answered (it died; had it accepted anything, the
/// answer would be there, written in the same transaction).
async fn take_over(
    db: &impl ConnectionTrait,
    claim: &IdempotencyClaim,
    stale_before: DateTime<Utc>,
) -> Result<bool, RepoError> {
    let replaceable = Condition::any()
        .add(K::ExpiresAt.lte(micros(claim.claimed_at)))
        .add(
            Condition::all()
                .add(K::Answer.is_null())
                .add(K::ClaimedAt.lt(micros(stale_before))),
        );
    let changed = idempotency_keys::Entity::update_many()
        .col_expr(K::Fingerprint, Expr::value(claim.fingerprint.clone()))
        .col_expr(K::ClaimToken, Expr::value(claim.token))
        .col_expr(K::ClaimedAt, Expr::value(micros(claim.claimed_at)))
        .col_expr(K::ExpiresAt, Expr::value(micros(claim.expires_at)))
        .col_expr(K::OperationUuid, Expr::value(Option::<uuid::Uuid>::None))
        .col_expr(K::Answer, Expr::value(Option::<String>::None))
        .filter(K::TenantId.eq(claim.tenant.as_str()))
        .filter(K::IdempotencyKey.eq(claim.key.as_str()))
        .filter(replaceable)
        .exec(db)
        .await
        .map_err(db_error)?
        .rows_affected;
    Ok(changed == 1)
}

async fn find(
    db: &DatabaseConnection,
    tenant: &str,
    key: &str,
) -> Result<Option<idempotency_keys::Model>, RepoError> {
    idempotency_keys::Entity::find_by_id((tenant.to_owned(), key.to_owned()))
        .one(db)
        .await
        .map_err(db_error)
}

/// Writes the answer in the caller's transaction, where the claim still holds the key. A claim
/// purged meanwhile (a key lifetime shorter than the request) is written anew if nobody took
/// the key since; otherwise `IdempotencyKeyTaken`, and the caller rolls back its operation.
pub(super) async fn store_answer(
    txn: &impl ConnectionTrait,
    answer: &KeyedAnswer,
) -> Result<(), RepoError> {
    let claim = &answer.claim;
    let changed = idempotency_keys::Entity::update_many()
        .col_expr(K::Answer, Expr::value(answer.answer.clone()))
        .col_expr(K::OperationUuid, Expr::value(answer.operation))
        .col_expr(K::ExpiresAt, Expr::value(micros(answer.expires_at)))
        .filter(K::TenantId.eq(claim.tenant.as_str()))
        .filter(K::IdempotencyKey.eq(claim.key.as_str()))
        .filter(K::ClaimToken.eq(claim.token))
        .filter(K::Answer.is_null())
        .exec(txn)
        .await
        .map_err(db_error)?
        .rows_affected;
    if changed == 1 {
        return Ok(());
    }
    let mut row = claim_row(claim);
    row.answer = Set(Some(answer.answer.clone()));
    row.operation_uuid = Set(Some(answer.operation));
    row.expires_at = Set(micros(answer.expires_at));
    let inserted = idempotency_keys::Entity::insert(row)
        .on_conflict(
            OnConflict::columns([K::TenantId, K::IdempotencyKey])
                .do_nothing()
                .to_owned(),
        )
        .exec_without_returning(txn)
        .await
        .map_err(db_error)?;
    if inserted == 1 {
        Ok(())
    } else {
        Err(RepoError::IdempotencyKeyTaken)
    }
}

/// Deletes the claim if it still holds the key unanswered. The caller holds the write gate.
pub(super) async fn release(
    db: &DatabaseConnection,
    claim: &IdempotencyClaim,
) -> Result<(), RepoError> {
    idempotency_keys::Entity::delete_many()
        .filter(K::TenantId.eq(claim.tenant.as_str()))
        .filter(K::IdempotencyKey.eq(claim.key.as_str()))
        .filter(K::ClaimToken.eq(claim.token))
        .filter(K::Answer.is_null())
        .exec(db)
        .await
        .map_err(db_error)?;
    Ok(())
}

/// Deletes at most `batch` rows expired at `now`, soonest expired first (the `expires_at`
/// index finds them). The caller holds the write gate.
pub(super) async fn purge(
    db: &DatabaseConnection,
    now: DateTime<Utc>,
    batch: u64,
) -> Result<u64, RepoError> {
    let expired = Query::select()
        .columns([K::TenantId, K::IdempotencyKey])
        .from(idempotency_keys::Entity)
        .and_where(K::ExpiresAt.lte(micros(now)))
        .order_by(K::ExpiresAt, Order::Asc)
        .limit(batch)
        .to_owned();
    let deleted = idempotency_keys::Entity::delete_many()
        .filter(
            Expr::tuple([
                Expr::col(K::TenantId).into(),
                Expr::col(K::IdempotencyKey).into(),
            ])
            .in_subquery(expired),
        )
        .exec(db)
        .await
        .map_err(db_error)?;
    Ok(deleted.rows_affected)
}
