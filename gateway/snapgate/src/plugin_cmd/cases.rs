//! `snapgate plugin test CASES`: a file of cases run against one plugin in the production
//! runtime, so operators can put their policies in CI.
//!
//! ```json
//! {
//!   "plugin": "target/wasm32-wasip2/release/my_policy.wasm",
//!   "request": "@examples/save-request.json",
//!   "config": {"max_memory_mib": 4096},
//!   "cases": [
//!     {"name": "small saves pass", "expect": {"verdict": "allow"}},
//!     {"name": "big saves are denied",
//!      "request": {"instance": {"memory-bytes": 8589934592}},
//!      "expect": {"verdict": "deny", "code": "too_much_memory"}}
//!   ]
//! }
//! ```
//!
//! A case's `request` is a JSON merge patch (RFC 7386) over the file's `request` (or a whole
//! request when the file has none); `config` replaces the file's. Either may be `"@FILE"`,
//! relative to the cases file.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Context};
use serde::Deserialize;
use serde_json::Value;
use snapgate_policy::json::Request;
use snapgate_policy::{EvalReport, PluginRunner};

use super::{config_arg, LimitArgs, EXIT_DENY};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CasesFile {
    plugin: Option<PathBuf>,
    request: Option<Value>,
    config: Option<Value>,
    cases: Vec<Case>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Case {
    name: String,
    request: Option<Value>,
    config: Option<Value>,
    expect: Expect,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Expect {
    verdict: Verdict,
    /// The deny code (for `deny`).
    code: Option<String>,
    /// Text the deny reason must contain.
    reason_contains: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
enum Verdict {
    Allow,
    Deny,
    Error,
}

impl Verdict {
    fn as_str(self) -> &'static str {
        match self {
            Verdict::Allow => "allow",
            Verdict::Deny => "deny",
            Verdict::Error => "error",
        }
    }
}

pub(super) fn run(
    cases_path: &Path,
    plugin: Option<&Path>,
    limits: LimitArgs,
) -> anyhow::Result<ExitCode> {
    let text = std::fs::read_to_string(cases_path)
        .with_context(|| format!("cannot read {}", cases_path.display()))?;
    let file: CasesFile = serde_json::from_str(&text)
        .with_context(|| format!("{} is not a cases file", cases_path.display()))?;
    let base = cases_path.parent().unwrap_or(Path::new("."));
    let plugin = match (plugin, &file.plugin) {
        (Some(p), _) => p.to_path_buf(),
        (None, Some(p)) => base.join(p),
        (None, None) => bail!(
            "no plugin: name it with --plugin or in {}'s \"plugin\"",
            cases_path.display()
        ),
    };
    if file.cases.is_empty() {
        bail!("{} has no cases", cases_path.display());
    }
    let base_request = file
        .request
        .as_ref()
        .map(|r| load_value(r, base))
        .transpose()?;
    let base_config = match &file.config {
        Some(c) => config_text(c, base)?,
        None => "{}".to_owned(),
    };
    // Every case's input is checked before the plugin runs: a typo is not a failed case.
    let mut inputs = Vec::with_capacity(file.cases.len());
    for case in &file.cases {
        let mut request = base_request.clone().unwrap_or(Value::Null);
        if let Some(patch) = &case.request {
            merge_patch(&mut request, &load_value(patch, base)?);
        }
        let request: Request = serde_json::from_value(request).with_context(|| {
            format!(
                "case {:?}: the request does not fit the contract (`snapgate plugin schema`)",
                case.name
            )
        })?;
        let config = match &case.config {
            Some(c) => config_text(c, base).with_context(|| format!("case {:?}", case.name))?,
            None => base_config.clone(),
        };
        inputs.push((case, request, config));
    }

    let runner = PluginRunner::load(&plugin, limits.limits())
        .with_context(|| format!("cannot load {}", plugin.display()))?;
    println!(
        "{}: {} cases, contract {}",
        plugin.display(),
        inputs.len(),
        runner.contract().as_str()
    );
    let mut failed = 0;
    for (case, request, config) in &inputs {
        let report = runner.eval(request, config);
        match mismatch(&case.expect, &report) {
            None => println!("ok    {}: {}", case.name, shown(&report)),
            Some(why) => {
                failed += 1;
                println!("FAIL  {}: {why}", case.name);
            }
        }
    }
    println!("{} passed, {failed} failed", inputs.len() - failed);
    Ok(if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(EXIT_DENY)
    })
}

/// `"@FILE"` read as JSON, anything else as is.
fn load_value(value: &Value, base: &Path) -> anyhow::Result<Value> {
    match value.as_str().and_then(|s| s.strip_prefix('@')) {
        Some(file) => {
            let path = base.join(file);
            let text = std::fs::read_to_string(&path)
                .with_context(|| format!("cannot read {}", path.display()))?;
            serde_json::from_str(&text).with_context(|| format!("{} is not JSON", path.display()))
        }
        None => Ok(value.clone()),
    }
}

/// A config as the plugin's JSON text: a JSON value, or `"@FILE"`.
fn config_text(value: &Value, base: &Path) -> anyhow::Result<String> {
    match value.as_str() {
        Some(s) if s.starts_with('@') => config_arg(s, base),
        _ => Ok(value.to_string()),
    }
}

/// RFC 7386: objects merge key by key, `null` removes a key, anything else replaces.
fn merge_patch(target: &mut Value, patch: &Value) {
    let Value::Object(patch) = patch else {
        *target = patch.clone();
        return;
    };
    if !target.is_object() {
        *target = Value::Object(Default::default());
    }
    let target = target.as_object_mut().expect("made an object above");
    for (key, value) in patch {
        if value.is_null() {
            target.remove(key);
        } else {
            merge_patch(target.entry(key.clone()).or_insert(Value::Null), value);
        }
    }
}

fn shown(report: &EvalReport) -> String {
    match (report.outcome.as_str(), &report.code, &report.error) {
        ("deny", Some(code), _) => format!("deny {code}"),
        ("error", _, Some(e)) => format!("error ({})", e.kind()),
        (outcome, _, _) => outcome.to_owned(),
    }
}

/// Why `report` does not meet `expect`, if it does not.
fn mismatch(expect: &Expect, report: &EvalReport) -> Option<String> {
    let got = shown(report);
    let reason = report.reason.as_deref().unwrap_or_default();
    if report.outcome != expect.verdict.as_str() {
        let detail = match &report.error {
            Some(e) => format!(": {e}"),
            None if reason.is_empty() => String::new(),
            None => format!(": {reason}"),
        };
        return Some(format!(
            "expected {}, got {got}{detail}",
            expect.verdict.as_str()
        ));
    }
    if let Some(code) = &expect.code {
        if report.code.as_deref() != Some(code.as_str()) {
            return Some(format!("expected code {code}, got {got}"));
        }
    }
    if let Some(text) = &expect.reason_contains {
        if !reason.contains(text.as_str()) {
            return Some(format!(
                "expected the reason to contain {text:?}, got {reason:?}"
            ));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn merge_patch_follows_rfc_7386() {
        let mut doc = json!({"a": {"b": 1, "c": 2}, "d": [1], "e": 3});
        merge_patch(
            &mut doc,
            &json!({"a": {"b": 5, "c": null}, "d": [2, 3], "f": "x"}),
        );
        assert_eq!(doc, json!({"a": {"b": 5}, "d": [2, 3], "e": 3, "f": "x"}));
    }
}
