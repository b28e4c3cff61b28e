// The "try it" box: a text, POST /classify, and each label's score as a bar.

import { post } from './api.js';
import { h, fill, bars, errorBox } from './ui.js';

/**
 * A form classifying one text. `models`: `[id, label]` choices for a model
 * select (first is the default), or `model`: one fixed model id.
 */
export function tryIt({ models, model, signal }) {
  const text = h('textarea', { id: 'try-text', name: 'text', rows: 3, required: true, placeholder: 'what a great game tonight' });
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
    h('div', { class: 'field' }, h('label', { for: 'try-text' }, 'Text to classify'), text),
    h('div', {}, button),
    out,
  );
  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    const input = text.value.trim();
    if (!input) {
      fill(out, h('p', { class: 'field-error' }, 'Enter a text first.'));
      text.focus();
      return;
    }
    const body = { inputs: input };
    const chosen = select ? select.value : model;
    if (chosen) body.model = chosen;
    button.disabled = true;
    fill(out, h('p', { class: 'muted' }, 'Classifying…'));
    const started = performance.now();
    try {
      const res = await post('/classify', body, { signal });
      const ms = performance.now() - started;
      const p = res.predictions[0];
      const items = Object.entries(p.scores).sort((a, b) => b[1] - a[1]);
      fill(
        out,
        h('p', {}, h('strong', { class: 'predicted', dataset: { label: p.label } }, p.label), ` (${(p.score * 100).toFixed(1)}%) from `, h('code', {}, res.model), h('span', { class: 'muted' }, ` in ${Math.round(ms)} ms`)),
        bars(items, { max: 1, format: (v) => `${(v * 100).toFixed(1)}%`, label: 'Score of each label' }),
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
