//! `snapgate plugin new NAME`: a standalone plugin crate with the SDK and the contract vendored
//! in, so it builds with plain cargo anywhere (no workspace inheritance, no path into this
//! repository).

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Context};

/// The crate's files: (path in the crate, contents, templated). In templated files `{name}`
/// and `{wasm_name}` are filled in; the SDK, the WIT and the examples are copied verbatim from
/// the repository at build time (the same files the in-tree plugins build from).
const FILES: &[(&str, &str, bool)] = &[
    ("Cargo.toml", include_str!("template/Cargo.toml.in"), true),
    ("README.md", include_str!("template/README.md.in"), true),
    ("src/lib.rs", include_str!("template/lib.rs.in"), true),
    ("cases.json", include_str!("template/cases.json"), true),
    (".gitignore", include_str!("template/gitignore"), false),
    // The versions the SDK was tested with (cargo drops what this crate does not use).
    (
        "Cargo.lock",
        include_str!("../../../../plugins/Cargo.lock"),
        false,
    ),
    (
        "examples/save-request.json",
        include_str!("../../../../plugins/examples/save-request.json"),
        false,
    ),
    (
        "examples/apply-request.json",
        include_str!("../../../../plugins/examples/apply-request.json"),
        false,
    ),
    (
        "sdk/Cargo.toml",
        include_str!("template/sdk-Cargo.toml"),
        false,
    ),
    (
        "sdk/src/lib.rs",
        include_str!("../../../../plugins/sdk/src/lib.rs"),
        false,
    ),
    (
        "sdk/src/config.rs",
        include_str!("../../../../plugins/sdk/src/config.rs"),
        false,
    ),
    (
        "sdk/src/decision.rs",
        include_str!("../../../../plugins/sdk/src/decision.rs"),
        false,
    ),
    (
        "sdk/src/testing.rs",
        include_str!("../../../../plugins/sdk/src/testing.rs"),
        false,
    ),
    (
        "sdk/wit/snapgate-policy.wit",
        include_str!("../../../../wit/0.2.0/snapgate-policy.wit"),
        false,
    ),
];

pub(super) fn run(name: &str, dir: Option<&Path>) -> anyhow::Result<ExitCode> {
    check_name(name)?;
    let root = dir.unwrap_or(Path::new(".")).join(name);
    if root.exists() {
        bail!("{} exists already", root.display());
    }
    let wasm_name = format!("{}.wasm", name.replace('-', "_"));
    for (path, contents, templated) in FILES {
        let target = root.join(path);
        std::fs::create_dir_all(target.parent().expect("files are inside the crate"))
            .with_context(|| format!("cannot create {}", target.display()))?;
        let text = if *templated {
            contents
                .replace("{name}", name)
                .replace("{wasm_name}", &wasm_name)
        } else {
            (*contents).to_owned()
        };
        std::fs::write(&target, text)
            .with_context(|| format!("cannot write {}", target.display()))?;
    }
    // From inside the crate, after the `cd`.
    let wasm = wasm_path(Path::new(""), &wasm_name);
    println!(
        "created {root} (contract snapgate:policy@0.2.0; the SDK and the WIT are in sdk/)\n\
         \n  cd {root}\n  cargo test\n  cargo build --release --target wasm32-wasip2\n\
         \nthe component: {component}\n\
         \n  snapgate plugin check {wasm}\n  snapgate plugin test cases.json",
        root = root.display(),
        component = root.join(&wasm).display(),
        wasm = wasm.display(),
    );
    Ok(ExitCode::SUCCESS)
}

/// Where cargo writes the component: under `CARGO_TARGET_DIR` when set (then absolute, as
/// cargo takes it from the crate's directory), else the crate's target/.
fn wasm_path(root: &Path, wasm_name: &str) -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("target"));
    target.join("wasm32-wasip2/release").join(wasm_name)
}

/// A cargo package name that is also a safe directory name.
fn check_name(name: &str) -> anyhow::Result<()> {
    let ok = name.len() <= 64
        && name.starts_with(|c: char| c.is_ascii_lowercase())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_');
    if !ok {
        bail!(
            "{name:?} is not a plugin name: 1 to 64 of a-z, 0-9, - and _, starting with a letter"
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_checked() {
        assert!(check_name("no-big-saves_2").is_ok());
        for bad in ["", "Big", "9lives", "../x", "a b", "a/b"] {
            assert!(check_name(bad).is_err(), "{bad}");
        }
    }

    /// The vendored SDK's dependencies are the in-tree plugins workspace's.
    #[test]
    fn the_sdk_template_pins_what_the_plugins_workspace_uses() {
        let workspace = include_str!("../../../../plugins/Cargo.toml");
        let sdk = include_str!("template/sdk-Cargo.toml");
        for dep in ["serde = ", "serde_json = ", "wit-bindgen = "] {
            let line = |text: &str| {
                text.lines()
                    .find(|l| l.starts_with(dep))
                    .map(str::to_owned)
                    .unwrap_or_else(|| panic!("{dep} missing"))
            };
            assert_eq!(line(workspace), line(sdk));
        }
    }
}
