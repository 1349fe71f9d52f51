// lb's dashboard: polls /v1/pools and /metrics once a second with the admin token, and shows
// what they say. Every text that comes from lb (patterns, addresses, label values) goes into
// the page with textContent, setAttribute or canvas text, never as markup.
'use strict';

(() => {
  const POLL_MS = 1000;
  /** How far back the charts go. */
  const HISTORY_MS = 5 * 60 * 1000;
  /** Error rates and latency quantiles in the tables: over the scrapes of the last 10 s. */
  const WINDOW_MS = 10 * 1000;
  const TOKEN_KEY = 'lb-admin-token';

  const $ = (id) => document.getElementById(id);

  /** An element with attributes and children (strings become text nodes, never markup). */
  function el(tag, attrs, ...children) {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (k === 'class') e.className = v;
      else e.setAttribute(k, v);
    }
    e.append(...children);
    return e;
  }

  // ---- Prometheus text (and OpenMetrics) parsing ----

  function parseValue(text) {
    if (text === '+Inf' || text === 'Inf') return Infinity;
    if (text === '-Inf') return -Infinity;
    if (text === 'NaN') return NaN;
    if (text === undefined || !/^[-+]?[0-9.eE+-]+$/.test(text)) return undefined;
    const v = Number(text);
    return Number.isNaN(v) ? undefined : v;
  }

  /** One sample line, `name{label="value",...} value [timestamp]`, or null if it is not one. */
  function parseSample(line) {
    let i = 0;
    while (i < line.length && /[A-Za-z0-9_:]/.test(line[i])) i++;
    const name = line.slice(0, i);
    if (!name) return null;
    const labels = Object.create(null);
    if (line[i] === '{') {
      i++;
      for (;;) {
        while (line[i] === ' ') i++;
        if (line[i] === '}') { i++; break; }
        let j = i;
        while (j < line.length && /[A-Za-z0-9_]/.test(line[j])) j++;
        const key = line.slice(i, j);
        if (!key || line[j] !== '=' || line[j + 1] !== '"') return null;
        i = j + 2;
        let value = '';
        for (;;) {
          if (i >= line.length) return null;
          const c = line[i++];
          if (c === '"') break;
          if (c === '\\') {
            if (i >= line.length) return null;
            const n = line[i++];
            value += n === 'n' ? '\n' : n;
          } else {
            value += c;
          }
        }
        labels[key] = value;
        while (line[i] === ' ') i++;
        if (line[i] === ',') i++;
        else if (line[i] !== '}') return null;
      }
    }
    const value = parseValue(line.slice(i).trim().split(/\s+/)[0]);
    return value === undefined ? null : { name, labels, value };
  }

  /** Every sample of a scrape; comments (`# HELP`, `# TYPE`, `# EOF`) and bad lines skipped. */
  function parseMetrics(text) {
    const samples = [];
    for (const raw of text.split('\n')) {
      const line = raw.trim();
      if (line === '' || line.startsWith('#')) continue;
      const sample = parseSample(line);
      if (sample) samples.push(sample);
    }
    return samples;
  }

  const backendKey = (pool, backend) => JSON.stringify([pool, backend]);

  function entry(map, key) {
    let e = map.get(key);
    if (!e) map.set(key, (e = { requests: 0, errors: 0, buckets: new Map(), inflight: undefined }));
    return e;
  }

  /** What the dashboard needs of a scrape: counters and buckets per pool and per backend. */
  function digest(samples) {
    const pools = new Map();
    const backends = new Map();
    for (const { name, labels, value } of samples) {
      const pool = labels.pool;
      if (pool === undefined) continue;
      switch (name) {
        case 'lb_requests_total': {
          const p = entry(pools, pool);
          p.requests += value;
          if (labels.code_class === '5xx') p.errors += value;
          break;
        }
        case 'lb_request_duration_seconds_bucket': {
          const p = entry(pools, pool);
          p.buckets.set(labels.le, (p.buckets.get(labels.le) || 0) + value);
          break;
        }
        case 'lb_backend_requests_total': {
          const b = entry(backends, backendKey(pool, labels.backend));
          b.requests += value;
          if (labels.code_class === '5xx') b.errors += value;
          break;
        }
        case 'lb_backend_response_duration_seconds_bucket': {
          const b = entry(backends, backendKey(pool, labels.backend));
          b.buckets.set(labels.le, (b.buckets.get(labels.le) || 0) + value);
          break;
        }
        case 'lb_backend_inflight':
          entry(backends, backendKey(pool, labels.backend)).inflight = value;
          break;
      }
    }
    return { pools, backends };
  }

  /** How much a counter grew; a counter that went down was reset (lb restarted) and grew by all it holds. */
  function grew(now, before) {
    const b = before || 0;
    return now >= b ? now - b : now;
  }

  /** Quantile `q` of the observations between two cumulative bucket maps (`le` -> count), as Prometheus' histogram_quantile does it. */
  function quantile(q, now, before) {
    const bounds = [...now.keys()]
      .map((le) => ({ le: parseValue(le), count: grew(now.get(le), before && before.get(le)) }))
      .filter((b) => b.le !== undefined && !Number.isNaN(b.le))
      .sort((a, b) => a.le - b.le);
    let running = 0;
    for (const b of bounds) b.count = running = Math.max(running, b.count);
    const total = bounds.length ? bounds[bounds.length - 1].count : 0;
    if (total <= 0) return null;
    const rank = q * total;
    for (let i = 0; i < bounds.length; i++) {
      if (bounds[i].count < rank) continue;
      const lower = i > 0 ? bounds[i - 1] : { le: 0, count: 0 };
      if (bounds[i].le === Infinity) return i > 0 ? lower.le : null;
      const width = bounds[i].count - lower.count;
      return width > 0 ? lower.le + (bounds[i].le - lower.le) * ((rank - lower.count) / width) : bounds[i].le;
    }
    return null;
  }

  /** Requests/s, error share and p50/p99 between two digests of one pool or backend. */
  function between(now, before, seconds) {
    if (!now || !before || seconds <= 0) return null;
    const requests = grew(now.requests, before.requests);
    return {
      rps: requests / seconds,
      errorRate: requests > 0 ? grew(now.errors, before.errors) / requests : null,
      p50: quantile(0.5, now.buckets, before.buckets),
      p99: quantile(0.99, now.buckets, before.buckets),
    };
  }

  // ---- state ----

  /** Recent scrapes `{t, d}` (t: ms, d: digest), enough for WINDOW_MS. */
  let scrapes = [];
  /** Per pool pattern: points `{t, rps, p50, p99}` of the last HISTORY_MS. */
  const history = new Map();
  /** Per pool pattern: its chart's figure, kept across renders. */
  const charts = new Map();
  let metricsOk = false;
  let lastPools = [];
  let timer = null;

  function record(d) {
    const t = performance.now();
    const previous = scrapes[scrapes.length - 1];
    scrapes.push({ t, d });
    scrapes = scrapes.filter((s) => t - s.t <= WINDOW_MS + POLL_MS / 2);
    if (!previous) return;
    const seconds = (t - previous.t) / 1000;
    for (const [pattern, now] of d.pools) {
      const step = between(now, previous.d.pools.get(pattern) || entry(new Map(), ''), seconds);
      if (!history.has(pattern)) history.set(pattern, []);
      const points = history.get(pattern);
      points.push({ t, rps: step.rps, p50: step.p50, p99: step.p99 });
      while (points.length && t - points[0].t > HISTORY_MS) points.shift();
    }
    for (const pattern of [...history.keys()]) if (!d.pools.has(pattern)) history.delete(pattern);
  }

  /** The figures of a pool (`which` 'pools', key its pattern) or backend: rate over the last scrape, the rest over the window. */
  function figures(which, key) {
    if (scrapes.length < 2) return null;
    const last = scrapes[scrapes.length - 1];
    const previous = scrapes[scrapes.length - 2];
    const oldest = scrapes[0];
    const zero = entry(new Map(), '');
    const now = last.d[which].get(key);
    if (!now) return null;
    const step = between(now, previous.d[which].get(key) || zero, (last.t - previous.t) / 1000);
    const win = between(now, oldest.d[which].get(key) || zero, (last.t - oldest.t) / 1000);
    return { rps: step.rps, errorRate: win.errorRate, p50: win.p50, p99: win.p99, total: now.requests, inflight: now.inflight };
  }

  // ---- formatting ----

  const dash = '\u2013';
  const fmtRate = (f) => (f ? f.rps.toFixed(1) : dash);
  const fmtShare = (x) => (x === null || x === undefined ? dash : (100 * x).toFixed(1) + ' %');
  function fmtSeconds(s) {
    if (s === null || s === undefined) return dash;
    if (s < 0.001) return (s * 1000).toFixed(2) + ' ms';
    if (s < 1) return (s * 1000).toFixed(s < 0.01 ? 1 : 0) + ' ms';
    return s.toFixed(2) + ' s';
  }

  // ---- rendering ----

  function renderPools(pools) {
    $('no-pools').hidden = pools.length > 0;
    const sections = pools.map((pool) => {
      const pf = metricsOk ? figures('pools', pool.pattern) : null;
      const title = el('h2', {},
        el('span', { class: 'pattern' }, String(pool.pattern)),
        el('span', { class: 'status ' + safeClass(pool.status) }, String(pool.status)),
        el('span', { class: 'meta' }, `${pool.mode} \u00b7 ${pool.strategy}`),
      );
      if (metricsOk) {
        title.append(el('span', { class: 'meta' },
          'req/s ', el('span', { class: 'rps' }, fmtRate(pf)),
          ' \u00b7 requests ', el('span', { class: 'requests-total' }, pf ? String(pf.total) : dash)));
      }
      const head = el('tr', {}, ...['backend', 'status', 'draining', 'weight', 'in flight', 'req/s', 'errors', 'p50', 'p99']
        .map((h) => el('th', { scope: 'col' }, h)));
      const rows = (pool.backends || []).map((b) => {
        const f = metricsOk ? figures('backends', backendKey(pool.pattern, b.address)) : null;
        const inflight = f && f.inflight !== undefined ? f.inflight : b.inflight;
        return el('tr', { 'data-backend': String(b.address) },
          el('td', { class: 'address' }, String(b.address)),
          el('td', { class: 'status ' + safeClass(b.status) }, String(b.status)),
          el('td', { class: 'draining' }, b.draining ? 'draining' : ''),
          el('td', { class: 'weight' }, String(b.weight)),
          el('td', { class: 'inflight' }, String(inflight)),
          el('td', { class: 'rps' }, fmtRate(f)),
          el('td', { class: 'errors' }, f ? fmtShare(f.errorRate) : dash),
          el('td', { class: 'p50' }, f ? fmtSeconds(f.p50) : dash),
          el('td', { class: 'p99' }, f ? fmtSeconds(f.p99) : dash),
        );
      });
      return el('section', { class: 'pool', 'data-pattern': String(pool.pattern) }, title,
        el('table', {}, el('thead', {}, head), el('tbody', {}, ...rows)));
    });
    $('pools').replaceChildren(...sections);
  }

  /** A status as a class name: lb's names are `BS_*`/`PS_*`; anything else gets none. */
  const safeClass = (s) => (/^[A-Z_]{1,32}$/.test(String(s)) ? String(s) : '');

  function renderCharts(pools) {
    const section = $('charts');
    if (!metricsOk) {
      section.replaceChildren();
      return;
    }
    const figs = pools.map((pool) => {
      let chart = charts.get(pool.pattern);
      if (!chart) {
        const canvas = el('canvas', { role: 'img', 'aria-label': 'requests per second and latency' });
        chart = {
          canvas,
          figure: el('figure', { class: 'chart' },
            el('h3', {}, String(pool.pattern)), canvas,
            el('figcaption', { class: 'legend' }, 'req/s (blue) \u00b7 p50 (green) and p99 (orange) latency \u00b7 last 5 min')),
        };
        charts.set(pool.pattern, chart);
      }
      return chart;
    });
    for (const pattern of [...charts.keys()]) if (!pools.some((p) => p.pattern === pattern)) charts.delete(pattern);
    section.replaceChildren(...figs.map((c) => c.figure));
    for (const pool of pools) draw(charts.get(pool.pattern).canvas, history.get(pool.pattern) || []);
  }

  /** Two panels on one canvas: requests/s on top, p50/p99 latency below, the last five minutes left to right. */
  function draw(canvas, points) {
    const ratio = window.devicePixelRatio || 1;
    const width = canvas.clientWidth;
    const height = canvas.clientHeight;
    if (!width || !height) return;
    canvas.width = Math.round(width * ratio);
    canvas.height = Math.round(height * ratio);
    const g = canvas.getContext('2d');
    g.setTransform(ratio, 0, 0, ratio, 0, 0);
    g.clearRect(0, 0, width, height);
    const ink = getComputedStyle(document.body).color;
    const now = performance.now();
    const panel = height / 2;
    const x = (t) => width - ((now - t) / HISTORY_MS) * width;
    const panels = [
      { top: 0, series: [{ key: 'rps', color: '#0969da' }], label: (m) => m.toFixed(m < 10 ? 1 : 0) + ' req/s' },
      { top: panel, series: [{ key: 'p50', color: '#1a7f37' }, { key: 'p99', color: '#bc4c00' }], label: fmtSeconds },
    ];
    g.font = '11px system-ui, sans-serif';
    for (const p of panels) {
      let max = 0;
      for (const pt of points) for (const s of p.series) if (pt[s.key] !== null) max = Math.max(max, pt[s.key]);
      const scale = max > 0 ? max * 1.15 : 1;
      const y = (v) => p.top + panel - 4 - (v / scale) * (panel - 18);
      g.globalAlpha = 0.25;
      g.strokeStyle = ink;
      g.beginPath();
      g.moveTo(0, p.top + panel - 0.5);
      g.lineTo(width, p.top + panel - 0.5);
      g.stroke();
      g.globalAlpha = 1;
      for (const s of p.series) {
        g.strokeStyle = s.color;
        g.lineWidth = 1.5;
        g.beginPath();
        let open = false;
        for (const pt of points) {
          const v = pt[s.key];
          if (v === null) { open = false; continue; }
          if (open) g.lineTo(x(pt.t), y(v));
          else g.moveTo(x(pt.t), y(v));
          open = true;
        }
        g.stroke();
      }
      g.fillStyle = ink;
      g.fillText('max ' + p.label(max), 4, p.top + 12);
    }
    g.globalAlpha = 0.6;
    g.fillText('5 min ago', 4, height - 6);
    g.textAlign = 'right';
    g.fillText('now', width - 4, height - 6);
    g.textAlign = 'left';
    g.globalAlpha = 1;
  }

  // ---- talking to lb ----

  function token() {
    return sessionStorage.getItem(TOKEN_KEY);
  }

  function askToken(message) {
    clearTimeout(timer);
    timer = null;
    sessionStorage.removeItem(TOKEN_KEY);
    $('main').hidden = true;
    $('sign-out').hidden = true;
    $('login').hidden = false;
    $('login-error').textContent = message || '';
    $('token').focus();
  }

  async function errorText(answer) {
    try {
      const body = await answer.json();
      if (body && typeof body.error === 'string') return body.error;
    } catch (_) { /* not lb's JSON */ }
    return `answer ${answer.status}`;
  }

  async function refresh() {
    const sent = token();
    const headers = sent ? { Authorization: 'Bearer ' + sent } : {};
    const options = (extra) => ({ headers: { ...headers, ...extra }, cache: 'no-store', credentials: 'omit', redirect: 'error' });
    const [pools, metrics] = await Promise.all([
      fetch('/v1/pools', options({ Accept: 'application/json' })).catch((e) => e),
      fetch('/metrics', options({ Accept: 'text/plain; version=0.0.4' })).catch((e) => e),
    ]);
    if ((pools instanceof Response && pools.status === 401) || (metrics instanceof Response && metrics.status === 401)) {
      askToken(sent ? 'lb refused this token' : '');
      return false;
    }
    const updated = $('updated');
    if (!(pools instanceof Response) || !pools.ok) {
      updated.textContent = pools instanceof Response ? 'lb: ' + (await errorText(pools)) : 'lb unreachable';
      $('main').classList.add('stale');
      return true;
    }
    const list = await pools.json().catch(() => null);
    if (!Array.isArray(list)) {
      updated.textContent = 'lb sent something that is not its list of pools';
      return true;
    }
    const state = $('metrics-state');
    if (metrics instanceof Response && metrics.ok) {
      record(digest(parseMetrics(await metrics.text())));
      metricsOk = true;
      state.textContent = 'metrics: ' + (scrapes.length < 2 ? 'first scrape' : 'live');
      state.className = '';
    } else if (metrics instanceof Response && metrics.status === 404) {
      // This lb has no /metrics: nothing to chart.
      metricsOk = false;
      scrapes = [];
      history.clear();
      state.textContent = 'metrics unavailable';
      state.className = 'unavailable';
    } else {
      // A failed scrape: the history stays, and the next scrape's rates span the gap.
      metricsOk = false;
      state.textContent = 'metrics unavailable: ' + (metrics instanceof Response ? await errorText(metrics) : 'no answer');
      state.className = 'unavailable';
    }
    lastPools = list;
    $('login').hidden = true;
    $('main').hidden = false;
    $('main').classList.remove('stale');
    $('sign-out').hidden = !sent;
    renderPools(list);
    renderCharts(list);
    updated.textContent = 'updated ' + new Date().toLocaleTimeString();
    return true;
  }

  async function tick() {
    clearTimeout(timer);
    timer = null;
    const started = performance.now();
    let again = true;
    try {
      again = await refresh();
    } catch (e) {
      $('updated').textContent = 'error: ' + e;
    }
    if (again) timer = setTimeout(tick, Math.max(0, POLL_MS - (performance.now() - started)));
  }

  function start() {
    $('login').addEventListener('submit', (event) => {
      event.preventDefault();
      const given = $('token').value.trim();
      if (!/^[\x21-\x7e]+$/.test(given)) {
        $('login-error').textContent = 'the token is visible ASCII characters, without spaces';
        return;
      }
      sessionStorage.setItem(TOKEN_KEY, given);
      $('token').value = '';
      $('login-error').textContent = '';
      $('login').hidden = true;
      tick();
    });
    $('sign-out').addEventListener('click', () => askToken(''));
    window.addEventListener('resize', () => renderCharts(lastPools));
    tick();
  }

  // For tests in the browser: the parsing and the arithmetic, nothing that reaches lb.
  window.lbDashboard = Object.freeze({ parseMetrics, digest, quantile });
  start();
})();
