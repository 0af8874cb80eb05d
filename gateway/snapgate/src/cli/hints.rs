//! What a user can do about an error, by its stable code (docs/API.md, "Errors"): the line the
//! CLI prints after `error: …` as `hint: …`. A code without a hint prints none.

use serde_json::Value;
use snapgate_core::error::ErrorDetail;
use uuid::Uuid;

use super::render::human_bytes;

/// The error's message, with the numbers a quota refusal carries (the gateway's message names
/// only the resource): `quota exceeded: 10 of 10 states in use`.
pub fn message(e: &ErrorDetail) -> String {
    if e.code != "quota_exceeded" {
        return e.message.clone();
    }
    let n = |k: &str| e.details.get(k).and_then(Value::as_i64);
    let resource = e.details.get("resource").and_then(Value::as_str);
    match (resource, n("limit"), n("in_use"), n("reserved")) {
        (Some(r), Some(limit), Some(in_use), reserved) => {
            let used = in_use + reserved.unwrap_or(0);
            let (used, limit) = if r == "state_bytes" {
                (human_bytes(Some(used)), human_bytes(Some(limit)))
            } else {
                (used.to_string(), limit.to_string())
            };
            let asked = match n("requested") {
                Some(q) if r == "state_bytes" => format!(", {} more asked", human_bytes(Some(q))),
                Some(q) => format!(", {q} more asked"),
                None => String::new(),
            };
            format!("quota exceeded: {used} of {limit} {}{asked}", noun(r))
        }
        _ => e.message.clone(),
    }
}

fn noun(resource: &str) -> &str {
    match resource {
        "states" => "states",
        "state_bytes" => "of state storage",
        "concurrent_operations" => "operations at once",
        "saves_per_hour" => "saves this hour",
        other => other,
    }
}

/// The hint of an API error: by code, then by status for codes without one; a server fault
/// names the request id the operator looks for in the gateway's log.
pub fn for_api_error(
    status: u16,
    e: &ErrorDetail,
    request_id: Option<&str>,
    instance: Option<&Uuid>,
) -> Option<String> {
    let hint = for_code(&e.code, instance).or_else(|| match status {
        500.. => {
            Some("the gateway failed; retry later and tell your operator if it lasts".to_owned())
        }
        _ => None,
    })?;
    Some(match (status, request_id) {
        (500.., Some(id)) => format!("{hint} (request id {id} in the gateway's log)"),
        _ => hint,
    })
}

/// The hint for a stable code, with the instance's uuid filled in where a command is shown.
pub fn for_code(code: &str, instance: Option<&Uuid>) -> Option<String> {
    let vm = instance.map_or_else(|| "<instance>".to_owned(), Uuid::to_string);
    let hint = match code {
        "unauthenticated" => "give a valid token: --token, --token-file, SNAPGATE_TOKEN or SNAPGATE_TOKEN_FILE (a token may have expired)".into(),
        "forbidden" => "your role does not allow this call: saving, applying and deleting need the member role; ask your tenant's admin".into(),
        "instance_not_found" => "check the instance's uuid, and that your token is of the tenant that owns the instance".into(),
        "state_not_found" => format!("list the instance's states: snapgate state-list {vm}"),
        "schedule_not_found" => format!("list the instance's schedules: snapgate schedule list {vm}"),
        "operation_not_found" => "check the operation's uuid; operations of another tenant are not found either".into(),
        "duplicate_name" => format!("choose another name, or delete the state that has it (snapgate state-list {vm})"),
        "instance_busy" => "another operation is running on the instance (its uuid is in the error); retry when it has ended".into(),
        "state_not_available" => format!("the state is being saved, applied or deleted, or its save failed: see its status with snapgate state-show {vm} <state>"),
        "state_expired" => "the state has expired and is being deleted; save a new one".into(),
        "instance_not_running" => "start the instance first: a state keeps a running guest's memory".into(),
        "state_on_other_host" => "the state's files stay on the host where it was saved: move the instance back to that host, then apply or delete it".into(),
        "quota_exceeded" => format!("delete states you no longer need (snapgate state-list {vm}, then snapgate state-delete {vm} <state>…) or ask your operator to raise the limit"),
        "rate_limited" => "too many saves in the last hour for your tenant; retry later or ask your operator to raise saves_per_hour".into(),
        "schedule_limit_exceeded" => format!("delete a schedule you no longer need (snapgate schedule list {vm}) or ask your operator to raise lifecycle.max_schedules_per_tenant"),
        "policy_denied" => "a policy of your cloud refused the call for the reason above; ask your operator about the policy".into(),
        "unsupported_disk_format" => "an internal state needs every disk in qcow2; ask your operator whether external states (save mode external) are enabled".into(),
        "host_devices_attached" => "a guest with PCI, USB or mediated host devices cannot be saved with its memory; detach them first".into(),
        "snapshot_kind_conflict" => format!("the instance keeps states of the other kind (snapshot_kind in snapgate state-list {vm}); delete them or save in their mode"),
        "idempotency_key_in_use" => "the same request is still being processed; retry in a few seconds".into(),
        "idempotency_key_reused" => "an Idempotency-Key was used for another request; send a new key".into(),
        "too_many_waits" | "dry_run_rate_limited" | "overloaded" => "the gateway is busy; retry in a few seconds".into(),
        "quota_backend_unavailable" | "database_unavailable" => "the gateway cannot reach its database or Redis; retry later, and tell your operator if it lasts (snapgate doctor on the gateway shows what is down)".into(),
        "compute_unavailable" => "the instance's compute host cannot be reached; retry later, and tell your operator if it lasts".into(),
        "compute_error" => "the compute host failed the operation; retry, and tell your operator if it fails again".into(),
        "request_timeout" => format!("the call may still take effect: check snapgate state-list {vm} before retrying"),
        "interrupted" => "the gateway stopped during the work and undid it; run the command again".into(),
        "operation_finished" => "the operation has ended already: nothing is left to cancel (a save that ended succeeded keeps its state)".into(),
        "operation_not_cancellable" => "only a save can be cancelled; wait for the apply or delete to end".into(),
        "cancelled" => "the save was cancelled: its state was removed and its quota returned; save again if you need it".into(),
        "snapshot_not_found" => "the state's snapshot is gone from the host; delete the state".into(),
        "invalid_name" => "a name is 1–255 characters: visible ones, no control characters, no spaces at either end".into(),
        "invalid_description" => "a description is at most 1024 characters, no control characters but newline and tab".into(),
        "invalid_expires_at" => "give an RFC 3339 time in the future, e.g. 2030-01-31T00:00:00Z, or never".into(),
        "invalid_cron" => "5 fields (minute hour day month weekday), 6 with seconds first, or @hourly, @daily, @weekly, @monthly".into(),
        "invalid_time_zone" => "give an IANA time zone name, e.g. Europe/Berlin or UTC".into(),
        "invalid_name_pattern" => "the pattern may use %Y %m %d %H %M %S and %%; the names it makes follow the rules of state names".into(),
        "webhook_not_found" => "list your tenant's webhooks: snapgate webhook list".into(),
        "webhook_limit_exceeded" => "delete a webhook you no longer need (snapgate webhook list) or ask your operator to raise webhooks.max_per_tenant".into(),
        "invalid_webhook_url" => "give an http:// or https:// URL with a host and no user:password in it".into(),
        "webhook_target_refused" => "the gateway calls only addresses its operator allows (by default public ones): use a public URL, or ask your operator (webhooks.allowed_cidrs)".into(),
        "webhook_target_unresolvable" => "the URL's host name does not resolve from the gateway: check its spelling and DNS".into(),
        "unknown_event_type" => "event types: state.saved, state.applied, state.deleted, state.failed, state.expired, operation.progress, operation.cancelled, schedule.run, schedule.skipped, quota.exceeded, policy.denied".into(),
        "invalid_event_id" => "--after (or Last-Event-ID) is the seq of an event: a whole number, 0 for the oldest kept".into(),
        "too_many_event_streams" => "your tenant holds the most event streams this gateway allows; close one (another snapgate events?) or retry later".into(),
        "http_error" => "the answer is not the gateway's: check --url (or SNAPGATE_URL)".into(),
        _ => return None,
    };
    Some(hint)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn detail(code: &str, details: Value) -> ErrorDetail {
        serde_json::from_value(
            json!({"code": code, "message": "quota exceeded for states", "x": 1}),
        )
        .map(|mut d: ErrorDetail| {
            if let Value::Object(m) = details {
                d.details.extend(m);
            }
            d
        })
        .unwrap()
    }

    #[test]
    fn a_quota_refusal_says_how_full_the_quota_is() {
        let e = detail(
            "quota_exceeded",
            json!({"resource": "states", "limit": 10, "in_use": 10, "reserved": 0, "requested": 1}),
        );
        assert_eq!(message(&e), "quota exceeded: 10 of 10 states, 1 more asked");
        let vm = Uuid::nil();
        let hint = for_api_error(403, &e, None, Some(&vm)).unwrap();
        assert!(
            hint.contains(&format!("snapgate state-list {vm}")),
            "{hint}"
        );
    }

    #[test]
    fn every_documented_error_code_of_a_user_call_has_a_hint() {
        let api = include_str!("../../../../docs/API.md");
        let table = api
            .split("## Errors")
            .nth(1)
            .and_then(|s| s.split("\n\n").nth(2))
            .expect("the error table of docs/API.md");
        // Codes of the operator's and the HTTP layer's own calls need none.
        let without = [
            "malformed_json",
            "invalid_body",
            "invalid_parameter",
            "invalid_marker",
            "invalid_path",
            "invalid_quota",
            "invalid_tenant",
            "invalid_retention",
            "invalid_idempotency_key",
            "tenant_not_found",
            "not_found",
            "method_not_allowed",
            "body_too_large",
            "unsupported_media_type",
            "policy_reload_failed",
        ];
        // The codes are the backquoted words outside parentheses (those hold the details).
        let mut outside = String::new();
        let mut depth = 0;
        for ch in table.chars() {
            match ch {
                '(' => depth += 1,
                ')' => depth -= 1,
                _ if depth == 0 => outside.push(ch),
                _ => {}
            }
        }
        let codes: Vec<&str> = outside
            .split('`')
            .skip(1)
            .step_by(2)
            .filter(|c| c.chars().all(|ch| ch.is_ascii_lowercase() || ch == '_'))
            .collect();
        assert!(codes.len() > 30, "{codes:?}");
        for code in codes {
            if !without.contains(&code) {
                assert!(for_code(code, None).is_some(), "no hint for {code}");
            }
        }
    }

    #[test]
    fn a_server_fault_names_its_request_id() {
        let e = detail("internal_error", json!({}));
        let hint = for_api_error(500, &e, Some("abc"), None).unwrap();
        assert!(hint.contains("request id abc"), "{hint}");
        assert_eq!(for_api_error(400, &e, Some("abc"), None), None);
    }
}
