//! Validation of client text. Names are user text: they are stored and returned, never used
//! in a file path or in libvirt XML (snapshots are named by state uuid).

use crate::ServiceError;

pub const MAX_NAME_CHARS: usize = 255;
pub const MAX_DESCRIPTION_CHARS: usize = 1024;

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
    fn descriptions() {
        assert!(description("line one\nline two").is_ok());
        assert!(description(&"d".repeat(1025)).is_err());
        assert!(description("bell\u{7}").is_err());
    }
}
