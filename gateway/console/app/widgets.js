// Small shared pieces: the htm binding, error boxes, gauges, badges, a confirmation dialog,
// reserved rows while a table loads.
import { h } from "../vendor/preact.mjs";
import { useEffect, useRef } from "../vendor/hooks.mjs";
import htm from "../vendor/htm.mjs";

export const html = htm.bind(h);

/** An API error as the API gave it: its message, its code, and its details. */
export function ErrorBox({ error, onClose }) {
  if (!error) return null;
  const details = Object.entries(error.details || {}).filter(([, v]) => v !== null && v !== undefined);
  return html`<div class="alert" role="alert" data-testid="error" data-code=${error.code}>
    ${onClose && html`<button class="close" type="button" onClick=${onClose} aria-label="Dismiss">×</button>`}
    <strong class="message">${error.message}</strong> <span class="code">(${error.status ? `${error.status} ` : ""}${error.code})</span>
    ${details.length > 0 && html`<dl>${details.map(([k, v]) => html`<dt>${k}</dt><dd>${typeof v === "object" ? JSON.stringify(v) : String(v)}</dd>`)}</dl>`}
  </div>`;
}

/** A status word; `tone` picks its colour class when it is not the word itself. */
export function Badge({ value, tone }) {
  return html`<span class=${`badge ${tone || value}`}>${value}</span>`;
}

/** A quota gauge: used (in use plus reserved) against the limit. */
export function Gauge({ label, usage, format = String, testid }) {
  const limit = usage ? usage.limit : null;
  const used = usage ? usage.in_use + usage.reserved : null;
  const ratio = usage && limit > 0 ? Math.min(1, used / limit) : usage && limit === 0 ? 1 : 0;
  const level = ratio >= 1 ? "full" : ratio >= 0.8 ? "high" : "";
  const text = !usage
    ? "…"
    : `${format(usage.in_use)}${usage.reserved ? ` + ${format(usage.reserved)} reserved` : ""} of ${limit < 0 ? "unlimited" : format(limit)}`;
  return html`<div class="gauge" data-testid=${testid}>
    <div class="label"><span>${label}</span><span>${text}</span></div>
    <div class="bar" role="meter" aria-label=${label} aria-valuemin="0" aria-valuemax=${limit < 0 ? undefined : limit}
      aria-valuenow=${used ?? undefined} aria-valuetext=${text}>
      <div class=${`fill ${level}`} style=${{ width: `${Math.round(ratio * 100)}%` }}></div>
    </div>
  </div>`;
}

/** Rows reserved while a table loads, so the page keeps its height. */
export function PlaceholderRows({ rows = 3, cols }) {
  return Array.from({ length: rows }, (_, i) =>
    html`<tr class="placeholder" key=${`p${i}`} aria-hidden="true">${Array.from({ length: cols }, () => html`<td>.</td>`)}</tr>`);
}

/** A modal confirmation (the browser's own <dialog>: focus is kept inside, Escape cancels). */
export function Confirm({ open, title, children, confirmLabel, danger, onConfirm, onCancel }) {
  const ref = useRef(null);
  useEffect(() => {
    const d = ref.current;
    if (!d) return;
    if (open && !d.open) d.showModal();
    if (!open && d.open) d.close();
  }, [open]);
  return html`<dialog ref=${ref} onCancel=${(e) => { e.preventDefault(); onCancel(); }} data-testid="confirm">
    <h3>${title}</h3>
    ${children}
    <div class="actions">
      <button type="button" onClick=${onCancel} data-testid="confirm-cancel">Cancel</button>
      <button type="button" class=${danger ? "danger primary" : "primary"} onClick=${onConfirm} data-testid="confirm-ok">${confirmLabel}</button>
    </div>
  </dialog>`;
}
