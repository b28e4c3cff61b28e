// Compare page: pick two or more jobs and overlay their training loss and
// evaluation curves, with their final scores and the hyperparameters that
// differ between them. The selection lives in the URL (`?jobs=a,b`).

import { get, listAll } from '../api.js';
import { lineChart, alignSeries, PALETTE } from '../charts.js';
import { h, fill, badge, link, table, metric, num, modelName, shortModel, TERMINAL } from '../ui.js';

export const title = 'Compare';

const enc = encodeURIComponent;

export async function render(root, ctx) {
  const { signal } = ctx;
  const jobs = (await listAll('/jobs', { signal })).reverse();
  const chosen = (ctx.query.get('jobs') || '').split(',').filter(Boolean);
  const selected = new Set(chosen.filter((id) => jobs.some((j) => j.id === id)));

  const picker = h(
    'fieldset',
    { class: 'picker' },
    h('legend', {}, 'Jobs to compare'),
    jobs.length ? null : h('p', { class: 'muted' }, 'No jobs yet.'),
    jobs.map((j) => {
      const box = h('input', { type: 'checkbox', id: `pick-${j.id}`, value: j.id, checked: selected.has(j.id) });
      box.addEventListener('change', () => {
        if (box.checked) selected.add(j.id);
        else selected.delete(j.id);
        const order = jobs.map((x) => x.id).filter((x) => selected.has(x));
        history.replaceState(null, '', order.length ? `/ui/compare?jobs=${order.join(',')}` : '/ui/compare');
        draw();
      });
      return h(
        'div',
        { class: 'pick-row' },
        box,
        h(
          'label',
          { for: `pick-${j.id}` },
          h('code', {}, j.id),
          h('span', { class: 'pick-meta' }, badge(j.status), ' ', h('span', { class: 'muted', title: j.base_model }, shortModel(j.base_model))),
        ),
      );
    }),
  );
  const grid = h('div', { class: 'chart-grid two' });
  const results = h('div', { class: 'scroll-x' });
  const note = h('p', { class: 'muted', 'aria-live': 'polite' });
  fill(
    root,
    h('div', { class: 'page-head' }, h('h1', {}, 'Compare jobs')),
    h('div', { class: 'compare-layout' }, picker, h('div', {}, note, grid, results)),
  );

  let charts = [];
  const cache = new Map(); // job id -> {job, metrics}
  ctx.onLeave(() => charts.forEach((c) => c.destroy()));

  const fetchJob = async (jid) => {
    const old = cache.get(jid);
    if (old && TERMINAL.has(old.job.status)) return old;
    const [job, metrics] = await Promise.all([get(`/jobs/${enc(jid)}`, { signal }), get(`/jobs/${enc(jid)}/metrics`, { signal })]);
    const entry = { job, metrics };
    cache.set(jid, entry);
    return entry;
  };

  let drawing = 0;
  const draw = async () => {
    const ticket = ++drawing;
    const ids = jobs.map((j) => j.id).filter((x) => selected.has(x));
    const data = await Promise.all(ids.map(fetchJob));
    if (ticket !== drawing) return;
    charts.forEach((c) => c.destroy());
    charts = [];
    fill(results);
    if (ids.length < 2) {
      fill(note, 'Pick two or more jobs to overlay their curves.');
      if (!ids.length) return;
    } else {
      fill(note);
    }
    const series = data.map((d, i) => ({ label: d.job.id, color: PALETTE[i % PALETTE.length] }));
    const curve = (split, key) => data.map((d) => {
      const rows = d.metrics[split].filter((r) => typeof r[key] === 'number');
      return [rows.map((r) => r.step), rows.map((r) => r[key])];
    });
    const specs = [
      ['train-loss', 'Training loss', 'loss', curve('train', 'loss')],
      ['eval-loss', 'Evaluation loss', 'loss', curve('eval', 'loss')],
      ['eval-accuracy', 'Evaluation accuracy', 'accuracy', curve('eval', 'accuracy'), [0, 1]],
      ['eval-macro-f1', 'Evaluation macro-F1', 'macro-F1', curve('eval', 'macro_f1'), [0, 1]],
    ];
    for (const [key, t, y, list, range] of specs) {
      const chart = lineChart(grid, { key, title: t, x: 'step', y, series, range });
      chart.set(...alignSeries(list));
      charts.push(chart);
    }
    // Final scores and the settings that differ.
    const hps = data.map((d) => d.job.hyperparameters || {});
    const keys = [...new Set(hps.flatMap(Object.keys))].sort();
    const differ = keys.filter((k) => new Set(hps.map((x) => JSON.stringify(x[k]))).size > 1);
    fill(
      results,
      h('h2', {}, 'Results'),
      table(
        ['Job', 'Status', 'Base model', 'Steps', 'Accuracy', 'Macro-F1', 'Eval loss', ...differ],
        data.map((d, i) => {
          const last = d.metrics.eval[d.metrics.eval.length - 1] || {};
          return [
            h('span', {}, h('span', { class: 'swatch', style: { background: series[i].color }, 'aria-hidden': 'true' }), link(`/ui/jobs/${enc(d.job.id)}`, d.job.id)),
            badge(d.job.status),
            modelName(d.job.base_model),
            `${d.job.progress.step}${d.job.progress.total_steps ? ` / ${d.job.progress.total_steps}` : ''}`,
            metric(last.accuracy),
            metric(last.macro_f1),
            num(last.loss),
            ...differ.map((k) => String(d.job.hyperparameters[k] ?? 'none')),
          ];
        }),
        { class: 'compact', id: 'compare-table' },
      ),
      differ.length ? h('p', { class: 'muted' }, `Hyperparameters shown: those that differ (${differ.join(', ')}).`) : h('p', { class: 'muted' }, 'Same hyperparameters.'),
    );
  };

  await draw();
  const timer = setInterval(() => {
    const live = [...selected].some((x) => !TERMINAL.has(cache.get(x)?.job.status));
    if (live) draw().catch((e) => console.warn(e.message));
  }, 3000);
  ctx.onLeave(() => clearInterval(timer));
}
