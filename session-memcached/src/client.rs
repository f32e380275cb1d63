//! The few Memcached commands the store needs, over the memcache crate's
//! experimental meta-protocol client.
//!
//! `memcache::exp` may change in any minor release, which is why the crate
//! is pinned to `~0.21` and why nothing outside this file touches it.

use std::{io, time::Duration};

use memcache::exp::{
    AsyncMemcache, AsyncMetaClient, Delete, Error, Get, Meta, MutationStatus, Result, Set,
};
use tokio::{
    io::{AsyncBufReadExt, AsyncWriteExt, BufReader},
    net::TcpStream,
};

use crate::{router::StableRendezvous, MemcachedConfig};

/// A session item as read: its bytes, its CAS token and its remaining
/// lifetime in seconds (`-1` when it never expires).
#[derive(Debug)]
pub(crate) struct Item {
    pub(crate) value: Vec<u8>,
    pub(crate) cas: u64,
    pub(crate) ttl: i64,
}

/// The outcome of a write guarded by a CAS token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Guarded<T> {
    /// Done; for a store, with the item's new CAS token.
    Done(T),
    /// Someone else changed the item since the token was read.
    Conflict,
    /// The item is gone.
    Missing,
}

/// The client: pooled connections to every configured server, keys routed
/// by [`StableRendezvous`].
#[derive(Clone)]
pub(crate) struct Client {
    cache: AsyncMemcache,
}

impl Client {
    /// Resolves the servers' addresses; connections open on first use.
    pub(crate) async fn new(config: &MemcachedConfig) -> Result<Self> {
        let cache = AsyncMemcache::builder()
            .router(StableRendezvous)
            .timeout(config.operation_timeout())
            .connect_timeout(config.connect_timeout())
            .max_idle(config.pool_size())
            .max_connections(config.max_connections())
            // A failure must reach the store, never read as a miss: an
            // unreachable session is not an absent one.
            .degrade(false)
            .connect_async(config.servers().iter().map(String::as_str))
            .await?;
        Ok(Self { cache })
    }

    fn meta(&self) -> &AsyncMetaClient {
        self.cache.meta()
    }

    /// `mg <key> v c t`: the item, its CAS token and its remaining lifetime.
    pub(crate) async fn get(&self, key: &str) -> Result<Option<Item>> {
        let read = self
            .meta()
            .run(Get::new(key).meta(Meta::NONE.cas().ttl()))
            .await?;
        if !read.hit() {
            return Ok(None);
        }
        let (Some(value), Some(cas), Some(ttl)) = (read.value, read.item.cas, read.item.ttl) else {
            return Err(Error::Protocol(
                "a hit came without its value, CAS or TTL".to_owned(),
            ));
        };
        Ok(Some(Item { value, cas, ttl }))
    }

    /// `mg <key>`: whether a live item has this key, read without its value.
    pub(crate) async fn exists(&self, key: &str) -> Result<bool> {
        Ok(self.meta().run(Get::new(key).without_value()).await?.hit())
    }

    /// `ms <key> MA T<exptime>`: stores the item unless one exists. Its CAS
    /// token, or `None` when the key was taken.
    pub(crate) async fn add(&self, key: &str, value: &[u8], exptime: u32) -> Result<Option<u64>> {
        let stored = self
            .meta()
            .run(Set::new(key, value).ttl_raw(exptime).add().return_cas())
            .await?;
        Ok(match stored.status {
            MutationStatus::Applied => Some(cas_of(stored.cas)?),
            _ => None,
        })
    }

    /// `ms <key> C<cas> T<exptime>`: replaces the item if nobody changed it
    /// since `cas` was read.
    pub(crate) async fn replace(
        &self,
        key: &str,
        value: &[u8],
        exptime: u32,
        cas: u64,
    ) -> Result<Guarded<u64>> {
        let stored = self
            .meta()
            .run(
                Set::new(key, value)
                    .ttl_raw(exptime)
                    .compare_cas(cas)
                    .return_cas(),
            )
            .await?;
        guarded(stored.status)?.map(|()| cas_of(stored.cas))
    }

    /// `mg <key> T<exptime>`: the meta protocol's touch. It moves the expiry
    /// and keeps the value and the CAS token. Whether the item was there.
    pub(crate) async fn touch(&self, key: &str, exptime: u32) -> Result<bool> {
        let read = self
            .meta()
            .run(Get::new(key).without_value().touch_raw(exptime))
            .await?;
        Ok(read.hit())
    }

    /// `md <key> [C<cas>]`: deletes the item, if nobody changed it since
    /// `cas` was read when a token is given.
    pub(crate) async fn delete(&self, key: &str, cas: Option<u64>) -> Result<Guarded<()>> {
        let mut delete = Delete::new(key);
        if let Some(cas) = cas {
            delete = delete.compare_cas(cas);
        }
        let deleted = self.meta().run(delete).await?;
        guarded(deleted.status)
    }

    /// `mn` on every server.
    pub(crate) async fn noop(&self) -> Result<()> {
        self.meta().noop().await
    }
}

impl<T> Guarded<T> {
    /// The same outcome, carrying `value` when it is `Done`.
    pub(crate) fn with<U>(self, value: U) -> Guarded<U> {
        match self {
            Self::Done(_) => Guarded::Done(value),
            Self::Conflict => Guarded::Conflict,
            Self::Missing => Guarded::Missing,
        }
    }

    fn map<U>(self, done: impl FnOnce(T) -> Result<U>) -> Result<Guarded<U>> {
        Ok(match self {
            Self::Done(value) => Guarded::Done(done(value)?),
            Self::Conflict => Guarded::Conflict,
            Self::Missing => Guarded::Missing,
        })
    }
}

fn guarded(status: MutationStatus) -> Result<Guarded<()>> {
    Ok(match status {
        MutationStatus::Applied => Guarded::Done(()),
        MutationStatus::NotFound => Guarded::Missing,
        MutationStatus::CasMismatch => Guarded::Conflict,
        other => {
            return Err(Error::Protocol(format!(
                "unexpected answer to a guarded write: {other:?}"
            )))
        }
    })
}

fn cas_of(cas: Option<u64>) -> Result<u64> {
    cas.ok_or_else(|| Error::Protocol("a store came back without the CAS it was asked for".into()))
}

/// Memcached's `item_size_max` (its `-I`), from `stats settings`.
///
/// The meta protocol has no stats command and the memcache crate asks only
/// for plain `stats`, which lacks this setting; so this one request is
/// spoken here, on a connection of its own.
pub(crate) async fn item_size_max(server: &str, timeout: Duration) -> io::Result<usize> {
    let ask = async {
        let mut stream = TcpStream::connect(server).await?;
        stream.write_all(b"stats settings\r\n").await?;
        let mut lines = BufReader::new(stream).lines();
        let mut found = None;
        while let Some(line) = lines.next_line().await? {
            if line == "END" {
                return found.ok_or_else(|| invalid("no item_size_max in `stats settings`"));
            }
            if let Some(value) = line.strip_prefix("STAT item_size_max ") {
                found =
                    Some(value.trim().parse().map_err(|_| {
                        invalid("item_size_max in `stats settings` is not a number")
                    })?);
            }
        }
        Err(invalid(
            "the connection closed before `stats settings` ended",
        ))
    };
    tokio::time::timeout(timeout, ask)
        .await
        .unwrap_or_else(|_| Err(io::Error::from(io::ErrorKind::TimedOut)))
}

fn invalid(what: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, what)
}
