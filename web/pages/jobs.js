// Jobs page: every job, newest first, with status, progress bar and ETA, base
// model, datasets and age, refreshed every two seconds; pick two or more to
// compare their curves.

import { listAll } from '../api.js';
import { h, fill, badge, progress, ago, link, datasetLink, modelName, scrollBox } from '../ui.js';

export const title = 'Jobs';

const STATUSES = ['queued', 'running', 'succeeded', 'failed', 'cancelled'];

export async function render(root, ctx) {
  const status = ctx.query.get('status') || '';
  const selected = new Set();
  const compareBtn = h('button', { type: 'button', disabled: true, id: 'compare-selected' }, 'Compare selected');
  compareBtn.addEventListener('click', () => ctx.navigate(`/ui/compare?jobs=${[...selected].join(',')}`));
  const filter = h(
    'select',
    { id: 'status-filter' },
    h('option', { value: '' }, 'all'),
    STATUSES.map((s) => h('option', { value: s }, s)),
  );
  filter.value = status;
  filter.addEventListener('change', () => ctx.navigate(filter.value ? `/ui/jobs?status=${filter.value}` : '/ui/jobs', { replace: true }));
  const tbody = h('tbody');
  const summary = h('p', { class: 'muted', 'aria-live': 'polite' });
  fill(
    root,
    h('div', { class: 'page-head' }, h('h1', {}, 'Jobs'), h('a', { class: 'button primary', href: '/ui/new' }, 'New job')),
    h(
      'div',
      { class: 'toolbar' },
      h('label', { for: 'status-filter' }, 'Status '),
      filter,
      compareBtn,
      summary,
    ),
    scrollBox(
      h(
        'table',
        { class: 'list', id: 'jobs-table' },
        h(
          'thead',
          {},
          h(
            'tr',
            {},
            h('th', { scope: 'col', class: 'pick' }, h('span', { class: 'visually-hidden' }, 'Compare')),
            ['Job', 'Status', 'Progress', 'Base model', 'Datasets (train / eval)', 'Created'].map((c) => h('th', { scope: 'col' }, c)),
          ),
        ),
        tbody,
      ),
    ),
  );

  const rows = new Map(); // id -> {tr, cells, key}
  const names = new Map();
  const refreshNames = async () => {
    try {
      for (const d of await listAll('/datasets', { signal: ctx.signal })) names.set(d.id, d.name || d.id);
    } catch (e) {
      if (e.status === 401) throw e;
    }
  };

  const rowFor = (job) => {
    let row = rows.get(job.id);
    if (!row) {
      const box = h('input', { type: 'checkbox', 'aria-label': `compare ${job.id}`, value: job.id });
      box.addEventListener('change', () => {
        if (box.checked) selected.add(job.id);
        else selected.delete(job.id);
        compareBtn.disabled = selected.size < 2;
        compareBtn.textContent = selected.size >= 2 ? `Compare ${selected.size} jobs` : 'Compare selected';
      });
      const cells = Array.from({ length: 6 }, (_, i) => h('td', { class: i === 4 ? 'nowrap' : null }));
      fill(cells[0], link(`/ui/jobs/${encodeURIComponent(job.id)}`, job.id), job.suffix ? h('span', { class: 'muted' }, ` ${job.suffix}`) : null);
      fill(cells[3], modelName(job.base_model));
      const tr = h('tr', { dataset: { job: job.id } }, h('td', { class: 'pick' }, box), cells);
      row = { tr, cells, state: '', data: '' };
      rows.set(job.id, row);
    }
    // Redraw only what changed, so links and checkboxes keep the focus.
    const [, statusCell, progressCell, , dataCell] = row.cells;
    const state = JSON.stringify([job.status, job.progress]);
    if (row.state !== state) {
      row.state = state;
      fill(statusCell, badge(job.status));
      fill(progressCell, progress(job));
    }
    const data = JSON.stringify([names.get(job.train_dataset), names.get(job.eval_dataset)]);
    if (row.data !== data) {
      row.data = data;
      fill(dataCell, datasetLink(job.train_dataset, names), ' / ', job.eval_dataset ? datasetLink(job.eval_dataset, names) : '—');
    }
    fill(row.cells[5], ago(job.created_at));
    return row.tr;
  };

  const load = async () => {
    const list = await listAll(status ? `/jobs?status=${status}` : '/jobs', { signal: ctx.signal });
    if (list.some((j) => j.train_dataset && !names.has(j.train_dataset))) await refreshNames();
    list.reverse(); // the API lists in submission order; newest first here
    const trs = list.map(rowFor);
    // Insert new rows in place; rows already there are never moved (that would drop the focus).
    const keep = new Set(trs);
    for (const tr of [...tbody.children]) if (!keep.has(tr)) tr.remove();
    trs.forEach((tr, i) => {
      if (tbody.children[i] !== tr) tbody.insertBefore(tr, tbody.children[i] || null);
    });
    if (!list.length) {
      tbody.replaceChildren(h('tr', {}, h('td', { colspan: 7, class: 'empty' }, status ? `No ${status} jobs.` : 'No jobs yet. ', status ? null : link('/ui/new', 'Submit one'))));
    }
    const running = list.filter((j) => j.status === 'running').length;
    const queued = list.filter((j) => j.status === 'queued').length;
    fill(summary, `${list.length} job${list.length === 1 ? '' : 's'}`, running ? ` · ${running} running` : '', queued ? ` · ${queued} queued` : '');
  };

  await refreshNames();
  await load();
  const timer = setInterval(() => load().catch((e) => console.warn('refresh failed:', e.message)), 2000);
  ctx.onLeave(() => clearInterval(timer));
}
