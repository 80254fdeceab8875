//! PostgreSQL: one pool per service, confined to the service's own schema.
//!
//! Every connection's `search_path` is the service's schema, so its tables (and the
//! platform's `outbox` and `inbox`) live there and no service reads another's.
//! Migrations are embedded: the platform's own (versions below 1000) run first,
//! then the service's (versions 1000 and up), tracked per schema.

use std::borrow::Cow;
use std::str::FromStr;
use std::time::Duration;

use sqlx::migrate::{Migration, Migrator};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{ConnectOptions as _, Connection as _, PgPool};

use crate::config::DatabaseConfig;

/// The platform's own tables: `outbox` and `inbox`.
pub static PLATFORM_MIGRATIONS: Migrator = sqlx::migrate!("./migrations");

/// A pooled connection idle longer than this is pinged before it is handed out.
const CHECK_IDLE_AFTER: Duration = Duration::from_secs(1);

/// The first version a service's own migrations may use.
pub const FIRST_SERVICE_MIGRATION: i64 = 1000;

/// The database could not be reached or prepared.
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    /// The schema name is not a plain lower-case identifier.
    #[error("schema name {0:?} must be lower-case letters, digits and '_'")]
    SchemaName(String),
    /// The `DATABASE_URL` could not be parsed.
    #[error("DATABASE_URL could not be parsed")]
    Url(#[source] sqlx::Error),
    /// A service migration's version collides with the platform's range.
    #[error("service migration {0} must be numbered {FIRST_SERVICE_MIGRATION} or above")]
    MigrationVersion(i64),
    /// Connecting or creating the schema failed.
    #[error("database unavailable: {0}")]
    Connect(#[source] sqlx::Error),
    /// A migration failed.
    #[error("migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
}

/// Connection options for `config`'s database, confined to `schema`.
pub fn connect_options(config: &DatabaseConfig, schema: &str) -> Result<PgConnectOptions, DbError> {
    check_schema_name(schema)?;
    let options = PgConnectOptions::from_str(&config.url)
        .map_err(DbError::Url)?
        .options([("search_path", schema)])
        // Statement text can carry values; keep it out of the logs.
        .disable_statement_logging();
    Ok(options)
}

/// Creates `schema` if missing, runs the platform's and `service_migrations`, and
/// returns a pool whose connections all use `schema`.
pub async fn connect(
    config: &DatabaseConfig,
    schema: &str,
    service_migrations: &Migrator,
) -> Result<PgPool, DbError> {
    let options = connect_options(config, schema)?;
    let mut conn = options.connect().await.map_err(DbError::Connect)?;
    // The name was checked to be a plain identifier, so it is safe to splice.
    sqlx::query(&format!("CREATE SCHEMA IF NOT EXISTS {schema}"))
        .execute(&mut conn)
        .await
        .map_err(DbError::Connect)?;
    migrator_for(service_migrations)?
        .run_direct(&mut conn)
        .await?;
    conn.close().await.map_err(DbError::Connect)?;

    PgPoolOptions::new()
        .max_connections(config.max_connections)
        .acquire_timeout(Duration::from_secs(10))
        // sqlx pings every connection it hands out, a round trip per query
        // that cost routing a tenth of its CPU. A connection in steady use
        // has just answered; only one idle for a while is checked.
        .test_before_acquire(false)
        .before_acquire(|conn, meta| {
            Box::pin(async move {
                if meta.idle_for > CHECK_IDLE_AFTER {
                    conn.ping().await?;
                }
                Ok(true)
            })
        })
        .connect_with(options)
        .await
        .map_err(DbError::Connect)
}

/// The platform's migrations followed by the service's.
fn migrator_for(service: &Migrator) -> Result<Migrator, DbError> {
    if let Some(bad) = service.iter().find(|m| m.version < FIRST_SERVICE_MIGRATION) {
        return Err(DbError::MigrationVersion(bad.version));
    }
    let migrations: Vec<Migration> = PLATFORM_MIGRATIONS
        .iter()
        .chain(service.iter())
        .cloned()
        .collect();
    Ok(Migrator {
        migrations: Cow::Owned(migrations),
        ..Migrator::DEFAULT
    })
}

fn check_schema_name(schema: &str) -> Result<(), DbError> {
    let plain = !schema.is_empty()
        && schema.len() <= 63
        && schema.starts_with(|c: char| c.is_ascii_lowercase())
        && schema
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    if plain {
        Ok(())
    } else {
        Err(DbError::SchemaName(schema.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schema_names_must_be_plain_identifiers() {
        assert!(check_schema_name("cases").is_ok());
        assert!(check_schema_name("cadence_2").is_ok());
        for bad in ["", "Cases", "cases; drop table x", "2cases", "case-s"] {
            assert!(check_schema_name(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn platform_migrations_come_first() -> Result<(), DbError> {
        let combined = migrator_for(&Migrator::DEFAULT)?;
        let versions: Vec<i64> = combined.iter().map(|m| m.version).collect();
        assert_eq!(versions, vec![1, 2, 3]);
        Ok(())
    }
}
