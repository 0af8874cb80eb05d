//! The Lua scripts, compiled in. Each is `common.lua` followed by the decision's own file
//! (`check.lua` behind a `no-writes` shebang).
//!
//! Calls send EVALSHA with the SHA1 of the text; on NOSCRIPT (a restarted or flushed script
//! cache, or a replica just promoted in a cluster) the call is sent again as EVAL with the whole
//! text, which also caches it on that node. EVAL rather than SCRIPT LOAD: in a cluster SCRIPT
//! LOAD goes to every master and fails while one of them is down, EVAL only to the key's node.

use redis::aio::ConnectionLike;
use redis::{ErrorKind, FromRedisValue, RedisResult};

const COMMON: &str = include_str!("../lua/common.lua");

#[derive(Debug)]
pub(crate) struct Lua {
    code: String,
    hash: String,
}

impl Lua {
    fn new(body: &str) -> Self {
        Self::from_code(format!("{COMMON}\n{body}"))
    }

    /// A script Redis runs with the `no-writes` flag: Redis 7 refuses any write from it. The
    /// shebang must be the script's first line.
    fn read_only(body: &str) -> Self {
        Self::from_code(format!("#!lua flags=no-writes\n{COMMON}\n{body}"))
    }

    fn from_code(code: String) -> Self {
        let hash = redis::Script::new(&code).get_hash().to_owned();
        Self { code, hash }
    }

    /// Runs the script over `keys` (all in one slot) with `args`.
    pub async fn run<T: FromRedisValue, C: ConnectionLike>(
        &self,
        con: &mut C,
        keys: &[String],
        args: &[String],
    ) -> RedisResult<T> {
        match self
            .cmd("EVALSHA", &self.hash, keys, args)
            .query_async(con)
            .await
        {
            Err(e) if e.kind() == ErrorKind::NoScriptError => {
                self.cmd("EVAL", &self.code, keys, args)
                    .query_async(con)
                    .await
            }
            other => other,
        }
    }

    /// SCRIPT LOAD on a single node, so the first decisions skip the NOSCRIPT round trip.
    pub async fn load<C: ConnectionLike>(&self, con: &mut C) -> RedisResult<()> {
        redis::cmd("SCRIPT")
            .arg("LOAD")
            .arg(&self.code)
            .query_async::<String>(con)
            .await
            .map(|_| ())
    }

    fn cmd(&self, verb: &str, script: &str, keys: &[String], args: &[String]) -> redis::Cmd {
        let mut cmd = redis::cmd(verb);
        cmd.arg(script).arg(keys.len()).arg(keys).arg(args);
        cmd
    }
}

#[derive(Debug)]
pub(crate) struct Scripts {
    pub reserve: Lua,
    pub renew: Lua,
    pub commit: Lua,
    pub release: Lua,
    pub free: Lua,
    pub add_in_use: Lua,
    pub usage: Lua,
    pub rebuild_begin: Lua,
    pub rebuild: Lua,
    /// Read-only: runs with Redis's `no-writes` flag.
    pub check: Lua,
}

impl Scripts {
    pub fn new() -> Self {
        Self {
            reserve: Lua::new(include_str!("../lua/reserve.lua")),
            renew: Lua::new(include_str!("../lua/renew.lua")),
            commit: Lua::new(include_str!("../lua/commit.lua")),
            release: Lua::new(include_str!("../lua/release.lua")),
            free: Lua::new(include_str!("../lua/free.lua")),
            add_in_use: Lua::new(include_str!("../lua/add_in_use.lua")),
            usage: Lua::new(include_str!("../lua/usage.lua")),
            rebuild_begin: Lua::new(include_str!("../lua/rebuild_begin.lua")),
            rebuild: Lua::new(include_str!("../lua/rebuild.lua")),
            check: Lua::read_only(include_str!("../lua/check.lua")),
        }
    }

    pub fn all(&self) -> [&Lua; 10] {
        [
            &self.reserve,
            &self.renew,
            &self.commit,
            &self.release,
            &self.free,
            &self.add_in_use,
            &self.usage,
            &self.rebuild_begin,
            &self.rebuild,
            &self.check,
        ]
    }
}
