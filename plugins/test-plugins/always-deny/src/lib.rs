//! Denies every request with code `always_deny` and a warning; logs one line per request and,
//! when the config says `{"log_flood": true}`, tries to flood the log.
use snapgate_plugin_sdk::{export_policy, log, Decision, LogLevel, Policy, Request};

struct AlwaysDeny;

impl Policy for AlwaysDeny {
    fn evaluate(req: &Request) -> Decision {
        log(
            LogLevel::Info,
            &format!("denying {:?} for tenant {}", req.operation, req.tenant),
        );
        if req.config.contains("\"log_flood\":true") {
            let long = "x".repeat(10_000);
            for _ in 0..1000 {
                log(LogLevel::Warn, &long);
            }
        }
        Decision::deny("always_deny", "this test plugin denies everything")
            .with_warning("always-deny was here")
    }
}

export_policy!(AlwaysDeny);
