// Job page: status and progress, the training curves (loss, learning rate,
// gradient norm per logged step) and evaluation curves (loss, accuracy,
// macro-F1, baseline at step 0) that grow live from the job's event stream,
// the confusion matrices of the latest and best evaluation, checkpoints, the
// live log, hyperparameters, cancel, and retry (of a failed job).

import { get, post, del, followEvents, openapi, supports } from '../api.js';
import { lineChart } from '../charts.js';
import {
  h, fill, append, badge, progress, ago, clock, link, facts, table, num, metric, duration,
  datasetLink, errorBox, confusionMatrix, bestEval, confirmed, TERMINAL,
} from '../ui.js';

export const title = 'Job';

const enc = encodeURIComponent;
const MAX_LOG = 2000;

export async function render(root, ctx) {
  const id = ctx.params[0];
  const { signal } = ctx;
  ctx.setTitle(`Job ${id}`);
  let job = await get(`/jobs/${enc(id)}`, { signal });
  const [doc, canDelete, dataset, evalSet] = await Promise.all([
    openapi().catch(() => null),
    supports('delete', '/jobs/{id}'),
    get(`/datasets/${enc(job.train_dataset)}`, { signal }).catch(() => null),
    job.eval_dataset ? get(`/datasets/${enc(job.eval_dataset)}`, { signal }).catch(() => null) : null,
  ]);
  const labels = dataset ? dataset.labels : null;
  const names = new Map([dataset, evalSet].filter(Boolean).map((d) => [d.id, d.name]));

  const statusBadge = h('span', { id: 'job-status' });
  const actions = h('div', { class: 'actions' });
  const message = h('div', { 'aria-live': 'polite' });
  const summary = h('div', { id: 'job-summary' });
  const trainGrid = h('div', { class: 'chart-grid' });
  const evalGrid = h('div', { class: 'chart-grid' });
  const evalTable = h('div', { class: 'scroll-x' });
  const confusion = h('div', { id: 'confusion', class: 'confusion-pair' });
  const checkpoints = h('div', { id: 'checkpoints' });
  const log = h('ol', { class: 'log', id: 'event-log', tabindex: '0', 'aria-label': 'Event log' });
  const hyper = h('div', { id: 'hyperparameters' });

  fill(
    root,
    h('div', { class: 'page-head' }, h('h1', {}, 'Job ', h('code', {}, id), ' ', statusBadge), actions),
    message,
    summary,
    h('section', { 'aria-labelledby': 'h-train' }, h('h2', { id: 'h-train' }, 'Training'), trainGrid),
    h('section', { 'aria-labelledby': 'h-eval' }, h('h2', { id: 'h-eval' }, 'Evaluation'), evalGrid, evalTable),
    h('section', { 'aria-labelledby': 'h-confusion' }, h('h2', { id: 'h-confusion' }, 'Confusion matrix'), confusion),
    h(
      'div',
      { class: 'two-col' },
      h('section', { 'aria-labelledby': 'h-log' }, h('h2', { id: 'h-log' }, 'Event log'), log),
      h(
        'div',
        {},
        h('section', { 'aria-labelledby': 'h-ckpt' }, h('h2', { id: 'h-ckpt' }, 'Checkpoints'), checkpoints),
        h('section', { 'aria-labelledby': 'h-hp' }, h('h2', { id: 'h-hp' }, 'Hyperparameters'), hyper),
      ),
    ),
  );

  const charts = {
    loss: lineChart(trainGrid, { key: 'train-loss', title: 'Training loss', x: 'step', y: 'loss', series: [{ label: 'training loss' }] }),
    lr: lineChart(trainGrid, { key: 'learning-rate', title: 'Learning rate', x: 'step', y: 'learning rate', series: [{ label: 'learning rate', color: '#8e44ad' }] }),
    grad: lineChart(trainGrid, { key: 'grad-norm', title: 'Gradient norm (before clipping)', x: 'step', y: 'global norm', series: [{ label: 'gradient norm', color: '#b8860b' }] }),
    evalLoss: lineChart(evalGrid, { key: 'eval-loss', title: 'Evaluation loss', x: 'step', y: 'loss', series: [{ label: 'eval loss', color: '#d1501f' }] }),
    evalScore: lineChart(evalGrid, {
      key: 'eval-scores',
      title: 'Accuracy and macro-F1',
      x: 'step',
      y: 'score',
      range: [0, 1],
      series: [{ label: 'accuracy', color: '#2a9d4b' }, { label: 'macro-F1', color: '#1f6fd1' }],
    }),
  };
  ctx.onLeave(() => Object.values(charts).forEach((c) => c.destroy()));

  // --- the parts, each redrawn from the API ---------------------------------

  // Progress moves with every step; the facts and buttons only when the job's
  // state does, so links and buttons are not replaced under the user's focus.
  const progressBox = h('div', { class: 'job-progress' });
  const factsBox = h('div');
  append(summary, progressBox, factsBox);
  let factsKey = null;
  let actionsKey = null;

  const drawJob = () => {
    fill(statusBadge, badge(job.status));
    const p = job.progress || {};
    fill(
      progressBox,
      progress(job),
      p.epoch !== null && p.epoch !== undefined ? h('span', { class: 'muted' }, ` · epoch ${num(p.epoch, 3)}`) : null,
      p.tokens_per_second ? h('span', { class: 'muted' }, ` · ${num(Math.round(p.tokens_per_second))} tokens/s`) : null,
    );
    const fk = JSON.stringify([job.status, job.model, job.attempt, job.started_at, job.finished_at, job.error, job.retry_at, job.retries, job.tracking]);
    if (fk !== factsKey) {
      factsKey = fk;
      fill(
        factsBox,
        facts([
          ['Base model', h('code', {}, job.base_model)],
          ['Training data', datasetLink(job.train_dataset, names)],
          ['Evaluation data', job.eval_dataset ? datasetLink(job.eval_dataset, names) : 'none'],
          ['Model', job.model ? link(`/ui/models/${enc(job.model)}`, job.model) : null],
          ['Attempt', `${job.attempt} of ${job.max_attempts}`],
          ['Retries', job.retries ? `${job.retries} after causes that may pass` : null],
          ['Next try', job.retry_at ? new Date(job.retry_at).toLocaleTimeString() : null],
          ['Created', ago(job.created_at)],
          ['Started', job.started_at ? ago(job.started_at) : null],
          ['Finished', job.finished_at ? ago(job.finished_at) : null],
          ['Took', job.started_at && job.finished_at ? duration((new Date(job.finished_at) - new Date(job.started_at)) / 1000) : null],
          ['MLflow run', job.tracking ? h('a', { href: job.tracking.url, target: '_blank', rel: 'noopener', id: 'mlflow-run' }, job.tracking.run_id) : null],
          ['Webhooks', job.webhooks?.length ? job.webhooks.map((w) => w.url).join(', ') : null],
        ]),
        job.error ? errorBox({ message: job.error }) : null,
      );
    }
    const ak = JSON.stringify([job.status, job.cancel_requested]);
    if (ak !== actionsKey) {
      actionsKey = ak;
      drawActions();
    }
  };

  const drawActions = () => {
    fill(actions);
    if (!TERMINAL.has(job.status)) {
      const cancel = h('button', { type: 'button', id: 'cancel-job', class: 'danger', disabled: job.cancel_requested }, job.cancel_requested ? 'Cancelling…' : 'Cancel job');
      cancel.addEventListener('click', async () => {
        if (!confirmed(`Cancel job ${id}?`)) return;
        cancel.disabled = true;
        try {
          job = await post(`/jobs/${enc(id)}/cancel`, undefined, { signal });
          drawJob();
        } catch (e) {
          fill(message, errorBox(e));
          cancel.disabled = false;
        }
      });
      actions.append(cancel);
    }
    if (job.status === 'failed') {
      const retry = h('button', { type: 'button', id: 'retry-job' }, 'Retry job');
      retry.title = 'Queue it again with fresh attempts; it continues from its newest checkpoint';
      retry.addEventListener('click', async () => {
        retry.disabled = true;
        try {
          job = await post(`/jobs/${enc(id)}/retry`, undefined, { signal });
          drawJob();
        } catch (e) {
          fill(message, errorBox(e));
          retry.disabled = false;
        }
      });
      actions.append(retry);
    }
    append(
      actions,
      link(`/ui/new?from=${enc(id)}`, 'New job from these settings', { class: 'button' }),
      link(`/ui/compare?jobs=${enc(id)}`, 'Compare…', { class: 'button' }),
    );
    if (canDelete && TERMINAL.has(job.status)) {
      const remove = h('button', { type: 'button', class: 'danger' }, 'Delete job');
      remove.addEventListener('click', async () => {
        if (!confirmed(`Delete job ${id} and its checkpoints?`)) return;
        try {
          await del(`/jobs/${enc(id)}`, { signal });
          ctx.navigate('/ui/jobs');
        } catch (e) {
          fill(message, errorBox(e));
        }
      });
      actions.append(remove);
    }
  };

  const drawMetrics = (m) => {
    const train = m.train.filter((r) => typeof r.loss === 'number');
    const xs = train.map((r) => r.step);
    charts.loss.set(xs, train.map((r) => r.loss));
    charts.lr.set(xs, train.map((r) => r.learning_rate ?? null));
    charts.grad.set(xs, train.map((r) => r.grad_norm ?? null));
    const evals = m.eval;
    const ex = evals.map((r) => r.step);
    charts.evalLoss.set(ex, evals.map((r) => r.loss ?? null));
    charts.evalScore.set(ex, evals.map((r) => r.accuracy ?? null), evals.map((r) => r.macro_f1 ?? null));

    const bestBy = job.hyperparameters?.metric_for_best_model || 'accuracy';
    const best = bestEval(evals, bestBy);
    const latest = evals.length ? evals[evals.length - 1] : null;
    fill(
      evalTable,
      evals.length
        ? table(
            ['Step', 'Epoch', 'Loss', 'Accuracy', 'Macro-F1', 'Examples', ''],
            evals.map((e) => [
              e.step === 0 ? '0 (baseline)' : e.step,
              num(e.epoch, 3),
              num(e.loss),
              metric(e.accuracy),
              metric(e.macro_f1),
              e.examples ?? '—',
              e === best ? h('span', { class: 'tag' }, `best ${bestBy}`) : '',
            ]),
            { class: 'compact', id: 'eval-table' },
          )
        : null,
    );
    if (!latest) {
      fill(confusion, h('p', { class: 'muted' }, job.eval_dataset ? 'No evaluation yet: the baseline runs before the first step.' : 'This job has no evaluation set.'));
      return;
    }
    const matrix = (e, caption) =>
      h(
        'figure',
        { class: 'confusion-figure' },
        confusionMatrix({ labels, confusion: e.confusion, precision: e.precision, recall: e.recall }),
        h('figcaption', {}, caption),
      );
    const describe = (e) => `step ${e.step}${e.step === 0 ? ' (baseline)' : ''} · accuracy ${metric(e.accuracy)} · macro-F1 ${metric(e.macro_f1)} · ${e.examples ?? '?'} examples`;
    if (!best || best.step === latest.step) {
      fill(confusion, matrix(latest, h('span', {}, h('strong', {}, 'Latest and best evaluation'), ` — ${describe(latest)}`)));
    } else {
      fill(
        confusion,
        matrix(latest, h('span', {}, h('strong', {}, 'Latest evaluation'), ` — ${describe(latest)}`)),
        matrix(best, h('span', {}, h('strong', {}, `Best by ${bestBy}`), ` — ${describe(best)}`)),
      );
    }
  };

  const drawCheckpoints = (list) => {
    fill(
      checkpoints,
      list.data.length
        ? table(
            ['Step', 'Accuracy', 'Macro-F1', 'Eval loss', 'Saved', 'Folder'],
            list.data.map((c) => [
              c.step,
              metric(c.metrics?.accuracy),
              metric(c.metrics?.macro_f1),
              num(c.metrics?.loss),
              ago(c.created_at),
              h('code', { class: 'truncate', title: c.path }, c.path.split('/').slice(-2).join('/')),
            ]),
            { class: 'compact' },
          )
        : h('p', { class: 'muted' }, 'No checkpoints on disk.'),
    );
  };

  const drawHyperparameters = () => {
    const schema = doc?.components?.schemas?.Hyperparameters?.properties || {};
    const hp = job.hyperparameters || {};
    const names = Object.keys(hp).sort();
    fill(
      hyper,
      table(
        ['Name', 'Value', 'Default'],
        names.map((k) => {
          const dflt = schema[k] ? schema[k].default : undefined;
          const changed = dflt !== undefined && JSON.stringify(dflt) !== JSON.stringify(hp[k]);
          return [
            h('code', { title: schema[k]?.description || '' }, k),
            h('span', { class: changed ? 'changed' : '' }, fmtValue(hp[k])),
            dflt === undefined ? '' : h('span', { class: 'muted' }, fmtValue(dflt)),
          ];
        }),
        { class: 'compact hp-table' },
      ),
    );
  };

  const appendLog = (e) => {
    const nearBottom = log.scrollHeight - log.scrollTop - log.clientHeight < 40;
    log.append(
      h(
        'li',
        { class: `level-${e.level}`, dataset: { kind: e.kind } },
        h('time', { datetime: e.created_at }, clock(e.created_at)),
        h('span', { class: 'kind' }, e.kind),
        h('span', { class: 'msg' }, e.message),
      ),
    );
    while (log.childElementCount > MAX_LOG) log.firstElementChild.remove();
    if (nearBottom) log.scrollTop = log.scrollHeight;
  };

  // --- live updates ----------------------------------------------------------

  const refresh = {
    job: async () => {
      job = await get(`/jobs/${enc(id)}`, { signal });
      drawJob();
    },
    metrics: async () => drawMetrics(await get(`/jobs/${enc(id)}/metrics`, { signal })),
    checkpoints: async () => drawCheckpoints(await get(`/jobs/${enc(id)}/checkpoints`, { signal })),
  };
  const due = new Set();
  let timer = null;
  const schedule = (...parts) => {
    parts.forEach((p) => due.add(p));
    if (timer) return;
    timer = setTimeout(async () => {
      timer = null;
      const now = [...due];
      due.clear();
      await Promise.all(now.map((p) => refresh[p]().catch((e) => console.warn(`refresh ${p}:`, e.message))));
    }, 250);
  };
  ctx.onLeave(() => clearTimeout(timer));

  drawJob();
  drawHyperparameters();
  await Promise.all([refresh.metrics(), refresh.checkpoints()]);

  const ON = {
    step: ['job', 'metrics'],
    eval: ['job', 'metrics'],
    plan: ['job'],
    started: ['job'],
    checkpoint: ['checkpoints'],
    cancel_requested: ['job'],
  };
  followEvents(id, {
    signal,
    onEvent: (ev) => {
      const e = ev.data && typeof ev.data === 'object' ? ev.data : { kind: ev.event, message: String(ev.data), level: 'info' };
      appendLog(e);
      schedule(...(ON[e.kind] || ['job', 'metrics', 'checkpoints']));
    },
    // The server ends the stream once the job has finished.
    reconnect: async () => {
      await Promise.all([refresh.job(), refresh.metrics(), refresh.checkpoints()]).catch(() => {});
      return !TERMINAL.has(job.status);
    },
  });
  // ETA and throughput move between events too.
  const tick = setInterval(() => {
    if (!TERMINAL.has(job.status)) schedule('job');
  }, 5000);
  ctx.onLeave(() => clearInterval(tick));
}

function fmtValue(v) {
  if (v === null || v === undefined) return 'none';
  if (typeof v === 'number') return num(v, 6);
  return String(v);
}
