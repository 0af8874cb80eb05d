//! Policy warnings travel as RFC 7234 `Warning` headers (code 199, "miscellaneous warning"),
//! the way Kubernetes admission warnings do, and in the body.

use http::{HeaderMap, HeaderValue};

pub fn append(headers: &mut HeaderMap, warnings: &[String]) {
    for w in warnings {
        // Header values must be visible ASCII; anything else is replaced, the body keeps the text.
        let text: String = w
            .chars()
            .map(|c| {
                if c.is_ascii() && !c.is_ascii_control() && c != '"' {
                    c
                } else {
                    '?'
                }
            })
            .take(512)
            .collect();
        if let Ok(v) = HeaderValue::from_str(&format!("199 snapgate \"{text}\"")) {
            headers.append(http::header::WARNING, v);
        }
    }
}
