// Datasets page: upload a JSONL or CSV file (pick it or drop it), the
// datasets stored with their size and label distribution; a refused upload
// shows its row errors by line, next to the offending lines of the file.

import { listAll, request } from '../api.js';
import { h, fill, link, ago, errorBox, scrollBox } from '../ui.js';
import { remember } from './dataset.js';

export const title = 'Datasets';

const enc = encodeURIComponent;

export async function render(root, ctx) {
  const { signal } = ctx;
  const file = h('input', { type: 'file', id: 'dataset-file', name: 'file', class: 'visually-hidden', accept: '.jsonl,.json,.ndjson,.csv,text/csv,application/x-ndjson' });
  const name = h('input', { type: 'text', id: 'dataset-name', name: 'name', placeholder: 'tweets-train', autocomplete: 'off' });
  const chosen = h('span', { class: 'muted', id: 'dataset-chosen' }, 'No file chosen');
  const result = h('div', { id: 'upload-result', 'aria-live': 'polite' });
  const button = h('button', { type: 'submit', class: 'primary', disabled: true }, 'Upload');
  const drop = h(
    'div',
    { class: 'drop-zone', id: 'drop-zone' },
    h('p', {}, h('strong', {}, 'Drop a .jsonl or .csv file here'), ' or ', h('label', { for: 'dataset-file', class: 'link-like' }, 'choose one'), '.'),
    file,
    chosen,
    h('p', { class: 'muted small' }, 'JSONL: one ', h('code', {}, '{"text": …, "label": …, "label_text"?: …}'), ' per line. CSV: ', h('code', {}, 'text'), ' and ', h('code', {}, 'label'), ' columns.'),
  );
  let picked = null;
  const pick = (f) => {
    picked = f || null;
    button.disabled = !picked;
    fill(chosen, picked ? `${picked.name} (${(picked.size / 1024).toFixed(1)} KiB)` : 'No file chosen');
    if (picked && !name.value) name.value = picked.name.replace(/\.(jsonl|ndjson|json|csv)$/i, '');
    fill(result);
  };
  file.addEventListener('change', () => pick(file.files[0]));
  for (const type of ['dragenter', 'dragover']) {
    drop.addEventListener(type, (ev) => {
      ev.preventDefault();
      drop.classList.add('over');
    });
  }
  for (const type of ['dragleave', 'drop']) drop.addEventListener(type, () => drop.classList.remove('over'));
  drop.addEventListener('drop', (ev) => {
    ev.preventDefault();
    if (ev.dataTransfer.files.length) pick(ev.dataTransfer.files[0]);
  });

  const form = h(
    'form',
    { class: 'upload', id: 'upload-form' },
    h('h2', {}, 'Upload a dataset'),
    drop,
    h('div', { class: 'field inline' }, h('label', { for: 'dataset-name' }, 'Name'), name, button),
    result,
  );
  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    if (!picked) return;
    button.disabled = true;
    fill(result, h('p', { class: 'muted' }, `Uploading ${picked.name}…`));
    const text = picked.size <= 64 << 20 ? await picked.text() : null;
    const body = new FormData();
    body.append('file', picked, picked.name);
    const q = name.value.trim() ? `?name=${enc(name.value.trim())}` : '';
    try {
      const ds = await request('POST', `/datasets${q}`, { body, signal });
      if (text !== null) remember(ds.id, picked.name, text);
      ctx.navigate(`/ui/datasets/${enc(ds.id)}`);
    } catch (e) {
      fill(result, errorBox(e, { lines: text === null ? null : text.split(/\r?\n/) }));
      button.disabled = false;
    }
  });

  const list = await listAll('/datasets', { signal });
  const max = Math.max(1, ...list.map((d) => d.rows));
  fill(
    root,
    h('div', { class: 'page-head' }, h('h1', {}, 'Datasets')),
    form,
    h('h2', {}, 'Stored datasets'),
    list.length
      ? scrollBox(
          h(
            'table',
            { class: 'list', id: 'datasets-table' },
            h('thead', {}, h('tr', {}, ['Dataset', 'Id', 'Format', 'Rows', 'Labels', 'Uploaded', ''].map((c) => h('th', { scope: 'col' }, c)))),
            h(
              'tbody',
              {},
              list.map((d) =>
                h(
                  'tr',
                  { dataset: { dataset: d.id } },
                  h('td', {}, link(`/ui/datasets/${enc(d.id)}`, d.name || d.id)),
                  h('td', {}, h('code', {}, d.id)),
                  h('td', {}, d.format),
                  h('td', { class: 'num' }, d.rows.toLocaleString('en-US'), h('span', { class: 'size-bar', style: { width: `${(60 * d.rows) / max}px` }, 'aria-hidden': 'true' })),
                  h('td', {}, distribution(d)),
                  h('td', {}, ago(d.created_at)),
                  h('td', {}, link(`/ui/new?train=${enc(d.id)}`, 'Train on it')),
                ),
              ),
            ),
          ),
        )
      : h('p', { class: 'empty' }, 'No datasets yet: upload one above.'),
  );
}

/** A stacked bar of a dataset's label counts, with the counts in words. */
export function distribution(d) {
  const total = d.rows || 1;
  const names = d.labels.length ? d.labels : Object.keys(d.label_counts);
  const words = names.map((l) => `${l} ${d.label_counts[l] ?? 0}`).join(', ');
  return h(
    'span',
    { class: 'stack', title: words },
    h(
      'span',
      { class: 'stack-bar', 'aria-hidden': 'true' },
      names.map((l, i) => h('span', { class: `seg seg-${i % 8}`, style: { width: `${(100 * (d.label_counts[l] ?? 0)) / total}%` } })),
    ),
    h('span', { class: 'stack-text' }, words),
  );
}
