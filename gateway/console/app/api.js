// The console's only way out: the public API, with the token the user pasted. The token lives
// in this tab's sessionStorage (gone when the tab closes, never a cookie, so it is sent
// nowhere but in the Authorization header of these calls).

const KEY = "snapgate.token";

export const token = {
  get: () => sessionStorage.getItem(KEY),
  set: (t) => sessionStorage.setItem(KEY, t),
  clear: () => sessionStorage.removeItem(KEY),
};

/** An error as the API gave it: status, code, message and the details beside them. */
export class ApiError extends Error {
  constructor(status, body) {
    const e = (body && body.error) || {};
    super(e.message || `HTTP ${status}`);
    this.status = status;
    this.code = e.code || "http_error";
    const { code, message, ...details } = e;
    this.details = details;
  }
}

let onUnauthenticated = () => {};
/** Called when the gateway refuses the token (401): the app signs out. */
export function whenUnauthenticated(f) {
  onUnauthenticated = f;
}

/** Calls the API; resolves with the JSON answer (null for 204), rejects with an ApiError. */
export async function api(method, path, body) {
  const headers = { Accept: "application/json" };
  const t = token.get();
  if (t) headers.Authorization = `Bearer ${t}`;
  if (body !== undefined) headers["Content-Type"] = "application/json";
  let response;
  try {
    response = await fetch(path, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
      credentials: "omit",
      cache: "no-store",
    });
  } catch (e) {
    throw new ApiError(0, { error: { code: "network_error", message: `the gateway could not be reached (${e.message})` } });
  }
  const text = await response.text();
  let json = null;
  try {
    json = text ? JSON.parse(text) : null;
  } catch {
    json = null;
  }
  if (!response.ok) {
    const error = new ApiError(response.status, json);
    if (response.status === 401) onUnauthenticated(error);
    throw error;
  }
  return json;
}

export const get = (path) => api("GET", path);
export const post = (path, body) => api("POST", path, body);
export const put = (path, body) => api("PUT", path, body);
export const del = (path) => api("DELETE", path);

/** Encodes one path segment. */
export const seg = (s) => encodeURIComponent(s);

/** A query string from the defined, non-empty values of `params`. */
export function query(params) {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) {
    if (v !== undefined && v !== null && v !== "") q.set(k, v);
  }
  const s = q.toString();
  return s ? `?${s}` : "";
}

/** Waits for an operation to end through `/wait` (long polls of 25 s), calling `onUpdate`
 * with each answer; resolves with the ended operation. `isCancelled` stops it quietly. */
export async function watchOperation(id, onUpdate, isCancelled = () => false) {
  for (;;) {
    const op = await get(`/v1/operations/${seg(id)}/wait?timeout=25`);
    if (isCancelled()) return op;
    onUpdate(op);
    if (op.status === "succeeded" || op.status === "failed") return op;
  }
}
