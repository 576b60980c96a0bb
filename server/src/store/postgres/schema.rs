//! The database's schema: the migrations in `server/migrations/`, each
//! applied once, in order, in a transaction of its own, and recorded in
//! `samenop_migrations`. Replicas starting at once wait for each other on
//! the session-level advisory lock `samenop_migrate`, taken on a connection
//! of its own, so each migration is applied exactly once.

use tokio_postgres_rustls::MakeRustlsConnect;

use super::{StoreError, database};

/// Every migration this version knows: version, name, SQL.
pub(super) const MIGRATIONS: &[(i32, &str, &str)] = &[
    (
        1,
        "one table per keyspace",
        include_str!("../../../migrations/0001_keyspaces.sql"),
    ),
    (
        2,
        "leases of the periodic work",
        include_str!("../../../migrations/0002_leases.sql"),
    ),
];

/// The advisory lock migrations are applied under (`samenop_migrate`).
const MIGRATE_LOCK: i64 = 0x7361_6d65_6e6f_7000;

/// Applies the migrations the database lacks.
///
/// # Errors
/// [`StoreError::Unavailable`] when the database cannot be reached;
/// [`StoreError::Backend`] when a migration fails or the database's schema
/// is of a newer samenop.
pub(super) async fn migrate(
    config: &tokio_postgres::Config,
    tls: MakeRustlsConnect,
) -> Result<(), StoreError> {
    let (mut client, connection) = config.connect(tls).await.map_err(database)?;
    let driver = tokio::spawn(async move {
        if let Err(err) = connection.await {
            tracing::warn!(cause = %err, "the migration connection ended");
        }
    });
    let outcome = async {
        // A migration (or the wait for another replica's) may take longer
        // than a statement of the service may.
        client
            .batch_execute("SET statement_timeout = 0")
            .await
            .map_err(database)?;
        client
            .execute("SELECT pg_advisory_lock($1)", &[&MIGRATE_LOCK])
            .await
            .map_err(database)?;
        client
            .batch_execute(
                "CREATE TABLE IF NOT EXISTS samenop_migrations (
                     version integer PRIMARY KEY,
                     name text NOT NULL,
                     applied_at timestamptz NOT NULL DEFAULT now()
                 );
                 COMMENT ON TABLE samenop_migrations IS
                     'The schema migrations of samenop applied to this database (server/migrations/).';",
            )
            .await
            .map_err(database)?;
        let applied: Vec<i32> = client
            .query("SELECT version FROM samenop_migrations ORDER BY version", &[])
            .await
            .map_err(database)?
            .iter()
            .map(|row| row.get(0))
            .collect();
        let known = MIGRATIONS.last().map_or(0, |m| m.0);
        if let Some(newer) = applied.iter().find(|v| **v > known) {
            return Err(StoreError::Backend(format!(
                "the database's schema has migration {newer}, of a newer samenop than this one \
                 (which knows up to {known}): run that version"
            )));
        }
        for (version, name, sql) in MIGRATIONS {
            if applied.contains(version) {
                continue;
            }
            let tx = client.transaction().await.map_err(database)?;
            tx.batch_execute(sql).await.map_err(|e| {
                StoreError::Backend(format!("migration {version} ({name}) failed: {e}"))
            })?;
            tx.execute(
                "INSERT INTO samenop_migrations (version, name) VALUES ($1, $2)",
                &[version, name],
            )
            .await
            .map_err(database)?;
            tx.commit().await.map_err(database)?;
            tracing::info!(version, name, "migration applied");
        }
        client
            .execute("SELECT pg_advisory_unlock($1)", &[&MIGRATE_LOCK])
            .await
            .map_err(database)?;
        Ok(())
    }
    .await;
    drop(client);
    let _ = driver.await;
    outcome
}
