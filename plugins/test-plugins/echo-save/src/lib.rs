//! Allows every request with one warning echoing `request.save` (what the caller of a save
//! asked for), so tests see what reached the plugin: `save name=… description=… mode=… kind=…
//! expires-at-ms=…`, or `no save` for applies and deletes.
use snapgate_plugin_sdk::{export_policy, Decision, Policy, Request};

struct EchoSave;

impl Policy for EchoSave {
    fn evaluate(req: &Request) -> Decision {
        let Some(save) = &req.save else {
            return Decision::allow_with_warning("no save");
        };
        Decision::allow_with_warning(format!(
            "save name={} description={} mode={:?} kind={:?} expires-at-ms={:?}",
            save.name,
            save.description.as_deref().unwrap_or("-"),
            save.mode,
            save.kind,
            save.expires_at_ms
        ))
    }
}

export_policy!(EchoSave);
