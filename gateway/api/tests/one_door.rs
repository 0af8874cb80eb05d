//! One door: every handler reaches the system through the `Service`, which authorizes.
//! A handler that checked a role or reached a backend itself would open a second path around
//! the service's authorization; this reads the handlers' source and refuses one.

use std::path::Path;

/// What a handler must not touch: roles (authorization is the service's), and the backends
/// the service holds.
const FORBIDDEN: [&str; 9] = [
    "Role::",
    ".has(",
    ".is_admin(",
    "can_see(",
    "require_admin",
    ".repo()",
    ".compute()",
    ".quota_store()",
    "AdminHooks",
];

#[test]
fn handlers_go_through_the_service_and_check_no_roles() {
    let routes = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/routes");
    let mut offences = Vec::new();
    let mut files = 0;
    for entry in std::fs::read_dir(&routes).expect("src/routes") {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "rs") {
            files += 1;
            let source = std::fs::read_to_string(&path).unwrap();
            for (n, line) in source.lines().enumerate() {
                for needle in FORBIDDEN {
                    if line.contains(needle) && !line.trim_start().starts_with("//") {
                        offences.push(format!("{}:{}: {}", path.display(), n + 1, line.trim()));
                    }
                }
            }
        }
    }
    assert!(files >= 5, "the handlers moved: update this test");
    assert!(offences.is_empty(), "{}", offences.join("\n"));
}
