//! The text rules of the OpenAPI document, built from the service's own character classes
//! (`snapgate_core::service::validate`), so the document states exactly what the gateway
//! accepts: a generated client, or the fuzz run, that follows the document is never refused for
//! a name or a tenant id, and one that breaks it is. Annotations name a placeholder
//! (`pattern = "@tenant_id"`); [`fill`] replaces it in the finished document.
//!
//! Code points of the Basic Multilingual Plane are written `\uXXXX` (the same in ECMA-262 and
//! Python regexes); those above it are written as themselves, as JSON strings carry them.

use std::fmt::Write as _;

use snapgate_core::service::validate;

pub const TENANT_ID: &str = "@tenant_id";
pub const STATE_NAME: &str = "@state_name";
pub const DESCRIPTION: &str = "@description";
pub const IDEMPOTENCY_KEY: &str = "@idempotency_key";

/// Replaces every placeholder `pattern` in the document (a JSON tree) with its regex.
pub fn fill(doc: &mut serde_json::Value) {
    let tenant = format!("^{}+$", class(validate::tenant_char));
    // Names: allowed characters throughout, no whitespace at either end. Written as negated
    // classes (what is refused is a few dozen ranges; what is allowed, hundreds), which keeps
    // the pattern short and cheap for generators.
    let (any, edge) = (
        negated_class(validate::name_char),
        negated_class(validate::name_edge_char),
    );
    let name = format!("^{edge}(?:{any}*{edge})?$");
    let description = format!("^{}*$", negated_class(validate::description_char));
    let idempotency_key = format!("^{}+$", class(validate::idempotency_key_char));
    replace(
        doc,
        &[
            (TENANT_ID, &tenant),
            (STATE_NAME, &name),
            (DESCRIPTION, &description),
            (IDEMPOTENCY_KEY, &idempotency_key),
        ],
    );
}

fn replace(value: &mut serde_json::Value, patterns: &[(&str, &str)]) {
    match value {
        serde_json::Value::Object(map) => {
            for (key, v) in map.iter_mut() {
                if key == "pattern" {
                    if let Some((_, regex)) = patterns.iter().find(|(p, _)| v == *p) {
                        *v = serde_json::Value::String((*regex).to_owned());
                        continue;
                    }
                }
                replace(v, patterns);
            }
        }
        serde_json::Value::Array(items) => items.iter_mut().for_each(|v| replace(v, patterns)),
        _ => {}
    }
}

/// A negated regex class: every code point `allowed` refuses (surrogates included), so the
/// class matches exactly what it accepts.
fn negated_class(allowed: fn(char) -> bool) -> String {
    ranges("[^", |code| !char::from_u32(code).is_some_and(allowed))
}

/// A regex class of every character `allowed` accepts, as ranges.
fn class(allowed: fn(char) -> bool) -> String {
    ranges("[", |code| char::from_u32(code).is_some_and(allowed))
}

fn ranges(open: &str, member: impl Fn(u32) -> bool) -> String {
    let mut out = String::from(open);
    let mut run: Option<(u32, u32)> = None;
    for code in 0..=0x10FFFFu32 {
        let ok = member(code);
        run = match (run, ok) {
            (Some((start, _)), true) => Some((start, code)),
            (None, true) => Some((code, code)),
            (Some((start, end)), false) => {
                push_range(&mut out, start, end);
                None
            }
            (None, false) => None,
        };
    }
    if let Some((start, end)) = run {
        push_range(&mut out, start, end);
    }
    out.push(']');
    out
}

fn push_range(out: &mut String, start: u32, end: u32) {
    push_char(out, start);
    if end > start {
        if end > start + 1 {
            out.push('-');
        }
        push_char(out, end);
    }
}

fn push_char(out: &mut String, code: u32) {
    if code <= 0xFFFF {
        let _ = write!(out, "\\u{code:04X}");
    } else {
        out.push(char::from_u32(code).expect("not a surrogate above the BMP"));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classes_are_ranges_of_the_rule() {
        let ascii_digit = |c: char| c.is_ascii_digit();
        assert_eq!(class(ascii_digit), "[\\u0030-\\u0039]");
        let two = |c: char| c == 'a' || c == 'b';
        assert_eq!(class(two), "[\\u0061\\u0062]");
        let astral = |c: char| c == '\u{1F600}';
        assert_eq!(class(astral), "[\u{1F600}]");
    }

    #[test]
    fn placeholders_are_filled_everywhere() {
        let mut doc = serde_json::json!({"a": {"pattern": TENANT_ID}, "b": [{"pattern": STATE_NAME}],
            "c": {"pattern": DESCRIPTION}, "d": {"pattern": "^x$"},
            "e": {"pattern": IDEMPOTENCY_KEY}});
        fill(&mut doc);
        let text = doc.to_string();
        assert!(!text.contains('@'), "{text}");
        assert_eq!(doc["d"]["pattern"], "^x$");
        assert!(doc["a"]["pattern"]
            .as_str()
            .unwrap()
            .starts_with("^[\\u0021"));
        assert_eq!(doc["e"]["pattern"], "^[\\u0021-\\u007E]+$");
    }
}
