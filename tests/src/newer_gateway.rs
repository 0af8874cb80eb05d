//! A gateway "from the future": an HTTP proxy in front of a real gateway that adds a member
//! this code base has never heard of to every JSON record it passes on (the answer itself, each
//! item of a `values` list, the `error` of an error body), the way a newer gateway adds fields.
//! A client that decodes the API's records must still work through it.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

/// The member added to every record.
pub const ADDED_MEMBER: &str = "added_by_a_newer_gateway";

pub struct NewerGateway {
    /// `http://127.0.0.1:<port>`: give it to the client in place of the gateway's URL.
    pub url: String,
    rewritten: Arc<AtomicUsize>,
    task: JoinHandle<()>,
}

impl NewerGateway {
    /// A proxy to the gateway at `upstream` (`http://host:port`).
    pub async fn start(upstream: &str) -> NewerGateway {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let url = format!("http://{}", listener.local_addr().expect("address"));
        let rewritten = Arc::new(AtomicUsize::new(0));
        let (upstream, count) = (upstream.trim_end_matches('/').to_owned(), rewritten.clone());
        let task = tokio::spawn(async move {
            let http = reqwest::Client::new();
            while let Ok((client, _)) = listener.accept().await {
                let (http, upstream, count) = (http.clone(), upstream.clone(), count.clone());
                tokio::spawn(async move {
                    let _ = pass_one_request(client, &http, &upstream, &count).await;
                });
            }
        });
        NewerGateway {
            url,
            rewritten,
            task,
        }
    }

    /// JSON answers that got the added member.
    pub fn rewritten(&self) -> usize {
        self.rewritten.load(Ordering::SeqCst)
    }
}

impl Drop for NewerGateway {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Reads one HTTP/1.1 request, sends it to the gateway, and answers with the gateway's answer
/// (JSON records with the added member), closing the connection.
async fn pass_one_request(
    mut client: TcpStream,
    http: &reqwest::Client,
    upstream: &str,
    rewritten: &AtomicUsize,
) -> std::io::Result<()> {
    let mut raw = Vec::new();
    let mut buf = [0u8; 4096];
    let head_end = loop {
        let n = client.read(&mut buf).await?;
        if n == 0 {
            return Ok(());
        }
        raw.extend_from_slice(&buf[..n]);
        if let Some(i) = raw.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
    };
    let head = String::from_utf8_lossy(&raw[..head_end]).into_owned();
    let mut lines = head.split("\r\n");
    let mut request_line = lines.next().unwrap_or_default().split(' ');
    let (method, path) = (
        request_line.next().unwrap_or("GET").to_owned(),
        request_line.next().unwrap_or("/").to_owned(),
    );
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    let length: usize = headers
        .iter()
        .find(|(k, _)| k == "content-length")
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(0);
    while raw.len() < head_end + length {
        let n = client.read(&mut buf).await?;
        if n == 0 {
            break;
        }
        raw.extend_from_slice(&buf[..n]);
    }
    let mut request = http.request(
        method.parse().unwrap_or(reqwest::Method::GET),
        format!("{upstream}{path}"),
    );
    for (k, v) in &headers {
        if ["authorization", "content-type", "idempotency-key"].contains(&k.as_str()) {
            request = request.header(k, v);
        }
    }
    let answer = request
        .body(raw[head_end..].to_vec())
        .send()
        .await
        .map_err(std::io::Error::other)?;
    let status = answer.status();
    let mut body = answer
        .bytes()
        .await
        .map_err(std::io::Error::other)?
        .to_vec();
    if let Ok(mut record) = serde_json::from_slice::<Value>(&body) {
        if add_member(&mut record) {
            rewritten.fetch_add(1, Ordering::SeqCst);
            body = serde_json::to_vec(&record).expect("JSON");
        }
    }
    let head = format!(
        "HTTP/1.1 {} {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        status.as_u16(),
        status.canonical_reason().unwrap_or(""),
        body.len()
    );
    client.write_all(head.as_bytes()).await?;
    client.write_all(&body).await?;
    client.shutdown().await
}

/// Adds the member to the record, its `values` items and its `error`; false when the answer
/// is not an object.
fn add_member(record: &mut Value) -> bool {
    let Value::Object(map) = record else {
        return false;
    };
    let added = json!({"nested": [1, "two"], "since": "a later version"});
    for key in ["values", "error"] {
        match map.get_mut(key) {
            Some(Value::Array(items)) => {
                for item in items.iter_mut().filter_map(Value::as_object_mut) {
                    item.insert(ADDED_MEMBER.into(), added.clone());
                }
            }
            Some(Value::Object(inner)) => {
                inner.insert(ADDED_MEMBER.into(), added.clone());
            }
            _ => {}
        }
    }
    map.insert(ADDED_MEMBER.into(), added);
    true
}
