// Running operations and their live progress. Each is followed with `/wait` (a long poll that
// returns when the operation ends); an operation's `progress`, when the gateway reports one,
// is shown as it comes.
import { useCallback, useEffect, useRef, useState } from "../vendor/hooks.mjs";
import { ApiError, get, watchOperation } from "./api.js";
import { Time, shortId } from "./format.js";
import { Badge, ErrorBox, html } from "./widgets.js";

/** The operations this page follows: `track(op, label)` adds one; `onEnded(op)` runs when one
 * ends. Operations already in flight when the page opens are picked up too. */
export function useOperations(onEnded) {
  const [ops, setOps] = useState([]);
  const watched = useRef(new Set());
  const ended = useRef(onEnded);
  ended.current = onEnded;
  const alive = useRef(true);
  useEffect(() => () => { alive.current = false; }, []);

  const update = (op, extra = {}) =>
    setOps((list) => list.map((o) => (o.uuid === op.uuid ? { ...o, ...op, ...extra } : o)));

  const track = useCallback((op, label) => {
    if (watched.current.has(op.uuid)) return;
    watched.current.add(op.uuid);
    setOps((list) => [{ ...op, label }, ...list.filter((o) => o.uuid !== op.uuid)].slice(0, 20));
    watchOperation(op.uuid, (o) => alive.current && update(o), () => !alive.current)
      .then((o) => alive.current && ended.current(o))
      .catch((e) => alive.current && update(op, { watchError: e instanceof ApiError ? e : new ApiError(0, null) }));
  }, []);

  useEffect(() => {
    get("/v1/operations")
      .then((r) => r.values.forEach((op) => track(op, `${op.kind} of state ${shortId(op.state_uuid)}`)))
      .catch(() => {});
  }, [track]);

  return [ops, track];
}

function Progress({ op }) {
  const p = op.progress;
  if (op.status !== "running" && op.status !== "pending") return null;
  if (p && typeof p.percent === "number") {
    return html`<progress max="100" value=${p.percent} aria-label="progress"></progress><span class="muted">${Math.round(p.percent)}%${p.phase ? ` ${p.phase}` : ""}</span>`;
  }
  return html`<progress aria-label="in progress"></progress>`;
}

export function OperationsPanel({ ops }) {
  return html`<section class="panel" aria-labelledby="ops-h" data-testid="operations">
    <h2 id="ops-h">Operations</h2>
    <ul class="ops" aria-live="polite">
      ${ops.length === 0 && html`<li class="muted">No operation started from this page or running now.</li>`}
      ${ops.map((op) => html`<li key=${op.uuid} data-testid="operation" data-status=${op.status} data-kind=${op.kind}>
        <${Badge} value=${op.status} />
        <span>${op.label || op.kind}</span>
        <${Progress} op=${op} />
        <span class="muted">started <${Time} value=${op.created_at} /></span>
        ${op.finished_at && html`<span class="muted">ended <${Time} value=${op.finished_at} /></span>`}
        ${op.error && html`<${ErrorBox} error=${{ ...op.error, details: {} }} />`}
        ${op.watchError && html`<${ErrorBox} error=${op.watchError} />`}
      </li>`)}
    </ul>
  </section>`;
}
