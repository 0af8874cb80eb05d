//! Validation of client text. Names are user text: they are stored and returned, never used
//! in a file path or in libvirt XML (snapshots are named by state uuid).
//!
//! Text a person reads must show what it holds: no invisible characters that reorder, hide or
//! join what is displayed (Unicode format characters, category `Cf`: zero-width spaces and
//! joiners, bidi overrides and isolates, the BOM…), no control characters, and for names no
//! whitespace at either end (so no name is blank). What passes is stored in Unicode normalisation form C, so two
//! names that differ only in normalisation are the same name (a second save answers 409).

use unicode_normalization::UnicodeNormalization;
use unicode_properties::{GeneralCategory, UnicodeGeneralCategory};

use crate::ServiceError;

pub const MAX_NAME_CHARS: usize = 255;
pub const MAX_DESCRIPTION_CHARS: usize = 1024;
/// Every `tenant_id` column is `varchar(255)` (PostgreSQL counts characters).
pub const MAX_TENANT_CHARS: usize = 255;

/// The one rule for a tenant id, wherever it comes from: a JWT claim, the static token file,
/// `PUT /v1/instances/{i}/owner`, `/v1/quotas/{tenant}`. 1–255 printable ASCII characters
/// other than space (see [`tenant_char`]). A tenant id is an identifier (a Keystone project
/// id, a Nova project uuid), never prose, so nothing is normalised: what is not already clean
/// is refused.
pub fn tenant_id(tenant: &str) -> Result<(), ServiceError> {
    let invalid = |why: String| {
        Err(ServiceError::bad_request(
            "invalid_tenant",
            format!("tenant id {why}"),
        ))
    };
    let count = tenant.chars().count();
    if count == 0 {
        return invalid("must not be empty".into());
    }
    if count > MAX_TENANT_CHARS {
        return invalid(format!(
            "is {count} characters long; the maximum is {MAX_TENANT_CHARS}"
        ));
    }
    if let Some(c) = tenant.chars().find(|c| !tenant_char(*c)) {
        return invalid(format!(
            "must hold printable ASCII characters other than space only (found U+{:04X})",
            u32::from(c)
        ));
    }
    Ok(())
}

/// An `Idempotency-Key` may be this long (the column holds 255; Stripe's limit too).
pub const MAX_IDEMPOTENCY_KEY_CHARS: usize = 255;

/// An `Idempotency-Key` header value: 1–255 printable ASCII characters other than space, taken
/// byte for byte (a key sent in the IETF draft's quoted form keeps its quotes; a client sends
/// it the same way each time). Anything else is refused, never cleaned up: a key the gateway
/// changed would no longer match the client's.
pub fn idempotency_key(key: &str) -> Result<(), ServiceError> {
    let invalid = |why: String| {
        Err(ServiceError::bad_request(
            "invalid_idempotency_key",
            format!("Idempotency-Key {why}"),
        ))
    };
    let count = key.chars().count();
    if count == 0 {
        return invalid("must not be empty".into());
    }
    if count > MAX_IDEMPOTENCY_KEY_CHARS {
        return invalid(format!(
            "is {count} characters long; the maximum is {MAX_IDEMPOTENCY_KEY_CHARS}"
        ));
    }
    if key.chars().any(|c| !idempotency_key_char(c)) {
        return invalid("must hold printable ASCII characters other than space only".into());
    }
    Ok(())
}

/// A character an `Idempotency-Key` may hold: printable ASCII, no space (U+0021–U+007E).
pub fn idempotency_key_char(c: char) -> bool {
    c.is_ascii_graphic()
}

/// A state name, returned as it is to be stored (NFC). Refused: empty, longer than 255
/// characters, surrounding whitespace (refused rather than trimmed, so what is stored is what
/// the client sent, up to normalisation), control or format characters, line or paragraph
/// separators, private use.
pub fn state_name(name: &str) -> Result<String, ServiceError> {
    let invalid = |message: String| ServiceError::bad_request("invalid_name", message);
    let name: String = name.nfc().collect();
    if name.is_empty() {
        return Err(invalid("name must not be empty".into()));
    }
    let count = name.chars().count();
    if count > MAX_NAME_CHARS {
        return Err(invalid(format!(
            "name is {count} characters long; the maximum is {MAX_NAME_CHARS}"
        )));
    }
    if let Some(c) = name.chars().find(|c| !name_char(*c)) {
        return Err(invalid(format!(
            "name must not contain control, format or separator characters (found U+{:04X})",
            u32::from(c)
        )));
    }
    if name.trim() != name {
        return Err(invalid("name must not start or end with whitespace".into()));
    }
    Ok(name)
}

/// A description, returned as it is to be stored (NFC): at most 1024 characters; line feeds
/// and tabs are allowed, other control characters, format characters and line or paragraph
/// separators are not. Surrounding whitespace is kept.
pub fn description(text: &str) -> Result<String, ServiceError> {
    let text: String = text.nfc().collect();
    let count = text.chars().count();
    if count > MAX_DESCRIPTION_CHARS {
        return Err(ServiceError::bad_request(
            "invalid_description",
            format!(
                "description is {count} characters long; the maximum is {MAX_DESCRIPTION_CHARS}"
            ),
        ));
    }
    if let Some(c) = text.chars().find(|c| !description_char(*c)) {
        return Err(ServiceError::bad_request(
            "invalid_description",
            format!(
                "description must not contain control, format or separator characters (found U+{:04X})",
                u32::from(c)
            ),
        ));
    }
    Ok(text)
}

// The character classes behind the rules. They are public so that the OpenAPI document states
// exactly these rules (`gateway/api/src/openapi/patterns.rs` turns each into a regex class):
// one definition, no second copy to drift.

/// A character a tenant id may hold: a printable ASCII character other than space
/// (U+0021–U+007E). Tenant ids are identifiers — Keystone project ids (hex), Nova project
/// uuids, short project names — never prose: nothing invisible, nothing that normalises, and a
/// rule a client, a database column and the OpenAPI document state the same way.
pub fn tenant_char(c: char) -> bool {
    c.is_ascii_graphic()
}

/// A character a state name may hold anywhere.
pub fn name_char(c: char) -> bool {
    !is_hidden_control(c)
}

/// A name may neither start nor end with whitespace.
pub fn name_edge_char(c: char) -> bool {
    name_char(c) && !c.is_whitespace()
}

/// A character a description may hold: what a name may, plus line feeds and tabs.
pub fn description_char(c: char) -> bool {
    c == '\n' || c == '\t' || name_char(c)
}

/// Control (`Cc`), format (`Cf`), line and paragraph separators (`Zl`, `Zp`), surrogates and
/// private use (`Cs`, `Co`): characters that change how text around them shows, or show as
/// nothing a reader can name.
fn is_hidden_control(c: char) -> bool {
    matches!(
        c.general_category(),
        GeneralCategory::Control
            | GeneralCategory::Format
            | GeneralCategory::LineSeparator
            | GeneralCategory::ParagraphSeparator
            | GeneralCategory::Surrogate
            | GeneralCategory::PrivateUse
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name_code(name: &str) -> &'static str {
        state_name(name).unwrap_err().code()
    }

    #[test]
    fn idempotency_keys() {
        for ok in [
            "8e03978e-40d5-43e8-bc93-6894a57f9324",
            "\"quoted\"",
            "!",
            &"k".repeat(255),
        ] {
            assert!(idempotency_key(ok).is_ok(), "{ok:?}");
        }
        for bad in ["", "a b", "tab\tkey", "é", "\u{7f}", &"k".repeat(256)] {
            assert_eq!(
                idempotency_key(bad).unwrap_err().code(),
                "invalid_idempotency_key",
                "{bad:?}"
            );
        }
    }

    #[test]
    fn names() {
        assert_eq!(state_name("before upgrade").unwrap(), "before upgrade");
        assert!(state_name("ünïcødé ✓").is_ok());
        assert!(state_name("日本語 名前").is_ok());
        assert!(state_name(&"x".repeat(255)).is_ok());
        assert_eq!(name_code(""), "invalid_name");
        assert_eq!(name_code("   "), "invalid_name");
        assert_eq!(name_code(&"x".repeat(256)), "invalid_name");
        assert_eq!(name_code("a\nb"), "invalid_name");
        assert_eq!(name_code("a\u{0}b"), "invalid_name");
        // Path and XML metacharacters are fine: names never reach a path or XML.
        assert!(state_name("../../etc/passwd<x/>&").is_ok());
    }

    #[test]
    fn tenant_ids() {
        for ok in [
            "demo",
            "11111111-1111-1111-1111-111111111111",
            "8a2b5c3d9e1f4a6b8c0d2e4f6a8b0c1d",
            "acme.eu_west@2",
            &"t".repeat(255),
        ] {
            assert!(tenant_id(ok).is_ok(), "{ok:?}");
        }
        for bad in [
            "",
            &"t".repeat(256),
            " demo",
            "demo ",
            "de mo",
            "de\u{a0}mo",
            "demo\n",
            "de\u{0}mo",
            "\u{200b}",
            "de\u{200b}mo",
            "de\u{202e}mo",
            "\u{feff}demo",
            "de\u{e000}mo",
            "de\u{2028}mo",
        ] {
            assert_eq!(
                tenant_id(bad).unwrap_err().code(),
                "invalid_tenant",
                "{bad:?}"
            );
        }
    }

    #[test]
    fn format_characters_are_refused_anywhere_in_a_name() {
        for hidden in [
            '\u{200B}', // zero width space
            '\u{200C}', // zero width non-joiner
            '\u{200D}', // zero width joiner
            '\u{2060}', // word joiner
            '\u{FEFF}', // byte order mark
            '\u{00AD}', // soft hyphen
            '\u{202A}', '\u{202B}', '\u{202C}', '\u{202D}',
            '\u{202E}', // bidi embeddings, overrides
            '\u{2066}', '\u{2067}', '\u{2068}', '\u{2069}', // bidi isolates
            '\u{200E}', '\u{200F}', // directional marks
            '\u{2028}', '\u{2029}', // line and paragraph separators
            '\u{E000}', // private use
        ] {
            for name in [
                format!("{hidden}"),
                format!("a{hidden}b"),
                format!("{hidden}name"),
                format!("name{hidden}"),
            ] {
                assert_eq!(name_code(&name), "invalid_name", "{name:?}");
            }
        }
        // The classic "Trojan source" name: displays as "backup-1-fdp.exe" reversed.
        assert_eq!(name_code("backup\u{202E}exe.pdf"), "invalid_name");
    }

    #[test]
    fn names_that_show_nothing_are_refused() {
        // Invisible-only names are refused by the character rules: zero-width characters are
        // format characters, and whitespace cannot stand at either end.
        for blank in [
            "\u{200B}\u{200B}", // zero-width only
            "\u{2060}",         // word joiner
            " \u{2800} ",       // braille blank between spaces
            "\u{3000}",         // ideographic space
            "\u{00A0}",         // no-break space
        ] {
            assert_eq!(name_code(blank), "invalid_name", "{blank:?}");
        }
    }

    #[test]
    fn surrounding_whitespace_is_refused_inner_whitespace_kept() {
        assert_eq!(name_code(" leading"), "invalid_name");
        assert_eq!(name_code("trailing "), "invalid_name");
        assert_eq!(name_code("\u{3000}ideographic"), "invalid_name");
        assert_eq!(state_name("two  spaces").unwrap(), "two  spaces");
    }

    #[test]
    fn names_are_stored_in_nfc() {
        // "é" as e + combining acute (NFD) and as one code point (NFC): the same name.
        let decomposed = "caf\u{0065}\u{0301}";
        let composed = "caf\u{00E9}";
        assert_ne!(decomposed, composed);
        assert_eq!(state_name(decomposed).unwrap(), composed);
        assert_eq!(state_name(composed).unwrap(), composed);
        // Length counts the stored (normalised) characters.
        let long_nfd = "e\u{0301}".repeat(255);
        assert_eq!(state_name(&long_nfd).unwrap().chars().count(), 255);
    }

    #[test]
    fn descriptions() {
        assert_eq!(
            description("line one\nline two\tend").unwrap(),
            "line one\nline two\tend"
        );
        assert!(description(&"d".repeat(1025)).is_err());
        assert!(description("bell\u{7}").is_err());
        assert!(description("cr\r\nlf").is_err());
        for hidden in ['\u{200B}', '\u{202E}', '\u{2067}', '\u{FEFF}', '\u{2028}'] {
            assert_eq!(
                description(&format!("text{hidden}more"))
                    .unwrap_err()
                    .code(),
                "invalid_description",
                "{hidden:?}"
            );
        }
        assert_eq!(description("cafe\u{0301}").unwrap(), "caf\u{00E9}");
        // Descriptions may be empty or padded: they are prose, not identifiers.
        assert_eq!(description("").unwrap(), "");
        assert_eq!(description("  indented").unwrap(), "  indented");
    }
}
