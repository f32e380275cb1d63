//! The Lua scripts behind `create`, `commit` and `touch`.
//!
//! Each runs as one atomic step on the one key it names in `KEYS[1]`, so it
//! also runs unchanged on Redis Cluster. They are sent as `EVALSHA`; a server
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

macro_rules! script {
    ($file:literal) => {
        concat!(include_str!("lua/prelude.lua"), include_str!($file))
    };
}

impl Script {
    fn new(source: &'static str) -> Self {
        Self {
            source,
            sha: redis::Script::new(source).get_hash().to_owned(),
        }
    }

    /// Stores a new record unless the key is taken: 1 stored, 0 taken.
    pub(crate) fn create() -> Self {
        Self::new(script!("lua/create.lua"))
    }

    /// Applies `Changes`: the new version, or nil for a missing session.
    pub(crate) fn commit() -> Self {
        Self::new(script!("lua/commit.lua"))
    }

    /// Moves the expiry: 1 live, 0 missing.
    pub(crate) fn touch() -> Self {
        Self::new(script!("lua/touch.lua"))
    }

    /// `EVALSHA` of this script on `key` with `args`.
    pub(crate) fn evalsha(&self, key: &str, args: &[Cow<'_, str>]) -> Cmd {
        Self::invocation("EVALSHA", &self.sha, key, args)
    }

    /// `EVAL` of this script's source, for a server that lacks it.
    pub(crate) fn eval(&self, key: &str, args: &[Cow<'_, str>]) -> Cmd {
        Self::invocation("EVAL", self.source, key, args)
    }

    fn invocation(command: &str, script: &str, key: &str, args: &[Cow<'_, str>]) -> Cmd {
        let mut cmd = redis::cmd(command);
        cmd.arg(script).arg(1).arg(key);
        for arg in args {
            cmd.arg(arg.as_ref());
        }
        cmd
    }
}

/// The three scripts a store runs.
#[derive(Debug)]
pub(crate) struct Scripts {
    pub(crate) create: Script,
    pub(crate) commit: Script,
    pub(crate) touch: Script,
}

impl Scripts {
    pub(crate) fn new() -> Self {
        Self {
            create: Script::create(),
            commit: Script::commit(),
            touch: Script::touch(),
        }
    }
}
