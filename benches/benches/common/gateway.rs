//! A release gateway on this machine's QEMU, for the real-hypervisor benches.

use std::error::Error;
use std::time::{Duration, Instant};

use snapgate_tests::app::TestApp;
use snapgate_tests::realvm::{Hypervisor, RealVmEnv, LIBVIRT_URI};

pub type BoxError = Box<dyn Error + Send + Sync>;

/// A running release gateway whose only host is this machine's QEMU.
pub struct Gateway {
    runtime: tokio::runtime::Runtime,
    pub app: TestApp,
}

impl Gateway {
    pub fn start() -> Result<Gateway, BoxError> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()?;
        RealVmEnv::ensure()?;
        // The host's test state directory: libvirt makes it (a storage pool) and the files in
        // it, named by state uuid; every benchmark state is deleted again.
        let state_dir = Hypervisor::System.state_dir()?;
        let app = runtime.block_on(
            TestApp::builder()
                .host_with_state_dir("local", LIBVIRT_URI, &state_dir)
                .start(),
        );
        Ok(Gateway { runtime, app })
    }

    /// Sends one request, checks the 202 and waits for the operation to succeed.
    pub fn run(
        &self,
        method: &str,
        path: &str,
        body: Option<serde_json::Value>,
        id_field: &str,
    ) -> Result<serde_json::Value, BoxError> {
        self.run_timed(method, path, body, id_field)
            .map(|(body, _)| body)
    }

    /// [`Gateway::run`], also returning how long the 202 took (the acceptance path: lookups,
    /// checks, quota, records), which the rest of the call's time is the operation's.
    pub fn run_timed(
        &self,
        method: &str,
        path: &str,
        body: Option<serde_json::Value>,
        id_field: &str,
    ) -> Result<(serde_json::Value, Duration), BoxError> {
        let app = &self.app;
        self.runtime.block_on(async {
            let sent = Instant::now();
            let r = app.call(method, path, Some(&app.member), body).await;
            let accepted = sent.elapsed();
            if r.status != 202 {
                return Err(format!("{method} {path}: {} {}", r.status, r.body).into());
            }
            let op = r.body[id_field]
                .as_str()
                .ok_or_else(|| format!("{method} {path}: no {id_field} in {}", r.body))?;
            let ended = app.wait(op, &app.member).await;
            if ended["status"] != "succeeded" {
                return Err(format!("{method} {path}: {ended}").into());
            }
            Ok((r.body, accepted))
        })
    }
}

impl Gateway {
    /// `elapsed_ms` of the gateway's own "operation ended" log lines for `kind`, in the order
    /// the operations ended: the time from the operation's start in the background task to
    /// its recorded end, which tells the libvirt work apart from the HTTP and acceptance path
    /// around it.
    pub fn operation_elapsed_ms(&self, kind: &str) -> Vec<u64> {
        let log = strip_ansi(&self.app.log());
        log.lines()
            .filter(|line| {
                line.contains("operation ended") && line.contains(&format!("kind={kind}"))
            })
            .filter_map(|line| {
                let rest = &line[line.find("elapsed_ms=")? + "elapsed_ms=".len()..];
                rest.split(|c: char| !c.is_ascii_digit())
                    .next()?
                    .parse()
                    .ok()
            })
            .collect()
    }
}

/// The text log may carry terminal colours around field names.
fn strip_ansi(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            // CSI: ESC [ … final byte in @..~
            for c in chars.by_ref() {
                if ('@'..='~').contains(&c) && c != '[' {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}
