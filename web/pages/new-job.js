// New-job page: a form with every hyperparameter, built from the OpenAPI
// schema (`components.schemas.Hyperparameters`: type, default, bounds, enum,
// description, nullable) so nothing is written twice; the API's 422 is shown
// next to the field its `param` names. The training set is never guessed: it
// starts empty unless the link that opened the form named one (`?train=`, or
// the job copied with `?from=`), and the form sends nothing until one is chosen.

import { get, post, listAll, openapi, resolveRef } from '../api.js';
import { h, fill, errorBox, num, rich } from '../ui.js';

export const title = 'New job';

const enc = encodeURIComponent;

// Reading order only; every hyperparameter of the schema is shown, unknown ones last.
const ORDER = [
  'method', 'lora', 'epochs', 'learning_rate', 'batch_size', 'gradient_accumulation_steps', 'train_subset', 'eval_subset',
  'max_length', 'padding', 'lr_scheduler', 'warmup_steps', 'weight_decay', 'max_grad_norm', 'dropout',
  'eval_strategy', 'eval_steps', 'metric_for_best_model', 'early_stopping_patience', 'save_strategy',
  'save_steps', 'save_total_limit', 'logging_steps', 'seed', 'shuffle', 'group_by_length', 'max_attempts',
];

/** What a schema property asks for: kind, default, bounds, choices, description. */
export function describe(doc, prop) {
  let type = prop.type;
  let nullable = false;
  if (Array.isArray(type)) {
    nullable = type.includes('null');
    type = type.find((t) => t !== 'null');
  }
  let description = prop.description || '';
  let choices = prop.enum || null;
  const alternatives = [...(prop.oneOf || []), ...(prop.anyOf || []), ...(prop.allOf || [])];
  if (prop.$ref) alternatives.push({ $ref: prop.$ref });
  for (const alt of alternatives) {
    if (alt.type === 'null') {
      nullable = true;
      continue;
    }
    description = description || alt.description || '';
    const target = alt.$ref ? resolveRef(doc, alt.$ref) || {} : alt;
    if (target.enum) choices = target.enum;
    if (target.type && !type) type = Array.isArray(target.type) ? target.type.find((t) => t !== 'null') : target.type;
    description = description || target.description || '';
  }
  if (choices) {
    nullable = nullable || choices.includes(null);
    choices = choices.filter((c) => c !== null);
  }
  const bound = (k) => (typeof prop[k] === 'number' ? prop[k] : null);
  if (type === 'array') {
    const items = prop.items?.$ref ? resolveRef(doc, prop.items.$ref) || {} : prop.items || {};
    return { kind: 'list', nullable: false, description, choices: items.enum || [], default: prop.default || [] };
  }
  return {
    kind: choices ? 'enum' : type || 'string',
    nullable,
    description,
    choices,
    default: prop.default,
    minimum: bound('minimum'),
    maximum: bound('maximum'),
    exclusiveMinimum: bound('exclusiveMinimum'),
    exclusiveMaximum: bound('exclusiveMaximum'),
  };
}

/** `≥ 1`, `> 0 and ≤ 1`… from the schema's bounds. */
export function boundsText(s) {
  const parts = [];
  if (s.exclusiveMinimum !== null) parts.push(`> ${num(s.exclusiveMinimum)}`);
  else if (s.minimum !== null) parts.push(`≥ ${num(s.minimum)}`);
  if (s.exclusiveMaximum !== null) parts.push(`< ${num(s.exclusiveMaximum)}`);
  else if (s.maximum !== null) parts.push(`≤ ${num(s.maximum)}`);
  return parts.join(' and ');
}

const show = (v) => (v === null || v === undefined ? 'none' : typeof v === 'number' ? num(v, 6) : String(v));

/** The object schema a property holds (inline, in a one-item `oneOf`, or by `$ref`), if any. */
function objectOf(doc, prop) {
  const inner = prop.oneOf?.length === 1 ? prop.oneOf[0] : prop;
  const target = inner.$ref ? resolveRef(doc, inner.$ref) || {} : inner;
  return target.type === 'object' && target.properties ? target : null;
}

/** Every field the form shows: top-level hyperparameters, and those of a nested
 *  object (`lora.r`) one by one; `path` is where its value goes in the body. */
function hyperparameterFields(doc, hpProps, names) {
  const out = [];
  for (const name of names) {
    const obj = objectOf(doc, hpProps[name]);
    if (!obj) {
      out.push({ key: name, path: [name], prop: hpProps[name] });
      continue;
    }
    for (const [sub, prop] of Object.entries(obj.properties)) {
      out.push({ key: `${name}.${sub}`, path: [name, sub], prop });
    }
  }
  return out;
}

const at = (obj, path) => path.reduce((o, k) => (o && typeof o === 'object' ? o[k] : undefined), obj);

export async function render(root, ctx) {
  const { signal } = ctx;
  const from = ctx.query.get('from');
  const [doc, datasets, jobs, template] = await Promise.all([
    openapi(),
    listAll('/datasets', { signal }),
    listAll('/jobs', { signal }).catch(() => []),
    from ? get(`/jobs/${enc(from)}`, { signal }) : Promise.resolve(null),
  ]);
  const schemas = doc.components?.schemas || {};
  const hpProps = schemas.Hyperparameters?.properties || {};
  const jobProps = schemas.CreateJob?.properties || {};
  const names = [...ORDER.filter((n) => n in hpProps), ...Object.keys(hpProps).filter((n) => !ORDER.includes(n)).sort()];

  const fields = new Map(); // param -> {wrap, input, error, read()}
  const general = h('div', { id: 'form-error', 'aria-live': 'assertive' });

  const wrapField = (param, labelText, input, hintParts) => {
    const key = param.replace(/[^a-z0-9_-]/gi, '-');
    input.id = `f-${key}`;
    const error = h('p', { class: 'field-error', id: `e-${key}` });
    const parts = hintParts.filter(Boolean);
    const hint = parts.length ? h('p', { class: 'hint', id: `h-${key}` }, parts.map((p, i) => [i ? ' · ' : '', rich(p)])) : null;
    input.setAttribute('aria-describedby', [hint ? `h-${key}` : null, `e-${key}`].filter(Boolean).join(' '));
    const wrap = h('div', { class: 'field', dataset: { param } }, h('label', { for: input.id }, labelText), input, hint, error);
    return { wrap, input, error };
  };

  // --- job fields --------------------------------------------------------------
  const baseModels = [...new Set(jobs.map((j) => j.base_model).reverse())];
  const baseInput = h('input', { type: 'text', name: 'base_model', list: 'base-models', autocomplete: 'off', spellcheck: 'false', placeholder: 'gpt2, or a model folder on the server', value: template?.base_model || baseModels[0] || '' });
  const datasetOptions = (withNone) => [
    h('option', { value: '' }, withNone ? 'none (no evaluation)' : 'choose a training set'),
    datasets.map((d) => h('option', { value: d.id }, `${d.name || d.id} — ${d.rows} rows, ${d.labels.length} labels (${d.id})`)),
  ];
  const trainSelect = h('select', { name: 'train_dataset', required: true, 'aria-required': 'true' }, datasetOptions(false));
  const evalSelect = h('select', { name: 'eval_dataset' }, datasetOptions(true));
  trainSelect.value = template?.train_dataset || ctx.query.get('train') || '';
  evalSelect.value = template ? template.eval_dataset || '' : ctx.query.get('eval') || '';
  const suffixInput = h('input', { type: 'text', name: 'suffix', autocomplete: 'off', placeholder: 'tweets-small', value: template?.suffix || '' });
  const mlflowInput = h('input', { type: 'text', name: 'mlflow_experiment', autocomplete: 'off', placeholder: 'none', value: template?.integrations?.[0]?.experiment || '' });
  const webhookInput = h('input', { type: 'url', name: 'webhook_url', autocomplete: 'off', placeholder: 'none', value: template?.webhooks?.[0]?.url || '' });
  const integrationHints = {
    integrations: 'An MLflow experiment to log the run to (on the server\'s tracking server, --mlflow-tracking-uri).',
    webhooks: 'A URL this job\'s webhooks are also sent to (where the server allows it: --allow-job-webhooks).',
  };
  const jobFields = [
    ['base_model', 'Base model', baseInput],
    ['train_dataset', 'Training dataset', trainSelect],
    ['eval_dataset', 'Evaluation dataset', evalSelect],
    ['suffix', 'Model id suffix', suffixInput],
    ['integrations', 'MLflow experiment', mlflowInput],
    ['webhooks', 'Webhook URL', webhookInput],
  ].map(([param, label, input]) => {
    const f = wrapField(param, label, input, [integrationHints[param] || jobProps[param]?.description]);
    fields.set(param, f);
    return f.wrap;
  });
  // The server names these fields' errors by their place in the body.
  for (const param of ['integrations[0]', 'integrations[0].experiment']) fields.set(param, fields.get('integrations'));
  for (const param of ['webhooks[0]', 'webhooks[0].url']) fields.set(param, fields.get('webhooks'));

  // --- hyperparameters, from the schema --------------------------------------------
  const entries = hyperparameterFields(doc, hpProps, names);
  const hpFields = entries.map(({ key: name, path, prop }) => {
    const spec = describe(doc, prop);
    const given = at(template?.hyperparameters, path);
    const initial = given !== undefined ? given : spec.default;
    let input;
    let read;
    if (spec.kind === 'list') {
      const boxes = spec.choices.map((c) => h('input', { type: 'checkbox', name, value: c, checked: (initial || []).includes(c) }));
      input = h('div', { class: 'choices', role: 'group' }, boxes.map((b, i) => h('label', { class: 'choice' }, b, ` ${spec.choices[i]}`)));
      read = () => boxes.filter((b) => b.checked).map((b) => b.value);
    } else if (spec.kind === 'boolean' && !spec.nullable) {
      input = h('input', { type: 'checkbox', name, checked: Boolean(initial) });
      read = () => input.checked;
    } else if (spec.kind === 'enum' || spec.kind === 'boolean') {
      const choices = spec.kind === 'boolean' ? [true, false] : spec.choices;
      input = h('select', { name }, spec.nullable ? h('option', { value: '' }, 'none') : null, choices.map((c) => h('option', { value: String(c) }, String(c))));
      input.value = initial === null || initial === undefined ? '' : String(initial);
      read = () => (input.value === '' ? null : spec.kind === 'boolean' ? input.value === 'true' : input.value);
    } else if (spec.kind === 'integer' || spec.kind === 'number') {
      input = h('input', {
        type: 'number',
        name,
        step: spec.kind === 'integer' ? '1' : 'any',
        inputmode: spec.kind === 'integer' ? 'numeric' : 'decimal',
        min: spec.minimum ?? spec.exclusiveMinimum,
        max: spec.maximum ?? spec.exclusiveMaximum,
        placeholder: spec.nullable ? 'none' : '',
        value: initial === null || initial === undefined ? '' : String(initial),
      });
      read = () => {
        if (input.validity.badInput) return { invalid: 'not a number' };
        if (input.value.trim() === '') return null;
        return Number(input.value);
      };
    } else {
      input = h('input', { type: 'text', name, value: initial ?? '' });
      read = () => (input.value === '' && spec.nullable ? null : input.value);
    }
    const hint = [
      spec.description,
      `default ${show(spec.default)}`,
      boundsText(spec),
      spec.nullable && spec.kind !== 'enum' && spec.kind !== 'boolean' ? 'empty: none' : null,
    ];
    const f = wrapField(`hyperparameters.${name}`, name, input, hint);
    f.read = read;
    f.spec = spec;
    fields.set(`hyperparameters.${name}`, f);
    return f.wrap;
  });

  const preview = h('pre', { class: 'json', id: 'request-preview' });
  const submit = h('button', { type: 'submit', class: 'primary', id: 'submit-job' }, 'Start fine-tuning');
  const form = h(
    'form',
    { class: 'job-form', id: 'job-form', novalidate: true },
    general,
    h('fieldset', {}, h('legend', {}, 'Job'), h('div', { class: 'field-grid' }, jobFields)),
    h(
      'fieldset',
      {},
      h('legend', {}, 'Hyperparameters'),
      h('p', { class: 'muted small' }, 'Defaults and bounds come from the service\'s OpenAPI schema; only values that differ from a default are sent.'),
      h('div', { class: 'field-grid' }, hpFields),
    ),
    h('div', { class: 'form-actions' }, submit, h('details', {}, h('summary', {}, 'Request body'), preview)),
  );

  /** The request body, or the fields the browser could not read. */
  const build = () => {
    const body = { base_model: baseInput.value.trim() };
    const bad = [];
    if (trainSelect.value) body.train_dataset = trainSelect.value;
    else bad.push(['train_dataset', 'Choose the dataset to train on.']);
    if (evalSelect.value) body.eval_dataset = evalSelect.value;
    if (suffixInput.value.trim()) body.suffix = suffixInput.value.trim();
    if (mlflowInput.value.trim()) body.integrations = [{ type: 'mlflow', experiment: mlflowInput.value.trim() }];
    if (webhookInput.value.trim()) body.webhooks = [{ url: webhookInput.value.trim() }];
    const hp = {};
    for (const { key: name, path } of entries) {
      const f = fields.get(`hyperparameters.${name}`);
      const v = f.read();
      if (v && typeof v === 'object' && v.invalid) {
        bad.push([`hyperparameters.${name}`, v.invalid]);
        continue;
      }
      const dflt = f.spec.default === undefined ? null : f.spec.default;
      if (JSON.stringify(v) === JSON.stringify(dflt)) continue;
      const parent = path.slice(0, -1).reduce((o, k) => (o[k] = o[k] || {}), hp);
      parent[path[path.length - 1]] = v;
    }
    if (Object.keys(hp).length) body.hyperparameters = hp;
    return { body, bad };
  };
  const updatePreview = () => {
    preview.textContent = JSON.stringify(build().body, null, 2);
  };
  form.addEventListener('input', updatePreview);
  form.addEventListener('change', updatePreview);
  updatePreview();

  const clearErrors = () => {
    fill(general);
    for (const f of fields.values()) {
      fill(f.error);
      f.input.removeAttribute('aria-invalid');
      f.wrap.classList.remove('invalid');
    }
  };
  const showError = (param, message) => {
    const f = fields.get(param);
    if (!f) return false;
    // Next to the field, its name in front of the message says nothing new.
    fill(f.error, message.startsWith(`${param}: `) ? message.slice(param.length + 2) : message);
    f.input.setAttribute('aria-invalid', 'true');
    f.wrap.classList.add('invalid');
    return f;
  };

  // Choosing a training set takes back the message that asked for one.
  trainSelect.addEventListener('change', () => {
    const f = fields.get('train_dataset');
    if (!trainSelect.value || !f.wrap.classList.contains('invalid')) return;
    fill(f.error);
    f.input.removeAttribute('aria-invalid');
    f.wrap.classList.remove('invalid');
  });

  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    clearErrors();
    const { body, bad } = build();
    if (bad.length) {
      bad.forEach(([p, m]) => showError(p, m));
      fields.get(bad[0][0]).input.focus();
      return;
    }
    submit.disabled = true;
    try {
      const job = await post('/jobs', body, { signal });
      ctx.navigate(`/ui/jobs/${enc(job.id)}`);
    } catch (e) {
      submit.disabled = false;
      const f = e.param ? showError(e.param, e.message) : null;
      if (f) {
        f.input.focus();
        f.wrap.scrollIntoView({ block: 'center' });
      } else {
        fill(general, errorBox(e));
        general.scrollIntoView({ block: 'center' });
      }
    }
  });

  fill(
    root,
    h('div', { class: 'page-head' }, h('h1', {}, 'New fine-tuning job'), template ? h('p', { class: 'muted' }, 'Settings copied from ', h('a', { href: `/ui/jobs/${enc(from)}` }, from), '.') : null),
    datasets.length ? null : h('p', { class: 'error-box' }, 'Upload a dataset first: ', h('a', { href: '/ui/datasets' }, 'Datasets'), '.'),
    h('datalist', { id: 'base-models' }, baseModels.map((m) => h('option', { value: m }))),
    form,
  );
}
