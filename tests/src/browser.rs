//! A real browser for the console tests: Debian's headless Chromium driven by its
//! `chromedriver` over the W3C WebDriver protocol (JSON over HTTP, spoken here with reqwest:
//! the handful of commands the tests use do not justify a client crate and its dependency
//! tree). Each [`Browser`] starts its own chromedriver on a free port with its own profile
//! directory, and ends both when dropped.
//!
//! Waits are on the page's own state: [`Browser::wait_until`] runs a condition in the page at
//! every DOM change (a `MutationObserver`), answering as soon as it holds. The only bound is
//! the session's script timeout, a hang guard far above any expected wait.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use serde_json::{json, Value};
use tokio::process::{Child, Command};

use crate::app::free_port;

/// The W3C key of an element reference in WebDriver answers.
const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

/// How long one wait may last before the test fails as hung (a guard, not a performance bound).
const HANG_GUARD: Duration = Duration::from_secs(120);

pub struct Browser {
    driver: Child,
    http: reqwest::Client,
    session: String,
    base: String,
    _profile: tempfile::TempDir,
}

/// The chromedriver and chromium binaries (Debian's `chromium-driver` and `chromium`).
fn binaries() -> (PathBuf, PathBuf) {
    let driver = PathBuf::from("/usr/bin/chromedriver");
    let chromium = PathBuf::from("/usr/bin/chromium");
    for b in [&driver, &chromium] {
        assert!(
            b.exists(),
            "{} is missing: install Debian's chromium and chromium-driver (scripts/install-deps.sh does)",
            b.display()
        );
    }
    (driver, chromium)
}

impl Browser {
    /// Starts chromedriver and a headless Chromium session with a window of `width` x `height`.
    pub async fn start(width: u32, height: u32) -> Browser {
        let (driver_bin, chromium) = binaries();
        let port = free_port();
        let profile = tempfile::tempdir().expect("profile dir");
        let log = std::fs::File::create(profile.path().join("chromedriver.log")).unwrap();
        let driver = Command::new(driver_bin)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(log)
            .kill_on_drop(true)
            .spawn()
            .expect("start chromedriver");
        let base = format!("http://127.0.0.1:{port}");
        let http = reqwest::Client::builder()
            .timeout(HANG_GUARD + Duration::from_secs(30))
            .build()
            .unwrap();
        // chromedriver answers /status once it listens.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        loop {
            if let Ok(r) = http.get(format!("{base}/status")).send().await {
                if r.status().is_success() {
                    break;
                }
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "chromedriver did not start"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let args = vec![
            "--headless=new".to_owned(),
            // The tests run as root, where Chromium's sandbox cannot start.
            "--no-sandbox".to_owned(),
            "--disable-dev-shm-usage".to_owned(),
            "--disable-gpu".to_owned(),
            "--no-first-run".to_owned(),
            "--disable-extensions".to_owned(),
            "--lang=en-US".to_owned(),
            format!(
                "--user-data-dir={}",
                profile.path().join("chromium").display()
            ),
            format!("--window-size={width},{height}"),
        ];
        let caps = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {"binary": chromium, "args": args},
            "timeouts": {"script": HANG_GUARD.as_millis() as u64, "implicit": 0, "pageLoad": 60_000},
        }}});
        let r = http
            .post(format!("{base}/session"))
            .json(&caps)
            .send()
            .await
            .expect("new session");
        let body: Value = r.json().await.expect("session answer");
        let session = body["value"]["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("no session: {body}"))
            .to_owned();
        Browser {
            driver,
            http,
            session,
            base,
            _profile: profile,
        }
    }

    async fn command(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        let url = format!("{}/session/{}{path}", self.base, self.session);
        let mut req = self.http.request(method.parse().unwrap(), url);
        // WebDriver wants a JSON body on every POST, even an empty one.
        if method == "POST" {
            req = req.json(&body.unwrap_or_else(|| json!({})));
        }
        let r = req.send().await.expect("chromedriver answers");
        let status = r.status();
        let body: Value = r.json().await.expect("JSON from chromedriver");
        assert!(
            status.is_success(),
            "WebDriver {method} {path}: {status} {body}"
        );
        body["value"].clone()
    }

    pub async fn goto(&self, url: &str) {
        self.command("POST", "/url", Some(json!({ "url": url })))
            .await;
    }

    /// Runs `script` (a function body; `arguments` holds `args`) in the page.
    pub async fn eval(&self, script: &str, args: Vec<Value>) -> Value {
        self.command(
            "POST",
            "/execute/sync",
            Some(json!({ "script": script, "args": args })),
        )
        .await
    }

    /// Waits until `condition` (a JavaScript expression, checked at each DOM change) is truthy
    /// in the page and returns its value. Panics with `what` and the page's text if the hang
    /// guard runs out first.
    pub async fn wait_until(&self, what: &str, condition: &str) -> Value {
        let script = format!(
            r#"const done = arguments[arguments.length - 1];
            const check = () => {{ try {{ return ({condition}); }} catch (e) {{ return null; }} }};
            const first = check();
            if (first) {{ done({{ok: first}}); return; }}
            const observer = new MutationObserver(() => {{
                const v = check();
                if (v) {{ observer.disconnect(); done({{ok: v}}); }}
            }});
            observer.observe(document, {{subtree: true, childList: true, attributes: true, characterData: true}});"#
        );
        let url = format!("{}/session/{}/execute/async", self.base, self.session);
        let r = self
            .http
            .post(url)
            .json(&json!({ "script": script, "args": [] }))
            .send()
            .await
            .expect("chromedriver answers");
        let body: Value = r.json().await.expect("JSON from chromedriver");
        match body["value"].get("ok") {
            Some(v) => v.clone(),
            None => panic!(
                "waiting for {what} ({condition}): {body}\npage:\n{}",
                self.text("body").await
            ),
        }
    }

    /// The first element matching `css`.
    pub async fn find(&self, css: &str) -> String {
        let v = self
            .command(
                "POST",
                "/element",
                Some(json!({"using": "css selector", "value": css})),
            )
            .await;
        v[ELEMENT].as_str().expect("element reference").to_owned()
    }

    pub async fn click(&self, css: &str) {
        let id = self.find(css).await;
        self.command("POST", &format!("/element/{id}/click"), None)
            .await;
    }

    /// Types `text` into the element (as keystrokes).
    pub async fn type_into(&self, css: &str, text: &str) {
        let id = self.find(css).await;
        self.command("POST", &format!("/element/{id}/clear"), None)
            .await;
        self.command(
            "POST",
            &format!("/element/{id}/value"),
            Some(json!({ "text": text })),
        )
        .await;
    }

    /// Sends keys to whatever has the focus (e.g. Tab, Enter: "\u{E004}", "\u{E007}").
    pub async fn keys(&self, keys: &str) {
        let actions: Vec<Value> = keys
            .chars()
            .flat_map(|c| {
                [
                    json!({"type": "keyDown", "value": c.to_string()}),
                    json!({"type": "keyUp", "value": c.to_string()}),
                ]
            })
            .collect();
        self.command(
            "POST",
            "/actions",
            Some(json!({"actions": [{"type": "key", "id": "keyboard", "actions": actions}]})),
        )
        .await;
        self.command("DELETE", "/actions", None).await;
    }

    /// The visible text of the first element matching `css` ("" when there is none).
    pub async fn text(&self, css: &str) -> String {
        self.eval(
            "const e = document.querySelector(arguments[0]); return e ? e.innerText : '';",
            vec![json!(css)],
        )
        .await
        .as_str()
        .unwrap_or_default()
        .to_owned()
    }

    pub async fn set_window(&self, width: u32, height: u32) {
        self.command(
            "POST",
            "/window/rect",
            Some(json!({"width": width, "height": height})),
        )
        .await;
    }

    /// A PNG of the whole viewport, written to `path`.
    pub async fn screenshot(&self, path: &Path) {
        use base64::Engine;
        let v = self.command("GET", "/screenshot", None).await;
        let png = base64::engine::general_purpose::STANDARD
            .decode(v.as_str().expect("base64 PNG"))
            .expect("valid base64");
        std::fs::write(path, png).expect("write screenshot");
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        // Ending the session closes Chromium (a plain blocking request: Drop cannot await),
        // then chromedriver is killed through its child handle.
        use std::io::{Read, Write};
        let addr = self.base.trim_start_matches("http://").to_owned();
        if let Ok(mut stream) = std::net::TcpStream::connect(&addr) {
            let _ = stream.set_read_timeout(Some(Duration::from_secs(30)));
            let request = format!(
                "DELETE /session/{} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: 0\r\n\r\n",
                self.session
            );
            if stream.write_all(request.as_bytes()).is_ok() {
                let _ = stream.read_to_end(&mut Vec::new());
            }
        }
        let _ = self.driver.start_kill();
    }
}
