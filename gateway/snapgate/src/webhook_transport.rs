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
    use super::*;

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
