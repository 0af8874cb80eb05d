// The cloud operator's view: tenants and their quotas (limits editable), instances and their
// owners, the policy chain and its recent decisions, the compute hosts, and every tenant's
// operations in flight.
import { useEffect, useState } from "../vendor/hooks.mjs";
import { del, get, put, query, seg } from "./api.js";
import { Time, bytes, limitText, shortId } from "./format.js";
import { Badge, ErrorBox, PlaceholderRows, html } from "./widgets.js";

const RESOURCES = [
  ["states", "States", String],
  ["state_bytes", "State bytes", bytes],
  ["concurrent_operations", "Concurrent ops", String],
  ["saves_per_hour", "Saves / hour", String],
];

/** Loads `path` whenever `deps` change; returns [data, error, reload]. */
function useLoad(path, deps) {
  const [data, setData] = useState(null);
  const [error, setError] = useState(null);
  const [n, setN] = useState(0);
  useEffect(() => {
    get(path).then((d) => { setData(d); setError(null); }).catch(setError);
  }, [path, n, ...deps]);
  return [data, error, () => setN((x) => x + 1)];
}

function QuotaEditor({ tenant, onDone }) {
  const [values, setValues] = useState(Object.fromEntries(RESOURCES.map(([k]) => [k, String(tenant.usage[k].limit)])));
  const [error, setError] = useState(null);
  const save = async (e) => {
    e.preventDefault();
    try {
      const body = Object.fromEntries(RESOURCES.map(([k]) => [k, Number(values[k])]));
      await put(`/v1/quotas/${seg(tenant.tenant_id)}`, body);
      onDone();
    } catch (err) {
      setError(err);
    }
  };
  const reset = async () => {
    try {
      await del(`/v1/quotas/${seg(tenant.tenant_id)}`);
      onDone();
    } catch (err) {
      setError(err);
    }
  };
  return html`<tr><td colspan="7">
    <form class="inline" onSubmit=${save} data-testid="quota-editor" aria-label=${`Limits of ${tenant.tenant_id}`}>
      ${RESOURCES.map(([k, label]) => html`<div key=${k}><label for=${`q-${k}`}>${label} (-1: unlimited)</label>
        <input id=${`q-${k}`} type="number" min="-1" step="1" required value=${values[k]} data-testid=${`limit-${k}`}
          onInput=${(e) => setValues({ ...values, [k]: e.currentTarget.value })} /></div>`)}
      <div><button class="primary" type="submit" data-testid="quota-save">Set limits</button>
        <button type="button" onClick=${reset}>Back to defaults</button>
        <button type="button" onClick=${onDone}>Cancel</button></div>
    </form>
    <${ErrorBox} error=${error} />
  </td></tr>`;
}

function TenantsPanel({ version }) {
  const [data, error, reload] = useLoad("/v1/tenants", [version]);
  const [editing, setEditing] = useState(null);
  return html`<section class="panel" aria-labelledby="tenants-h" data-testid="tenants">
    <h2 id="tenants-h">Tenants and quotas</h2>
    <div class="table-wrap"><table>
      <thead><tr><th>Tenant</th>${RESOURCES.map(([k, label]) => html`<th class="num" key=${k}>${label}</th>`)}<th>Limits</th><th></th></tr></thead>
      <tbody>
        ${!data && html`<${PlaceholderRows} rows=${3} cols=${7} />`}
        ${data && data.values.map((t) => [
          html`<tr key=${t.tenant_id} data-testid="tenant" data-tenant=${t.tenant_id}>
            <td class="mono">${t.tenant_id}</td>
            ${RESOURCES.map(([k, , f]) => html`<td class="num" key=${k}>${f(t.usage[k].in_use + t.usage[k].reserved)} / ${limitText(t.usage[k].limit, f)}</td>`)}
            <td>${t.custom ? "custom" : html`<span class="muted">defaults</span>`}</td>
            <td><button type="button" onClick=${() => setEditing(editing === t.tenant_id ? null : t.tenant_id)}
              aria-expanded=${editing === t.tenant_id} data-testid="edit-quota">Edit limits</button></td>
          </tr>`,
          editing === t.tenant_id && html`<${QuotaEditor} key=${`${t.tenant_id}-edit`} tenant=${t} onDone=${() => { setEditing(null); reload(); }} />`,
        ])}
      </tbody>
    </table></div>
    <${ErrorBox} error=${error} />
  </section>`;
}

function OwnerCell({ instance, onDone }) {
  const [open, setOpen] = useState(false);
  const [tenant, setTenant] = useState(instance.owner || "");
  const [error, setError] = useState(null);
  const set = async (value) => {
    try {
      await put(`/v1/instances/${seg(instance.uuid)}/owner`, { tenant_id: value });
      setOpen(false);
      setError(null);
      onDone();
    } catch (e) {
      setError(e);
    }
  };
  return html`<td>
    <span class="mono">${instance.owner || html`<span class="muted">unowned</span>`}</span>
    ${instance.owner_source && html` <span class="muted">(${instance.owner_source})</span>`}
    ${" "}<button type="button" class="link" onClick=${() => setOpen(!open)} aria-expanded=${open}>change</button>
    ${open && html`<form class="inline" onSubmit=${(e) => { e.preventDefault(); set(tenant); }}>
      <div><label for=${`owner-${instance.uuid}`}>Owner tenant</label>
        <input id=${`owner-${instance.uuid}`} required value=${tenant} onInput=${(e) => setTenant(e.currentTarget.value)} /></div>
      <div><button class="primary" type="submit">Set owner</button>
        <button type="button" onClick=${() => set(null)}>Owner from metadata</button></div>
    </form>`}
    <${ErrorBox} error=${error} />
  </td>`;
}

function InstancesPanel({ version }) {
  const [markers, setMarkers] = useState([null]);
  const marker = markers[markers.length - 1];
  const [data, error, reload] = useLoad(`/v1/instances${query({ limit: 25, marker })}`, [version]);
  const next = data && data.instances_links.find((l) => l.rel === "next");
  return html`<section class="panel" aria-labelledby="owners-h" data-testid="owners">
    <h2 id="owners-h">Instances and owners</h2>
    <div class="table-wrap"><table>
      <thead><tr><th>Name</th><th class="hide-narrow">UUID</th><th>Host</th><th>Owner</th></tr></thead>
      <tbody>
        ${!data && html`<${PlaceholderRows} rows=${4} cols=${4} />`}
        ${data && data.values.map((i) => html`<tr key=${i.uuid} data-testid="owner-row" data-uuid=${i.uuid}>
          <td>${i.name || html`<span class="muted">unreachable</span>`}</td>
          <td class="mono hide-narrow">${i.uuid}</td>
          <td>${i.host}</td>
          <${OwnerCell} instance=${i} onDone=${reload} />
        </tr>`)}
      </tbody>
    </table></div>
    <div class="pager">
      <button type="button" disabled=${markers.length === 1} onClick=${() => setMarkers(markers.slice(0, -1))}>Previous</button>
      <button type="button" disabled=${!next} onClick=${() => setMarkers([...markers, data.values[data.values.length - 1].uuid])}>Next</button>
    </div>
    <${ErrorBox} error=${error} />
  </section>`;
}

function PluginsPanel({ version }) {
  const [data, error] = useLoad("/v1/policy/plugins", [version]);
  const plugins = data ? data.plugins || [] : null;
  return html`<section class="panel" aria-labelledby="plugins-h" data-testid="plugins">
    <h2 id="plugins-h">Policy plugins${data && data.generation !== undefined && html` <span class="muted">generation ${data.generation}, loaded <${Time} value=${data.loaded_at} /></span>`}</h2>
    <div class="table-wrap"><table>
      <thead><tr><th>Plugin</th><th>Mode</th><th>On error</th><th class="hide-narrow">Operations</th><th class="num">Allowed</th><th class="num">Denied</th><th class="num">Errors</th></tr></thead>
      <tbody>
        ${!plugins && html`<${PlaceholderRows} rows=${2} cols=${7} />`}
        ${plugins && plugins.length === 0 && html`<tr><td colspan="7" class="empty">No policy plugin is loaded: every request is allowed.</td></tr>`}
        ${plugins && plugins.map((p) => html`<tr key=${p.name} data-testid="plugin" data-name=${p.name} data-mode=${p.mode}>
          <td title=${p.sha256}>${p.name}</td><td><${Badge} value=${p.mode} /></td><td>${p.on_error}</td>
          <td class="hide-narrow">${p.operations && p.operations.length ? p.operations.join(", ") : "all"}</td>
          <td class="num">${p.stats ? p.stats.allowed : "—"}</td><td class="num">${p.stats ? p.stats.denied : "—"}</td><td class="num">${p.stats ? p.stats.errors : "—"}</td>
        </tr>`)}
      </tbody>
    </table></div>
    <${ErrorBox} error=${error} />
  </section>`;
}

function DecisionsPanel({ version }) {
  const [form, setForm] = useState({ tenant: "", plugin: "", outcome: "", since: "", until: "", limit: "50" });
  const [filter, setFilter] = useState(form);
  const iso = (local) => (local ? new Date(local).toISOString() : "");
  const path = `/v1/policy/decisions${query({ ...filter, since: iso(filter.since), until: iso(filter.until) })}`;
  const [data, error] = useLoad(path, [version]);
  const field = (k) => (e) => setForm({ ...form, [k]: e.currentTarget.value });
  return html`<section class="panel" aria-labelledby="decisions-h" data-testid="decisions">
    <h2 id="decisions-h">Recent policy decisions</h2>
    <form class="inline" onSubmit=${(e) => { e.preventDefault(); setFilter(form); }} aria-label="Filter decisions">
      <div><label for="d-tenant">Tenant</label><input id="d-tenant" value=${form.tenant} onInput=${field("tenant")} data-testid="filter-tenant" /></div>
      <div><label for="d-plugin">Plugin</label><input id="d-plugin" value=${form.plugin} onInput=${field("plugin")} data-testid="filter-plugin" /></div>
      <div><label for="d-outcome">Outcome</label><select id="d-outcome" value=${form.outcome} onChange=${field("outcome")} data-testid="filter-outcome">
        <option value="">any</option><option value="allow">allow</option><option value="deny">deny</option><option value="error">error</option></select></div>
      <div><label for="d-since">Since (your time)</label><input id="d-since" type="datetime-local" value=${form.since} onInput=${field("since")} /></div>
      <div><label for="d-until">Until (your time)</label><input id="d-until" type="datetime-local" value=${form.until} onInput=${field("until")} /></div>
      <div><label for="d-limit">Limit</label><input id="d-limit" type="number" min="1" max="1000" value=${form.limit} onInput=${field("limit")} /></div>
      <div><button type="submit" data-testid="filter-apply">Filter</button></div>
    </form>
    <div class="table-wrap"><table>
      <thead><tr><th>Time</th><th>Tenant</th><th>Operation</th><th>Plugin</th><th>Outcome</th><th class="hide-narrow">Instance</th><th>Reason</th></tr></thead>
      <tbody>
        ${!data && html`<${PlaceholderRows} rows=${3} cols=${7} />`}
        ${data && data.values.length === 0 && html`<tr><td colspan="7" class="empty">No decision matches.</td></tr>`}
        ${data && data.values.map((d) => html`<tr key=${`${d.id}-${d.plugin}`} data-testid="decision" data-outcome=${d.outcome} data-tenant=${d.tenant}>
          <td><${Time} value=${d.time} /></td><td class="mono">${d.tenant}</td>
          <td>${d.operation}${d.dry_run ? " (dry run)" : ""}</td><td>${d.plugin} <span class="muted">${d.mode}</span></td>
          <td><${Badge} value=${d.outcome} />${d.overridden ? html` <span class="muted">overridden</span>` : ""}</td>
          <td class="mono hide-narrow" title=${d.instance_uuid}>${shortId(d.instance_uuid)}</td>
          <td>${d.code ? html`<span class="mono">${d.code}</span> ` : ""}${d.reason || ""}</td>
        </tr>`)}
      </tbody>
    </table></div>
    <${ErrorBox} error=${error} />
  </section>`;
}

function HostsPanel({ version }) {
  const [data, error] = useLoad("/v1/hosts", [version]);
  return html`<section class="panel" aria-labelledby="hosts-h" data-testid="hosts">
    <h2 id="hosts-h">Compute hosts</h2>
    <div class="table-wrap"><table>
      <thead><tr><th>Host</th><th>Health</th><th>Breaker</th><th class="hide-narrow">Connected</th><th class="num">Instances</th></tr></thead>
      <tbody>
        ${!data && html`<${PlaceholderRows} rows=${1} cols=${5} />`}
        ${data && data.values.map((hst) => html`<tr key=${hst.name} data-testid="host" data-name=${hst.name} data-up=${String(hst.up)}>
          <td>${hst.name}</td><td><${Badge} value=${hst.up ? "ok" : "error"} /> ${hst.up ? "up" : "down"}</td>
          <td><${Badge} value=${hst.breaker} /></td><td class="hide-narrow">${hst.connected ? "yes" : "no"}</td>
          <td class="num">${hst.instances}</td>
        </tr>`)}
      </tbody>
    </table></div>
    <${ErrorBox} error=${error} />
  </section>`;
}

function InFlightPanel({ version }) {
  const [tick, setTick] = useState(0);
  useEffect(() => {
    const t = setInterval(() => setTick((x) => x + 1), 5000);
    return () => clearInterval(t);
  }, []);
  const [data, error] = useLoad("/v1/operations", [version, tick]);
  return html`<section class="panel" aria-labelledby="inflight-h" data-testid="in-flight">
    <h2 id="inflight-h">Operations in flight <span class="muted">(every tenant; refreshed every 5 s)</span></h2>
    <div class="table-wrap"><table>
      <thead><tr><th>Tenant</th><th>Kind</th><th>Status</th><th class="hide-narrow">Instance</th><th class="hide-narrow">State</th><th>Host</th><th>Started</th></tr></thead>
      <tbody>
        ${!data && html`<${PlaceholderRows} rows=${1} cols=${7} />`}
        ${data && data.values.length === 0 && html`<tr><td colspan="7" class="empty">Nothing is running.</td></tr>`}
        ${data && data.values.map((op) => html`<tr key=${op.uuid} data-testid="in-flight-op">
          <td class="mono">${op.tenant_id}</td><td>${op.kind}</td><td><${Badge} value=${op.status} /></td>
          <td class="mono hide-narrow" title=${op.instance_uuid}>${shortId(op.instance_uuid)}</td>
          <td class="mono hide-narrow" title=${op.state_uuid}>${shortId(op.state_uuid)}</td>
          <td>${op.host}</td><td><${Time} value=${op.started_at || op.created_at} /></td>
        </tr>`)}
      </tbody>
    </table></div>
    <${ErrorBox} error=${error} />
  </section>`;
}

export function OperatorView() {
  const [version, setVersion] = useState(0);
  return html`<div data-testid="operator-view">
    <div class="pager"><button type="button" onClick=${() => setVersion((v) => v + 1)} data-testid="refresh">Refresh all</button></div>
    <${TenantsPanel} version=${version} />
    <${HostsPanel} version=${version} />
    <${InFlightPanel} version=${version} />
    <${InstancesPanel} version=${version} />
    <${PluginsPanel} version=${version} />
    <${DecisionsPanel} version=${version} />
  </div>`;
}
