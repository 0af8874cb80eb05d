// The console: sign in with a token, then the tenant's view and, for a cloud operator, the
// operator's view. Everything it shows or changes goes through the public API (api.js).
import { render } from "../vendor/preact.mjs";
import { useEffect, useState } from "../vendor/hooks.mjs";
import { get, token, whenUnauthenticated } from "./api.js";
import { ErrorBox, html } from "./widgets.js";
import { TenantView } from "./tenant.js";
import { OperatorView } from "./operator.js";

function demoTokensDir() {
  const meta = document.querySelector('meta[name="snapgate-demo-tokens"]');
  const dir = meta ? meta.content : "";
  if (!dir || dir.startsWith("{{")) return null;
  return dir.startsWith("/") || dir.startsWith(".") ? dir : `./${dir}`;
}

function SignIn({ error, onSignIn }) {
  const [value, setValue] = useState("");
  const demo = demoTokensDir();
  const submit = (e) => {
    e.preventDefault();
    if (value.trim()) onSignIn(value.trim());
  };
  return html`<main id="main" class="signin">
    <section class="panel">
      <h2>Sign in to snapgate</h2>
      <form onSubmit=${submit} data-testid="signin">
        <label for="token">Bearer token</label>
        <input id="token" type="password" autocomplete="off" spellcheck=${false} value=${value}
          onInput=${(e) => setValue(e.currentTarget.value)} data-testid="token" autofocus />
        <div class="row"><button class="primary" type="submit" data-testid="signin-submit">Sign in</button></div>
      </form>
      <p class="muted">The token stays in this browser tab (session storage) and is sent only to this gateway's API.</p>
      ${demo && html`<div class="notice" data-testid="demo-tokens">
        <strong>Demo cloud.</strong> The demo tokens are on the gateway's machine:
        <code>${demo}/member.token</code> (a member of tenant <code>demo</code>),
        <code>${demo}/reader.token</code>, <code>${demo}/admin.token</code> (the tenant's admin) and
        <code>${demo}/operator.token</code> (the cloud operator). Paste one's contents here.
      </div>`}
      <${ErrorBox} error=${error} />
    </section>
  </main>`;
}

function App() {
  const [signedIn, setSignedIn] = useState(Boolean(token.get()));
  const [me, setMe] = useState(null);
  const [error, setError] = useState(null);
  const [tab, setTab] = useState("tenant");

  useEffect(() => {
    whenUnauthenticated((e) => {
      token.clear();
      setMe(null);
      setSignedIn(false);
      setError(e);
    });
  }, []);

  useEffect(() => {
    if (!signedIn) return;
    get("/v1/me")
      .then((m) => {
        setMe(m);
        setError(null);
      })
      .catch(setError);
  }, [signedIn]);

  const signIn = (t) => {
    token.set(t);
    setError(null);
    setSignedIn(true);
  };
  const signOut = () => {
    token.clear();
    setMe(null);
    setSignedIn(false);
  };

  if (!signedIn) return html`<${SignIn} error=${error} onSignIn=${signIn} />`;

  const operator = me && me.operator;
  const current = operator ? tab : "tenant";
  return html`<div>
    <header class="top">
      <h1>snapgate</h1>
      ${operator && html`<nav class="tabs" aria-label="Views" role="tablist">
        <button role="tab" aria-selected=${current === "tenant"} onClick=${() => setTab("tenant")} data-testid="tab-tenant">Tenant</button>
        <button role="tab" aria-selected=${current === "operator"} onClick=${() => setTab("operator")} data-testid="tab-operator">Operator</button>
      </nav>`}
      <span class="who" data-testid="who">${me ? html`${me.subject} · tenant <strong>${me.tenant_id}</strong> · ${me.role}${me.operator ? " · operator" : ""}` : "…"}</span>
      <button type="button" onClick=${signOut} data-testid="signout">Sign out</button>
    </header>
    <main id="main">
      <${ErrorBox} error=${error} />
      ${me && (current === "operator" ? html`<${OperatorView} me=${me} />` : html`<${TenantView} me=${me} />`)}
    </main>
  </div>`;
}

render(html`<${App} />`, document.getElementById("app"));
