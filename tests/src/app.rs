//! `TestApp`: the real gateway process, started per test with its own data directory, its own
//! database (a SQLite file or a fresh PostgreSQL database) and its own Redis key prefix.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{json, Value};
use snapgate_store::testing::TestDatabase;
use tokio::process::{Child, Command};

/// The demo cloud's instances (see `deploy/demo-node.xml`).
pub mod demo {
    pub const WEB: &str = "5a9e0c1e-0000-4000-8000-000000000001";
    pub const DB: &str = "5a9e0c1e-0000-4000-8000-000000000002";
    /// Owned by Nova project [`NOVA_TENANT`].
    pub const NOVA_APP: &str = "5a9e0c1e-0000-4000-8000-000000000003";
    pub const RAW_DISK: &str = "5a9e0c1e-0000-4000-8000-000000000004";
    pub const GPU: &str = "5a9e0c1e-0000-4000-8000-000000000005";
    pub const STOPPED: &str = "5a9e0c1e-0000-4000-8000-000000000006";
    pub const TENANT: &str = "demo";
    pub const NOVA_TENANT: &str = "11111111-1111-1111-1111-111111111111";
}

/// The HS256 secret every test gateway accepts, for tests that mint their own JWTs (at least
/// 32 bytes: a shorter one is refused at start).
pub const JWT_SECRET: &str = "snapgate-test-secret-of-32-bytes+";
pub const JWT_ISSUER: &str = "snapgate-tests";
pub const JWT_AUDIENCE: &str = "snapgate";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Db {
    Sqlite,
    Postgres,
}

/// Shared resources a test may hand to several gateways (replicas).
pub struct Shared {
    pub db_url: String,
    pub redis_prefix: Option<String>,
    /// Gateways talk to the loopback Redis Cluster (`crate::cluster`) instead of the single node.
    pub redis_cluster: bool,
    _pg: Option<TestDatabase>,
    _dir: tempfile::TempDir,
}

impl Shared {
    pub async fn new(db: Db, redis: bool) -> Shared {
        let dir = tempfile::tempdir().expect("temp dir");
        let (db_url, pg) = match db {
            Db::Sqlite => (
                format!(
                    "sqlite://{}?mode=rwc",
                    dir.path().join("snapgate.db").display()
                ),
                None,
            ),
            Db::Postgres => {
                let pg = TestDatabase::create()
                    .await
                    .expect("PostgreSQL at 127.0.0.1:5432 must be running for the tests");
                (pg.url().to_owned(), Some(pg))
            }
        };
        let redis_prefix = redis.then(|| format!("sgtest-{}", uuid::Uuid::new_v4().simple()));
        Shared {
            db_url,
            redis_prefix,
            redis_cluster: false,
            _pg: pg,
            _dir: dir,
        }
    }
}

impl Shared {
    /// Resources whose quotas live on the loopback Redis Cluster (the caller holds
    /// `cluster::ClusterLock`).
    pub async fn on_redis_cluster(db: Db) -> Shared {
        Shared {
            redis_cluster: true,
            ..Shared::new(db, true).await
        }
    }
}

pub struct TestAppBuilder {
    db: Db,
    redis: bool,
    extra: String,
    hosts: Vec<(String, String)>,
    options: StartOptions,
}

/// How a gateway is started beyond its configuration text.
#[derive(Debug, Clone, Default)]
struct StartOptions {
    /// `hosts.state_dir` per host name.
    state_dirs: std::collections::HashMap<String, String>,
    /// Start the gateway in its own mount namespace with an empty tmpfs over this directory,
    /// so it cannot see anything there (`unshare --mount`).
    hidden_dir: Option<PathBuf>,
    /// Files written beside the config file before the start: (relative path, contents).
    files: Vec<(PathBuf, Vec<u8>)>,
}

impl TestAppBuilder {
    /// A file beside the gateway's config file (`path` relative to its directory), written
    /// before the gateway starts: for config entries that name files relatively.
    pub fn file(mut self, path: &str, contents: &[u8]) -> Self {
        self.options
            .files
            .push((PathBuf::from(path), contents.to_vec()));
        self
    }

    pub fn postgres(mut self) -> Self {
        self.db = Db::Postgres;
        self
    }
    pub fn db(mut self, db: Db) -> Self {
        self.db = db;
        self
    }
    pub fn redis(mut self) -> Self {
        self.redis = true;
        self
    }
    /// Extra TOML appended to the generated config (top-level keys first, then sections).
    pub fn config(mut self, toml: &str) -> Self {
        self.extra.push_str(toml);
        self.extra.push('\n');
        self
    }
    pub fn host(mut self, name: &str, uri: &str) -> Self {
        self.hosts.push((name.into(), uri.into()));
        self
    }
    /// A host with its own state directory (`hosts.state_dir`).
    pub fn host_with_state_dir(mut self, name: &str, uri: &str, state_dir: &Path) -> Self {
        self.options
            .state_dirs
            .insert(name.into(), state_dir.display().to_string());
        self.host(name, uri)
    }
    /// Runs the gateway where `dir` is covered by an empty tmpfs of its own mount namespace:
    /// whatever is there, the gateway process cannot see or touch it.
    pub fn hide_dir(mut self, dir: &Path) -> Self {
        self.options.hidden_dir = Some(dir.to_path_buf());
        self
    }

    pub async fn start(self) -> TestApp {
        let shared = Shared::new(self.db, self.redis).await;
        TestApp::start_inner(
            std::sync::Arc::new(shared),
            &self.extra,
            &self.hosts,
            self.options,
        )
        .await
    }
}

/// A running gateway.
pub struct TestApp {
    pub url: String,
    /// The operator's listener (`api.admin_listen`): `/metrics`, readiness detail.
    pub admin_url: String,
    /// The cloud operator (static token with `operator = true`, role admin, tenant demo).
    pub admin: String,
    /// The demo tenant's admin: no operator scope (kept as a `sha256:` digest in the file).
    pub tenant_admin: String,
    pub member: String,
    pub reader: String,
    /// Member and reader of the Nova tenant that owns `demo::NOVA_APP`.
    pub other_member: String,
    pub other_reader: String,
    pub http: reqwest::Client,
    pub shared: std::sync::Arc<Shared>,
    pub data_dir: PathBuf,
    config_path: PathBuf,
    child: Option<Child>,
    hidden_dir: Option<PathBuf>,
    _dir: tempfile::TempDir,
}

/// The repository root (for `deploy/demo-node.xml` and `plugins/dist`).
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ has a parent")
        .to_path_buf()
}

pub fn demo_host_uri() -> String {
    format!(
        "test://{}",
        repo_root().join("deploy/demo-node.xml").display()
    )
}

/// The `snapgate` binary built beside the test executables.
pub fn snapgate_bin() -> PathBuf {
    let exe = std::env::current_exe().expect("current exe");
    let dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("target/<profile>/deps");
    let bin = dir.join("snapgate");
    assert!(
        bin.exists(),
        "{} is missing: build it with `cargo build -p snapgate` (the test command does)",
        bin.display()
    );
    bin
}

impl TestApp {
    pub fn builder() -> TestAppBuilder {
        TestAppBuilder {
            db: Db::Sqlite,
            redis: false,
            extra: String::new(),
            hosts: Vec::new(),
            options: StartOptions::default(),
        }
    }

    /// Starts a gateway on `shared` resources (a second replica shares the first's).
    pub async fn start_with(
        shared: std::sync::Arc<Shared>,
        extra: &str,
        hosts: &[(String, String)],
    ) -> TestApp {
        TestApp::start_inner(shared, extra, hosts, StartOptions::default()).await
    }

    async fn start_inner(
        shared: std::sync::Arc<Shared>,
        extra: &str,
        hosts: &[(String, String)],
        options: StartOptions,
    ) -> TestApp {
        let dir = tempfile::tempdir().expect("temp dir");
        let data_dir = dir.path().join("data");
        std::fs::create_dir_all(&data_dir).unwrap();
        let port = free_port();
        let admin_port = free_port();
        let (admin, tenant_admin, member, reader) = (token(), token(), token(), token());
        let (other_member, other_reader) = (token(), token());
        let token_file = dir.path().join("tokens.toml");
        let mut tokens = format!(
            "[tokens.\"{admin}\"]\ntenant = \"{}\"\nrole = \"admin\"\noperator = true\n",
            demo::TENANT
        );
        tokens.push_str(&format!(
            "[tokens.\"sha256:{}\"]\ntenant = \"{}\"\nrole = \"admin\"\n",
            sha256_hex(&tenant_admin),
            demo::TENANT
        ));
        for (t, tenant, role) in [
            (&member, demo::TENANT, "member"),
            (&reader, demo::TENANT, "reader"),
            (&other_member, demo::NOVA_TENANT, "member"),
            (&other_reader, demo::NOVA_TENANT, "reader"),
        ] {
            tokens.push_str(&format!(
                "[tokens.\"{t}\"]\ntenant = \"{tenant}\"\nrole = \"{role}\"\n"
            ));
        }
        std::fs::write(&token_file, tokens).unwrap();

        let mut config = format!(
            "listen = \"127.0.0.1:{port}\"\ndata_dir = \"{}\"\n",
            data_dir.display()
        );
        let (top, sections) = split_extra(extra);
        config.push_str(&top);
        config.push_str(&format!("[database]\nurl = \"{}\"\n", shared.db_url));
        if let Some(prefix) = &shared.redis_prefix {
            let (url, cluster) = if shared.redis_cluster {
                (crate::cluster::seed_urls(), true)
            } else {
                ("redis://127.0.0.1:6379".to_owned(), false)
            };
            config.push_str(&format!(
                "[redis]\nurl = \"{url}\"\ncluster = {cluster}\nkey_prefix = \"{prefix}\"\n"
            ));
        }
        config.push_str(&format!(
            "[auth]\ntoken_file = \"{}\"\n[auth.jwt]\nhs256_secret = \"{JWT_SECRET}\"\nissuer = \"{JWT_ISSUER}\"\naudience = \"{JWT_AUDIENCE}\"\n[auth.jwt.operator]\nclaim = \"/system/all\"\nvalue = \"true\"\n",
            token_file.display()
        ));
        let hosts: Vec<(String, String)> = if hosts.is_empty() {
            vec![("demo".into(), demo_host_uri())]
        } else {
            hosts.to_vec()
        };
        for (name, uri) in hosts {
            config.push_str(&format!("[[hosts]]\nname = \"{name}\"\nuri = \"{uri}\"\n"));
            if let Some(dir) = options.state_dirs.get(&name) {
                config.push_str(&format!("state_dir = \"{dir}\"\n"));
            }
        }
        // Every test gateway has an operator listener; a test's own [api] keys join it.
        let admin_listen = format!("admin_listen = \"127.0.0.1:{admin_port}\"\n");
        if sections.contains("[api]\n") {
            config.push_str(&sections.replacen("[api]\n", &format!("[api]\n{admin_listen}"), 1));
        } else {
            config.push_str(&sections);
            config.push_str(&format!("[api]\n{admin_listen}"));
        }
        let config_path = dir.path().join("snapgate.toml");
        std::fs::write(&config_path, &config).unwrap();
        for (path, contents) in &options.files {
            let path = dir.path().join(path);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, contents).unwrap();
        }

        let mut app = TestApp {
            url: format!("http://127.0.0.1:{port}"),
            admin_url: format!("http://127.0.0.1:{admin_port}"),
            admin,
            tenant_admin,
            member,
            reader,
            other_member,
            other_reader,
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(120))
                .build()
                .unwrap(),
            shared,
            data_dir,
            config_path,
            child: None,
            hidden_dir: options.hidden_dir,
            _dir: dir,
        };
        app.spawn().await;
        app
    }

    async fn spawn(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.data_dir.join("gateway.log"))
            .unwrap();
        let mut command = match &self.hidden_dir {
            None => Command::new(snapgate_bin()),
            Some(hidden) => {
                // unshare and sh exec in place: the child's pid is the gateway's.
                let mut c = Command::new("unshare");
                c.args(["--mount", "--propagation", "private", "--", "sh", "-c"])
                    .arg("mount -t tmpfs snapgate-hidden \"$0\" && exec \"$@\"")
                    .arg(hidden)
                    .arg(snapgate_bin());
                c
            }
        };
        let child = command
            .arg("serve")
            .arg("--config")
            .arg(&self.config_path)
            .env("RUST_LOG", "info,snapgate=debug")
            .env_remove("SNAPGATE_URL")
            .stdout(Stdio::null())
            .stderr(log)
            .kill_on_drop(true)
            .spawn()
            .expect("start snapgate");
        self.child = Some(child);
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        loop {
            if let Ok(r) = self.http.get(format!("{}/healthz", self.url)).send().await {
                if r.status() == StatusCode::OK {
                    return;
                }
            }
            if let Some(status) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                panic!("snapgate exited with {status} at start:\n{}", self.log());
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "snapgate did not become healthy:\n{}",
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The configuration file this gateway runs with.
    pub fn config_path(&self) -> &Path {
        &self.config_path
    }

    /// The gateway's log so far (for assertion messages).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.data_dir.join("gateway.log")).unwrap_or_default()
    }

    /// `kill -9` the gateway.
    pub async fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            c.start_kill().ok();
            c.wait().await.ok();
        }
    }

    /// SIGTERM and wait for a clean exit.
    pub async fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            if let Some(pid) = c.id() {
                let _ = std::process::Command::new("kill")
                    .arg("-TERM")
                    .arg(pid.to_string())
                    .status();
            }
            let _ = tokio::time::timeout(Duration::from_secs(30), c.wait()).await;
        }
    }

    /// SIGTERM, a clean exit, and a new process on the same configuration and data.
    pub async fn restart_gracefully(&mut self) {
        self.stop().await;
        self.spawn().await;
    }

    pub async fn restart(&mut self) {
        self.kill9().await;
        self.spawn().await;
    }

    /// Waits until the `/metrics` page satisfies `ready` (polled; the gateway's background
    /// work has no other signal). Panics with the page after a minute, as a hang guard.
    pub async fn wait_for_metrics(&self, what: &str, ready: impl Fn(&str) -> bool) -> String {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        loop {
            let page = self.metrics().await;
            if ready(&page) {
                return page;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "waited a minute for {what}; metrics:\n{page}\nlog:\n{}",
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().and_then(|c| c.id())
    }

    // ---- requests ----------------------------------------------------------------------

    pub async fn call(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> Resp {
        let url = format!("{}{path}", self.url);
        let mut req = self.http.request(method.parse().expect("method"), url);
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        if let Some(b) = body {
            req = req.json(&b);
        }
        let r = req.send().await.expect("request reaches the gateway");
        Resp::read(r).await
    }

    /// A call with extra request headers (e.g. `Idempotency-Key`), given as raw bytes so a
    /// test can send what no well-behaved client would; a name given twice is sent twice.
    pub async fn call_with_headers(
        &self,
        method: &str,
        path: &str,
        token: &str,
        headers: &[(&str, &[u8])],
        body: Option<Value>,
    ) -> Resp {
        let url = format!("{}{path}", self.url);
        let mut req = self
            .http
            .request(method.parse().expect("method"), url)
            .bearer_auth(token);
        for (name, value) in headers {
            let value = reqwest::header::HeaderValue::from_bytes(value).expect("a header value");
            req = req.header(*name, value);
        }
        if let Some(b) = body {
            req = req.json(&b);
        }
        let r = req.send().await.expect("request reaches the gateway");
        Resp::read(r).await
    }

    /// A GET on the operator's listener (`/metrics`, `/readyz` with detail).
    pub async fn operator_get(&self, path: &str) -> Resp {
        let r = self
            .http
            .get(format!("{}{path}", self.admin_url))
            .send()
            .await
            .expect("request reaches the operator listener");
        Resp::read(r).await
    }

    /// `/metrics` from the operator's listener.
    pub async fn metrics(&self) -> String {
        let r = self.operator_get("/metrics").await;
        assert_eq!(r.status, 200, "{}", r.text);
        r.text
    }

    /// The value of one metric series (the sum over series whose line starts with `series`,
    /// e.g. `snapgate_waits_in_progress` or `name{label="x"}`), 0 when absent.
    pub async fn metric(&self, series: &str) -> f64 {
        metric_value(&self.metrics().await, series)
    }

    pub async fn get(&self, path: &str, token: &str) -> Resp {
        self.call("GET", path, Some(token), None).await
    }
    pub async fn post(&self, path: &str, token: &str, body: Value) -> Resp {
        self.call("POST", path, Some(token), Some(body)).await
    }
    pub async fn delete(&self, path: &str, token: &str) -> Resp {
        self.call("DELETE", path, Some(token), None).await
    }

    /// Starts a save and returns the 202 response.
    pub async fn save(&self, instance: &str, name: &str, token: &str) -> Resp {
        self.post(
            &format!("/v1/instances/{instance}/states"),
            token,
            json!({ "name": name }),
        )
        .await
    }

    /// Waits for an operation to end and returns it.
    pub async fn wait(&self, op: &str, token: &str) -> Value {
        for _ in 0..20 {
            let r = self
                .get(&format!("/v1/operations/{op}/wait?timeout=30"), token)
                .await;
            assert_eq!(r.status, 200, "wait: {}", r.body);
            let s = r.body["status"].as_str().unwrap_or_default().to_owned();
            if s == "succeeded" || s == "failed" {
                return r.body;
            }
        }
        panic!("operation {op} did not end");
    }

    /// Saves and waits; returns the state as it is once available.
    pub async fn saved(&self, instance: &str, name: &str, token: &str) -> Value {
        self.saved_with(instance, json!({ "name": name }), token)
            .await
    }

    /// [`TestApp::saved`] with a save mode (`internal`, `external`, `auto`).
    pub async fn saved_in_mode(
        &self,
        instance: &str,
        name: &str,
        mode: &str,
        token: &str,
    ) -> Value {
        self.saved_with(instance, json!({ "name": name, "mode": mode }), token)
            .await
    }

    async fn saved_with(&self, instance: &str, body: Value, token: &str) -> Value {
        let name = body["name"].clone();
        let r = self
            .post(&format!("/v1/instances/{instance}/states"), token, body)
            .await;
        assert_eq!(r.status, 202, "save {name}: {}", r.body);
        let op = self
            .wait(r.body["operation"].as_str().unwrap(), token)
            .await;
        assert_eq!(op["status"], "succeeded", "save {name}: {op}");
        let s = self
            .get(
                &format!(
                    "/v1/instances/{instance}/states/{}",
                    r.body["uuid"].as_str().unwrap()
                ),
                token,
            )
            .await;
        assert_eq!(s.status, 200);
        s.body
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        if let Some(c) = self.child.as_mut() {
            let _ = c.start_kill();
        }
        // A failed test shows what its gateway logged last: CI keeps nothing else of it.
        if std::thread::panicking() {
            let log = self.log();
            let lines: Vec<&str> = log.lines().collect();
            let tail = &lines[lines.len().saturating_sub(40)..];
            eprintln!(
                "--- the last {} lines of the gateway's log ({}) ---",
                tail.len(),
                self.url
            );
            for line in tail {
                eprintln!("{line}");
            }
        }
    }
}

/// A response read whole.
#[derive(Debug)]
pub struct Resp {
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    pub body: Value,
    pub text: String,
}

impl Resp {
    async fn read(r: reqwest::Response) -> Resp {
        let status = r.status().as_u16();
        let headers = r.headers().clone();
        let text = r.text().await.unwrap_or_default();
        let body = serde_json::from_str(&text).unwrap_or(Value::Null);
        Resp {
            status,
            headers,
            body,
            text,
        }
    }

    pub fn code(&self) -> &str {
        self.body["error"]["code"].as_str().unwrap_or("")
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

/// Sums the samples of the series of `text` whose name (and labels) start with `series`.
pub fn metric_value(text: &str, series: &str) -> f64 {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter(|l| {
            l.strip_prefix(series)
                .is_some_and(|rest| rest.starts_with([' ', '{', ',', '}']) || series.ends_with('}'))
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

fn token() -> String {
    format!("t_{}", uuid::Uuid::new_v4().simple())
}

/// The hex SHA-256 of a token, as a token file's `sha256:` key takes it.
pub fn sha256_hex(token: &str) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(token.as_bytes()))
}

/// A loopback port for a gateway (or proxy) a test is about to start.
///
/// Not "bind port 0 and let it go": between that and the gateway's own bind, the kernel may hand
/// the same port to another test process's listener or to any outgoing connection (to
/// PostgreSQL, Redis…), and the gateway fails to start. Ports here come from below the kernel's
/// ephemeral range (32768-60999 on Debian), which outgoing connections never use, and each is
/// claimed with a lock file held until this test process exits, so parallel test processes
/// never pick the same one.
pub fn free_port() -> u16 {
    use std::sync::atomic::{AtomicU32, Ordering};
    use std::sync::Mutex;
    const FIRST: u32 = 20_000;
    const COUNT: u32 = 12_000;
    static HELD: Mutex<Vec<std::fs::File>> = Mutex::new(Vec::new());
    static NEXT: AtomicU32 = AtomicU32::new(u32::MAX);
    let dir = std::env::temp_dir().join("snapgate-test-ports");
    std::fs::create_dir_all(&dir).expect("make the port lock directory");
    // Each process starts somewhere else in the range, so claims rarely collide at all.
    let _ = NEXT.compare_exchange(
        u32::MAX,
        std::process::id().wrapping_mul(7919) % COUNT,
        Ordering::SeqCst,
        Ordering::SeqCst,
    );
    for _ in 0..COUNT {
        let port = FIRST + NEXT.fetch_add(1, Ordering::SeqCst) % COUNT;
        let Ok(file) = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(dir.join(port.to_string()))
        else {
            continue;
        };
        if file.try_lock().is_err() {
            continue;
        }
        let port = port as u16;
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            HELD.lock().unwrap_or_else(|e| e.into_inner()).push(file);
            return port;
        }
    }
    panic!("no free loopback port in {FIRST}..{}", FIRST + COUNT);
}

/// Splits extra TOML into top-level keys (before the first `[`section) and the rest.
fn split_extra(extra: &str) -> (String, String) {
    let mut top = String::new();
    let mut rest = String::new();
    let mut in_section = false;
    for line in extra.lines() {
        if line.trim_start().starts_with('[') {
            in_section = true;
        }
        let target = if in_section { &mut rest } else { &mut top };
        target.push_str(line);
        target.push('\n');
    }
    (top, rest)
}

/// Mints a JWT for the test gateways' HS256 secret.
pub fn jwt(tenant: &str, roles: &[&str], expires_in_secs: i64, secret: &str) -> String {
    sign_jwt(&jwt_claims(tenant, roles, expires_in_secs), secret)
}

/// A cloud operator's JWT: Keystone's system scope (`"system": {"all": true}`), the claim the
/// test gateways are configured to take as operator scope.
pub fn operator_jwt(tenant: &str, roles: &[&str], expires_in_secs: i64) -> String {
    let mut claims = jwt_claims(tenant, roles, expires_in_secs);
    claims["system"] = json!({"all": true});
    sign_jwt(&claims, JWT_SECRET)
}

/// The claims [`jwt`] signs, for tests that change them.
pub fn jwt_claims(tenant: &str, roles: &[&str], expires_in_secs: i64) -> Value {
    let now = chrono::Utc::now().timestamp();
    json!({
        "sub": format!("user-of-{tenant}"),
        "project_id": tenant,
        "roles": roles,
        "iss": JWT_ISSUER,
        "aud": JWT_AUDIENCE,
        "iat": now,
        "exp": now + expires_in_secs,
    })
}

/// Signs `claims` with HS256.
pub fn sign_jwt(claims: &Value, secret: &str) -> String {
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        claims,
        &jsonwebtoken::EncodingKey::from_secret(secret.as_bytes()),
    )
    .expect("encode jwt")
}

/// Writes a test-driver node file with `n` running domains (qcow2 disk, 256 MiB) owned by
/// `tenant`, with UUIDs `00000000-0000-4000-8000-<index as 12 hex digits>`, and returns its
/// URI. Used where many instances must be saved at once (one operation per instance).
pub fn many_instances_node(dir: &Path, n: usize, tenant: &str) -> String {
    let mut xml = String::from("<node>\n<cpu><mhz>2400</mhz><model>x86_64</model><active>8</active><nodes>1</nodes><sockets>1</sockets><cores>4</cores><threads>2</threads></cpu>\n<memory>67108864</memory>\n");
    for i in 0..n {
        xml.push_str(&format!(
            "<domain type='test'><name>vm-{i}</name><uuid>{}</uuid><metadata><snapgate:owner xmlns:snapgate='https://snapgate.dev/xmlns/owner/1.0' tenant='{tenant}'/></metadata>\
             <memory unit='MiB'>256</memory><currentMemory unit='MiB'>256</currentMemory><vcpu>1</vcpu><os><type arch='x86_64'>hvm</type></os>\
             <devices><disk type='file' device='disk'><driver name='qemu' type='qcow2'/><source file='/var/lib/snapgate-test/vm-{i}.qcow2'/><target dev='vda' bus='virtio'/></disk></devices></domain>\n",
            many_uuid(i)
        ));
    }
    xml.push_str("</node>\n");
    let path = dir.join(format!("many-{n}.xml"));
    std::fs::write(&path, xml).unwrap();
    format!("test://{}", path.display())
}

pub fn many_uuid(i: usize) -> String {
    format!("00000000-0000-4000-8000-{i:012x}")
}

/// The placement index is filled by the first inventory after start: waits until the
/// operator's listing holds the demo cloud's six instances (a hang guard after a minute).
pub async fn demo_inventory_read(app: &TestApp) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let r = app.get("/v1/instances", &app.admin).await;
        assert_eq!(r.status, 200, "{}", r.text);
        if r.body["values"].as_array().unwrap().len() == 6 {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the demo host's inventory was not read: {}",
            r.text
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
