//! The web console at `/ui`, in a real browser (Debian's headless Chromium through
//! chromedriver) against the real gateway: a member signs in, saves a state and watches it
//! finish, applies it after the confirmation, deletes states, sees a quota refusal and a policy
//! denial as the API words them, and sees nothing of another tenant; the operator sees
//! tenants, hosts, plugins, decisions and the operations in flight, and edits a quota.
//!
//! With `CONSOLE_SCREENSHOTS_DIR=<dir>` the tests leave `console-tenant.png` and
//! `console-operator.png` there (`scripts/console-screenshots.sh` writes the README's).

use serde_json::{json, Value};
use snapgate_store::SeaRepository;
use snapgate_tests::app::demo_inventory_read;
use snapgate_tests::app::{demo, repo_root, TestApp};
use snapgate_tests::browser::Browser;
use snapgate_tests::foreign::{end_foreign_save, foreign_running_save};

const ENTER: &str = "\u{E007}";
const ESCAPE: &str = "\u{E00C}";

fn disk_format_plugin() -> String {
    let wasm = repo_root().join("plugins/dist/disk-format.wasm");
    assert!(
        wasm.exists(),
        "{} is missing: run scripts/build-plugins.sh (the test command does)",
        wasm.display()
    );
    let cache = repo_root().join("target/plugin-cache-tests");
    format!(
        "[policy]\ndeadline_ms = 500\nmemory_mib = 16\ncache_dir = \"{}\"\n[[policy.plugins]]\nname = \"disk-format\"\nfile = \"{}\"\noperations = [\"save\"]\nmode = \"enforce\"\non_error = \"deny\"\nconfig = '{{\"allowed\": [\"qcow2\"]}}'\n",
        cache.display(),
        wasm.display()
    )
}

async fn set_quota(app: &TestApp, limits: Value) {
    let r = app
        .call(
            "PUT",
            &format!("/v1/quotas/{}", demo::TENANT),
            Some(&app.admin),
            Some(limits),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
}

fn screenshot_dir() -> Option<std::path::PathBuf> {
    std::env::var_os("CONSOLE_SCREENSHOTS_DIR").map(std::path::PathBuf::from)
}

/// Opens the console and signs in with `token`, typed and sent with Enter (the keyboard).
async fn sign_in(browser: &Browser, app: &TestApp, token: &str) {
    browser.goto(&format!("{}/ui", app.url)).await;
    browser
        .wait_until(
            "the sign-in form",
            "document.querySelector('[data-testid=token]')",
        )
        .await;
    browser.type_into("[data-testid=token]", token).await;
    browser.keys(ENTER).await;
    browser
        .wait_until(
            "the signed-in header",
            "document.querySelector('[data-testid=who]').innerText.includes('tenant')",
        )
        .await;
}

/// Waits for the operation of `kind` started from the page to end in `status`.
async fn operation_ends(browser: &Browser, kind: &str, status: &str) {
    browser
        .wait_until(
            &format!("the {kind} to end {status}"),
            &format!(
                "document.querySelector('[data-testid=operation][data-kind={kind}][data-status={status}]')"
            ),
        )
        .await;
}

fn state_row(name: &str) -> String {
    format!("[data-testid=state][data-name=\"{name}\"]")
}

async fn save_from_page(browser: &Browser, name: &str) {
    browser.type_into("[data-testid=save-name]", name).await;
    browser.click("[data-testid=save-submit]").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_saves_applies_and_deletes_states_and_sees_refusals_in_the_browser() {
    let app = TestApp::builder()
        .config(&disk_format_plugin())
        .start()
        .await;
    demo_inventory_read(&app).await;
    set_quota(
        &app,
        json!({"states": 3, "state_bytes": -1, "concurrent_operations": -1, "saves_per_hour": -1}),
    )
    .await;
    let repo = SeaRepository::connect(&app.shared.db_url).await.unwrap();
    let browser = Browser::start(1280, 1000).await;
    sign_in(&browser, &app, &app.member).await;

    // The tenant's instances, and nothing of the other tenant's.
    browser
        .wait_until(
            "the tenant's five instances",
            "document.querySelectorAll('[data-testid=instance]').length === 5",
        )
        .await;
    let page = browser.text("body").await;
    assert!(
        !page.contains("nova-app") && !page.contains(demo::NOVA_TENANT),
        "{page}"
    );
    // The first instance (by uuid) is chosen; its states are listed.
    browser
        .wait_until(
            "demo-web's states",
            "document.querySelector('[data-testid=states-instance]').innerText === 'demo-web' && document.querySelector('[data-testid=states] .empty')",
        )
        .await;
    browser
        .wait_until(
            "the quota gauges",
            "document.querySelector('[data-testid=gauge-states]').innerText.includes('0 of 3')",
        )
        .await;

    // An operation already running (another gateway's) is followed live through /wait.
    let foreign = foreign_running_save(&repo, demo::DB).await;
    browser.eval("location.reload()", vec![]).await;
    browser
        .wait_until(
            "the running operation",
            "document.querySelector('[data-testid=operation][data-status=running]')",
        )
        .await;
    end_foreign_save(&repo, foreign).await;
    operation_ends(&browser, "save", "failed").await;

    // Save, and watch it finish.
    browser
        .wait_until(
            "the save form",
            "document.querySelector('[data-testid=save-name]')",
        )
        .await;
    browser
        .type_into("[data-testid=save-description]", "before the upgrade")
        .await;
    save_from_page(&browser, "first").await;
    operation_ends(&browser, "save", "succeeded").await;
    browser
        .wait_until(
            "the saved state",
            &format!(
                "document.querySelector('{}')?.dataset.status === 'available'",
                state_row("first")
            ),
        )
        .await;
    let row = browser.text(&state_row("first")).await;
    assert!(row.contains("before the upgrade"), "{row}");
    // Times: the browser's zone on screen, UTC on hover.
    let utc = browser
        .eval(
            "return document.querySelector(arguments[0] + ' time').title",
            vec![json!(state_row("first"))],
        )
        .await;
    assert!(utc.as_str().unwrap().starts_with("UTC: "), "{utc}");
    browser
        .wait_until(
            "the states gauge",
            "document.querySelector('[data-testid=gauge-states]').innerText.includes('1 of 3')",
        )
        .await;

    // Apply: the confirmation says what is lost; Escape cancels, the button confirms.
    browser
        .click(&format!("{} [data-testid=apply]", state_row("first")))
        .await;
    let summary = browser
        .wait_until(
            "the apply confirmation",
            "document.querySelector('[data-testid=confirm][open] [data-testid=apply-summary]')?.innerText",
        )
        .await;
    assert!(
        summary.as_str().unwrap().contains("What is lost"),
        "{summary}"
    );
    browser.keys(ESCAPE).await;
    browser
        .wait_until(
            "the dialog to close",
            "!document.querySelector('dialog[open]')",
        )
        .await;
    browser
        .click(&format!("{} [data-testid=apply]", state_row("first")))
        .await;
    browser
        .wait_until("the dialog", "document.querySelector('dialog[open]')")
        .await;
    browser.click("dialog[open] [data-testid=confirm-ok]").await;
    operation_ends(&browser, "apply", "succeeded").await;

    // Several at once: a second state, then both selected and deleted together.
    save_from_page(&browser, "second").await;
    browser
        .wait_until(
            "the second state",
            &format!(
                "document.querySelector('{}')?.dataset.status === 'available'",
                state_row("second")
            ),
        )
        .await;
    for name in ["first", "second"] {
        browser
            .click(&format!("{} [data-testid=select]", state_row(name)))
            .await;
    }
    browser.click("[data-testid=delete-selected]").await;
    let listed = browser
        .wait_until(
            "the delete confirmation",
            "document.querySelector('dialog[open] [data-testid=delete-summary]')?.innerText",
        )
        .await;
    assert!(
        listed.as_str().unwrap().contains("first") && listed.as_str().unwrap().contains("second"),
        "{listed}"
    );
    browser.click("dialog[open] [data-testid=confirm-ok]").await;
    browser
        .wait_until(
            "both deletes to end",
            "document.querySelectorAll('[data-testid=operation][data-kind=delete][data-status=succeeded]').length === 2",
        )
        .await;
    browser
        .wait_until(
            "the states to be gone",
            "document.querySelectorAll('[data-testid=state]').length === 0",
        )
        .await;

    // A policy denial on the raw-disk instance, with the plugin's reason.
    browser
        .click(&format!(
            "[data-testid=instance][data-uuid=\"{}\"] button",
            demo::RAW_DISK
        ))
        .await;
    browser
        .wait_until(
            "raw-disk's states",
            "document.querySelector('[data-testid=states-instance]').innerText === 'raw-disk'",
        )
        .await;
    save_from_page(&browser, "raw").await;
    let error = browser
        .wait_until(
            "the policy denial",
            "document.querySelector('[data-testid=error][data-code=policy_denied]')?.innerText",
        )
        .await;
    let error = error.as_str().unwrap();
    assert!(
        error.contains("disk-format") && error.contains("vda"),
        "{error}"
    );

    // Back on demo-web.
    browser
        .click(&format!(
            "[data-testid=instance][data-uuid=\"{}\"] button",
            demo::WEB
        ))
        .await;
    browser
        .wait_until(
            "demo-web's states",
            "document.querySelector('[data-testid=states-instance]').innerText === 'demo-web' && document.querySelector('[data-testid=states] .empty')",
        )
        .await;
    // A quota refusal, as the API words it: the limit of 3 states is reached.
    for name in ["q1", "q2", "q3"] {
        app.saved(demo::WEB, name, &app.member).await;
    }
    save_from_page(&browser, "one too many").await;
    let error = browser
        .wait_until(
            "the quota refusal",
            "document.querySelector('[data-testid=error][data-code=quota_exceeded]')?.innerText",
        )
        .await;
    let error = error.as_str().unwrap();
    assert!(error.contains("quota exceeded for states"), "{error}");
    assert!(error.contains("limit") && error.contains('3'), "{error}");

    browser
        .wait_until(
            "the states saved meanwhile",
            "document.querySelectorAll('[data-testid=state]').length === 3",
        )
        .await;
    if let Some(dir) = screenshot_dir() {
        browser.screenshot(&dir.join("console-tenant.png")).await;
    }

    // Phone width: nothing wider than the screen (tables scroll inside their panel).
    browser.set_window(390, 844).await;
    browser
        .wait_until(
            "the page to fit a phone's width",
            "window.innerWidth < 500 && document.documentElement.scrollWidth <= window.innerWidth",
        )
        .await;

    // Signed out, the token is gone from the tab; the other tenant's member sees only its own.
    browser.click("[data-testid=signout]").await;
    let stored = browser
        .eval("return sessionStorage.getItem('snapgate.token')", vec![])
        .await;
    assert_eq!(stored, Value::Null);
    let cookies = browser.eval("return document.cookie", vec![]).await;
    assert_eq!(cookies, json!(""));
    sign_in(&browser, &app, &app.other_member).await;
    browser
        .wait_until(
            "the other tenant's instance",
            "document.querySelectorAll('[data-testid=instance]').length === 1 && document.querySelector('[data-testid=states-instance]')?.innerText === 'nova-app'",
        )
        .await;
    browser
        .wait_until(
            "its quota",
            "document.querySelector('[data-testid=gauge-states]').innerText.includes('0 of')",
        )
        .await;
    let page = browser.text("body").await;
    for foreign in ["demo-web", "raw-disk", "first", "q1", "tenant demo"] {
        assert!(
            !page.contains(foreign),
            "{foreign} shown to the other tenant:\n{page}"
        );
    }
    assert!(
        browser
            .eval(
                "return document.querySelector('[data-testid=tab-operator]')",
                vec![]
            )
            .await
            .is_null(),
        "no operator view for a member"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_operator_sees_tenants_hosts_plugins_decisions_and_operations_in_the_browser() {
    let app = TestApp::builder()
        .config(&disk_format_plugin())
        .start()
        .await;
    demo_inventory_read(&app).await;
    let repo = SeaRepository::connect(&app.shared.db_url).await.unwrap();
    // Decisions to list: an allowed save and a denied one.
    app.saved(demo::WEB, "allowed", &app.member).await;
    let r = app.save(demo::RAW_DISK, "denied", &app.member).await;
    assert_eq!((r.status, r.code()), (403, "policy_denied"), "{}", r.text);
    // An operation in flight.
    let foreign = foreign_running_save(&repo, demo::DB).await;

    let browser = Browser::start(1280, 1600).await;
    sign_in(&browser, &app, &app.admin).await;
    browser.click("[data-testid=tab-operator]").await;
    browser
        .wait_until(
            "the tenants",
            &format!(
                "document.querySelector('[data-testid=tenant][data-tenant=\"{}\"]') && document.querySelector('[data-testid=tenant][data-tenant=\"{}\"]')",
                demo::TENANT,
                demo::NOVA_TENANT
            ),
        )
        .await;
    browser
        .wait_until(
            "the host",
            "document.querySelector('[data-testid=host][data-name=demo][data-up=true]')?.innerText.includes('6')",
        )
        .await;
    browser
        .wait_until(
            "the plugin and its mode",
            "document.querySelector('[data-testid=plugin][data-name=disk-format][data-mode=enforce]')",
        )
        .await;
    browser
        .wait_until(
            "the operation in flight",
            "document.querySelector('[data-testid=in-flight-op]')?.innerText.includes('demo')",
        )
        .await;
    browser
        .wait_until(
            "the instance owners",
            "document.querySelectorAll('[data-testid=owner-row]').length === 6",
        )
        .await;
    browser
        .wait_until(
            "both decisions",
            "document.querySelector('[data-testid=decision][data-outcome=allow]') && document.querySelector('[data-testid=decision][data-outcome=deny]')",
        )
        .await;
    if let Some(dir) = screenshot_dir() {
        browser.screenshot(&dir.join("console-operator.png")).await;
    }

    // Filtered decisions: the denials only.
    browser
        .eval(
            "const s = document.querySelector('[data-testid=filter-outcome]'); s.value = 'deny'; s.dispatchEvent(new Event('change', {bubbles: true}));",
            vec![],
        )
        .await;
    browser.click("[data-testid=filter-apply]").await;
    browser
        .wait_until(
            "only denials",
            "document.querySelectorAll('[data-testid=decision]').length > 0 && !document.querySelector('[data-testid=decision][data-outcome=allow]')",
        )
        .await;

    // A tenant's limits, edited in the page.
    browser
        .click(&format!(
            "[data-testid=tenant][data-tenant=\"{}\"] [data-testid=edit-quota]",
            demo::TENANT
        ))
        .await;
    browser
        .wait_until(
            "the quota editor",
            "document.querySelector('[data-testid=quota-editor]')",
        )
        .await;
    browser.type_into("[data-testid=limit-states]", "7").await;
    browser.click("[data-testid=quota-save]").await;
    browser
        .wait_until(
            "the new limit",
            &format!(
                "document.querySelector('[data-testid=tenant][data-tenant=\"{}\"]').innerText.includes('/ 7')",
                demo::TENANT
            ),
        )
        .await;
    let r = app
        .get(&format!("/v1/quotas/{}", demo::TENANT), &app.admin)
        .await;
    assert_eq!(r.body["usage"]["states"]["limit"], 7);

    end_foreign_save(&repo, foreign).await;
    browser.click("[data-testid=refresh]").await;
    browser
        .wait_until(
            "nothing in flight",
            "!document.querySelector('[data-testid=in-flight-op]') && document.querySelector('[data-testid=in-flight] .empty')",
        )
        .await;
}

/// `/ui` is served by the gateway with a strict policy and revalidation, stays out of the API
/// document, and its files are the built-in ones.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_console_is_served_with_a_strict_policy_and_out_of_the_api_document() {
    let app = TestApp::builder().start().await;
    let page = app.call("GET", "/ui", None, None).await;
    assert_eq!(page.status, 200);
    assert_eq!(
        page.header("content-type"),
        Some("text/html; charset=utf-8")
    );
    let csp = page.header("content-security-policy").unwrap();
    assert!(
        csp.contains("script-src 'self'") && csp.contains("default-src 'none'"),
        "{csp}"
    );
    assert!(!csp.contains("unsafe-inline"), "{csp}");
    assert_eq!(page.header("x-content-type-options"), Some("nosniff"));
    assert_eq!(page.header("cache-control"), Some("no-cache"));
    assert!(page.text.contains("/ui/app/main.js"));
    // Not demo mode here: the page names no token files.
    assert!(
        page.text
            .contains("name=\"snapgate-demo-tokens\" content=\"\""),
        "{}",
        page.text
    );

    let etag = page.header("etag").unwrap().to_owned();
    let again = app
        .http
        .get(format!("{}/ui", app.url))
        .header("If-None-Match", &etag)
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), 304);

    let script = app.call("GET", "/ui/app/main.js", None, None).await;
    assert_eq!(script.status, 200);
    assert_eq!(
        script.header("content-type"),
        Some("text/javascript; charset=utf-8")
    );
    let lib = app.call("GET", "/ui/vendor/preact.mjs", None, None).await;
    assert_eq!(lib.status, 200);
    let missing = app.call("GET", "/ui/app/nothing.js", None, None).await;
    assert_eq!((missing.status, missing.code()), (404, "not_found"));

    let doc = app.call("GET", "/openapi.json", None, None).await;
    let paths = doc.body["paths"].as_object().unwrap();
    assert!(
        paths.keys().all(|p| !p.starts_with("/ui")),
        "{:?}",
        paths.keys()
    );
}
