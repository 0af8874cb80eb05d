//! A TCP proxy in front of a gateway that loses one answer, the way a network does: on the
//! first connection it passes the request on, waits until the gateway has answered (so the
//! request was processed), and closes the client's connection without passing the answer on.
//! Every later connection is passed through both ways.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

use tokio::io::AsyncReadExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

pub struct AnswerLosingProxy {
    /// `http://127.0.0.1:<port>`: give it to the client in place of the gateway's URL.
    pub url: String,
    lost: Arc<AtomicUsize>,
    task: JoinHandle<()>,
}

impl AnswerLosingProxy {
    /// A proxy to the gateway at `upstream` (`http://host:port`).
    pub async fn start(upstream: &str) -> AnswerLosingProxy {
        let upstream = upstream
            .trim_start_matches("http://")
            .trim_end_matches('/')
            .to_owned();
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let url = format!("http://{}", listener.local_addr().expect("address"));
        let lost = Arc::new(AtomicUsize::new(0));
        let first_taken = Arc::new(AtomicBool::new(false));
        let task = {
            let lost = lost.clone();
            tokio::spawn(async move {
                while let Ok((client, _)) = listener.accept().await {
                    let first = !first_taken.swap(true, Ordering::SeqCst);
                    let (upstream, lost) = (upstream.clone(), lost.clone());
                    tokio::spawn(async move {
                        let Ok(server) = TcpStream::connect(&upstream).await else {
                            return;
                        };
                        if first {
                            lose_the_answer(client, server, &lost).await;
                        } else {
                            let (mut client, mut server) = (client, server);
                            let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                        }
                    });
                }
            })
        };
        AnswerLosingProxy { url, lost, task }
    }

    /// Answers the gateway gave that the client never got.
    pub fn lost(&self) -> usize {
        self.lost.load(Ordering::SeqCst)
    }
}

impl Drop for AnswerLosingProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Passes the client's bytes on until the gateway's answer starts, then closes both sides.
async fn lose_the_answer(client: TcpStream, server: TcpStream, lost: &AtomicUsize) {
    let (mut client_read, client_write) = client.into_split();
    let (mut server_read, mut server_write) = server.into_split();
    let forward =
        tokio::spawn(async move { tokio::io::copy(&mut client_read, &mut server_write).await });
    let mut buf = [0u8; 1];
    if matches!(server_read.read(&mut buf).await, Ok(n) if n > 0) {
        lost.fetch_add(1, Ordering::SeqCst);
    }
    forward.abort();
    let _ = forward.await;
    drop(client_write);
}
