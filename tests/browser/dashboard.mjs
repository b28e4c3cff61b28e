// Browser tests of the dashboard: Playwright drives a real headless Chromium
// through every page of a running tuneserve, as a person would — upload a
// dataset through the page, submit a job through the form, watch it succeed
// and its charts match the API, open the confusion matrix, classify in the
// try-it box, see a bad hyperparameter's error next to its field, compare
// jobs, cancel one, and log in to a server started with --api-key; then the
// same pages on a phone's 390×844 screen (phone.mjs).
//
// Run by `cargo test --release --test it browser` (tests/it/browser.rs starts
// the servers). By hand:
//   node tests/browser/dashboard.mjs --base http://127.0.0.1:8080 \
//     --locked http://127.0.0.1:8081 --key KEY --base-model DIR --dataset FILE.jsonl \
//     [--screenshots docs] [--chromium /usr/bin/chromium]

import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { chromium } from 'playwright-core';
import { phoneChecks } from './phone.mjs';

const { values: opt } = parseArgs({
  options: {
    base: { type: 'string' },
    locked: { type: 'string' },
    key: { type: 'string' },
    'base-model': { type: 'string' },
    dataset: { type: 'string' },
    screenshots: { type: 'string' },
    chromium: { type: 'string', default: process.env.TUNESERVE_CHROMIUM || '/usr/bin/chromium' },
  },
});
for (const k of ['base', 'locked', 'key', 'base-model', 'dataset']) {
  if (!opt[k]) {
    console.error(`missing --${k}`);
    process.exit(2);
  }
}

// The whole run has a deadline, so a hang fails the test instead of blocking it.
const deadline = setTimeout(() => {
  console.error('FAIL: the browser tests took longer than 6 minutes');
  process.exit(1);
}, 6 * 60 * 1000);

const VIEWPORT = { width: 1280, height: 800 };
const profile = fs.mkdtempSync(path.join(os.tmpdir(), 'tuneserve-chromium-'));
const context = await chromium.launchPersistentContext(profile, {
  executablePath: opt.chromium,
  headless: true,
  viewport: VIEWPORT,
  // Chromium's own background connections are refused on closed networks; keep it quiet.
  args: [
    '--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
    '--disable-background-networking', '--disable-component-update', '--disable-sync',
  ],
});
context.setDefaultTimeout(20_000);

const problems = []; // console errors and uncaught exceptions
function watch(page) {
  page.on('console', (m) => {
    // A 4xx the test provokes is logged as a failed resource; that is expected.
    if (m.type() === 'error' && !m.text().startsWith('Failed to load resource')) problems.push(`console: ${m.text()}`);
  });
  page.on('pageerror', (e) => problems.push(`page error: ${e.message}`));
  return page;
}

let current = null;
const results = [];
async function step(name, fn) {
  const started = Date.now();
  try {
    await fn();
    results.push(name);
    console.log(`ok - ${name} (${Date.now() - started} ms)`);
  } catch (e) {
    console.error(`not ok - ${name}\n  ${e.stack || e}`);
    if (current) {
      const file = path.join(os.tmpdir(), `tuneserve-browser-failure.png`);
      await current.screenshot({ path: file, fullPage: true }).catch(() => {});
      console.error(`  page: ${current.url()}\n  screenshot: ${file}`);
    }
    if (problems.length) console.error(`  browser console:\n    ${problems.join('\n    ')}`);
    await finish(1);
  }
}

async function finish(code) {
  clearTimeout(deadline);
  await context.close().catch(() => {});
  fs.rmSync(profile, { recursive: true, force: true });
  process.exit(code);
}

function assert(cond, message) {
  if (!cond) throw new Error(`assertion failed: ${message}`);
}

async function shot(page, name) {
  if (!opt.screenshots) return;
  fs.mkdirSync(opt.screenshots, { recursive: true });
  await page.screenshot({ path: path.join(opt.screenshots, `dashboard-${name}.png`) });
}

/** The open server's API, straight from node (no key). */
async function api(p, init) {
  const resp = await fetch(opt.base + p, init);
  const body = await resp.json();
  if (!resp.ok) throw new Error(`${p}: ${resp.status} ${JSON.stringify(body)}`);
  return body;
}

async function waitJob(id, pred, ms = 120_000) {
  const until = Date.now() + ms;
  for (;;) {
    const job = await api(`/jobs/${id}`);
    if (pred(job)) return job;
    if (Date.now() > until) throw new Error(`job ${id} still ${job.status}`);
    await new Promise((r) => setTimeout(r, 200));
  }
}

const points = (page, chart) => page.locator(`[data-chart="${chart}"]`).first().getAttribute('data-points').then(Number);

const page = watch(await context.newPage());
current = page;
const labels = ['negative', 'neutral', 'positive'];
let datasetId;
let jobId;
let modelId;
let compared; // the two finished jobs

await step('GET / leads to the jobs page, empty', async () => {
  await page.goto(`${opt.base}/`);
  await page.waitForURL('**/ui/jobs');
  const empty = page.locator('#jobs-table td.empty');
  await empty.waitFor();
  assert((await empty.innerText()).includes('No jobs yet'), 'an empty list says so');
});

await step('keyboard: the first Tab reaches the skip link, which moves focus to the content', async () => {
  await page.keyboard.press('Tab');
  assert((await page.evaluate(() => document.activeElement.textContent)) === 'Skip to content', 'skip link focused');
  await page.keyboard.press('Enter');
  assert((await page.evaluate(() => document.activeElement.id)) === 'main', 'main focused');
});

await step('upload a dataset with the file input; its page shows rows and label distribution', async () => {
  await page.getByRole('navigation').getByRole('link', { name: 'Datasets' }).click();
  await page.waitForURL('**/ui/datasets');
  await page.setInputFiles('#dataset-file', opt.dataset);
  await page.fill('#dataset-name', 'tiny-sentiment');
  await page.click('#upload-form button[type=submit]');
  await page.waitForURL(/\/ui\/datasets\/ds-[0-9a-f]+$/);
  datasetId = page.url().split('/').pop();
  const facts = await page.locator('.facts').innerText();
  assert(facts.includes('24'), `24 rows shown: ${facts}`);
  const bars = await page.locator('.bars li').evaluateAll((lis) => lis.map((li) => [li.dataset.label, Number(li.dataset.value)]));
  assert(JSON.stringify(bars) === JSON.stringify(labels.map((l) => [l, 8])), `label distribution ${JSON.stringify(bars)}`);
  assert((await page.locator('#dataset-preview tbody tr').count()) === 20, 'the first 20 rows of the file');
  await shot(page, 'dataset');
});

await step('a refused upload (dropped on the drop zone) lists its errors by line', async () => {
  await page.getByRole('navigation').getByRole('link', { name: 'Datasets' }).click();
  await page.locator('#datasets-table').waitFor();
  const bad = '{"text": "fine", "label": 0}\n{"text": "no label here"}\n{"text": "", "label": 1}\nnot json\n';
  const dt = await page.evaluateHandle((text) => {
    const transfer = new DataTransfer();
    transfer.items.add(new File([text], 'broken.jsonl', { type: 'application/x-ndjson' }));
    return transfer;
  }, bad);
  await page.locator('#drop-zone').dispatchEvent('drop', { dataTransfer: dt });
  assert((await page.inputValue('#dataset-name')) === 'broken', 'the name comes from the file');
  await page.click('#upload-form button[type=submit]');
  await page.locator('.row-errors').waitFor();
  const rows = await page.locator('.row-errors tbody tr').evaluateAll((trs) => trs.map((tr) => [...tr.cells].map((c) => c.textContent)));
  assert(rows.length === 3, `3 row errors: ${JSON.stringify(rows)}`);
  assert(rows[0][0] === '2' && rows[0][1] === 'label' && rows[0][3].includes('no label here'), `line 2 names label and shows the line: ${rows[0]}`);
  assert(rows[1][0] === '3' && rows[1][1] === 'text', `line 3: ${rows[1]}`);
  assert(rows[2][0] === '4' && rows[2][1] === 'row', `line 4: ${rows[2]}`);
  assert(page.url().endsWith('/ui/datasets'), 'stays on the page');
  await shot(page, 'datasets');
});

await step('a bad hyperparameter is refused and its error shows next to its field', async () => {
  await page.goto(`${opt.base}/ui/datasets/${datasetId}`);
  await page.getByRole('link', { name: 'New job on this dataset' }).click();
  await page.waitForURL(/\/ui\/new\?train=/);
  await page.locator('#job-form').waitFor();
  assert((await page.inputValue('#f-train_dataset')) === datasetId, 'training set preselected');
  // Every hyperparameter of the schema is a field with its default shown.
  const doc = await api('/openapi.json');
  // Every hyperparameter, those of a nested object (lora) one by one.
  const props = doc.components.schemas.Hyperparameters.properties;
  const names = Object.entries(props).flatMap(([n, p]) => {
    const inner = p.oneOf?.length === 1 ? p.oneOf[0] : p;
    return inner.type === 'object' && inner.properties ? Object.keys(inner.properties).map((s) => `${n}.${s}`) : [n];
  });
  assert(names.includes('method') && names.includes('lora.r') && names.includes('lora.target_modules'), `LoRA knobs: ${names}`);
  for (const n of names) assert((await page.locator(`[data-param="hyperparameters.${n}"]`).count()) === 1, `field ${n}`);
  // Choosing LoRA and a rank puts them into the request body, nested.
  await page.selectOption('#f-hyperparameters-method', 'lora');
  await page.fill('#f-hyperparameters-lora-r', '4');
  await page.check('[data-param="hyperparameters.lora.target_modules"] input[value="c_fc"]');
  const preview = JSON.parse(await page.locator('#request-preview').textContent());
  assert(preview.hyperparameters.method === 'lora' && preview.hyperparameters.lora.r === 4, `LoRA in the body: ${JSON.stringify(preview)}`);
  assert(JSON.stringify(preview.hyperparameters.lora.target_modules) === '["c_attn","c_fc"]', `targets: ${JSON.stringify(preview)}`);
  await page.selectOption('#f-hyperparameters-method', 'full');
  await page.fill('#f-hyperparameters-lora-r', '8');
  await page.uncheck('[data-param="hyperparameters.lora.target_modules"] input[value="c_fc"]');
  assert((await page.locator('#h-hyperparameters-epochs').innerText()).includes('default 3'), 'default shown');
  await page.fill('#f-base_model', opt['base-model']);
  await page.selectOption('#f-eval_dataset', datasetId);
  await page.fill('#f-hyperparameters-epochs', '2');
  await page.fill('#f-hyperparameters-batch_size', '4');
  await page.fill('#f-hyperparameters-logging_steps', '1');
  await page.fill('#f-hyperparameters-learning_rate', '2');
  await page.click('#submit-job');
  const error = page.locator('[data-param="hyperparameters.learning_rate"] .field-error');
  await error.waitFor();
  const text = await error.innerText();
  assert(/must be a number > 0 and ≤ 1/.test(text), `the API's message next to learning_rate: ${text}`);
  assert((await page.getAttribute('#f-hyperparameters-learning_rate', 'aria-invalid')) === 'true', 'marked invalid');
  assert((await page.evaluate(() => document.activeElement.id)) === 'f-hyperparameters-learning_rate', 'focus moved to the field');
  assert(page.url().includes('/ui/new'), 'still on the form');
  assert((await page.locator('.field-error:not(:empty)').count()) === 1, 'only that field has an error');
  await page.evaluate(() => window.scrollTo(0, 0));
  await shot(page, 'new-job');
});

await step('submit the job through the form; the job page shows it succeed', async () => {
  await page.fill('#f-hyperparameters-learning_rate', '0.001');
  await page.click('#submit-job');
  await page.waitForURL(/\/ui\/jobs\/job-[0-9a-f]+$/);
  jobId = page.url().split('/').pop();
  await page.waitForFunction(() => document.querySelector('#job-status')?.textContent === 'succeeded', null, { timeout: 120_000 });
  const job = await api(`/jobs/${jobId}`);
  assert(job.status === 'succeeded', `API agrees: ${job.status}`);
  assert(job.hyperparameters.learning_rate === 0.001 && job.hyperparameters.epochs === 2, 'the form sent what was typed');
  modelId = job.model;
});

await step('the charts hold as many points as /jobs/{id}/metrics returns', async () => {
  const m = await api(`/jobs/${jobId}/metrics`);
  assert(m.train.length === 12 && m.eval.length === 3, `12 logged steps and 3 evaluations: ${m.train.length}, ${m.eval.length}`);
  for (const [chart, n] of [['train-loss', m.train.length], ['learning-rate', m.train.length], ['grad-norm', m.train.length], ['eval-loss', m.eval.length], ['eval-scores', m.eval.length]]) {
    await page.waitForFunction(([c, want]) => document.querySelector(`[data-chart="${c}"]`)?.dataset.points === String(want), [chart, n]);
  }
  // Each chart is drawn, with labelled axes.
  assert((await page.locator('[data-chart="train-loss"] canvas').count()) === 1, 'loss chart drawn');
  const axes = await page.locator('figure.chart').evaluateAll((fs) => fs.map((f) => f.dataset.axes));
  assert(axes.length === 5 && axes.every((a) => /^\S.* \| \S/.test(a)), `both axes of every chart labelled: ${axes}`);
  assert(axes[0] === 'step | loss', `loss chart axes: ${axes[0]}`);
  const evalRows = await page.locator('#eval-table tbody tr').count();
  assert(evalRows === 3, 'evaluation table: baseline + 2 epochs');
  await page.evaluate(() => window.scrollTo(0, 0));
  await shot(page, 'job');
});

await step('the confusion matrix of the latest evaluation counts every example', async () => {
  const m = await api(`/jobs/${jobId}/metrics`);
  const last = m.eval[m.eval.length - 1];
  const matrix = page.locator('#confusion table.confusion').first();
  await matrix.scrollIntoViewIfNeeded();
  assert(await matrix.isVisible(), 'visible');
  assert(Number(await matrix.getAttribute('data-total')) === last.examples, 'cells add up to the examples');
  const cells = await matrix.locator('td.cell').allInnerTexts();
  assert(JSON.stringify(cells.map(Number)) === JSON.stringify(last.confusion.flat()), `cells ${cells} = ${last.confusion}`);
  const rowsShown = await matrix.locator('tbody th[scope=row]').allInnerTexts();
  assert(JSON.stringify(rowsShown.slice(0, 3)) === JSON.stringify(labels), `rows are the labels: ${rowsShown}`);
  assert((await matrix.locator('td.pr').count()) >= 6, 'precision and recall per class');
  const caption = await page.locator('#confusion figcaption').first().innerText();
  assert(caption.includes(`step ${last.step}`), `caption names the step: ${caption}`);
  await page.locator('#h-confusion').evaluate((el) => el.scrollIntoView());
  await shot(page, 'job-confusion');
});

await step('a job page reloads to itself (its own URL)', async () => {
  await page.reload();
  await page.waitForFunction(() => document.querySelector('#job-status')?.textContent === 'succeeded');
  assert((await page.locator('h1').innerText()).includes(jobId), 'same job');
  await page.locator('#event-log li[data-kind="succeeded"]').waitFor(); // the log, streamed again
});

await step('the model page classifies a text in the try-it box and draws each score', async () => {
  await page.click(`#job-summary a[href="/ui/models/${modelId}"]`);
  await page.waitForURL(`**/ui/models/${modelId}`);
  await page.fill('#try-text', 'what a great game tonight');
  await page.click('#try-it button[type=submit]');
  await page.locator('#try-result .bars li').nth(2).waitFor();
  const scores = await page.locator('#try-result .bars li').evaluateAll((lis) => lis.map((li) => [li.dataset.label, Number(li.dataset.value)]));
  assert(scores.length === 3 && scores.every(([l]) => labels.includes(l)), `a bar per label: ${JSON.stringify(scores)}`);
  const sum = scores.reduce((a, [, v]) => a + v, 0);
  assert(Math.abs(sum - 1) < 1e-3, `scores add up to 1: ${sum}`);
  const predicted = await page.getAttribute('#try-result .predicted', 'data-label');
  const direct = await api('/classify', { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ inputs: 'what a great game tonight', model: modelId }) });
  assert(predicted === direct.predictions[0].label, `same answer as the API: ${predicted}`);
  await shot(page, 'model');
});

let longJob;
await step('a running job: the list shows its progress and ETA, its charts grow, and it cancels', async () => {
  // A second finished job to compare with, and a long one to watch and cancel.
  const submit = (hp) =>
    api('/jobs', {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ base_model: opt['base-model'], train_dataset: datasetId, eval_dataset: datasetId, hyperparameters: hp }),
    });
  const second = await submit({ epochs: 2, batch_size: 4, logging_steps: 1, learning_rate: 0.0003 });
  await waitJob(second.id, (j) => j.status === 'succeeded');
  longJob = (await submit({ epochs: 500, batch_size: 4, logging_steps: 1, learning_rate: 0.0001, save_strategy: 'no' })).id;
  await waitJob(longJob, (j) => j.status === 'running' && j.progress.step > 0);

  await page.getByRole('navigation').getByRole('link', { name: 'Jobs' }).click();
  const row = page.locator(`tr[data-job="${longJob}"]`);
  await row.waitFor();
  await page.waitForFunction((id) => /ETA/.test(document.querySelector(`tr[data-job="${id}"] .progress-text`)?.textContent || ''), longJob);
  assert((await page.locator('#jobs-table tbody tr').count()) === 3, 'three jobs listed');
  assert((await page.locator('#jobs-table tbody tr').first().getAttribute('data-job')) === longJob, 'newest first');
  await shot(page, 'jobs');

  await row.getByRole('link', { name: longJob }).click();
  await page.waitForURL(`**/ui/jobs/${longJob}`);
  await page.waitForFunction(() => Number(document.querySelector('[data-chart="train-loss"]')?.dataset.points) > 0);
  const before = await points(page, 'train-loss');
  await page.waitForFunction((n) => Number(document.querySelector('[data-chart="train-loss"]').dataset.points) > n + 5, before, { timeout: 30_000 });
  page.once('dialog', (d) => d.accept());
  await page.click('#cancel-job');
  await page.waitForFunction(() => document.querySelector('#job-status')?.textContent === 'cancelled', null, { timeout: 60_000 });
  const m = await api(`/jobs/${longJob}/metrics`);
  await page.waitForFunction((n) => document.querySelector('[data-chart="train-loss"]').dataset.points === String(n), m.train.length);
  assert((await page.locator('#cancel-job').count()) === 0, 'no cancel button once cancelled');
});

await step('compare: pick two jobs on the list and overlay their curves', async () => {
  await page.getByRole('navigation').getByRole('link', { name: 'Jobs' }).click();
  await page.locator('#jobs-table tbody tr').nth(2).waitFor();
  const ids = await page.locator('#jobs-table tbody tr').evaluateAll((trs) => trs.map((tr) => tr.dataset.job));
  const finished = ids.filter((id) => id !== longJob);
  compared = finished;
  for (const id of finished) await page.check(`input[aria-label="compare ${id}"]`);
  await page.click('#compare-selected');
  await page.waitForURL(/\/ui\/compare\?jobs=/);
  const chosen = new URL(page.url()).searchParams.get('jobs').split(',');
  assert(chosen.length === 2 && finished.every((id) => chosen.includes(id)), `both in the URL: ${chosen}`);
  await page.waitForFunction(() => document.querySelector('[data-chart="train-loss"]')?.dataset.points === '12');
  const legend = await page.locator('[data-chart="train-loss"] .u-legend .u-series').allInnerTexts();
  assert(finished.every((id) => legend.some((t) => t.includes(id))), `a series per job: ${legend}`);
  assert((await page.locator('#compare-table tbody tr').count()) === 2, 'results of both');
  assert((await page.locator('#compare-table thead').innerText()).toLowerCase().includes('learning_rate'), 'the differing hyperparameter is a column');
  await shot(page, 'compare');
});

await step('the models page lists both fine-tuned models with their metrics', async () => {
  await page.getByRole('navigation').getByRole('link', { name: 'Models' }).click();
  await page.locator('#models-table').waitFor();
  assert((await page.locator('#models-table tbody tr').count()) === 2, 'two models');
  assert((await page.locator('#models-table').innerText()).includes(modelId), 'the first one listed');
  await page.fill('#try-text', 'the bus comes every hour');
  await page.click('#try-it button[type=submit]');
  await page.locator('#try-result .bars li').nth(2).waitFor();
  await shot(page, 'models');
});

await phoneChecks({
  context,
  step,
  assert,
  api,
  watch,
  shot,
  opt,
  setCurrent: (p) => {
    current = p;
  },
  ids: { datasetId, jobId, modelId, compared },
});
current = page;

await step('with --api-key, only the login prompt shows until the key is given; it is kept for the tab', async () => {
  const tab = watch(await context.newPage());
  current = tab;
  await tab.goto(`${opt.locked}/ui/datasets`);
  await tab.locator('#login').waitFor();
  assert(await tab.locator('.site-header nav').isHidden(), 'no navigation');
  assert((await tab.locator('main').innerText()).includes('API key'), 'the prompt');
  assert((await tab.locator('main table').count()) === 0, 'no data');
  await shot(tab, 'login');
  await tab.fill('#api-key', 'not-the-key');
  await tab.click('#login button[type=submit]');
  await tab.waitForFunction(() => document.querySelector('#login-error')?.textContent === 'That key was refused.');
  await tab.fill('#api-key', opt.key);
  await tab.click('#login button[type=submit]');
  await tab.locator('#upload-form').waitFor();
  assert(tab.url().endsWith('/ui/datasets'), 'lands on the page asked for');
  assert(await tab.locator('.site-header nav').isVisible(), 'navigation back');
  await tab.reload();
  await tab.locator('#upload-form').waitFor();
  assert((await tab.locator('#login').count()) === 0, 'a reload keeps the key');
  const other = watch(await context.newPage());
  await other.goto(`${opt.locked}/ui/jobs`);
  await other.locator('#login').waitFor();
  await other.close();
  await tab.click('#sign-out');
  await tab.locator('#login').waitFor();
  await tab.close();
  current = page;
});

await step('no script errors in the browser console', async () => {
  assert(problems.length === 0, problems.join('\n'));
});

console.log(`all ${results.length} browser checks passed`);
await finish(0);
