// Drives lb's /dashboard in headless Chromium (playwright-core, Debian's /usr/bin/chromium),
// for tests/dashboard.rs, which starts lb and the backends and passes them in the environment:
//
//   LB_ADMIN     the admin API's base URL (http://127.0.0.1:PORT)
//   LB_DATA      the data port's base URL
//   LB_TOKEN     the admin token
//   CHECK        "health" (login, pools, backends, a backend turning sick), "open" (an lb
//                without a token: no prompt) or "metrics" (counters and rates move after
//                traffic)
//   POOLS        JSON: [{pattern, backends: ["ip:port", ...]}] as the test set them up
//   SICK         "ip:port" of a sample-web in pool "/" to make sick (CHECK=health)
//   SCREENSHOT   optional: where to save a screenshot of the page with its data
//
// Exits 0 when every check passed; otherwise prints one line saying which failed, exits 1.
// A missing Chromium or playwright-core is one line naming the setup command, exit 2.

import { existsSync } from 'node:fs';

const CHROMIUM = '/usr/bin/chromium';
const SETUP = 'apt-get install -y --no-install-recommends chromium && (cd tests/dashboard && npm ci)';
/** How long anything may take to show, except where a check says otherwise. */
const DEADLINE = 20_000;

/** A failed check: thrown, so that the browser is closed before the one line is printed. */
class Failure extends Error {}

function fail(message) {
  throw new Failure(message);
}

function setupMissing(message) {
  console.error(`dashboard check: ${message}`);
  process.exit(2);
}

if (!existsSync(CHROMIUM)) setupMissing(`${CHROMIUM} is missing: run ${SETUP}`);
let chromium;
try {
  ({ chromium } = await import('playwright-core'));
} catch (e) {
  setupMissing(`playwright-core is missing (${e.code || e.message}): run ${SETUP}`);
}

function env(name) {
  const value = process.env[name];
  if (value === undefined) fail(`${name} is not set`);
  return value;
}

/** Resolves once `probe()` is truthy (polled every 50 ms), or fails naming `what` after `ms`. */
async function until(what, probe, ms = DEADLINE) {
  const end = Date.now() + ms;
  for (;;) {
    const value = await probe();
    if (value) return value;
    if (Date.now() > end) fail(`${what}: not within ${ms} ms`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** The page down to the end of its content, the margins around it kept. */
async function screenshot(page, path) {
  const bottom = await page.evaluate(() => Math.ceil(document.querySelector('main').getBoundingClientRect().bottom));
  await page.screenshot({ path, clip: { x: 0, y: 0, width: page.viewportSize().width, height: bottom + 16 } });
}

let browser;
try {
  const admin = env('LB_ADMIN');
  const token = env('LB_TOKEN');
  const check = env('CHECK');
  const pools = JSON.parse(env('POOLS'));
  /** GET an admin API path with the token, as JSON or text. */
  const api = async (path, as = 'json') => {
    const answer = await fetch(admin + path, { headers: { Authorization: `Bearer ${token}` } });
    return { status: answer.status, body: await answer[as]() };
  };
  browser = await chromium.launch({ executablePath: CHROMIUM, headless: true, args: ['--no-sandbox'] });
  const problems = [];
  const page = await browser.newPage({ viewport: { width: 1100, height: 760 } });
  page.on('pageerror', (e) => problems.push(`page error: ${e.message}`));
  page.on('console', (m) => {
    // The browser logs each 401 it is answered (the prompt's cue) and /metrics' 404 (lb
    // without metrics): expected answers, not problems.
    const expected = /^Failed to load resource: .* status of (401|404)/.test(m.text()) &&
      (m.text().includes('401') || m.location().url.endsWith('/metrics'));
    if (m.type() === 'error' && !expected) problems.push(`console: ${m.text()} (${m.location().url})`);
  });
  page.on('dialog', (d) => {
    problems.push(`a dialog opened: ${d.message()}`);
    d.dismiss();
  });
  page.setDefaultTimeout(DEADLINE);

  const loaded = await page.goto(`${admin}/dashboard`);
  if (loaded.status() !== 200) fail(`GET /dashboard answered ${loaded.status()}`);

  if (check === 'open') {
    // An lb without a token: the data shows at once, no prompt, nothing to sign out of.
    await page.locator('#main').waitFor({ state: 'visible' });
    if (await page.locator('#login').isVisible()) fail('the page asks for a token lb does not want');
    if (await page.locator('#sign-out').isVisible()) fail('a sign-out button without a token');
  } else {
    // Without a token, the page asks for one; a wrong one is refused and asked again.
    await page.locator('#login').waitFor({ state: 'visible' });
    if (await page.locator('#main').isVisible()) fail('the data shows before the token was given');
    await page.fill('#token', 'not-the-token-at-all-0123456789');
    await page.press('#token', 'Enter');
    await until('a wrong token refused', async () => (await page.textContent('#login-error')) === 'lb refused this token');
    await page.locator('#login').waitFor({ state: 'visible' });

    await page.fill('#token', token);
    await page.click('#login button[type=submit]');
    await page.locator('#main').waitFor({ state: 'visible' });
    if (page.url().includes(token)) fail(`the token is in the URL: ${page.url()}`);
    if ((await page.evaluate(() => sessionStorage.getItem('lb-admin-token'))) !== token) {
      fail('the token is not kept in sessionStorage');
    }
  }

  // Every pool and backend shows, each pattern as the text it is, never as markup.
  await until('every pool and backend shown', () =>
    page.evaluate((want) => want.every(({ pattern, backends }) => {
      const section = [...document.querySelectorAll('section.pool')].find((s) => s.dataset.pattern === pattern);
      return section && section.querySelector('.pattern').textContent === pattern &&
        backends.every((b) => section.querySelector(`tr[data-backend="${b}"] .status`)?.textContent.startsWith('BS_'));
    }), pools));
  const injected = await page.evaluate(() => [window.__pwned, document.querySelectorAll('svg, img, script:not([src])').length]);
  if (injected[0] !== undefined || injected[1] !== 0) fail(`a pattern became markup: ${JSON.stringify(injected)}`);

  // With /metrics answering 404 the page says so; with it there, it does not.
  const metrics = await api('/metrics', 'text');
  const unavailable = () => page.textContent('#metrics-state').then((t) => t === 'metrics unavailable');
  if (metrics.status === 404) await until('"metrics unavailable" shown', unavailable);
  else if (metrics.status === 200) await until('metrics shown live', async () => (await page.textContent('#metrics-state')) === 'metrics: live');
  else fail(`GET /metrics answered ${metrics.status}`);

  // The parser, in the browser, on hostile label values.
  const parsed = await page.evaluate(() => {
    const text = [
      '# HELP lb_requests_total Requests.',
      '# TYPE lb_requests_total counter',
      'lb_requests_total{pool="/a\\"b,c{x}\\\\",mode="proxy",code_class="2xx"} 7',
      'lb_requests_total{pool="/a\\"b,c{x}\\\\",mode="proxy",code_class="5xx"} 3 1700000000000',
      'lb_request_duration_seconds_bucket{pool="/",mode="proxy",le="0.01"} 50',
      'lb_request_duration_seconds_bucket{pool="/",mode="proxy",le="0.1"} 100',
      'lb_request_duration_seconds_bucket{pool="/",mode="proxy",le="+Inf"} 100',
      'lb_requests_total{pool="/broken} 1',
      '# EOF',
    ].join('\n');
    const d = lbDashboard.digest(lbDashboard.parseMetrics(text));
    const a = d.pools.get('/a"b,c{x}\\');
    return [a && a.requests, a && a.errors, lbDashboard.quantile(0.5, d.pools.get('/').buckets, null),
      lbDashboard.quantile(0.99, d.pools.get('/').buckets, null), d.pools.size];
  });
  const want = [10, 3, 0.01, 0.1 - 0.09 * (1 / 50), 2];
  if (parsed.some((v, i) => Math.abs(v - want[i]) > 1e-9)) fail(`metrics parsed as ${parsed}, not ${want}`);

  if (check === 'health') {
    // A backend that turns sick shows as sick within two seconds of lb saying so.
    const sick = env('SICK');
    const made = await fetch(`http://${sick}/control/sick`, { method: 'POST' });
    if (!made.ok) fail(`sample-web ${sick} would not turn sick: ${made.status}`);
    await until(`lb calling ${sick} sick`, async () => {
      const { body } = await api('/v1/pool/health?pattern=%2F');
      return body.backends?.find((b) => b.address === sick)?.status === 'BS_SICK';
    });
    await until(`${sick} shown as sick`, () => page.evaluate((addr) =>
      document.querySelector(`tr[data-backend="${addr}"] .status`)?.textContent === 'BS_SICK', sick), 2000);
    if (process.env.SCREENSHOT) await screenshot(page, process.env.SCREENSHOT);

    // A 401 (the token changed under the page) brings the prompt back.
    await page.evaluate(() => sessionStorage.setItem('lb-admin-token', 'a-token-lb-no-longer-takes-0123'));
    await page.locator('#login').waitFor({ state: 'visible' });
    await until('the prompt saying why', async () => (await page.textContent('#login-error')) === 'lb refused this token');
    if (await page.locator('#main').isVisible()) fail('the data still shows after a 401');
  } else if (check === 'open') {
    // Nothing more: the pools showed without a prompt.
  } else if (check === 'metrics') {
    if (metrics.status !== 200) fail(`GET /metrics answered ${metrics.status}: ${metrics.body.slice(0, 200)}`);
    const data = env('LB_DATA');
    const [{ pattern, backends }] = pools;
    let sent = 0;
    const send = async () => {
      const r = await fetch(`${data}/`);
      await r.arrayBuffer();
      if (r.status !== 200) fail(`GET / through lb answered ${r.status}`);
      sent += 1;
    };
    // Traffic until every backend shows requests/s and latency, then exactly what was sent.
    await until('requests/s and latency of every backend', async () => {
      await Promise.all([send(), send(), send(), send()]);
      return page.evaluate(([p, bs]) => {
        const section = [...document.querySelectorAll('section.pool')].find((x) => x.dataset.pattern === p);
        return section && bs.every((b) => {
          const row = section.querySelector(`tr[data-backend="${b}"]`);
          return row && Number(row.querySelector('.rps').textContent) > 0 && row.querySelector('.p50').textContent.endsWith('s');
        }) && Number(section.querySelector('h2 .rps').textContent) > 0;
      }, [pattern, backends]);
    });
    await until(`the pool's counter at the ${sent} requests sent`, () => page.evaluate(([p, n]) => {
      const section = [...document.querySelectorAll('section.pool')].find((x) => x.dataset.pattern === p);
      return section?.querySelector('.requests-total').textContent === String(n);
    }, [pattern, sent]));
    const drawn = await page.evaluate(() => document.querySelectorAll('#charts canvas').length);
    if (drawn !== pools.length) fail(`${drawn} charts for ${pools.length} pools`);
    if (process.env.SCREENSHOT) await screenshot(page, process.env.SCREENSHOT);
  } else {
    fail(`CHECK=${check} is not health, open or metrics`);
  }
  if (problems.length) fail(problems.join('; '));
  console.log(`dashboard check: ${check}: ok`);
} catch (e) {
  console.error(`dashboard check: ${e instanceof Failure ? e.message : e.stack || e}`);
  process.exitCode = 1;
} finally {
  await browser?.close();
}
