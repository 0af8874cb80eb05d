//! Validation of client text. Names are user text: they are stored and returned, never used
//! in a file path or in libvirt XML (snapshots are named by state uuid).

use unicode_properties::{GeneralCategoryGroup, UnicodeGeneralCategory};

use crate::ServiceError;

pub const MAX_NAME_CHARS: usize = 255;
pub const MAX_DESCRIPTION_CHARS: usize = 1024;
/// Every `tenant_id` column is `varchar(255)` (PostgreSQL counts characters).
pub const MAX_TENANT_CHARS: usize = 255;

/// The one rule for a tenant id, wherever it comes from: a JWT claim, the static token file,
/// `PUT /v1/instances/{i}/owner`, `/v1/quotas/{tenant}`. 1–255 characters that are letters,
/// marks, numbers, punctuation or symbols: no whitespace or other separator, no control,
/// format (zero-width, bidi), private-use or unassigned character. A tenant id is an
/// identifier (a Keystone project id, a Nova project uuid), never prose, so nothing is
/// normalised: what is not already clean is refused.
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
    if let Some(c) = tenant.chars().find(|c| {
        matches!(
            c.general_category_group(),
            GeneralCategoryGroup::Other | GeneralCategoryGroup::Separator
        )
    }) {
        return invalid(format!(
            "must hold letters, digits, punctuation or symbols only (found U+{:04X})",
            u32::from(c)
        ));
    }
    Ok(())
}

/// A state name: 1–255 printable characters (no control characters), not only spaces.
pub fn state_name(name: &str) -> Result<(), ServiceError> {
    let count = name.chars().count();
    if count == 0 || name.trim().is_empty() {
        return Err(ServiceError::bad_request(
            "invalid_name",
            "name must not be empty",
        ));
    }
    if count > MAX_NAME_CHARS {
        return Err(ServiceError::bad_request(
            "invalid_name",
            format!("name is {count} characters long; the maximum is {MAX_NAME_CHARS}"),
        ));
    }
    if name.chars().any(char::is_control) {
        return Err(ServiceError::bad_request(
            "invalid_name",
            "name must contain printable characters only",
        ));
    }
    Ok(())
}

pub fn description(text: &str) -> Result<(), ServiceError> {
    let count = text.chars().count();
    if count > MAX_DESCRIPTION_CHARS {
        return Err(ServiceError::bad_request(
            "invalid_description",
            format!(
                "description is {count} characters long; the maximum is {MAX_DESCRIPTION_CHARS}"
            ),
        ));
    }
    if text
        .chars()
        .any(|c| c.is_control() && c != '\n' && c != '\t')
    {
        return Err(ServiceError::bad_request(
            "invalid_description",
            "description must not contain control characters",
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert!(state_name("before upgrade").is_ok());
        assert!(state_name("ünïcødé ✓").is_ok());
        assert!(state_name(&"x".repeat(255)).is_ok());
        assert_eq!(state_name("").unwrap_err().code(), "invalid_name");
        assert_eq!(state_name("   ").unwrap_err().code(), "invalid_name");
        assert_eq!(
            state_name(&"x".repeat(256)).unwrap_err().code(),
            "invalid_name"
        );
        assert_eq!(state_name("a\nb").unwrap_err().code(), "invalid_name");
        assert_eq!(state_name("a\u{0}b").unwrap_err().code(), "invalid_name");
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
            "ünïcødé",
            &"t".repeat(255),
            &"é".repeat(255),
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
    fn descriptions() {
        assert!(description("line one\nline two").is_ok());
        assert!(description(&"d".repeat(1025)).is_err());
        assert!(description("bell\u{7}").is_err());
    }
}
