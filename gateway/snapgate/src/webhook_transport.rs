//! The webhooks' HTTP client ([`WebhookTransport`]): URLs parsed by the same parser reqwest
//! sends with (so what is checked is what is called), hosts resolved here, and each request
//! pinned to the address the service checked (reqwest's `resolve`: no second DNS answer, which
//! defeats DNS rebinding), without proxies (a proxy would resolve the host itself) and
//! without following redirects (a redirect could point anywhere).

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use async_trait::async_trait;
use reqwest::redirect::Policy;
use reqwest::Url;
use snapgate_core::ports::{PostOutcome, ResolvedTarget, TargetError, WebhookTransport};

/// A host name that does not resolve within this is unresolvable.
const RESOLVE_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Debug, Default)]
pub struct HttpTransport;

/// The URL, its host (an address literal or a name) and port.
fn parse(url: &str) -> Result<(Url, Host, u16), TargetError> {
    let parsed = Url::parse(url).map_err(|e| TargetError::Invalid(format!("not a URL: {e}")))?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err(TargetError::Invalid(
            "a webhook URL is http or https".into(),
        ));
    }
    if !parsed.username().is_empty() || parsed.password().is_some() {
        return Err(TargetError::Invalid(
            "a webhook URL carries no credentials".into(),
        ));
    }
    let port = parsed
        .port_or_known_default()
        .ok_or_else(|| TargetError::Invalid("the URL has no port".into()))?;
    let host = parsed
        .host_str()
        .ok_or_else(|| TargetError::Invalid("the URL has no host".into()))?;
    let literal = host.trim_start_matches('[').trim_end_matches(']');
    let host = match literal.parse::<IpAddr>() {
        Ok(ip) => Host::Address(ip),
        Err(_) => Host::Name(host.to_owned()),
    };
    Ok((parsed, host, port))
}

enum Host {
    Address(IpAddr),
    Name(String),
}

#[async_trait]
impl WebhookTransport for HttpTransport {
    async fn resolve(&self, url: &str) -> Result<ResolvedTarget, TargetError> {
        let (_, host, port) = parse(url)?;
        let name = match host {
            Host::Address(ip) => return Ok(ResolvedTarget { addrs: vec![ip] }),
            Host::Name(name) => name,
        };
        let unresolvable =
            || TargetError::Unresolvable(format!("the host {name} does not resolve"));
        let found = tokio::time::timeout(
            RESOLVE_TIMEOUT,
            tokio::net::lookup_host((name.as_str(), port)),
        )
        .await
        .map_err(|_| unresolvable())?
        .map_err(|_| unresolvable())?;
        let mut addrs: Vec<IpAddr> = found.map(|a| a.ip()).collect();
        addrs.sort();
        addrs.dedup();
        if addrs.is_empty() {
            return Err(unresolvable());
        }
        Ok(ResolvedTarget { addrs })
    }

    async fn post(
        &self,
        url: &str,
        addr: IpAddr,
        headers: &[(&'static str, String)],
        body: String,
        timeout: Duration,
    ) -> PostOutcome {
        let (parsed, host, port) = match parse(url) {
            Ok(p) => p,
            Err(TargetError::Invalid(m) | TargetError::Unresolvable(m)) => {
                return PostOutcome::Failed(m)
            }
        };
        let mut builder = reqwest::Client::builder()
            .redirect(Policy::none())
            .no_proxy()
            .timeout(timeout)
            .user_agent(concat!("snapgate-webhooks/", env!("CARGO_PKG_VERSION")));
        match host {
            // The name is answered with the address checked, never asked of DNS again.
            Host::Name(name) => builder = builder.resolve(&name, SocketAddr::new(addr, port)),
            // A literal is its own address: the one checked.
            Host::Address(ip) if ip == addr => {}
            Host::Address(_) => {
                return PostOutcome::Failed("the address checked is not the URL's".into())
            }
        }
        let client = match builder.build() {
            Ok(c) => c,
            Err(e) => {
                tracing::error!(error = %e, "cannot build the webhook client");
                return PostOutcome::Failed("the gateway could not make the request".into());
            }
        };
        let mut request = client
            .post(parsed)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(body);
        for (name, value) in headers {
            request = request.header(*name, value);
        }
        match request.send().await {
            Ok(response) => PostOutcome::Answered(response.status().as_u16()),
            Err(e) if e.is_timeout() => {
                PostOutcome::Failed(format!("no answer within {} s", timeout.as_secs_f64()))
            }
            Err(e) if e.is_connect() => {
                PostOutcome::Failed("could not connect to the receiver".into())
            }
            Err(e) => {
                tracing::debug!(error = %e, "webhook request failed");
                PostOutcome::Failed("the request failed before an answer".into())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    use super::*;

    /// A loopback server answering every request with `answer`; counts its requests.
    async fn server(
        answer: impl Fn() -> axum::response::Response + Clone + Send + Sync + 'static,
    ) -> (u16, Arc<AtomicUsize>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let hits = Arc::new(AtomicUsize::new(0));
        let counted = hits.clone();
        let app = axum::Router::new().fallback(move || {
            counted.fetch_add(1, Ordering::SeqCst);
            let answer = answer.clone();
            async move { answer() }
        });
        tokio::spawn(async move { axum::serve(listener, app).await });
        (port, hits)
    }

    #[tokio::test]
    async fn the_checked_address_is_called_and_redirects_are_not_followed() {
        use axum::response::IntoResponse;
        let (elsewhere, elsewhere_hits) = server(|| "ok".into_response()).await;
        let location = format!("http://127.0.0.1:{elsewhere}/");
        let (port, hits) = server(move || {
            (
                axum::http::StatusCode::FOUND,
                [(axum::http::header::LOCATION, location.clone())],
            )
                .into_response()
        })
        .await;
        // A name no DNS answers: the request can only reach the server through the address
        // given, never by resolving the name again.
        let url = format!("http://receiver.invalid:{port}/hook");
        let outcome = HttpTransport
            .post(
                &url,
                "127.0.0.1".parse().unwrap(),
                &[("webhook-id", "x".into())],
                "{}".into(),
                Duration::from_secs(5),
            )
            .await;
        assert_eq!(outcome, PostOutcome::Answered(302));
        assert_eq!(hits.load(Ordering::SeqCst), 1);
        assert_eq!(
            elsewhere_hits.load(Ordering::SeqCst),
            0,
            "the redirect was followed"
        );
        // An address literal is called only as the address checked.
        let other = HttpTransport
            .post(
                &format!("http://127.0.0.1:{port}/"),
                "::1".parse().unwrap(),
                &[],
                "{}".into(),
                Duration::from_secs(5),
            )
            .await;
        assert!(matches!(other, PostOutcome::Failed(_)), "{other:?}");
        assert_eq!(hits.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn only_plain_http_urls_with_a_host_are_taken() {
        let t = HttpTransport;
        for bad in [
            "ftp://example.com/x",
            "file:///etc/passwd",
            "http://user:pw@example.com/",
            "not a url",
            "unix:/run/x.sock",
        ] {
            assert!(
                matches!(t.resolve(bad).await, Err(TargetError::Invalid(_))),
                "{bad}"
            );
        }
        let ip = t.resolve("http://127.0.0.1:9/x").await.unwrap();
        assert_eq!(ip.addrs, vec!["127.0.0.1".parse::<IpAddr>().unwrap()]);
        let v6 = t.resolve("https://[::1]/x").await.unwrap();
        assert_eq!(v6.addrs, vec!["::1".parse::<IpAddr>().unwrap()]);
        // Every numeric spelling the URL parser knows ends up as the address it means.
        let odd = t.resolve("http://2130706433/").await.unwrap();
        assert_eq!(odd.addrs, vec!["127.0.0.1".parse::<IpAddr>().unwrap()]);
        let local = t.resolve("http://localhost:8080/").await.unwrap();
        assert!(
            local.addrs.iter().all(|a| a.is_loopback()),
            "{:?}",
            local.addrs
        );
    }
}
