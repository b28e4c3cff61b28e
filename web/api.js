// The dashboard's only way to the service: JSON calls carrying the API key as
// a bearer token, lists that follow `has_more`/`after`, a job's log as
// Server-Sent Events read with fetch (EventSource cannot send a header), file
// downloads that carry the key, and the OpenAPI document, which says what this
// server supports.

const KEY_SLOT = 'tuneserve.apiKey';

/** The API key, kept in sessionStorage: for this tab only, gone when it closes. */
export const auth = {
  get key() {
    return sessionStorage.getItem(KEY_SLOT) || '';
  },
  set(key) {
    sessionStorage.setItem(KEY_SLOT, key);
  },
  clear() {
    sessionStorage.removeItem(KEY_SLOT);
  },
  /** Called with the error when the API answers 401 (the app shows its login prompt). */
  onRequired: () => {},
};

/** An error answer: `{"error": {"code", "message", "param", "details"?}}`. */
export class ApiError extends Error {
  constructor(status, body) {
    const e = (body && typeof body === 'object' && body.error) || {};
    super(e.message || (typeof body === 'string' && body) || `HTTP ${status}`);
    this.status = status;
    this.code = e.code || null;
    this.param = e.param || null;
    this.details = e.details || null;
  }
}

function headers(extra) {
  const h = new Headers(extra || {});
  if (auth.key) h.set('authorization', `Bearer ${auth.key}`);
  return h;
}

async function parse(resp) {
  const text = await resp.text();
  if (!text) return null;
  try {
    return JSON.parse(text);
  } catch {
    return text;
  }
}

/** One call; resolves with the JSON body, rejects with an ApiError. */
export async function request(method, path, { json, body, headers: extra, signal } = {}) {
  const init = { method, headers: headers(extra), signal };
  if (json !== undefined) {
    init.body = JSON.stringify(json);
    init.headers.set('content-type', 'application/json');
  } else if (body !== undefined) {
    init.body = body;
  }
  const resp = await fetch(path, init);
  const data = await parse(resp);
  if (!resp.ok) {
    const err = new ApiError(resp.status, data);
    if (resp.status === 401) auth.onRequired(err);
    throw err;
  }
  return data;
}

export const get = (path, opts) => request('GET', path, opts);
export const post = (path, json, opts) => request('POST', path, { ...opts, json });
export const del = (path, opts) => request('DELETE', path, opts);

/**
 * Every item of a list endpoint (`{"data": [...], "has_more"?}`), following
 * `after` while `has_more` says more follow; at most `maxPages` pages.
 */
export async function listAll(path, { signal, limit = 100, maxPages = 20 } = {}) {
  const items = [];
  let after = null;
  for (let page = 0; page < maxPages; page++) {
    const sep = path.includes('?') ? '&' : '?';
    const url = `${path}${sep}limit=${limit}${after ? `&after=${encodeURIComponent(after)}` : ''}`;
    const body = await get(url, { signal });
    const data = (body && body.data) || [];
    items.push(...data);
    if (!body || !body.has_more || data.length === 0) break;
    after = data[data.length - 1].id;
  }
  return items;
}

/**
 * Saves the file at `path` (an API route such as `/models/{id}/files/{name}`)
 * as `name`. Without a key a plain link does this; with one, the browser could
 * not send it on a link, so the file is fetched with the bearer header and
 * saved from a blob URL.
 */
export async function saveFile(path, name, { signal } = {}) {
  const resp = await fetch(path, { headers: headers(), signal });
  if (!resp.ok) {
    const err = new ApiError(resp.status, await parse(resp));
    if (resp.status === 401) auth.onRequired(err);
    throw err;
  }
  const url = URL.createObjectURL(await resp.blob());
  const a = document.createElement('a');
  a.href = url;
  a.download = name;
  a.hidden = true;
  document.body.append(a);
  a.click();
  a.remove();
  // The download has started from the blob by now; give it time before letting go.
  setTimeout(() => URL.revokeObjectURL(url), 60_000);
}

let spec = null;

/** The OpenAPI document (open without the key), fetched once. */
export function openapi() {
  if (!spec) {
    spec = fetch('/openapi.json').then((r) => {
      if (!r.ok) throw new ApiError(r.status, null);
      return r.json();
    });
    spec.catch(() => {
      spec = null;
    });
  }
  return spec;
}

/**
 * Whether the server has `method path` (a path as the document writes it,
 * e.g. `/models/{id}/promote`): routes other versions lack stay hidden.
 */
export async function supports(method, path) {
  try {
    const doc = await openapi();
    return Boolean(doc.paths && doc.paths[path] && doc.paths[path][method.toLowerCase()]);
  } catch {
    return false;
  }
}

/** Resolves a local `$ref` (`#/components/schemas/X`) of the OpenAPI document. */
export function resolveRef(doc, ref) {
  return ref
    .replace(/^#\//, '')
    .split('/')
    .reduce((node, key) => (node ? node[key] : undefined), doc);
}

const sleep = (ms, signal) =>
  new Promise((resolve) => {
    const t = setTimeout(resolve, ms);
    signal?.addEventListener('abort', () => {
      clearTimeout(t);
      resolve();
    });
  });

/**
 * Follows a job's log live: `GET /jobs/{id}/events` as `text/event-stream`.
 * Calls `onEvent({id, event, data})` for each event. When the server ends the
 * stream (the job finished) or the connection drops, asks `reconnect()` and,
 * if it says so, resumes after the last event seen with `Last-Event-ID`.
 * Stops when `signal` aborts.
 */
export async function followEvents(jobId, { onEvent, reconnect, signal }) {
  let lastId = null;
  while (!signal.aborted) {
    try {
      const h = headers({ accept: 'text/event-stream' });
      if (lastId !== null) h.set('last-event-id', lastId);
      const resp = await fetch(`/jobs/${encodeURIComponent(jobId)}/events`, { headers: h, signal });
      if (!resp.ok) {
        const err = new ApiError(resp.status, await parse(resp));
        if (resp.status === 401) auth.onRequired(err);
        if (resp.status === 401 || resp.status === 404) return;
        throw err;
      }
      await readStream(resp.body, (ev) => {
        if (ev.id !== null) lastId = ev.id;
        onEvent(ev);
      });
    } catch (e) {
      if (signal.aborted) return;
      console.warn('event stream interrupted:', e.message);
    }
    if (signal.aborted || !(await reconnect())) return;
    await sleep(1000, signal);
  }
}

/** Parses an SSE body: `id:`, `event:` and `data:` lines, a blank line ends an event. */
async function readStream(body, dispatch) {
  const reader = body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = '';
  let ev = { id: null, event: 'message', data: [] };
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buffer += value;
    let nl;
    while ((nl = buffer.indexOf('\n')) >= 0) {
      const line = buffer.slice(0, nl).replace(/\r$/, '');
      buffer = buffer.slice(nl + 1);
      if (line === '') {
        if (ev.data.length) {
          const text = ev.data.join('\n');
          let data = text;
          try {
            data = JSON.parse(text);
          } catch {
            /* not JSON: hand over the text */
          }
          dispatch({ id: ev.id, event: ev.event, data });
        }
        ev = { id: ev.id, event: 'message', data: [] };
        continue;
      }
      if (line.startsWith(':')) continue; // keep-alive comment
      const colon = line.indexOf(':');
      const field = colon < 0 ? line : line.slice(0, colon);
      const val = colon < 0 ? '' : line.slice(colon + 1).replace(/^ /, '');
      if (field === 'data') ev.data.push(val);
      else if (field === 'event') ev.event = val;
      else if (field === 'id') ev.id = val;
    }
  }
}
