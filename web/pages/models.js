// Models page: the fine-tuned models with their final metrics, and a "try it"
// box that classifies a text with any of them (or with `latest`).

import { listAll, get } from '../api.js';
import { h, fill, link, ago, metric, num, table, modelName } from '../ui.js';
import { tryIt } from '../tryit.js';

export const title = 'Models';

const enc = encodeURIComponent;

export async function render(root, ctx) {
  const { signal } = ctx;
  const [models, health] = await Promise.all([
    listAll('/models', { signal }),
    get('/health', { signal }).catch(() => null),
  ]);
  const latest = health?.latest_model || models.find((m) => m.latest)?.id || null;
  fill(
    root,
    h('div', { class: 'page-head' }, h('h1', {}, 'Models')),
    h(
      'p',
      { class: 'muted' },
      latest ? [h('code', {}, 'POST /classify'), ' answers with ', h('code', {}, latest), ' unless a request names another model.'] : 'No model is served yet; the first job to succeed will be.',
    ),
    models.length
      ? table(
          ['Model', 'Job', 'Base model', 'Labels', 'Accuracy', 'Macro-F1', 'Eval loss', 'Created'],
          models.map((m) => [
            h('span', {}, link(`/ui/models/${enc(m.id)}`, m.id), m.latest ? h('span', { class: 'tag' }, 'latest') : null),
            link(`/ui/jobs/${enc(m.job)}`, m.job),
            modelName(m.base_model),
            m.labels.join(', '),
            metric(m.metrics?.accuracy),
            metric(m.metrics?.macro_f1),
            num(m.metrics?.loss),
            ago(m.created_at),
          ]),
          { class: 'list', id: 'models-table' },
        )
      : h('p', { class: 'empty' }, 'No fine-tuned models yet. ', link('/ui/new', 'Start a job'), '.'),
    latest || models.length
      ? tryIt({
          signal,
          models: [['', latest ? `latest (${latest})` : 'latest'], ...models.map((m) => [m.id, m.id])],
        })
      : null,
  );
}
