//! # session-postgres
//!
//! The PostgreSQL backend of session-kit: [`PostgresStore`], sessions in
//! the database the app already runs, on [sqlx](https://docs.rs/sqlx)
//! (tokio, rustls).
//!
//! A disk database is slower than Redis for the store every request reads,
//! but it is durable and already paid for, which makes it the cheapest
//! secondary behind Redis:
//!
//! | role | what it costs | what it gives |
//! |---|---|---|
//! | the only store | one statement per session read or write | sessions that survive any restart |
//! | standby behind Redis (`FailoverStore`, standby mode) | nothing while Redis is up | new sessions keep working while Redis is down |
//! | mirror of Redis (`FailoverStore`, mirror mode) | one more read per load and one more write per commit (BENCHMARKS.md) | no acknowledged write lost when Redis dies |
//!
//! ## Data model
//! One row per session, in a table you name (default `sessions`), created
//! by embedded migrations on [`connect`](PostgresStore::connect):
//!
//! ```text
//!  key_prefix | id                     | data                        | created_at | expires_at | version | owner   | owner_until
//! ------------+------------------------+-----------------------------+------------+------------+---------+---------+------------
//!  session:   | 3q2-7wD9mYqJ0b1aXjV5Lg | {"n": "3", "user": "\"ada\""} | …        | …          |       3 | user-42 | …
//! ```
//!
//! `data` is `jsonb`: each key maps to its value's JSON text, kept byte for
//! byte, as Redis keeps it in a hash field. Another service reads a value
//! with `SELECT (data->>'user')::jsonb FROM sessions WHERE id = '…'`. Owners are an
//! indexed column: "log this user out everywhere" is one indexed `DELETE`.
//!
//! ## The contract, on PostgreSQL
//! - **`load`** and **`stamp`** are one `SELECT` that filters on
//!   `expires_at`, so an expired row is never served, swept or not.
//! - **`create`** is one `INSERT … ON CONFLICT`: it never overwrites a live
//!   row, and replaces an expired one in the same statement.
//! - **`commit`** is one `UPDATE … SET data = (data - removed) || set,
//!   version = version + 1 … RETURNING version`. Row locks order commits of
//!   one session, each applied to the result of the one before, so two
//!   requests that change different keys at once both survive. A commit to
//!   an expired or deleted session answers `Missing` and writes nothing.
//! - **`touch`** moves `expires_at` and nothing else.
//! - **`delete_if_version`** and **`delete_by_owner`** are one `DELETE`
//!   each, atomic with respect to commits.
//! - A background **sweep** deletes expired rows in bounded batches.
//!
//! Times are the app servers' clocks, passed with every statement, never
//! the database's `now()`: see [`PostgresStore`].
//!
//! ## Errors
//! | PostgreSQL says | kind |
//! |---|---|
//! | connection refused or reset, shutting down, starting up, read-only standby, too many connections | `Unavailable` |
//! | no answer within the operation timeout (default 500 ms), `statement_timeout` | `Timeout` |
//! | a row that is not a session | `Corrupt` |
//! | a value past the server's limits | `TooLarge` |
//! | bad credentials, no such database, no such table (migrations off), no privilege | `Config` |
//!
//! ## Caveats
//! - **Clocks.** Keep the app servers' clocks in sync, as for any expiry
//!   shared between machines.
//! - **Migrations** are recorded per table in `session_kit_migrations`
//!   (not sqlx's `_sqlx_migrations`, which the app's own migrations may
//!   use). Turn them off with
//!   [`with_migrate(false)`](PostgresConfig::with_migrate) where the app's
//!   role may not change the schema, and apply
//!   [`PostgresStore::migrations`] another way.
//! - **TLS**: rustls, chosen by the URL (`?sslmode=require`,
//!   `verify-full`), with the webpki root certificates.
//!
//! ## Features
//! - `serde` (off): [`PostgresConfig`] deserializes from a config block.
#![forbid(unsafe_code)]
// On docs.rs (nightly, `--cfg docsrs`) each feature-gated item shows the
// feature it needs.
#![cfg_attr(docsrs, feature(doc_cfg))]

#[cfg(feature = "serde")]
mod block;
mod config;
mod error;
mod schema;
mod store;
mod sweep;

pub use config::PostgresConfig;
pub use store::PostgresStore;
