//! [`LifecycleStore`] on sea-orm: a state's edits and expiry (issue 12, point 1).

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sea_orm::sea_query::Expr;
use sea_orm::{
    ColumnTrait, Condition, DbErr, EntityTrait, QueryFilter, QueryOrder, QuerySelect, SqlErr,
};
use snapgate_core::ports::{LifecycleStore, PatchOutcome, RepoError, StatePatch};
use snapgate_core::{State, StateStatus};
use uuid::Uuid;

use super::SeaRepository;
use crate::convert::{micros, state_from_row};
use crate::entity::instance_states;
use crate::errors::db_error;

use instance_states::Column as S;

/// The statuses in which no operation is on a state: it may be edited or expire.
const AT_REST: [&str; 2] = ["available", "error"];

#[async_trait]
impl LifecycleStore for SeaRepository {
    async fn update_state(
        &self,
        instance: Uuid,
        state: Uuid,
        patch: &StatePatch,
        now: DateTime<Utc>,
    ) -> Result<PatchOutcome, RepoError> {
        let _gate = self.write_gate().await;
        let now = micros(now);
        // One statement: the checks (no operation on the state, not expired) and the change
        // cannot be separated by a delete or an expiry starting in between.
        let mut update = instance_states::Entity::update_many()
            .col_expr(S::UpdatedAt, Expr::value(now))
            .filter(S::Uuid.eq(state))
            .filter(S::InstanceUuid.eq(instance))
            .filter(S::Status.is_in(AT_REST));
        if let Some(name) = &patch.name {
            update = update.col_expr(S::Name, Expr::value(name.clone()));
        }
        if let Some(description) = &patch.description {
            update = update.col_expr(S::Description, Expr::value(description.clone()));
        }
        if let Some(expires_at) = &patch.expires_at {
            update = update
                .col_expr(S::ExpiresAt, Expr::value(expires_at.map(micros)))
                .filter(
                    Condition::any()
                        .add(S::ExpiresAt.is_null())
                        .add(S::ExpiresAt.gt(now)),
                );
        }
        let changed = match update.exec(&self.db).await {
            Ok(result) => result.rows_affected,
            Err(e) if is_unique_violation(&e) => {
                return Err(RepoError::DuplicateName(
                    patch.name.clone().unwrap_or_default(),
                ))
            }
            Err(e) => return Err(db_error(e)),
        };
        let row = instance_states::Entity::find_by_id(state)
            .filter(S::InstanceUuid.eq(instance))
            .one(&self.db)
            .await
            .map_err(db_error)?
            .ok_or(RepoError::NotFound)?;
        let current = state_from_row(row)?;
        if changed == 1 {
            return Ok(PatchOutcome::Updated(Box::new(current)));
        }
        // Why nothing matched, from the row as it is now.
        if !matches!(current.status, StateStatus::Available | StateStatus::Error) {
            return Err(RepoError::WrongStatus(current.status));
        }
        if patch.expires_at.is_some() && current.expires_at.is_some_and(|at| at <= now) {
            return Ok(PatchOutcome::Expired);
        }
        // The state came back to rest between the statement and the read: report it busy as
        // it was; the client may try again.
        Err(RepoError::WrongStatus(StateStatus::Deleting))
    }

    async fn expired_states(
        &self,
        now: DateTime<Utc>,
        limit: u64,
    ) -> Result<Vec<State>, RepoError> {
        instance_states::Entity::find()
            .filter(S::ExpiresAt.lte(micros(now)))
            .filter(S::Status.is_in(AT_REST))
            .order_by_asc(S::ExpiresAt)
            .order_by_asc(S::Uuid)
            .limit(limit)
            .all(&self.db)
            .await
            .map_err(db_error)?
            .into_iter()
            .map(state_from_row)
            .collect()
    }
}

/// The `(instance, name)` unique index refused the change: the name is taken.
pub(super) fn is_unique_violation(e: &DbErr) -> bool {
    matches!(e.sql_err(), Some(SqlErr::UniqueConstraintViolation(_)))
}
