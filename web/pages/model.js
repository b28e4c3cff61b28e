// Model page: one fine-tuned model — where it came from, its final metrics
// with per-class precision/recall and confusion matrix, a "try it" box, and,
// where this server has the routes, its files (each a download link),
// promote and delete.

import { get, post, del, supports, auth, saveFile } from '../api.js';
import { h, fill, link, ago, metric, num, facts, table, confusionMatrix, errorBox, confirmed } from '../ui.js';
import { tryIt } from '../tryit.js';

export const title = 'Model';

const enc = encodeURIComponent;

export async function render(root, ctx) {
  const id = ctx.params[0];
  const { signal } = ctx;
  ctx.setTitle(`Model ${id}`);
  const [model, canFiles, canPromote, canDelete] = await Promise.all([
    get(`/models/${enc(id)}`, { signal }),
    supports('get', '/models/{id}/files'),
    supports('post', '/models/{id}/promote'),
    supports('delete', '/models/{id}'),
  ]);
  const m = model.metrics || {};
  const message = h('div', { 'aria-live': 'polite' });
  const actions = h('div', { class: 'actions' });
  if (canPromote && !model.latest) {
    const promote = h('button', { type: 'button' }, 'Serve as latest');
    promote.addEventListener('click', async () => {
      try {
        await post(`/models/${enc(id)}/promote`, undefined, { signal });
        ctx.navigate(location.pathname, { replace: true });
      } catch (e) {
        fill(message, errorBox(e));
      }
    });
    actions.append(promote);
  }
  if (canDelete) {
    const remove = h('button', { type: 'button', class: 'danger' }, 'Delete model');
    remove.addEventListener('click', async () => {
      if (!confirmed(`Delete model ${id} and its files?`)) return;
      try {
        await del(`/models/${enc(id)}`, { signal });
        ctx.navigate('/ui/models');
      } catch (e) {
        fill(message, errorBox(e));
      }
    });
    actions.append(remove);
  }
  const perClass = Array.isArray(m.precision)
    ? table(
        ['Label', 'Precision', 'Recall', 'F1', 'Examples'],
        model.labels.map((label, i) => {
          const p = m.precision[i];
          const r = m.recall?.[i];
          const f1 = p + r > 0 ? (2 * p * r) / (p + r) : 0;
          const support = m.confusion?.[i]?.reduce((a, b) => a + b, 0);
          return [label, metric(p), metric(r), metric(f1), support ?? '—'];
        }),
        { class: 'compact' },
      )
    : null;
  const files = h('div');
  fill(
    root,
    h('div', { class: 'page-head' }, h('h1', {}, 'Model ', h('code', {}, id), model.latest ? h('span', { class: 'tag' }, 'latest') : null), actions),
    message,
    h(
      'div',
      { class: 'two-col' },
      h(
        'div',
        {},
        facts([
          ['Made by job', link(`/ui/jobs/${enc(model.job)}`, model.job)],
          ['Base model', h('code', {}, model.base_model)],
          ['Method', model.method === 'lora' && model.lora
            ? `LoRA adapter: rank ${model.lora.r}, alpha ${num(model.lora.alpha)}${model.lora.use_rslora ? ' (rsLoRA)' : ''} on ${model.lora.target_modules.join(', ')}`
            : model.method === 'full' ? 'full fine-tuning' : null],
          ['Size on disk', typeof model.bytes === 'number' ? `${bytes(model.bytes)}${model.method === 'lora' ? ' (without its base)' : ''}` : null],
          ['Labels', model.labels.join(', ')],
          ['Accuracy', metric(m.accuracy)],
          ['Macro-F1', metric(m.macro_f1)],
          ['Eval loss', num(m.loss)],
          ['Evaluated on', m.examples ? `${m.examples} examples` : null],
          ['Created', ago(model.created_at)],
        ]),
        perClass ? h('section', {}, h('h2', {}, 'Per class'), perClass) : null,
        Array.isArray(m.confusion)
          ? h(
              'section',
              {},
              h('h2', {}, 'Confusion matrix'),
              h('figure', { class: 'confusion-figure' }, confusionMatrix({ labels: model.labels, confusion: m.confusion, precision: m.precision, recall: m.recall }), h('figcaption', {}, 'Final evaluation')),
            )
          : null,
      ),
      h('div', {}, tryIt({ model: id, signal }), files),
    ),
  );
  if (canFiles) {
    try {
      const list = await get(`/models/${enc(id)}/files`, { signal });
      const items = Array.isArray(list) ? list : list?.data || [];
      fill(
        files,
        h('h2', {}, 'Files'),
        table(
          ['File', 'Size'],
          items.map((f) => [fileLink(id, f.name, message, signal), bytes(f.bytes)]),
          { class: 'compact', id: 'model-files' },
        ),
      );
    } catch (e) {
      if (e.status !== 404 && e.status !== 405) fill(files, errorBox(e));
    }
  }
}

/**
 * A link that downloads one of the model's files from the API. Without an API
 * key it is a plain link; with one, a click fetches the file with the key.
 */
function fileLink(id, name, message, signal) {
  const href = `/models/${enc(id)}/files/${enc(name)}`;
  const a = h('a', { href, download: name, class: 'file-link' }, h('code', {}, name));
  a.addEventListener('click', async (ev) => {
    if (!auth.key) return; // the browser's own download
    ev.preventDefault();
    try {
      await saveFile(href, name, { signal });
    } catch (e) {
      if (e.name !== 'AbortError' && e.status !== 401) fill(message, errorBox(e));
    }
  });
  return a;
}

function bytes(n) {
  if (typeof n !== 'number') return '—';
  if (n < 1024) return `${n} B`;
  if (n < 1 << 20) return `${(n / 1024).toFixed(1)} KiB`;
  if (n < 1 << 30) return `${(n / (1 << 20)).toFixed(1)} MiB`;
  return `${(n / (1 << 30)).toFixed(2)} GiB`;
}
