// The states of one instance: save, apply (after a confirmation that says what is lost),
// delete one or several; newest first, a page at a time.
import { useEffect, useState } from "../vendor/hooks.mjs";
import { del, get, post, query, seg } from "./api.js";
import { Time, bytes, shortId } from "./format.js";
import { Badge, Confirm, ErrorBox, PlaceholderRows, html } from "./widgets.js";

const STATE_PAGE = 10;
const COLUMNS = 8;

/** A parent state by name when it is on this page, else the end of its uuid. */
function parentName(parent, states) {
  if (!parent) return "—";
  const found = states.find((s) => s.uuid === parent);
  return found ? found.name : shortId(parent);
}

function SaveForm({ instance, onSaved, onError }) {
  const [name, setName] = useState("");
  const [description, setDescription] = useState("");
  const [busy, setBusy] = useState(false);
  const submit = async (e) => {
    e.preventDefault();
    setBusy(true);
    try {
      const body = { name };
      if (description) body.description = description;
      const state = await post(`/v1/instances/${seg(instance.uuid)}/states`, body);
      setName("");
      setDescription("");
      onSaved(state);
    } catch (err) {
      onError(err);
    } finally {
      setBusy(false);
    }
  };
  return html`<form class="inline" onSubmit=${submit} data-testid="save-form" aria-label="Save a state">
    <div><label for="save-name">Name</label><input id="save-name" required maxlength="255" value=${name}
      onInput=${(e) => setName(e.currentTarget.value)} data-testid="save-name" /></div>
    <div class="wide"><label for="save-desc">Description</label><input id="save-desc" maxlength="1024" value=${description}
      onInput=${(e) => setDescription(e.currentTarget.value)} data-testid="save-description" /></div>
    <div><button class="primary" type="submit" disabled=${busy || !name} data-testid="save-submit">Save state</button></div>
  </form>`;
}

function ApplyDialog({ target, states, instance, onConfirm, onCancel }) {
  const newer = target ? states.filter((s) => s.uuid !== target.uuid && new Date(s.date) > new Date(target.date)) : [];
  return html`<${Confirm} open=${Boolean(target)} title="Apply this state?" confirmLabel="Apply and discard the current state"
      danger onConfirm=${onConfirm} onCancel=${onCancel}>
    ${target && html`<div data-testid="apply-summary">
      <p>The instance <strong>${instance.name || instance.uuid}</strong> goes back to <strong>${target.name}</strong>,
        saved <${Time} value=${target.date} />.</p>
      <p><strong>What is lost:</strong> the guest's memory as it is now and every change its disks got since that
        state was saved — whatever the instance did after <${Time} value=${target.date} /> and was not saved as a state.</p>
      ${newer.length > 0 && html`<p>States saved after it stay kept (you can apply them later):</p>
        <ul>${newer.map((s) => html`<li key=${s.uuid}>${s.name} (<${Time} value=${s.date} />)</li>`)}</ul>`}
    </div>`}
  </${Confirm}>`;
}

function DeleteDialog({ targets, onConfirm, onCancel }) {
  const total = targets.reduce((n, s) => n + (s.size_bytes || 0), 0);
  return html`<${Confirm} open=${targets.length > 0} title=${targets.length === 1 ? "Delete this state?" : `Delete ${targets.length} states?`}
      confirmLabel="Delete" danger onConfirm=${onConfirm} onCancel=${onCancel}>
    <ul data-testid="delete-summary">${targets.map((s) => html`<li key=${s.uuid}>${s.name} (${bytes(s.size_bytes)})</li>`)}</ul>
    <p>Their files are removed; this frees ${bytes(total)} of the tenant's quota. It cannot be undone.</p>
  </${Confirm}>`;
}

export function StatesPanel({ instance, version, onChange, track }) {
  const [page, setPage] = useState(null);
  const [markers, setMarkers] = useState([null]);
  const [checked, setChecked] = useState(new Set());
  const [error, setError] = useState(null);
  const [applying, setApplying] = useState(null);
  const [deleting, setDeleting] = useState([]);
  const [localVersion, setLocalVersion] = useState(0);
  const marker = markers[markers.length - 1];

  useEffect(() => {
    setMarkers([null]);
    setChecked(new Set());
    setError(null);
    setPage(null);
  }, [instance && instance.uuid]);

  useEffect(() => {
    if (!instance) return;
    get(`/v1/instances/${seg(instance.uuid)}/states${query({ limit: STATE_PAGE, marker })}`)
      .then((p) => setPage({ ...p, instance: instance.uuid }))
      .catch(setError);
  }, [instance && instance.uuid, marker, version, localVersion]);

  if (!instance) {
    return html`<section class="panel" data-testid="states"><h2>States</h2><p class="empty">Choose an instance.</p></section>`;
  }
  const states = page && page.instance === instance.uuid ? page.values : null;
  const next = page && page.states_links.find((l) => l.rel === "next");
  const changed = () => { setLocalVersion((v) => v + 1); onChange(); };
  const toggle = (uuid) => {
    const s = new Set(checked);
    if (s.has(uuid)) s.delete(uuid); else s.add(uuid);
    setChecked(s);
  };

  const saved = (state) => {
    setError(null);
    track({ uuid: state.operation, kind: "save", status: "pending", created_at: state.date, state_uuid: state.uuid },
      `save of "${state.name}"`);
    changed();
  };
  const apply = async () => {
    const target = applying;
    setApplying(null);
    try {
      const op = await post(`/v1/instances/${seg(instance.uuid)}/states/apply`, { uuid: target.uuid });
      setError(null);
      track(op, `apply of "${target.name}"`);
      changed();
    } catch (e) {
      setError(e);
    }
  };
  const remove = async () => {
    const targets = deleting;
    setDeleting([]);
    setChecked(new Set());
    let failed = null;
    for (const s of targets) {
      try {
        const op = await del(`/v1/instances/${seg(instance.uuid)}/states/${seg(s.uuid)}`);
        track(op, `delete of "${s.name}"`);
      } catch (e) {
        failed = e;
      }
    }
    setError(failed);
    changed();
  };
  const selected = states ? states.filter((s) => checked.has(s.uuid)) : [];

  return html`<section class="panel" aria-labelledby="states-h" data-testid="states">
    <h2 id="states-h">States of <span data-testid="states-instance">${instance.name || instance.uuid}</span>
      <span class="spacer"></span>
      <button type="button" class="danger" disabled=${selected.length === 0} onClick=${() => setDeleting(selected)}
        data-testid="delete-selected">Delete selected (${selected.length})</button>
    </h2>
    <${SaveForm} instance=${instance} onSaved=${saved} onError=${(e) => { setError(e); changed(); }} />
    <${ErrorBox} error=${error} onClose=${() => setError(null)} />
    <div class="table-wrap"><table>
      <thead><tr>
        <th><span class="visually-hidden">Select</span></th><th>Name</th><th>Status</th><th>Saved</th>
        <th class="num">Size</th><th class="hide-narrow">Kind</th><th class="hide-narrow">CPU</th><th class="hide-narrow">Parent</th><th></th>
      </tr></thead>
      <tbody>
        ${!states && html`<${PlaceholderRows} rows=${STATE_PAGE} cols=${COLUMNS + 1} />`}
        ${states && states.length === 0 && html`<tr><td colspan=${COLUMNS + 1} class="empty">No state saved yet.</td></tr>`}
        ${states && states.map((s) => html`<tr key=${s.uuid} data-testid="state" data-name=${s.name} data-status=${s.status}>
          <td><input type="checkbox" checked=${checked.has(s.uuid)} onChange=${() => toggle(s.uuid)}
            aria-label=${`select ${s.name}`} data-testid="select" disabled=${s.status !== "available" && s.status !== "error"} /></td>
          <td><span title=${s.uuid}>${s.name}</span>${s.description && html`<div class="muted">${s.description}</div>`}</td>
          <td><${Badge} value=${s.status} />${s.error && html`<div class="muted">${s.error.message}</div>`}</td>
          <td><${Time} value=${s.date} /></td>
          <td class="num">${bytes(s.size_bytes)}</td>
          <td class="hide-narrow">${s.snapshot_kind}</td>
          <td class="hide-narrow">${s.cpu ? [s.cpu.vendor, s.cpu.model].filter(Boolean).join(" ") || "—" : "—"}</td>
          <td class="hide-narrow" title=${s.parent || ""}>${parentName(s.parent, states)}</td>
          <td><button type="button" disabled=${s.status !== "available"} onClick=${() => setApplying(s)} data-testid="apply">Apply</button></td>
        </tr>`)}
      </tbody>
    </table></div>
    <div class="pager">
      <button type="button" disabled=${markers.length === 1} onClick=${() => setMarkers(markers.slice(0, -1))}>Newer</button>
      <button type="button" disabled=${!next} onClick=${() => setMarkers([...markers, states[states.length - 1].uuid])} data-testid="older">Older</button>
    </div>
    <${ApplyDialog} target=${applying} states=${states || []} instance=${instance} onConfirm=${apply} onCancel=${() => setApplying(null)} />
    <${DeleteDialog} targets=${deleting} onConfirm=${remove} onCancel=${() => setDeleting([])} />
  </section>`;
}
