//! The Lua scripts behind `create`, `commit`, `touch`, `delete_if_version`
//! and `delete_by_owner`.
//!
//! Each runs as one atomic step on the session key it names in `KEYS[1]`.
//! `create` and `commit` also take the owner's index as `KEYS[2]` when they
//! index a new owner, so the session and its index entry change together;
//! on Redis Cluster those two keys sit in different slots, so the store
//! runs `index_owner` on the index alone first and passes no `KEYS[2]`
//! (see the store's docs). They are sent as `EVALSHA`; a server
//! that has not seen one yet (a restart, a failover, a new cluster node)
//! answers `NOSCRIPT`, and the call is repeated once as `EVAL`, which also
//! caches the script there.

use std::borrow::Cow;

use redis::Cmd;

/// One Lua script, with its SHA-1 worked out once.
#[derive(Debug)]
pub(crate) struct Script {
    source: &'static str,
    sha: String,
}

/// The source of a script: the prelude, then each file in turn.
macro_rules! script {
    ($($file:literal),+) => {
        concat!(include_str!("lua/prelude.lua"), $(include_str!($file)),+)
    };
}

impl Script {
    fn new(source: &'static str) -> Self {
        Self {
            source,
            sha: redis::Script::new(source).get_hash().to_owned(),
        }
    }

    /// Stores a new record unless the key is taken, and indexes its owner:
    /// 1 stored, 0 taken.
    pub(crate) fn create() -> Self {
        Self::new(script!("lua/index.lua", "lua/create.lua"))
    }

    /// Applies `Changes`, the owner included: the new version, or nil for a
    /// missing session.
    pub(crate) fn commit() -> Self {
        Self::new(script!("lua/index.lua", "lua/commit.lua"))
    }

    /// Moves the expiry: 1 live, 0 missing.
    pub(crate) fn touch() -> Self {
        Self::new(script!("lua/touch.lua"))
    }

    /// Claims another library's session record for migration: the
    /// session-kit id it moves to, its bytes and their size.
    #[cfg(feature = "migrate")]
    pub(crate) fn claim_legacy() -> Self {
        // Not a session script: no prelude (its `key` is ours, not theirs).
        Self::new(include_str!("lua/claim_legacy.lua"))
    }

    /// Adds one entry to an owner's index on its own (Cluster): 1.
    pub(crate) fn index_owner() -> Self {
        Self::new(script!("lua/index.lua", "lua/index_owner.lua"))
    }

    /// Ends a session if it still has the named owner: 1 ended, 0 absent,
    /// -1 another owner or none.
    pub(crate) fn end_owned() -> Self {
        Self::new(script!("lua/end_owned.lua"))
    }

    /// Deletes a session if it is still at the version given: 1 deleted,
    /// 0 absent, -1 another version.
    pub(crate) fn delete_if_version() -> Self {
        Self::new(script!("lua/delete_if_version.lua"))
    }

    /// `EVALSHA` of this script on `keys` with `args`.
    pub(crate) fn evalsha(&self, keys: &[&str], args: &[Cow<'_, str>]) -> Cmd {
        Self::invocation("EVALSHA", &self.sha, keys, args)
    }

    /// `EVAL` of this script's source, for a server that lacks it.
    pub(crate) fn eval(&self, keys: &[&str], args: &[Cow<'_, str>]) -> Cmd {
        Self::invocation("EVAL", self.source, keys, args)
    }

    fn invocation(command: &str, script: &str, keys: &[&str], args: &[Cow<'_, str>]) -> Cmd {
        let mut cmd = redis::cmd(command);
        cmd.arg(script).arg(keys.len()).arg(keys);
        for arg in args {
            cmd.arg(arg.as_ref());
        }
        cmd
    }
}

/// The scripts a store runs.
#[derive(Debug)]
pub(crate) struct Scripts {
    pub(crate) create: Script,
    pub(crate) commit: Script,
    pub(crate) touch: Script,
    pub(crate) index_owner: Script,
    pub(crate) end_owned: Script,
    pub(crate) delete_if_version: Script,
}

impl Scripts {
    pub(crate) fn new() -> Self {
        Self {
            create: Script::create(),
            commit: Script::commit(),
            touch: Script::touch(),
            index_owner: Script::index_owner(),
            end_owned: Script::end_owned(),
            delete_if_version: Script::delete_if_version(),
        }
    }
}
