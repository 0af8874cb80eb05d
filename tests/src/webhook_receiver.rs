//! A real local webhook receiver for the tests: a small axum server on loopback that records
//! every request (headers and body) and answers as the test scripts it — a status, or no
//! answer at all (the request is held until the sender goes away).

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use axum::Router;
use tokio::sync::watch;

/// How the receiver answers one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reply {
    Status(u16),
    /// Never answer: the request stays open until the sender drops it.
    Hold,
}

/// One request as received.
#[derive(Debug, Clone)]
pub struct Received {
    pub headers: HashMap<String, String>,
    pub body: String,
    /// What the receiver answered (`None`: held).
    pub reply: Option<u16>,
}

impl Received {
    pub fn header(&self, name: &str) -> &str {
        self.headers.get(name).map(String::as_str).unwrap_or("")
    }

    /// The `webhook-id` header: the event's id.
    pub fn id(&self) -> &str {
        self.header("webhook-id")
    }
}

#[derive(Default)]
struct Inner {
    requests: Mutex<Vec<Received>>,
    script: Mutex<VecDeque<Reply>>,
    default: Mutex<Option<u16>>,
}

pub struct Receiver {
    /// `http://127.0.0.1:<port>/hook`.
    pub url: String,
    inner: Arc<Inner>,
    count: watch::Receiver<usize>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn receive(
    State((inner, seen)): State<(Arc<Inner>, Arc<watch::Sender<usize>>)>,
    headers: HeaderMap,
    body: Bytes,
) -> StatusCode {
    let reply = inner
        .script
        .lock()
        .unwrap()
        .pop_front()
        .unwrap_or_else(|| Reply::Status(inner.default.lock().unwrap().unwrap_or(200)));
    let headers = headers
        .iter()
        .map(|(k, v)| {
            (
                k.as_str().to_owned(),
                String::from_utf8_lossy(v.as_bytes()).into_owned(),
            )
        })
        .collect();
    let status = match reply {
        Reply::Status(s) => Some(s),
        Reply::Hold => None,
    };
    {
        let mut requests = inner.requests.lock().unwrap();
        requests.push(Received {
            headers,
            body: String::from_utf8_lossy(&body).into_owned(),
            reply: status,
        });
        seen.send_replace(requests.len());
    }
    match status {
        Some(s) => StatusCode::from_u16(s).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
        None => std::future::pending().await,
    }
}

impl Receiver {
    /// Listens on an ephemeral loopback port; answers 200 until scripted otherwise.
    pub async fn start() -> Receiver {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/hook", listener.local_addr().unwrap());
        let inner = Arc::new(Inner::default());
        let (seen, count) = watch::channel(0);
        let app = Router::new()
            .route("/hook", post(receive))
            .with_state((inner.clone(), Arc::new(seen)));
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Receiver {
            url,
            inner,
            count,
            task,
        }
    }

    /// The next requests are answered with `replies`, in order; the later ones as by default.
    pub fn script(&self, replies: impl IntoIterator<Item = Reply>) {
        self.inner.script.lock().unwrap().extend(replies);
    }

    /// What unscripted requests get (200 unless set).
    pub fn answer_by_default(&self, status: u16) {
        *self.inner.default.lock().unwrap() = Some(status);
    }

    pub fn requests(&self) -> Vec<Received> {
        self.inner.requests.lock().unwrap().clone()
    }

    /// Waits until the requests satisfy `done`, and returns them (a minute's hang guard:
    /// the panic says what was received).
    pub async fn wait_until(
        &self,
        what: &str,
        done: impl Fn(&[Received]) -> bool,
    ) -> Vec<Received> {
        let mut count = self.count.clone();
        let wait = async {
            loop {
                let now = self.requests();
                if done(&now) {
                    return now;
                }
                if count.changed().await.is_err() {
                    return self.requests();
                }
            }
        };
        match tokio::time::timeout(Duration::from_secs(60), wait).await {
            Ok(r) => r,
            Err(_) => panic!(
                "waited a minute for {what}; received: {:#?}",
                self.requests()
            ),
        }
    }

    /// Waits for at least `n` requests.
    pub async fn wait_for(&self, n: usize) -> Vec<Received> {
        self.wait_until(&format!("{n} requests"), |r| r.len() >= n)
            .await
    }
}
