// The dashboard's shell: routes real /ui/... URLs to pages (history API, so
// every page can be linked, bookmarked and reloaded), asks for the API key
// when the service answers 401, ends a page's live updates when it is left,
// and opens and closes the menu that holds the navigation on narrow screens.

import { auth, get, ApiError } from './api.js';
import { h, fill, pageError } from './ui.js';
import * as jobs from './pages/jobs.js';
import * as job from './pages/job.js';
import * as compare from './pages/compare.js';
import * as models from './pages/models.js';
import * as model from './pages/model.js';
import * as datasets from './pages/datasets.js';
import * as dataset from './pages/dataset.js';
import * as newJob from './pages/new-job.js';

/** Path patterns → page modules (each exports `title` and `render(root, ctx)`). */
const ROUTES = [
  [/^\/ui\/jobs\/?$/, jobs, 'jobs'],
  [/^\/ui\/jobs\/([^/]+)\/?$/, job, 'jobs'],
  [/^\/ui\/compare\/?$/, compare, 'compare'],
  [/^\/ui\/models\/?$/, models, 'models'],
  [/^\/ui\/models\/([^/]+)\/?$/, model, 'models'],
  [/^\/ui\/datasets\/?$/, datasets, 'datasets'],
  [/^\/ui\/datasets\/([^/]+)\/?$/, dataset, 'datasets'],
  [/^\/ui\/new\/?$/, newJob, 'new'],
];

const main = document.getElementById('main');
const signOut = document.getElementById('sign-out');
const header = document.querySelector('.site-header');
const navToggle = document.getElementById('nav-toggle');
let current = null; // {controller, cleanups}
let locked = true;

/** Goes to a dashboard URL without reloading. */
export function navigate(url, { replace = false } = {}) {
  if (replace) history.replaceState(null, '', url);
  else history.pushState(null, '', url);
  render({ moveFocus: !replace });
}

function leave() {
  if (!current) return;
  current.controller.abort();
  for (const fn of current.cleanups) {
    try {
      fn();
    } catch (e) {
      console.warn(e);
    }
  }
  current = null;
}

/** Opens or closes the menu (only shown as a menu on narrow screens; see style.css). */
function setMenu(open) {
  header.classList.toggle('nav-open', open);
  navToggle.setAttribute('aria-expanded', String(open));
}

async function render({ moveFocus = false } = {}) {
  leave();
  setMenu(false);
  if (locked) return;
  let path = location.pathname;
  if (path === '/' || path === '/ui' || path === '/ui/') {
    history.replaceState(null, '', '/ui/jobs');
    path = '/ui/jobs';
  }
  const route = ROUTES.find(([re]) => re.test(path));
  for (const a of document.querySelectorAll('[data-nav]')) {
    if (route && a.dataset.nav === route[2]) a.setAttribute('aria-current', 'page');
    else a.removeAttribute('aria-current');
  }
  const controller = new AbortController();
  const page = { controller, cleanups: [] };
  current = page;
  fill(main, h('p', { class: 'muted' }, 'Loading…'));
  if (!route) {
    document.title = 'Not found · tuneserve';
    fill(main, h('h1', {}, 'Page not found'), h('p', {}, 'No dashboard page at ', h('code', {}, path), '. ', h('a', { href: '/ui/jobs' }, 'Go to the jobs'), '.'));
    return;
  }
  const [re, mod] = route;
  const params = re.exec(path).slice(1).map(decodeURIComponent);
  const ctx = {
    params,
    query: new URLSearchParams(location.search),
    signal: controller.signal,
    navigate,
    onLeave: (fn) => page.cleanups.push(fn),
    setTitle: (t) => {
      document.title = `${t} · tuneserve`;
    },
  };
  ctx.setTitle(mod.title);
  try {
    await mod.render(main, ctx);
  } catch (e) {
    if (controller.signal.aborted || e.name === 'AbortError') return;
    if (e.status === 401) return; // the login prompt is showing
    if (!(e instanceof ApiError)) console.error(e); // a bug, not an answer of the API
    if (current === page) pageError(main, e);
  }
  // After a link, focus goes to the new page's heading, as a page load would
  // put a screen reader or keyboard user at its start.
  const heading = main.querySelector('h1');
  if (moveFocus && current === page && heading && !main.contains(document.activeElement)) {
    heading.setAttribute('tabindex', '-1');
    heading.focus();
  }
}

/** The login prompt: the only thing shown until the key is accepted. */
function showLogin(message) {
  leave();
  locked = true;
  document.body.classList.add('locked');
  document.title = 'API key · tuneserve';
  const input = h('input', { id: 'api-key', name: 'api-key', type: 'password', autocomplete: 'current-password', required: true, 'aria-describedby': 'api-key-help' });
  const status = h('p', { class: 'field-error', id: 'login-error', role: 'alert' }, message || '');
  const form = h(
    'form',
    { class: 'login', id: 'login' },
    h('h1', {}, 'API key'),
    h('p', { id: 'api-key-help' }, 'This service was started with ', h('code', {}, '--api-key'), '. Enter the key to open the dashboard; it is kept for this tab only and sent as a bearer token.'),
    h('label', { for: 'api-key' }, 'API key'),
    input,
    status,
    h('button', { type: 'submit', class: 'primary' }, 'Open the dashboard'),
  );
  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    auth.set(input.value.trim());
    fill(status);
    try {
      await get('/jobs?limit=1');
      unlock({ moveFocus: true });
    } catch (e) {
      if (e.status !== 401) fill(status, e.message);
    }
  });
  fill(main, form);
  input.focus();
}

function unlock({ moveFocus }) {
  locked = false;
  document.body.classList.remove('locked');
  signOut.hidden = !auth.key;
  render({ moveFocus });
}

auth.onRequired = () => {
  const hadKey = Boolean(auth.key);
  auth.clear();
  if (!locked || hadKey || !document.getElementById('login')) {
    showLogin(hadKey ? 'That key was refused.' : '');
  }
};

signOut.addEventListener('click', () => {
  auth.clear();
  signOut.hidden = true;
  showLogin('');
});

navToggle.addEventListener('click', () => setMenu(!header.classList.contains('nav-open')));
// Escape closes the open menu and gives the focus back to its button.
header.addEventListener('keydown', (ev) => {
  if (ev.key === 'Escape' && header.classList.contains('nav-open')) {
    setMenu(false);
    navToggle.focus();
  }
});

// Links inside the dashboard navigate without a reload.
document.addEventListener('click', (ev) => {
  if (ev.defaultPrevented || ev.button !== 0 || ev.metaKey || ev.ctrlKey || ev.shiftKey || ev.altKey) return;
  const a = ev.target.closest('a[href]');
  if (!a || a.target || a.hasAttribute('download')) return;
  const url = new URL(a.href, location.href);
  if (url.origin !== location.origin || !url.pathname.startsWith('/ui')) return;
  // An anchor on this page (the skip link) is the browser's business.
  if (url.hash && url.pathname === location.pathname && url.search === location.search) return;
  ev.preventDefault();
  navigate(url.pathname + url.search + url.hash);
});
window.addEventListener('popstate', () => render({ moveFocus: true }));

// Does the API want a key? The first call tells.
(async () => {
  try {
    await get('/jobs?limit=1');
    unlock({ moveFocus: false });
  } catch (e) {
    if (e.status === 401) return; // onRequired showed the prompt
    locked = false;
    document.body.classList.remove('locked');
    pageError(main, e);
  }
})();
