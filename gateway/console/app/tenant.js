// The tenant's view: quota gauges, the instances it may see, the states of the selected one,
// and the operations running.
import { useCallback, useEffect, useState } from "../vendor/hooks.mjs";
import { get, query, seg } from "./api.js";
import { bytes } from "./format.js";
import { OperationsPanel, useOperations } from "./operations.js";
import { StatesPanel } from "./states.js";
import { Badge, ErrorBox, Gauge, PlaceholderRows, html } from "./widgets.js";

const INSTANCE_PAGE = 20;

function QuotaPanel({ tenant, version }) {
  const [quota, setQuota] = useState(null);
  const [error, setError] = useState(null);
  useEffect(() => {
    get(`/v1/quotas/${seg(tenant)}`).then((q) => { setQuota(q); setError(null); }).catch(setError);
  }, [tenant, version]);
  const u = quota ? quota.usage : {};
  return html`<section class="panel" aria-labelledby="quota-h" data-testid="quota">
    <h2 id="quota-h">Quota of tenant <code>${tenant}</code>${quota && !quota.custom && html` <span class="muted">(defaults)</span>`}</h2>
    <div class="gauges">
      <${Gauge} label="States" usage=${u.states} testid="gauge-states" />
      <${Gauge} label="State bytes" usage=${u.state_bytes} format=${bytes} testid="gauge-bytes" />
      <${Gauge} label="Concurrent operations" usage=${u.concurrent_operations} testid="gauge-operations" />
      <${Gauge} label="Saves this hour" usage=${u.saves_per_hour} testid="gauge-saves" />
    </div>
    <${ErrorBox} error=${error} />
  </section>`;
}

function InstancesPanel({ selected, onSelect, version }) {
  const [page, setPage] = useState(null);
  const [markers, setMarkers] = useState([null]);
  const [error, setError] = useState(null);
  const marker = markers[markers.length - 1];
  useEffect(() => {
    get(`/v1/instances${query({ limit: INSTANCE_PAGE, marker })}`)
      .then((p) => {
        setPage(p);
        setError(null);
        if (!selected && p.values.length > 0) onSelect(p.values[0]);
      })
      .catch(setError);
  }, [marker, version]);
  const next = page && page.instances_links.find((l) => l.rel === "next");
  return html`<section class="panel" aria-labelledby="inst-h" data-testid="instances">
    <h2 id="inst-h">Instances</h2>
    <div class="table-wrap"><table>
      <thead><tr><th>Name</th><th>Status</th><th class="hide-narrow">Host</th></tr></thead>
      <tbody>
        ${!page && html`<${PlaceholderRows} rows=${4} cols=${3} />`}
        ${page && page.values.length === 0 && html`<tr><td colspan="3" class="empty">No instance of this tenant is known yet.</td></tr>`}
        ${page && page.values.map((i) => html`<tr key=${i.uuid} class=${selected && selected.uuid === i.uuid ? "selected" : ""} data-testid="instance" data-uuid=${i.uuid}>
          <td><button class="link" type="button" onClick=${() => onSelect(i)} aria-current=${selected && selected.uuid === i.uuid ? "true" : undefined}
            title=${i.uuid}>${i.name || i.uuid}</button></td>
          <td>${i.reachable ? html`<${Badge} value=${i.running ? "running" : "stopped"} tone=${i.running ? "ok" : "off"} />` : html`<span class="muted">host unreachable</span>`}</td>
          <td class="hide-narrow">${i.host}</td>
        </tr>`)}
      </tbody>
    </table></div>
    <div class="pager">
      <button type="button" disabled=${markers.length === 1} onClick=${() => setMarkers(markers.slice(0, -1))}>Previous</button>
      <button type="button" disabled=${!next} onClick=${() => setMarkers([...markers, page.values[page.values.length - 1].uuid])}>Next</button>
    </div>
    <${ErrorBox} error=${error} />
  </section>`;
}

export function TenantView({ me }) {
  const [instance, setInstance] = useState(null);
  const [version, setVersion] = useState(0);
  const refresh = useCallback(() => setVersion((v) => v + 1), []);
  const [ops, track] = useOperations(refresh);
  return html`<div>
    <${QuotaPanel} tenant=${me.tenant_id} version=${version} />
    <div class="grid">
      <div>
        <${InstancesPanel} selected=${instance} onSelect=${setInstance} version=${version} />
        <${OperationsPanel} ops=${ops} />
      </div>
      <${StatesPanel} instance=${instance} me=${me} version=${version} onChange=${refresh} track=${track} />
    </div>
  </div>`;
}
