// Small DOM helpers and the pieces several pages share: an element builder
// (text only, never HTML strings), number and time formats, status badges,
// progress bars, error boxes, the confusion-matrix heat map and score bars.

/** `h('a', {href: '/ui/jobs'}, 'Jobs')`: an element with attributes, listeners (`onclick`) and children. */
export function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k === 'class') el.className = v;
    else if (k === 'dataset') Object.assign(el.dataset, v);
    else if (k === 'style') Object.assign(el.style, v);
    else if (k.startsWith('on') && typeof v === 'function') el.addEventListener(k.slice(2), v);
    else if (v === true) el.setAttribute(k, '');
    else el.setAttribute(k, String(v));
  }
  append(el, children);
  return el;
}

/** Appends children: nodes, strings, numbers; arrays are flattened, null skipped. */
export function append(el, ...children) {
  for (const c of children.flat(Infinity)) {
    if (c === null || c === undefined || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

/** Replaces an element's children. */
export function fill(el, ...children) {
  el.replaceChildren();
  return append(el, children);
}

/** A number for people: 4 significant digits, exponent when tiny. */
export function num(x, digits = 4) {
  if (x === null || x === undefined || Number.isNaN(x)) return '—';
  if (typeof x !== 'number') return String(x);
  if (Number.isInteger(x)) return x.toLocaleString('en-US');
  const a = Math.abs(x);
  if (a !== 0 && (a < 1e-3 || a >= 1e6)) return x.toExponential(2).replace(/\.?0+e/, 'e');
  return String(Number(x.toPrecision(digits)));
}

/** A metric in [0, 1] with three decimals. */
export const metric = (x) => (typeof x === 'number' ? x.toFixed(3) : '—');

/** Seconds as `45 s`, `3 min 05 s`, `1 h 02 min`. */
export function duration(s) {
  if (s === null || s === undefined || !Number.isFinite(s)) return '—';
  s = Math.max(0, Math.round(s));
  if (s < 60) return `${s} s`;
  const m = Math.floor(s / 60);
  if (m < 60) return `${m} min ${String(s % 60).padStart(2, '0')} s`;
  return `${Math.floor(m / 60)} h ${String(m % 60).padStart(2, '0')} min`;
}

/** An RFC 3339 time as a `<time>` showing how long ago, the exact time on hover. */
export function ago(iso) {
  if (!iso) return '—';
  const t = new Date(iso);
  const s = (Date.now() - t.getTime()) / 1000;
  let text;
  if (s < 10) text = 'just now';
  else if (s < 60) text = `${Math.floor(s)} s ago`;
  else if (s < 3600) text = `${Math.floor(s / 60)} min ago`;
  else if (s < 86400) text = `${Math.floor(s / 3600)} h ago`;
  else text = t.toLocaleDateString('en-CA');
  return h('time', { datetime: iso, title: t.toLocaleString('en-GB') }, text);
}

/** A clock time (`14:03:07`) for log lines. */
export const clock = (iso) => (iso ? new Date(iso).toLocaleTimeString('en-GB') : '');

export const TERMINAL = new Set(['succeeded', 'failed', 'cancelled']);

/** A job status as a coloured badge. */
export const badge = (status) => h('span', { class: `badge status-${status}` }, status);

/** A job's progress: a bar, steps done of planned, and the ETA while running. */
export function progress(job) {
  const p = job.progress || {};
  const total = p.total_steps;
  const done = job.status === 'succeeded';
  const max = total || 1;
  const value = done ? max : Math.min(p.step || 0, max);
  // Indeterminate (animated) only while running before the plan is known.
  const unknown = !total && job.status === 'running';
  const bar = h('progress', {
    max,
    value: unknown ? null : value,
    'aria-label': `${job.id} progress`,
  });
  let text = total ? `${p.step} / ${total} steps` : job.status === 'queued' ? 'waiting' : `${p.step || 0} steps`;
  if (job.status === 'running' && p.eta_seconds !== null && p.eta_seconds !== undefined) {
    text += ` · ETA ${duration(p.eta_seconds)}`;
  }
  return h('span', { class: 'progress' }, bar, h('span', { class: 'progress-text' }, text));
}

/** A base model's folder path as `…/last-folder` (Hub ids and short paths unchanged). */
export function shortModel(source) {
  const path = source.startsWith('/') || source.split('/').length > 2;
  return path && source.length > 20 ? `…/${source.replace(/\/+$/, '').split('/').pop()}` : source;
}

/** A base model for a narrow column: short, whole on hover. */
export const modelName = (source) => h('code', { class: 'truncate', title: source }, shortModel(source));

/** A link inside the dashboard. */
export const link = (href, text, attrs) => h('a', { href, ...attrs }, text);

/** An error box; with a dataset's row errors, a line-numbered table of them. */
export function errorBox(err, { lines } = {}) {
  const rows = Array.isArray(err.details) ? err.details : null;
  // With row errors the table says it all; keep the message's summary only.
  const text = rows && rows.length ? err.message.split(': line ')[0] : err.message;
  const box = h('div', { class: 'error-box', role: 'alert' }, h('p', {}, h('strong', {}, 'Error: '), text));
  if (rows && rows.length) {
    const table = h(
      'table',
      { class: 'row-errors' },
      h('caption', {}, `${rows.length} row error${rows.length === 1 ? '' : 's'}`),
      h('thead', {}, h('tr', {}, h('th', { scope: 'col' }, 'Line'), h('th', { scope: 'col' }, 'Field'), h('th', { scope: 'col' }, 'Problem'), lines ? h('th', { scope: 'col' }, 'Content') : null)),
      h(
        'tbody',
        {},
        rows.map((r) =>
          h(
            'tr',
            {},
            h('td', { class: 'num' }, r.line),
            h('td', {}, h('code', {}, r.field)),
            h('td', {}, r.message),
            lines ? h('td', {}, h('code', { class: 'line-text' }, clip(lines[r.line - 1] ?? '', 120))) : null,
          ),
        ),
      ),
    );
    box.append(scrollBox(table));
  }
  return box;
}

const clip = (s, n) => (s.length > n ? `${s.slice(0, n)}…` : s);

/** Shows an error in place of a page's content. */
export function pageError(root, err) {
  const heading = err.status === 404 ? 'Not found' : 'This page could not be loaded';
  fill(root, h('h1', {}, heading), errorBox(err), h('p', {}, h('a', { href: '/ui/jobs' }, 'Back to the jobs')));
}

/**
 * A confusion matrix as a heat map: rows are the true class, columns the
 * predicted one, each cell coloured by its share of its row; recall closes
 * each row and precision each column.
 */
export function confusionMatrix({ labels, confusion, precision, recall, caption }) {
  const n = confusion.length;
  const names = Array.from({ length: n }, (_, i) => (labels && labels[i]) || `class ${i}`);
  const head = h(
    'tr',
    {},
    h('th', { scope: 'col', class: 'corner' }, 'true ↓ / predicted →'),
    names.map((l) => h('th', { scope: 'col' }, l)),
    h('th', { scope: 'col', class: 'pr' }, 'recall'),
  );
  const body = confusion.map((row, i) => {
    const total = row.reduce((a, b) => a + b, 0) || 1;
    return h(
      'tr',
      {},
      h('th', { scope: 'row' }, names[i]),
      row.map((count, j) => {
        const share = count / total;
        const light = 97 - 52 * share;
        return h(
          'td',
          {
            class: `cell${i === j ? ' diag' : ''}`,
            style: { background: `hsl(212 72% ${light}%)`, color: share > 0.55 ? '#fff' : 'inherit' },
            title: `true ${names[i]}, predicted ${names[j]}: ${count} (${(share * 100).toFixed(1)}% of the row)`,
          },
          count,
        );
      }),
      h('td', { class: 'pr' }, metric(recall?.[i])),
    );
  });
  const foot = h(
    'tr',
    {},
    h('th', { scope: 'row', class: 'pr' }, 'precision'),
    names.map((_, j) => h('td', { class: 'pr' }, metric(precision?.[j]))),
    h('td', {}),
  );
  return h(
    'table',
    { class: 'confusion', dataset: { total: confusion.flat().reduce((a, b) => a + b, 0) } },
    caption ? h('caption', {}, caption) : null,
    h('thead', {}, head),
    h('tbody', {}, body, foot),
  );
}

/** Horizontal bars, one per `[label, value]`, scaled to `max`; the highest is marked (unless `highlight` is false). */
export function bars(items, { max, format = (v) => v, label = 'value', highlight = true } = {}) {
  const top = Math.max(...items.map(([, v]) => v));
  const scale = max ?? (top || 1);
  return h(
    'ul',
    { class: 'bars', 'aria-label': label },
    items.map(([name, v]) =>
      h(
        'li',
        { class: highlight && v === top ? 'is-top' : '', dataset: { label: name, value: v } },
        h('span', { class: 'bar-label' }, name),
        h('span', { class: 'bar-track', 'aria-hidden': 'true' }, h('span', { class: 'bar-fill', style: { width: `${(100 * v) / scale}%` } })),
        h('span', { class: 'bar-value' }, format(v)),
      ),
    ),
  );
}

/** A definition list from `[term, value]` pairs (null values skipped). */
export function facts(pairs) {
  return h(
    'dl',
    { class: 'facts' },
    pairs.filter(([, v]) => v !== null && v !== undefined).map(([k, v]) => [h('dt', {}, k), h('dd', {}, v)]),
  );
}

/** A table inside a box that scrolls sideways when the table is wider than the screen. */
export const scrollBox = (tableEl) => h('div', { class: 'table-scroll' }, tableEl);

/** A table from column headers and rows of cells, in its scroll box (`attrs` go on the table). */
export function table(columns, rows, attrs) {
  return scrollBox(
    h(
      'table',
      attrs || {},
      h('thead', {}, h('tr', {}, columns.map((c) => h('th', { scope: 'col' }, c)))),
      h('tbody', {}, rows.map((cells) => h('tr', {}, cells.map((c) => h('td', {}, c))))),
    ),
  );
}

/** The dataset link with its name when known. */
export function datasetLink(id, names) {
  if (!id) return '—';
  const name = names && names.get(id);
  return link(`/ui/datasets/${encodeURIComponent(id)}`, name ? `${name}` : id, { title: id });
}

/** The best evaluation by a metric (`eval_loss` is lower-better), first of equals. */
export function bestEval(evals, metricName) {
  // The baseline (step 0) is no candidate once training has been evaluated.
  if (evals.some((e) => e.step > 0)) evals = evals.filter((e) => e.step > 0);
  const key = metricName === 'eval_loss' ? 'loss' : metricName || 'accuracy';
  const lower = key === 'loss';
  let best = null;
  for (const e of evals) {
    const v = e[key];
    if (typeof v !== 'number') continue;
    if (!best || (lower ? v < best[key] : v > best[key])) best = e;
  }
  return best;
}

/** Text with `backticked` spans as <code> (the API's descriptions use them). */
export function rich(text) {
  return String(text || '')
    .split('`')
    .map((part, i) => (i % 2 ? h('code', {}, part) : part));
}

/** A confirm step before something that cannot be undone. */
export const confirmed = (text) => window.confirm(text);
