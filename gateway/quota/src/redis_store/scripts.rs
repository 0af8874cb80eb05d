//! The Lua scripts, compiled in. Each is `common.lua` followed by the decision's own file.
//!
//! `redis::Script` sends EVALSHA with the SHA1 of the text; on NOSCRIPT (a restarted or
//! flushed script cache) it sends SCRIPT LOAD and the EVALSHA again (checked in redis 0.32.7,
//! `ScriptInvocation::invoke_async`). The reserve call is pipelined with the tenant
//! registration and does the same fallback itself (see `RedisQuotaStore::run_reserve`).

use redis::Script;

const COMMON: &str = include_str!("../lua/common.lua");

#[derive(Debug)]
pub(crate) struct Scripts {
    pub reserve: Script,
    pub renew: Script,
    pub commit: Script,
    pub release: Script,
    pub free: Script,
    pub usage: Script,
    pub rebuild: Script,
    /// Read-only: runs with Redis's `no-writes` flag.
    pub check: Script,
}

impl Scripts {
    pub fn new() -> Self {
        let with_common = |body: &str| Script::new(&format!("{COMMON}\n{body}"));
        Self {
            reserve: with_common(include_str!("../lua/reserve.lua")),
            renew: with_common(include_str!("../lua/renew.lua")),
            commit: with_common(include_str!("../lua/commit.lua")),
            release: with_common(include_str!("../lua/release.lua")),
            free: with_common(include_str!("../lua/free.lua")),
            usage: with_common(include_str!("../lua/usage.lua")),
            rebuild: with_common(include_str!("../lua/rebuild.lua")),
            // The shebang must be the script's first line; Redis 7 then refuses any write.
            check: Script::new(&format!(
                "#!lua flags=no-writes\n{COMMON}\n{}",
                include_str!("../lua/check.lua")
            )),
        }
    }

    pub fn all(&self) -> [&Script; 8] {
        [
            &self.reserve,
            &self.renew,
            &self.commit,
            &self.release,
            &self.free,
            &self.usage,
            &self.rebuild,
            &self.check,
        ]
    }
}
