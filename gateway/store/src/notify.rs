//! Operation ends announced across gateways through PostgreSQL `LISTEN/NOTIFY`.
//!
//! `finish_operation` sends the operation id on [`CHANNEL`] inside its transaction, so the
//! announcement leaves exactly when the end is committed. Each gateway holds one listening
//! connection, from a pool of its own so it never takes a slot of the query pool.

use async_trait::async_trait;
use sea_orm::sqlx::postgres::{PgListener, PgPoolOptions};
use sea_orm::{ConnectionTrait, DatabaseConnection, DatabaseTransaction, Statement};
use snapgate_core::ports::{EventSeqFeed, OperationEnd, OperationEndFeed, RepoError};
use uuid::Uuid;

use crate::errors::{db_error, sqlx_error};

/// The notification channel (per database, so per deployment).
pub(crate) const CHANNEL: &str = "snapgate_operation_ends";

pub(crate) async fn announce_end(txn: &DatabaseTransaction, op: Uuid) -> Result<(), RepoError> {
    let notify = Statement::from_sql_and_values(
        txn.get_database_backend(),
        "SELECT pg_notify($1, $2)",
        [CHANNEL.into(), op.to_string().into()],
    );
    txn.execute(notify).await.map_err(db_error)?;
    Ok(())
}

pub(crate) struct PgOperationEndFeed {
    listener: PgListener,
}

impl PgOperationEndFeed {
    pub async fn listen(db: &DatabaseConnection) -> Result<Self, RepoError> {
        let options = db.get_postgres_connection_pool().connect_options();
        let pool = PgPoolOptions::new()
            .max_connections(1)
            .connect_lazy_with((*options).clone());
        let mut listener = PgListener::connect_with(&pool).await.map_err(sqlx_error)?;
        listener.listen(CHANNEL).await.map_err(sqlx_error)?;
        Ok(Self { listener })
    }
}

#[async_trait]
impl OperationEndFeed for PgOperationEndFeed {
    async fn next(&mut self) -> Result<OperationEnd, RepoError> {
        loop {
            match self.listener.try_recv().await.map_err(sqlx_error)? {
                // The connection dropped and was made again: what was sent meanwhile is lost.
                None => return Ok(OperationEnd::Gap),
                Some(n) => match Uuid::parse_str(n.payload()) {
                    Ok(id) => return Ok(OperationEnd::Ended(id)),
                    Err(_) => tracing::warn!(
                        payload = n.payload(),
                        "ignoring a malformed operation-end notification"
                    ),
                },
            }
        }
    }
}

/// Sequencer announcements (`snapgate_events`, payload the new maximum `seq`), on a listening
/// connection of its own like [`PgOperationEndFeed`].
pub(crate) struct PgEventFeed {
    listener: PgListener,
}

impl PgEventFeed {
    pub async fn listen(db: &DatabaseConnection) -> Result<Self, RepoError> {
        let options = db.get_postgres_connection_pool().connect_options();
        let pool = PgPoolOptions::new()
            .max_connections(1)
            .connect_lazy_with((*options).clone());
        let mut listener = PgListener::connect_with(&pool).await.map_err(sqlx_error)?;
        listener
            .listen(crate::repo::EVENTS_CHANNEL)
            .await
            .map_err(sqlx_error)?;
        Ok(Self { listener })
    }
}

#[async_trait]
impl EventSeqFeed for PgEventFeed {
    async fn next(&mut self) -> Result<Option<i64>, RepoError> {
        loop {
            match self.listener.try_recv().await.map_err(sqlx_error)? {
                None => return Ok(None),
                Some(n) => match n.payload().parse::<i64>() {
                    Ok(seq) => return Ok(Some(seq)),
                    Err(_) => tracing::warn!(
                        payload = n.payload(),
                        "ignoring a malformed event-sequence notification"
                    ),
                },
            }
        }
    }
}
