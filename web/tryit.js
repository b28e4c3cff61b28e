// The "try it" box: one text per line (blank lines skipped), sent in one
// POST /classify as its list input, and for each line its predicted label and
// each label's score as a bar.

import { post } from './api.js';
import { h, fill, bars, errorBox } from './ui.js';

/** The texts of a box: one per line, trimmed, blank lines left out. */
export const linesOf = (value) =>
  value
    .split(/\r?\n/)
    .map((l) => l.trim())
    .filter((l) => l !== '');

/** One line's answer: the text, its label and score, and a bar per label. */
function result(text, p) {
  const items = Object.entries(p.scores).sort((a, b) => b[1] - a[1]);
  return h(
    'li',
    { class: 'try-line' },
    h('q', { class: 'try-text' }, text),
    h('p', {}, h('strong', { class: 'predicted', dataset: { label: p.label } }, p.label), ` (${(p.score * 100).toFixed(1)}%)`),
    bars(items, { max: 1, format: (v) => `${(v * 100).toFixed(1)}%`, label: `Score of each label for line: ${text}` }),
  );
}

/**
 * A form classifying texts, one per line. `models`: `[id, label]` choices for
 * a model select (first is the default), or `model`: one fixed model id.
 */
export function tryIt({ models, model, signal }) {
  const text = h('textarea', {
    id: 'try-text',
    name: 'text',
    rows: 4,
    required: true,
    'aria-describedby': 'try-hint',
    placeholder: 'what a great game tonight\nthe bus comes every hour',
  });
  const out = h('div', { class: 'try-out', id: 'try-result', 'aria-live': 'polite' });
  let select = null;
  if (models) {
    select = h('select', { id: 'try-model' }, models.map(([v, l]) => h('option', { value: v }, l)));
  }
  const button = h('button', { type: 'submit', class: 'primary' }, 'Classify');
  const form = h(
    'form',
    { class: 'try-it', id: 'try-it' },
    h('h2', {}, 'Try it'),
    select ? h('div', { class: 'field' }, h('label', { for: 'try-model' }, 'Model'), select) : null,
    h(
      'div',
      { class: 'field' },
      h('label', { for: 'try-text' }, 'Texts to classify'),
      text,
      h('p', { class: 'hint', id: 'try-hint' }, 'One text per line; blank lines are skipped. Ctrl+Enter classifies.'),
    ),
    h('div', {}, button),
    out,
  );
  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    const inputs = linesOf(text.value);
    if (!inputs.length) {
      fill(out, h('p', { class: 'field-error' }, 'Enter a text first.'));
      text.focus();
      return;
    }
    const body = { inputs };
    const chosen = select ? select.value : model;
    if (chosen) body.model = chosen;
    button.disabled = true;
    fill(out, h('p', { class: 'muted' }, inputs.length === 1 ? 'Classifying…' : `Classifying ${inputs.length} texts…`));
    const started = performance.now();
    try {
      const res = await post('/classify', body, { signal });
      const ms = performance.now() - started;
      const count = inputs.length === 1 ? '1 text' : `${inputs.length} texts`;
      fill(
        out,
        h('p', { class: 'muted small' }, `${count} by `, h('code', {}, res.model), ` in ${Math.round(ms)} ms`),
        h('ol', { class: 'try-lines' }, res.predictions.map((p, i) => result(inputs[i], p))),
      );
    } catch (e) {
      fill(out, errorBox(e));
    } finally {
      button.disabled = false;
    }
  });
  // Ctrl+Enter in the text submits.
  text.addEventListener('keydown', (ev) => {
    if (ev.key === 'Enter' && (ev.ctrlKey || ev.metaKey)) form.requestSubmit();
  });
  return form;
}
