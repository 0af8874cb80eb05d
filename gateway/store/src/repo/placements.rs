//! The placement index (`instance_placements`): one row per instance, the host it was last
//! seen on. Written in batches: a host's inventory is one statement, not one per instance.

use chrono::Utc;
use sea_orm::sea_query::OnConflict;
use sea_orm::ActiveValue::Set;
use sea_orm::{ColumnTrait, DatabaseConnection, EntityTrait, QueryFilter};
use snapgate_core::ports::{Placement, RepoError};
use uuid::Uuid;

use crate::convert::micros;
use crate::entity::instance_placements::{self, Column as P};
use crate::errors::db_error;

/// Rows per statement: far below SQLite's and PostgreSQL's bound-parameter limits (4 per row).
const BATCH: usize = 500;

fn from_row(row: instance_placements::Model) -> Placement {
    Placement {
        instance: row.instance_uuid,
        host: row.host,
        owner_tenant: row.owner_tenant,
    }
}

pub(super) async fn placement(
    db: &DatabaseConnection,
    instance: Uuid,
) -> Result<Option<Placement>, RepoError> {
    Ok(instance_placements::Entity::find_by_id(instance)
        .one(db)
        .await
        .map_err(db_error)?
        .map(from_row))
}

pub(super) async fn on_host(
    db: &DatabaseConnection,
    host: &str,
) -> Result<Vec<Placement>, RepoError> {
    Ok(instance_placements::Entity::find()
        .filter(P::Host.eq(host))
        .all(db)
        .await
        .map_err(db_error)?
        .into_iter()
        .map(from_row)
        .collect())
}

/// Inserts the placements; with `replace`, an existing record of the instance (on any host) is
/// overwritten, else it is kept.
pub(super) async fn record(
    db: &DatabaseConnection,
    placements: &[Placement],
    replace: bool,
) -> Result<(), RepoError> {
    let now = micros(Utc::now());
    for chunk in placements.chunks(BATCH) {
        let rows = chunk.iter().map(|p| instance_placements::ActiveModel {
            instance_uuid: Set(p.instance),
            host: Set(p.host.clone()),
            owner_tenant: Set(p.owner_tenant.clone()),
            updated_at: Set(now),
        });
        let mut conflict = OnConflict::column(P::InstanceUuid);
        if replace {
            conflict.update_columns([P::Host, P::OwnerTenant, P::UpdatedAt]);
        } else {
            conflict.do_nothing();
        }
        instance_placements::Entity::insert_many(rows)
            .on_conflict(conflict)
            .exec_without_returning(db)
            .await
            .map_err(db_error)?;
    }
    Ok(())
}

pub(super) async fn forget(
    db: &DatabaseConnection,
    host: &str,
    instances: &[Uuid],
) -> Result<(), RepoError> {
    for chunk in instances.chunks(BATCH) {
        instance_placements::Entity::delete_many()
            .filter(P::Host.eq(host))
            .filter(P::InstanceUuid.is_in(chunk.iter().copied()))
            .exec(db)
            .await
            .map_err(db_error)?;
    }
    Ok(())
}

/// Every recorded placement, by instance uuid.
pub(super) async fn all(db: &DatabaseConnection) -> Result<Vec<Placement>, RepoError> {
    use sea_orm::QueryOrder;
    Ok(instance_placements::Entity::find()
        .order_by_asc(P::InstanceUuid)
        .all(db)
        .await
        .map_err(db_error)?
        .into_iter()
        .map(from_row)
        .collect())
}
