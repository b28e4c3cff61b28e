// Dataset page: one stored dataset — rows, labels and their distribution,
// the jobs that use it, and (right after an upload from this tab) the first
// rows of the file as sent.

import { get, del, listAll, supports } from '../api.js';
import { h, fill, link, ago, facts, bars, table, badge, errorBox, confirmed } from '../ui.js';

export const title = 'Dataset';

const enc = encodeURIComponent;
const PREVIEW_ROWS = 20;
const uploads = new Map(); // dataset id -> {file, rows}

/** Keeps the first rows of a file just uploaded, to show on its page. */
export function remember(id, fileName, text) {
  const lines = text.split(/\r?\n/).filter((l) => l.trim() !== '');
  let rows;
  if (/\.csv$/i.test(fileName)) {
    const parsed = parseCsv(lines.slice(0, PREVIEW_ROWS + 1).join('\n'));
    const head = parsed.shift() || [];
    rows = parsed.map((cells) => Object.fromEntries(head.map((k, i) => [k, cells[i]])));
  } else {
    rows = lines.slice(0, PREVIEW_ROWS).map((l) => {
      try {
        return JSON.parse(l);
      } catch {
        return { text: l };
      }
    });
  }
  uploads.set(id, { fileName, rows });
}

export async function render(root, ctx) {
  const id = ctx.params[0];
  const { signal } = ctx;
  ctx.setTitle(`Dataset ${id}`);
  const [d, jobs, canDelete] = await Promise.all([
    get(`/datasets/${enc(id)}`, { signal }),
    listAll('/jobs', { signal }).catch(() => []),
    supports('delete', '/datasets/{id}'),
  ]);
  ctx.setTitle(`Dataset ${d.name || id}`);
  const using = jobs.filter((j) => j.train_dataset === id || j.eval_dataset === id).reverse();
  const names = d.labels.length ? d.labels : Object.keys(d.label_counts);
  const message = h('div', { 'aria-live': 'polite' });
  const actions = h('div', { class: 'actions' }, link(`/ui/new?train=${enc(id)}`, 'New job on this dataset', { class: 'button primary' }));
  if (canDelete) {
    const remove = h('button', { type: 'button', class: 'danger' }, 'Delete dataset');
    remove.addEventListener('click', async () => {
      if (!confirmed(`Delete dataset ${d.name || id}?`)) return;
      try {
        await del(`/datasets/${enc(id)}`, { signal });
        ctx.navigate('/ui/datasets');
      } catch (e) {
        fill(message, errorBox(e));
      }
    });
    actions.append(remove);
  }
  const upload = uploads.get(id);
  fill(
    root,
    h('div', { class: 'page-head' }, h('h1', {}, 'Dataset ', h('code', {}, d.name || id)), actions),
    message,
    h(
      'div',
      { class: 'two-col' },
      h(
        'div',
        {},
        facts([
          ['Id', h('code', {}, d.id)],
          ['Name', d.name || '—'],
          ['Format', d.format],
          ['Rows', d.rows.toLocaleString('en-US')],
          ['Labels', `${names.length}: ${names.join(', ')}`],
          ['Uploaded', ago(d.created_at)],
        ]),
      ),
      h(
        'section',
        { 'aria-labelledby': 'h-dist' },
        h('h2', { id: 'h-dist' }, 'Label distribution'),
        bars(
          names.map((l) => [l, d.label_counts[l] ?? 0]),
          { format: (v) => `${v.toLocaleString('en-US')} (${((100 * v) / (d.rows || 1)).toFixed(1)}%)`, label: 'Rows per label', highlight: false },
        ),
      ),
    ),
    upload
      ? h(
          'section',
          { 'aria-labelledby': 'h-preview' },
          h('h2', { id: 'h-preview' }, `First rows of ${upload.fileName}`),
          table(
            ['Row', 'Text', 'Label'],
            upload.rows.map((r, i) => [i + 1, String(r.text ?? ''), String(r.label_text ?? r.label ?? '')]),
            { class: 'compact preview', id: 'dataset-preview' },
          ),
        )
      : null,
    h(
      'section',
      { 'aria-labelledby': 'h-jobs' },
      h('h2', { id: 'h-jobs' }, 'Jobs using it'),
      using.length
        ? table(
            ['Job', 'Status', 'As', 'Created'],
            using.map((j) => [link(`/ui/jobs/${enc(j.id)}`, j.id), badge(j.status), j.train_dataset === id ? 'training' : 'evaluation', ago(j.created_at)]),
            { class: 'compact' },
          )
        : h('p', { class: 'muted' }, 'No job uses it yet.'),
    ),
  );
}

/** A small CSV reader (quoted fields, doubled quotes, line breaks inside quotes). */
function parseCsv(text) {
  const rows = [];
  let row = [];
  let field = '';
  let quoted = false;
  for (let i = 0; i < text.length; i++) {
    const c = text[i];
    if (quoted) {
      if (c === '"' && text[i + 1] === '"') {
        field += '"';
        i++;
      } else if (c === '"') quoted = false;
      else field += c;
    } else if (c === '"') quoted = true;
    else if (c === ',') {
      row.push(field);
      field = '';
    } else if (c === '\n') {
      row.push(field);
      rows.push(row);
      row = [];
      field = '';
    } else if (c !== '\r') field += c;
  }
  if (field !== '' || row.length) {
    row.push(field);
    rows.push(row);
  }
  return rows;
}
