// The dashboard on a phone (390×844), run by dashboard.mjs once its desktop
// pass has made a dataset, jobs and models: every page fits the screen's
// width (no sideways scrolling; wide tables scroll inside their own box),
// the navigation folds into a menu whose links all work, the job page's
// progress bar and charts fit and stack and follow a window resize. It also
// checks, here at phone size, that the New job form asks for a training set
// instead of preselecting one, that a model's files are download links that
// answer with their bytes (with and without an API key), and that try-it
// classifies one text per line.

export const PHONE = { width: 390, height: 844 };

/** Fails unless the page is no wider than the window and every table sits in a box that scrolls sideways. */
async function fitsWidth(page, assert, what) {
  const m = await page.evaluate(() => {
    const inner = window.innerWidth;
    const scrolls = (el) => ['auto', 'scroll'].includes(getComputedStyle(el).overflowX);
    const loose = [...document.querySelectorAll('main table')]
      .filter((t) => !t.closest('.uplot'))
      .filter((t) => {
        let el = t.parentElement;
        while (el && el !== document.body && !scrolls(el)) el = el.parentElement;
        return !el || el === document.body || el.getBoundingClientRect().right > inner + 0.5;
      })
      .map((t) => t.id || t.className || 'table');
    return { scroll: document.documentElement.scrollWidth, inner, loose };
  });
  assert(m.scroll <= m.inner, `${what}: ${m.scroll} px wide in a ${m.inner} px window`);
  assert(m.loose.length === 0, `${what}: tables outside a sideways-scrolling box: ${m.loose}`);
}

/** Where the element `selector` finds is, in CSS pixels of the window (looked up and
 *  measured in one go: the job page redraws its progress bar as it refreshes). */
const box = (page, selector) => page.evaluate((sel) => document.querySelector(sel).getBoundingClientRect().toJSON(), selector);

export async function phoneChecks({ context, step, assert, api, watch, shot, setCurrent, opt, ids }) {
  const { datasetId, jobId, modelId, compared } = ids;
  const page = watch(await context.newPage());
  setCurrent(page);
  await page.setViewportSize(PHONE);
  const menu = page.locator('#nav-toggle');
  const nav = page.getByRole('navigation', { name: 'Dashboard' });

  await step('phone: the jobs page fits 390 px; its table scrolls inside its box', async () => {
    await page.goto(`${opt.base}/ui/jobs`);
    await page.locator('#jobs-table tbody tr[data-job]').first().waitFor();
    await fitsWidth(page, assert, 'jobs');
    const scroller = await page.locator('#jobs-table').evaluate((t) => {
      const s = t.closest('.table-scroll');
      return s && { scroll: s.scrollWidth, client: s.clientWidth };
    });
    assert(scroller && scroller.scroll > scroller.client, `the jobs table is wider than the screen and scrolls in its box: ${JSON.stringify(scroller)}`);
    assert(await menu.isVisible(), 'a menu button');
    assert(await nav.isHidden(), 'the links folded away');
    await shot(page, 'phone-jobs');
  });

  await step('phone: every navigation link is reachable from the menu and opens its page', async () => {
    const links = [['Jobs', '/ui/jobs', '#jobs-table'], ['Compare', '/ui/compare', '.picker'], ['Models', '/ui/models', '#models-table'], ['Datasets', '/ui/datasets', '#datasets-table'], ['New job', '/ui/new', '#job-form']];
    for (const [name, path, ready] of links) {
      await menu.click();
      assert((await menu.getAttribute('aria-expanded')) === 'true', `the menu says it is open (${name})`);
      const link = nav.getByRole('link', { name, exact: true });
      const r = await box(page, `.site-header nav a[href="${path}"]`);
      assert(r.left >= 0 && r.right <= PHONE.width && r.top >= 0 && r.bottom <= PHONE.height, `${name} on screen: ${JSON.stringify(r)}`);
      await link.click();
      await page.waitForURL(`**${path}`);
      await page.locator(ready).first().waitFor();
      // Closed, the menu's links are hidden (and out of the role tree): read the attribute off the element.
      assert((await page.locator(`.site-header nav a[href="${path}"]`).getAttribute('aria-current')) === 'page', `${name} marked current`);
      assert((await menu.getAttribute('aria-expanded')) === 'false' && (await nav.isHidden()), `the menu closes after ${name}`);
      await fitsWidth(page, assert, name);
    }
    // The API docs link is in the menu too, and Escape closes it.
    await menu.click();
    const docs = page.locator('.top-end a[href="/docs"]');
    assert(await docs.isVisible(), 'API docs in the menu');
    const r = await box(page, '.top-end a[href="/docs"]');
    assert(r.right <= PHONE.width, `API docs on screen: ${JSON.stringify(r)}`);
    await shot(page, 'phone-menu');
    await page.keyboard.press('Escape');
    assert(await nav.isHidden(), 'Escape closes the menu');
    assert((await page.evaluate(() => document.activeElement.id)) === 'nav-toggle', 'focus back on the menu button');
  });

  await step('phone: the job page fits; its progress bar and charts fit, stack, and follow a resize', async () => {
    await page.goto(`${opt.base}/ui/jobs/${jobId}`);
    await page.waitForFunction(() => document.querySelector('#job-status')?.textContent === 'succeeded');
    await page.waitForFunction(() => Number(document.querySelector('[data-chart="train-loss"]')?.dataset.points) > 0);
    await page.locator('#checkpoints table, #checkpoints p').first().waitFor();
    await fitsWidth(page, assert, 'job');
    const bar = await box(page, '.job-progress progress');
    assert(bar.right <= PHONE.width && bar.width > 200, `progress bar fits: ${JSON.stringify(bar)}`);
    const charts = () =>
      page.locator('figure.chart').evaluateAll((fs) =>
        fs.map((f) => {
          const all = f.querySelector('.uplot').getBoundingClientRect(); // canvas and legend
          const fig = f.getBoundingClientRect();
          const plot = f.querySelector('.u-wrap').getBoundingClientRect().width;
          return { left: Math.round(fig.left), top: fig.top, right: fig.right, all: all.width, plot, inside: f.querySelector('.plot').clientWidth };
        }),
      );
    let c = await charts();
    assert(c.length === 5, `five charts: ${c.length}`);
    assert(c.every((x) => x.right <= PHONE.width && x.all <= x.inside + 1), `every chart within the screen and its box: ${JSON.stringify(c)}`);
    assert(new Set(c.map((x) => x.left)).size === 1 && c.every((x, i) => i === 0 || x.top > c[i - 1].top), `charts stacked in one column: ${JSON.stringify(c)}`);
    await shot(page, 'phone-job');
    // A desktop window: three charts a row, each as wide as its box; back to the phone, back to one column.
    const fitted = (cols) =>
      page.waitForFunction((n) => {
        const fs = [...document.querySelectorAll('figure.chart')];
        const row = fs.filter((f) => f.getBoundingClientRect().top === fs[0].getBoundingClientRect().top).length;
        return row === n && fs.every((f) => Math.abs(f.querySelector('.u-wrap').getBoundingClientRect().width - f.querySelector('.plot').clientWidth) <= 1);
      }, cols);
    await page.setViewportSize({ width: 1280, height: 800 });
    await fitted(3);
    const wide = (await charts())[0].plot;
    await page.setViewportSize(PHONE);
    await fitted(1);
    c = await charts();
    assert(c[0].plot < wide, `narrower than on the desktop: ${c[0].plot} < ${wide}`);
    assert(c.every((x) => x.right <= PHONE.width && x.all <= x.inside + 1), `charts narrow again after the resize: ${JSON.stringify(c)}`);
    await fitsWidth(page, assert, 'job after a resize');
  });

  await step('phone: model, dataset, datasets, models and compare pages fit 390 px', async () => {
    const pages = [
      [`/ui/models/${modelId}`, '#model-files a'],
      [`/ui/datasets/${datasetId}`, '.bars li'],
      ['/ui/datasets', '#datasets-table'],
      ['/ui/models', '#models-table'],
      [`/ui/compare?jobs=${compared.join(',')}`, '#compare-table'],
      ['/ui/new', '#job-form'],
    ];
    for (const [path, ready] of pages) {
      await page.goto(`${opt.base}${path}`);
      await page.locator(ready).first().waitFor();
      if (path.startsWith('/ui/compare')) await page.waitForFunction(() => document.querySelector('[data-chart="train-loss"]')?.dataset.points === '12');
      await fitsWidth(page, assert, path);
    }
  });

  await step('the New job form has no training set chosen, requires one, and sends nothing without it', async () => {
    await page.goto(`${opt.base}/ui/new`);
    await page.locator('#job-form').waitFor();
    const train = page.locator('#f-train_dataset');
    assert((await train.inputValue()) === '', 'no training set preselected');
    assert((await train.locator('option:checked').innerText()) === 'choose a training set', 'the empty choice says what to do');
    assert((await train.getAttribute('required')) !== null, 'required');
    const preview = JSON.parse(await page.locator('#request-preview').textContent());
    assert(!('train_dataset' in preview), `no training set in the body: ${JSON.stringify(preview)}`);
    const before = (await api('/jobs?limit=100')).data.length;
    const sent = [];
    const onRequest = (r) => r.method() === 'POST' && new URL(r.url()).pathname === '/jobs' && sent.push(r.url());
    page.on('request', onRequest);
    await page.fill('#f-base_model', opt['base-model']);
    await page.click('#submit-job');
    const error = page.locator('[data-param="train_dataset"] .field-error');
    await error.waitFor();
    assert(/choose the dataset to train on/i.test(await error.innerText()), `a message next to the field: ${await error.innerText()}`);
    assert((await train.getAttribute('aria-invalid')) === 'true', 'marked invalid');
    assert((await page.evaluate(() => document.activeElement.id)) === 'f-train_dataset', 'focus on the field');
    await page.waitForTimeout(300);
    page.off('request', onRequest);
    assert(sent.length === 0, `nothing sent: ${sent}`);
    assert((await api('/jobs?limit=100')).data.length === before && page.url().endsWith('/ui/new'), 'no job made, still on the form');
    await fitsWidth(page, assert, 'new job with an error');
    await train.selectOption(datasetId);
    assert((await error.innerText()) === '' && (await train.getAttribute('aria-invalid')) === null, 'choosing one clears the message');
  });

  await step('model files are download links: each answers 200 with its bytes, with and without an API key', async () => {
    await page.goto(`${opt.base}/ui/models/${modelId}`);
    const links = page.locator('#model-files a.file-link');
    await links.first().waitFor();
    const listed = (await api(`/models/${modelId}/files`)).data;
    const hrefs = await links.evaluateAll((as) => as.map((a) => [a.textContent, a.getAttribute('href'), a.getAttribute('download')]));
    assert(hrefs.length === listed.length && listed.length > 0, `a link per file: ${JSON.stringify(hrefs)}`);
    for (const [i, f] of listed.entries()) {
      const [text, href, download] = hrefs[i];
      assert(text === f.name && download === f.name, `link ${i} names ${f.name}: ${text}`);
      const resp = await fetch(new URL(href, opt.base));
      const got = new Uint8Array(await resp.arrayBuffer());
      assert(resp.status === 200 && got.length === f.bytes && f.bytes > 0, `${href}: ${resp.status}, ${got.length} of ${f.bytes} bytes`);
    }
    const config = links.filter({ hasText: /^config\.json$/ });
    const save = async () => {
      const [download] = await Promise.all([page.waitForEvent('download'), config.click()]);
      const file = await download.path();
      const fs = await import('node:fs');
      return { name: download.suggestedFilename(), url: download.url(), text: fs.readFileSync(file, 'utf8') };
    };
    const want = await (await fetch(`${opt.base}/models/${modelId}/files/config.json`)).text();
    const plain = await save();
    assert(plain.name === 'config.json' && plain.text === want && !plain.url.startsWith('blob:'), `a plain download: ${plain.name} ${plain.url}`);
    // With a key kept (this server takes any), the click fetches with it and saves from a blob.
    await page.evaluate(() => sessionStorage.setItem('tuneserve.apiKey', 'a-key'));
    const keyed = await save();
    await page.evaluate(() => sessionStorage.removeItem('tuneserve.apiKey'));
    assert(keyed.name === 'config.json' && keyed.text === want && keyed.url.startsWith('blob:'), `saved from a blob with the key: ${keyed.name} ${keyed.url}`);
  });

  await step('try-it classifies one text per line: two lines (and a blank one) give two results', async () => {
    const lines = ['what a great game tonight', 'the bus comes every hour'];
    await page.fill('#try-text', `${lines[0]}\n\n  ${lines[1]}  \n`);
    await page.click('#try-it button[type=submit]');
    const results = page.locator('#try-result .try-line');
    await results.nth(1).waitFor();
    assert((await results.count()) === 2, `two results: ${await results.count()}`);
    const direct = await api('/classify', { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ inputs: lines, model: modelId }) });
    for (const [i, line] of lines.entries()) {
      const r = results.nth(i);
      assert((await r.locator('.try-text').innerText()).includes(line), `result ${i} shows its line`);
      assert((await r.getAttribute('class')) === 'try-line' && (await r.locator('.predicted').getAttribute('data-label')) === direct.predictions[i].label, `line ${i} as the API answers it`);
      assert((await r.locator('.bars li').count()) === Object.keys(direct.predictions[i].scores).length, `a bar per label for line ${i}`);
    }
    await fitsWidth(page, assert, 'model with try-it results');
    await shot(page, 'phone-model');
  });

  await step('phone: the login prompt of a server with --api-key fits, with no menu', async () => {
    await page.goto(`${opt.locked}/ui/jobs`);
    await page.locator('#login').waitFor();
    assert(await menu.isHidden(), 'no menu button before the key');
    await fitsWidth(page, assert, 'login');
  });

  await page.close();
}
