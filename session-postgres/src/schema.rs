//! The table: its validated, quoted name, the statements on it, and the
//! embedded migrations that create it.

use std::{borrow::Cow, future::Future, pin::Pin};

use session_core::{ConfigError, ErrorKind, StoreError};
use sqlx::{migrate::Migrator, Connection, Executor, PgPool, Row};

use crate::error::store_error;

/// The migrations, embedded at build time. Their SQL is a template over the
/// table name (see `migrations/0001_create_sessions.sql`).
///
/// sqlx's own runner is not used to apply them: it records what it applied
/// in one `_sqlx_migrations` table per database, which the app's own sqlx
/// migrations may already use with version numbers of their own, and which
/// cannot tell one session table from another. They are applied by
/// [`migrate`] instead, recorded per table in `session_kit_migrations`.
static MIGRATOR: Migrator = sqlx::migrate!("./migrations");

/// The longest table name part accepted: PostgreSQL cuts identifiers at 63
/// bytes, and index names add a suffix to the table's.
const MAX_NAME_LEN: usize = 48;

/// A lock key no other advisory lock of the app is likely to use ("sesskit"
/// in ASCII), held while migrations run so that app servers starting
/// together migrate one at a time.
const MIGRATION_LOCK: i64 = 0x0073_6573_736b_6974;

/// The table's name, checked and quoted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Table {
    schema: Option<String>,
    name: String,
}

impl Table {
    /// `[schema.]name`, each part a lower-case identifier of at most
    /// [`MAX_NAME_LEN`] bytes.
    ///
    /// Only lower case: PostgreSQL folds unquoted names to lower case, so a
    /// quoted `"Sessions"` would be a different table from the `Sessions`
    /// a person types in psql.
    pub(crate) fn parse(text: &str) -> Result<Self, ConfigError> {
        let bad = |reason: &str| {
            ConfigError::new("table", format!("`{text}` is not a table name: {reason}"))
        };
        let (schema, name) = match text.split_once('.') {
            Some((schema, name)) => (Some(schema), name),
            None => (None, text),
        };
        for part in schema.into_iter().chain([name]) {
            let mut chars = part.chars();
            let starts_well = chars
                .next()
                .is_some_and(|first| first.is_ascii_lowercase() || first == '_');
            if !starts_well
                || !chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
            {
                return Err(bad(
                    "use lower-case letters, digits and `_`, starting with a letter or `_`, \
                     optionally as schema.table",
                ));
            }
            if part.len() > MAX_NAME_LEN {
                return Err(bad(&format!(
                    "each part may be at most {MAX_NAME_LEN} bytes"
                )));
            }
        }
        Ok(Self {
            schema: schema.map(str::to_owned),
            name: name.to_owned(),
        })
    }

    /// The quoted, schema-qualified name of a table `name` beside this one.
    fn qualified(&self, name: &str) -> String {
        match &self.schema {
            Some(schema) => format!("\"{schema}\".\"{name}\""),
            None => format!("\"{name}\""),
        }
    }

    /// The session table, quoted.
    pub(crate) fn quoted(&self) -> String {
        self.qualified(&self.name)
    }

    /// `sql` with the template's names filled in.
    fn fill(&self, sql: &str) -> String {
        sql.replace("{table}", &self.quoted())
            .replace("{owner_index}", &format!("\"{}_owner\"", self.name))
            .replace("{expiry_index}", &format!("\"{}_expires\"", self.name))
    }

    /// The table where migrations are recorded, in the same schema.
    fn migrations_table(&self) -> String {
        self.qualified("session_kit_migrations")
    }

    /// The name migrations are recorded under.
    fn label(&self) -> String {
        match &self.schema {
            Some(schema) => format!("{schema}.{}", self.name),
            None => self.name.clone(),
        }
    }
}

/// The SQL of every migration for `table`, in order, as
/// [`migrate`] would run it: for a DBA who applies them by hand.
pub(crate) fn migration_sql(table: &Table) -> Vec<String> {
    MIGRATOR
        .iter()
        .map(|migration| table.fill(&migration.sql))
        .collect()
}

/// Applies the migrations `table` has not had yet, in one transaction under
/// an advisory lock, and records them.
///
/// # Errors
/// [`ErrorKind::Config`] when a migration recorded as applied has changed
/// since (its checksum differs), and the usual kinds for the database.
// Boxed as a `Send` future here, where its lifetimes are concrete: left to
// the caller, rustc cannot prove the transaction's borrows `Send` for every
// lifetime (rust-lang/rust#102211), and the store's `connect` must be `Send`.
pub(crate) fn migrate<'a>(
    pool: &'a PgPool,
    table: &'a Table,
) -> Pin<Box<dyn Future<Output = Result<(), StoreError>> + Send + 'a>> {
    Box::pin(migrate_now(pool, table))
}

async fn migrate_now(pool: &PgPool, table: &Table) -> Result<(), StoreError> {
    const OPERATION: &str = "migrate";
    let failed = |err| store_error(OPERATION, err);
    let mut connection = pool.acquire().await.map_err(failed)?;
    let mut transaction = connection.begin().await.map_err(failed)?;
    // Released by the commit (or the rollback when this fails).
    sqlx::query("SELECT pg_advisory_xact_lock($1)")
        .bind(MIGRATION_LOCK)
        .execute(&mut *transaction)
        .await
        .map_err(failed)?;
    let record = table.migrations_table();
    let create_record = format!(
        "CREATE TABLE IF NOT EXISTS {record} (
             table_name  text        NOT NULL,
             version     bigint      NOT NULL,
             description text        NOT NULL,
             checksum    bytea       NOT NULL,
             applied_at  timestamptz NOT NULL DEFAULT now(),
             PRIMARY KEY (table_name, version)
         )"
    );
    // A plain `&str` goes by the simple query protocol, which takes several
    // statements at once (a migration has several).
    transaction
        .execute(create_record.as_str())
        .await
        .map_err(failed)?;
    let applied = sqlx::query(&format!(
        "SELECT version, checksum FROM {record} WHERE table_name = $1"
    ))
    .bind(table.label())
    .fetch_all(&mut *transaction)
    .await
    .map_err(failed)?;
    for migration in MIGRATOR.iter() {
        let done = applied
            .iter()
            .find(|row| row.get::<i64, _>("version") == migration.version);
        if let Some(row) = done {
            // The checksum is the template's, so it is the same whatever the
            // table is called.
            if row.get::<Vec<u8>, _>("checksum") != migration.checksum.as_ref() {
                return Err(
                    StoreError::new(ErrorKind::Config, OPERATION).with_source(format!(
                        "migration {} ({}) of table {} was changed after it was applied",
                        migration.version,
                        migration.description,
                        table.label()
                    )),
                );
            }
            continue;
        }
        let sql = table.fill(&migration.sql);
        transaction.execute(sql.as_str()).await.map_err(failed)?;
        sqlx::query(&format!(
            "INSERT INTO {record} (table_name, version, description, checksum) \
             VALUES ($1, $2, $3, $4)"
        ))
        .bind(table.label())
        .bind(migration.version)
        .bind(Cow::as_ref(&migration.description))
        .bind(migration.checksum.as_ref())
        .execute(&mut *transaction)
        .await
        .map_err(failed)?;
    }
    transaction.commit().await.map_err(failed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_checked_and_quoted() {
        assert_eq!(Table::parse("sessions").unwrap().quoted(), "\"sessions\"");
        assert_eq!(
            Table::parse("auth.web_sessions2").unwrap().quoted(),
            "\"auth\".\"web_sessions2\""
        );
        for bad in [
            "",
            "Sessions",
            "1st",
            "a.b.c",
            "s;drop",
            "s\"",
            "a.",
            &"x".repeat(49),
        ] {
            assert_eq!(Table::parse(bad).unwrap_err().key(), "table", "{bad:?}");
        }
    }

    #[test]
    fn the_template_is_filled_everywhere() {
        let table = Table::parse("auth.web").unwrap();
        for sql in migration_sql(&table) {
            assert!(!sql.contains('{'), "{sql}");
            assert!(sql.contains("\"auth\".\"web\""), "{sql}");
        }
    }
}
