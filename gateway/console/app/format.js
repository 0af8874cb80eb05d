// How numbers and times are shown: sizes in binary units, times in the browser's own zone
// with the UTC value on hover.
import { html } from "./widgets.js";

const UNITS = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];

export function bytes(n) {
  if (n === null || n === undefined) return "—";
  if (n < 0) return "unlimited";
  let i = 0;
  let v = n;
  while (v >= 1024 && i < UNITS.length - 1) {
    v /= 1024;
    i += 1;
  }
  return `${i === 0 ? v : v.toFixed(v < 10 ? 1 : 0)} ${UNITS[i]}`;
}

const local = new Intl.DateTimeFormat(undefined, { dateStyle: "medium", timeStyle: "medium" });

/** A time: the browser's zone on screen, the UTC value (RFC 3339) on hover. */
export function Time({ value }) {
  if (!value) return html`<span class="muted">—</span>`;
  const d = new Date(value);
  const utc = d.toISOString().replace(".000Z", "Z");
  return html`<time datetime=${utc} title=${`UTC: ${utc}`}>${local.format(d)}</time>`;
}

/** The end of a uuid: version 7 uuids share their first digits (their time), and so do the
 * demo cloud's instances. The whole uuid is in the cell's title. */
export function shortId(uuid) {
  return uuid ? `…${uuid.slice(-8)}` : "—";
}

export function limitText(n, unit = (x) => String(x)) {
  return n < 0 ? "unlimited" : unit(n);
}
