//! The web console at `/ui`: static files built into the binary (`gateway/console/`), so a
//! gateway serves it offline with nothing beside it. The page is a client of the public API
//! and nothing else: it has no endpoint of its own, so it can do nothing its token could not.
//!
//! Served outside [`crate::routes`] on purpose: `/ui` is not an API operation and stays out of
//! the OpenAPI document. Every answer carries a strict Content-Security-Policy (scripts,
//! styles and requests to this origin only, no inline script or style, no framing) and an
//! ETag: files are revalidated (`no-cache`) so an upgraded gateway is never shadowed by a
//! cached old file, and an unchanged one costs a 304.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use sha2::{Digest, Sha256};

/// What the page is told about the gateway serving it.
#[derive(Debug, Clone, Default)]
pub struct ConsoleOptions {
    /// Demo mode: the directory holding the demo tokens (`admin.token`, `member.token`…), shown
    /// on the sign-in form. `None` outside demo mode: the page then says nothing about tokens'
    /// whereabouts.
    pub demo_tokens_dir: Option<String>,
}

pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; \
     style-src 'self'; img-src 'self' data:; connect-src 'self'; font-src 'self'; \
     base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

macro_rules! assets {
    ($($path:literal),* $(,)?) => {
        /// Every file of the console, by its path under `/ui/`.
        pub const ASSETS: &[(&str, &[u8])] = &[
            $(($path, include_bytes!(concat!("../../console/", $path)))),*
        ];
    };
}

assets![
    "index.html",
    "style.css",
    "app/main.js",
    "app/api.js",
    "app/format.js",
    "app/widgets.js",
    "app/tenant.js",
    "app/states.js",
    "app/operations.js",
    "app/operator.js",
    "vendor/preact.mjs",
    "vendor/hooks.mjs",
    "vendor/htm.mjs",
    "vendor/LICENSE-preact",
    "vendor/LICENSE-htm",
];

/// The placeholder in `index.html` that carries [`ConsoleOptions::demo_tokens_dir`].
const DEMO_PLACEHOLDER: &str = "{{demo_tokens_dir}}";

struct Asset {
    body: Vec<u8>,
    content_type: &'static str,
    etag: HeaderValue,
}

struct Files {
    index: Asset,
    others: Vec<(&'static str, Asset)>,
}

fn content_type(path: &str) -> &'static str {
    match path.rsplit_once('.').map(|(_, ext)| ext) {
        Some("html") => "text/html; charset=utf-8",
        Some("css") => "text/css; charset=utf-8",
        Some("js" | "mjs") => "text/javascript; charset=utf-8",
        Some("png") => "image/png",
        Some("svg") => "image/svg+xml",
        _ => "text/plain; charset=utf-8",
    }
}

fn asset(path: &'static str, body: Vec<u8>) -> Asset {
    let digest = hex::encode(&Sha256::digest(&body)[..16]);
    Asset {
        content_type: content_type(path),
        etag: HeaderValue::from_str(&format!("\"{digest}\"")).expect("hex is a header value"),
        body,
    }
}

/// HTML-escapes text for an attribute value.
fn attribute(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('"', "&quot;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// The console's routes: `/ui` (and `/ui/`) is the page, `/ui/{path}` its files.
pub fn router(options: &ConsoleOptions) -> Router {
    let mut others = Vec::new();
    let mut index = None;
    for (path, body) in ASSETS {
        if *path == "index.html" {
            let html = String::from_utf8_lossy(body).replace(
                DEMO_PLACEHOLDER,
                &attribute(options.demo_tokens_dir.as_deref().unwrap_or("")),
            );
            index = Some(asset(path, html.into_bytes()));
        } else {
            others.push((*path, asset(path, body.to_vec())));
        }
    }
    let files = Arc::new(Files {
        index: index.expect("the console has an index.html"),
        others,
    });
    Router::new()
        .route("/ui", get(page))
        .route("/ui/", get(page))
        .route("/ui/{*path}", get(file))
        .with_state(files)
}

async fn page(State(files): State<Arc<Files>>, headers: HeaderMap) -> Response {
    serve(&files.index, &headers)
}

async fn file(
    State(files): State<Arc<Files>>,
    Path(path): Path<String>,
    headers: HeaderMap,
) -> Response {
    match files.others.iter().find(|(p, _)| *p == path) {
        Some((_, asset)) => serve(asset, &headers),
        None => {
            crate::ApiError::new(StatusCode::NOT_FOUND, "not_found", "no such file").into_response()
        }
    }
}

fn serve(asset: &Asset, request: &HeaderMap) -> Response {
    let fresh = request
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|tag| tag.trim() == asset.etag));
    let mut response = if fresh {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        (
            [(
                header::CONTENT_TYPE,
                HeaderValue::from_static(asset.content_type),
            )],
            asset.body.clone(),
        )
            .into_response()
    };
    let h = response.headers_mut();
    h.insert(header::ETAG, asset.etag.clone());
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CONTENT_SECURITY_POLICY),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    fn console_dir() -> std::path::PathBuf {
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../console")
    }

    /// A file added to `gateway/console/` but not to [`ASSETS`] would be a 404 in the browser.
    #[test]
    fn every_console_file_is_built_in() {
        fn walk(dir: &std::path::Path, base: &std::path::Path, out: &mut Vec<String>) {
            for entry in std::fs::read_dir(dir).unwrap() {
                let path = entry.unwrap().path();
                if path.is_dir() {
                    walk(&path, base, out);
                } else {
                    out.push(path.strip_prefix(base).unwrap().display().to_string());
                }
            }
        }
        let mut found = Vec::new();
        walk(&console_dir(), &console_dir(), &mut found);
        // Documentation and the vendoring record are not served.
        found.retain(|p| p != "README.md" && p != "vendor/SHA256SUMS");
        found.sort();
        let mut listed: Vec<String> = ASSETS.iter().map(|(p, _)| p.to_string()).collect();
        listed.sort();
        assert_eq!(found, listed);
    }

    /// The vendored libraries are byte for byte what `scripts/vendor-console.sh` verified
    /// against the pinned packages' integrity.
    #[test]
    fn vendored_files_match_their_recorded_digests() {
        let sums = std::fs::read_to_string(console_dir().join("vendor/SHA256SUMS")).unwrap();
        let mut checked = 0;
        for line in sums.lines().filter(|l| !l.starts_with('#')) {
            let (digest, name) = line.split_once("  ").expect("sha256sum format");
            let body = ASSETS
                .iter()
                .find(|(p, _)| *p == format!("vendor/{name}"))
                .map(|(_, b)| *b)
                .unwrap_or_else(|| panic!("vendor/{name} is not built in"));
            assert_eq!(hex::encode(Sha256::digest(body)), digest, "vendor/{name}");
            checked += 1;
        }
        assert_eq!(checked, 5);
    }

    #[test]
    fn no_inline_script_or_style_in_the_page() {
        let html = std::str::from_utf8(ASSETS[0].1).unwrap();
        for tag in html.split("<script").skip(1) {
            assert!(tag.contains(" src="), "inline script: <script{tag}");
        }
        assert!(!html.contains("<style") && !html.contains(" style="));
    }

    #[test]
    fn the_demo_directory_is_escaped_into_the_page() {
        assert_eq!(attribute("a\"<b>&"), "a&quot;&lt;b&gt;&amp;");
    }
}
