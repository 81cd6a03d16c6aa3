/*
 * app.js: the logagg web console (vanilla JavaScript, no library).
 *
 * Signs in with a reader token (checked by GET /api/whoami, kept in
 * sessionStorage for this tab only), then shows five views: the live tail
 * (WebSocket /tail), search (/api/search), the severity histogram
 * (/api/histogram), alerts (/api/alerts) and status (/api/status).  The
 * token goes in an Authorization: Bearer header on every fetch, and as
 * ?token= on the WebSocket (a browser cannot set headers there).
 *
 * Everything that comes from the server (log text, source names, labels,
 * error messages) is inserted as text: createTextNode / textContent, never
 * innerHTML.  The server's Content-Security-Policy forbids inline script,
 * so even markup that slipped through would not run; rendering as text
 * means it is never markup in the first place.
 */
'use strict';

(function () {
  const TOKEN_KEY = 'logagg.readerToken';
  const TAIL_MAX_ROWS = 1000;       /* rows kept in the tail view */
  const TAIL_MAX_HELD = 5000;       /* records held while paused */
  const TAIL_RECONNECT_MS = 2000;
  const REFRESH_MS = 15000;         /* histogram, alerts, status */

  const $ = (id) => document.getElementById(id);

  /* ---------------------------------------------------------------- DOM */

  /*
   * el('td', {className: 'x', dataset: {id: 1}}, 'text', otherNode):
   * a new element; string children become text nodes.  Only className,
   * title and dataset are set from opts, so no attribute can carry markup
   * or a handler.
   */
  function el(tag, opts, ...children) {
    const e = document.createElement(tag);
    if (opts) {
      if (opts.className) e.className = opts.className;
      if (opts.title !== undefined) e.title = String(opts.title);
      if (opts.dataset) {
        for (const [k, v] of Object.entries(opts.dataset)) e.dataset[k] = String(v);
      }
    }
    for (const c of children) e.appendChild(toNode(c));
    return e;
  }

  function toNode(c) {
    if (c instanceof Node) return c;
    return document.createTextNode(c === null || c === undefined ? '' : String(c));
  }

  function showError(id, message) {
    const p = $(id);
    if (message) {
      p.textContent = message;
      p.hidden = false;
    } else {
      p.textContent = '';
      p.hidden = true;
    }
  }

  /* "2026-12-03T10:00:00.123456Z" -> "2026-12-03 10:00:00.123456" */
  function fmtTime(ts) {
    if (typeof ts !== 'string') return '';
    return ts.replace('T', ' ').replace(/Z$/, '');
  }

  function fmtJson(v) {
    if (v === null || v === undefined) return '';
    if (typeof v === 'object' && Object.keys(v).length === 0) return '';
    return JSON.stringify(v);
  }

  function severityClass(sev) {
    return (sev === 'critical' || sev === 'high' || sev === 'low') ? 'sev-' + sev : 'sev-unknown';
  }

  /* ----------------------------------------------------------- requests */

  let token = null;

  class HttpError extends Error {
    constructor(status, message) {
      super(message);
      this.status = status;
    }
  }

  /* GET path with the token; resolves to the parsed JSON, or throws HttpError. */
  async function api(path, params) {
    const url = new URL(path, window.location.origin);
    if (params) {
      for (const [k, v] of Object.entries(params)) {
        if (v !== '' && v !== null && v !== undefined) url.searchParams.set(k, v);
      }
    }
    let resp;
    try {
      resp = await fetch(url, {
        headers: { 'Authorization': 'Bearer ' + token, 'Accept': 'application/json' },
        cache: 'no-store',
      });
    } catch (e) {
      throw new HttpError(0, 'the server cannot be reached (' + e.message + ')');
    }
    let body = null;
    try {
      body = await resp.json();
    } catch (e) {
      body = null;
    }
    if (!resp.ok) {
      const reason = body && typeof body.error === 'string' ? body.error : resp.statusText;
      if (resp.status === 401 && path !== '/api/whoami') {
        signOut('The server no longer accepts this token (revoked?): ' + reason);
      }
      const retry = resp.headers.get('Retry-After');
      throw new HttpError(resp.status, 'HTTP ' + resp.status + ': ' + reason +
        (retry ? ' (busy, retry in ' + retry + ' s)' : ''));
    }
    if (body === null) throw new HttpError(resp.status, 'the server sent no JSON');
    return body;
  }

  /*
   * After the tail was refused or ended with an error: if the token itself
   * is no longer accepted (revoked), go back to the sign-in form instead of
   * retrying for ever.
   */
  async function recheckToken() {
    if (token === null) return;
    try {
      await api('/api/whoami');
    } catch (e) {
      if (e.status === 401) signOut('The server no longer accepts this token (revoked?): ' + e.message);
    }
  }

  /* ------------------------------------------------------------ sign-in */

  async function signIn(candidate, fromStorage) {
    token = candidate;
    showError('signin-error', null);
    $('signin-submit').disabled = true;
    try {
      const who = await api('/api/whoami');
      sessionStorage.setItem(TOKEN_KEY, candidate);
      $('whoami-text').textContent = 'Signed in as ' + who.name + ' (sources ' + who.sources + ')';
      $('whoami').hidden = false;
      $('nav').hidden = false;
      $('signin-token').value = '';
      document.body.dataset.signedIn = 'true';
      showView(viewFromHash());
    } catch (e) {
      token = null;
      sessionStorage.removeItem(TOKEN_KEY);
      if (e.status === 401) {
        showError('signin-error', (fromStorage ? 'Your saved token' : 'This token') +
          ' was refused by the server: it is wrong, or it has been revoked. (' + e.message + ')');
      } else {
        showError('signin-error', 'Sign-in failed: ' + e.message);
      }
    } finally {
      $('signin-submit').disabled = false;
    }
  }

  function signOut(message) {
    token = null;
    sessionStorage.removeItem(TOKEN_KEY);
    tail.stop();
    stopRefresh();
    $('nav').hidden = true;
    $('whoami').hidden = true;
    $('whoami-text').textContent = '';
    delete document.body.dataset.signedIn;
    for (const v of VIEWS) $('view-' + v).hidden = true;
    $('view-signin').hidden = false;
    showError('signin-error', message || null);
  }

  /* -------------------------------------------------------------- views */

  const VIEWS = ['tail', 'search', 'histogram', 'alerts', 'status'];
  let current = null;
  let refreshTimer = null;

  function viewFromHash() {
    const v = window.location.hash.replace(/^#/, '');
    return VIEWS.includes(v) ? v : 'tail';
  }

  function stopRefresh() {
    if (refreshTimer !== null) clearInterval(refreshTimer);
    refreshTimer = null;
  }

  function showView(name) {
    if (token === null) return;
    $('view-signin').hidden = true;
    for (const v of VIEWS) $('view-' + v).hidden = (v !== name);
    for (const b of document.querySelectorAll('button.nav')) {
      b.classList.toggle('active', b.dataset.view === name);
    }
    document.body.dataset.view = name;
    stopRefresh();
    current = name;
    if (name === 'tail') {
      if (!tail.running()) tail.start();
    }
    const loaders = { histogram: loadHistogram, alerts: loadAlerts, status: loadStatus };
    if (loaders[name]) {
      loaders[name]();
      refreshTimer = setInterval(loaders[name], REFRESH_MS);
    }
  }

  /* ---------------------------------------------------------- live tail */

  const tail = (function () {
    let ws = null;
    let wanted = false;        /* reconnect when the socket closes */
    let paused = false;
    let held = [];
    let heldOverflow = 0;
    let dropped = 0;
    let opened = false;
    let reconnectTimer = null;
    const seen = new Set();    /* ids shown, so a reconnect's replay adds no duplicate */

    function setState(state, text) {
      const s = $('tail-state');
      s.dataset.state = state;
      s.textContent = text;
    }

    function params() {
      const p = {
        source: $('tail-source').value.trim(),
        min_severity: $('tail-severity').value,
        q: $('tail-q').value,
        attrs: $('tail-attrs').value.trim(),
        since: $('tail-since').value.trim(),
      };
      if (p.attrs !== '') {
        let parsed;
        try {
          parsed = JSON.parse(p.attrs);
        } catch (e) {
          throw new Error('Attrs must be a JSON object: ' + e.message);
        }
        if (parsed === null || typeof parsed !== 'object' || Array.isArray(parsed)) {
          throw new Error('Attrs must be a JSON object, such as {"region": "eu"}');
        }
      }
      return p;
    }

    function url(p) {
      const u = new URL('/tail', window.location.href);
      u.protocol = window.location.protocol === 'https:' ? 'wss:' : 'ws:';
      for (const [k, v] of Object.entries(p)) {
        if (v !== '') u.searchParams.set(k, v);
      }
      u.searchParams.set('token', token);
      return u.toString();
    }

    function start() {
      let p;
      try {
        p = params();
      } catch (e) {
        showError('tail-error', e.message);
        return;
      }
      showError('tail-error', null);
      stop();
      wanted = true;
      connect(p);
    }

    function connect(p) {
      opened = false;
      setState('connecting', 'connecting…');
      const sock = new WebSocket(url(p));
      ws = sock;
      sock.addEventListener('open', () => {
        if (ws !== sock) return;
        opened = true;
        setState('open', paused ? 'live (paused)' : 'live');
      });
      sock.addEventListener('message', (ev) => {
        if (ws !== sock) return;
        onFrame(ev.data);
      });
      sock.addEventListener('close', (ev) => {
        if (ws !== sock) return;
        ws = null;
        if (!wanted) return;
        if (!opened) {
          /* refused before the upgrade: a browser does not see the HTTP
           * status, so say what can cause it */
          setState('closed', 'not connected');
          showError('tail-error', 'The server refused the live tail: check the regex and attrs filters. ' +
            'Retrying in ' + (TAIL_RECONNECT_MS / 1000) + ' s.');
          recheckToken();
        } else {
          setState('closed', 'disconnected (' + (ev.reason || 'code ' + ev.code) + '), reconnecting…');
        }
        reconnectTimer = setTimeout(() => {
          reconnectTimer = null;
          if (wanted && token !== null) {
            /* replay what may have been missed; seen ids are skipped */
            const again = Object.assign({}, p, { since: String(Math.max(Number(p.since) || 0, 100)) });
            connect(again);
          }
        }, TAIL_RECONNECT_MS);
      });
    }

    function stop() {
      wanted = false;
      if (reconnectTimer !== null) clearTimeout(reconnectTimer);
      reconnectTimer = null;
      if (ws !== null) {
        const sock = ws;
        ws = null;
        sock.close();
      }
      setState('closed', 'not connected');
    }

    function onFrame(data) {
      let obj;
      try {
        obj = JSON.parse(data);
      } catch (e) {
        return;
      }
      if (obj === null || typeof obj !== 'object') return;
      if (typeof obj.dropped === 'number') {
        dropped += obj.dropped;
        $('tail-dropped').textContent = dropped + ' records dropped';
        append(el('div', { className: 'notice dropped', dataset: { dropped: obj.dropped } },
          obj.dropped + ' records dropped here: this tab did not read them fast enough ' +
          'and the server keeps a bounded buffer per subscriber (search finds them)'));
        return;
      }
      if (typeof obj.error === 'string') {
        showError('tail-error', 'The server ended the live tail: ' + obj.error);
        recheckToken();
        return;
      }
      if (obj.id !== undefined) {
        if (seen.has(obj.id)) return;
        if (paused) {
          if (held.length < TAIL_MAX_HELD) {
            held.push(obj);
          } else {
            heldOverflow++;
          }
          showHeld();
          return;
        }
        appendRecord(obj);
      }
    }

    function recordRow(r) {
      const row = el('div', { className: 'rec ' + severityClass(r.severity), dataset: { id: r.id, source: r.source } },
        el('span', { className: 'ts' }, fmtTime(r.ts)),
        el('span', { className: 'src' }, r.source),
        el('span', { className: 'sev' }, r.severity),
        el('span', { className: 'lvl' }, r.level),
        el('span', { className: 'status' }, r.status === null || r.status === undefined ? '' : r.status),
        el('span', { className: 'msg' }, r.message));
      const attrs = fmtJson(r.attrs);
      if (attrs !== '') row.appendChild(el('span', { className: 'attrs' }, attrs));
      return row;
    }

    function appendRecord(r) {
      seen.add(r.id);
      append(recordRow(r));
    }

    function append(node) {
      const log = $('tail-log');
      const atBottom = log.scrollTop + log.clientHeight >= log.scrollHeight - 4;
      log.appendChild(node);
      while (log.childElementCount > TAIL_MAX_ROWS) {
        const first = log.firstElementChild;
        if (first.dataset.id !== undefined) seen.delete(Number(first.dataset.id));
        first.remove();
      }
      if (atBottom) log.scrollTop = log.scrollHeight;
    }

    function showHeld() {
      $('tail-held').textContent = paused
        ? held.length + ' new records held' + (heldOverflow ? ' (' + heldOverflow + ' more not kept)' : '')
        : '';
    }

    function togglePause() {
      paused = !paused;
      $('tail-pause').textContent = paused ? 'Resume' : 'Pause';
      $('tail-pause').classList.toggle('active', paused);
      if (!paused) {
        const pending = held;
        held = [];
        if (heldOverflow) {
          append(el('div', { className: 'notice dropped' },
            heldOverflow + ' records not kept while paused'));
        }
        heldOverflow = 0;
        for (const r of pending) {
          if (!seen.has(r.id)) appendRecord(r);
        }
      }
      showHeld();
      if (ws !== null && opened) setState('open', paused ? 'live (paused)' : 'live');
    }

    function clear() {
      $('tail-log').replaceChildren();
      seen.clear();
      dropped = 0;
      $('tail-dropped').textContent = '';
    }

    return {
      start, stop, togglePause, clear,
      running: () => wanted,
    };
  })();

  /* ------------------------------------------------------------- search */

  function toRfc3339(localValue) {
    if (!localValue) return '';
    const d = new Date(localValue);
    return isNaN(d.getTime()) ? '' : d.toISOString();
  }

  async function runSearch() {
    const range = $('search-range').value;
    const params = {
      q: $('search-q').value,
      source: $('search-source').value.trim(),
      min_severity: $('search-severity').value,
      attrs: $('search-attrs').value.trim(),
      limit: $('search-limit').value.trim(),
    };
    if (range === 'custom') {
      params.since = toRfc3339($('search-since').value);
      params.until = toRfc3339($('search-until').value);
    } else {
      params.since = new Date(Date.now() - Number(range) * 1000).toISOString();
    }
    const body = $('search-results').tBodies[0];
    showError('search-error', null);
    $('search-summary').textContent = 'searching…';
    $('search-submit').disabled = true;
    const t0 = performance.now();
    try {
      const res = await api('/api/search', params);
      const records = Array.isArray(res.records) ? res.records : [];
      body.replaceChildren(...records.map((r) =>
        el('tr', { className: severityClass(r.severity), dataset: { id: r.id, source: r.source } },
          el('td', { className: 'ts' }, fmtTime(r.ts)),
          el('td', null, r.source),
          el('td', { className: 'sev' }, r.severity),
          el('td', null, r.level),
          el('td', null, r.status === null || r.status === undefined ? '' : r.status),
          el('td', { className: 'msg' }, r.message),
          el('td', { className: 'attrs' }, fmtJson(r.attrs)))));
      $('search-summary').textContent = records.length + (records.length === 1 ? ' record' : ' records') +
        ', newest first (' + Math.round(performance.now() - t0) + ' ms)';
      $('search-results').dataset.count = records.length;
    } catch (e) {
      body.replaceChildren();
      $('search-summary').textContent = '';
      showError('search-error', 'Search failed: ' + e.message);
    } finally {
      $('search-submit').disabled = false;
      const v = $('view-search');
      v.dataset.searches = String((Number(v.dataset.searches) || 0) + 1);
    }
  }

  /* ---------------------------------------------------------- histogram */

  const SEVERITIES = ['critical', 'high', 'low'];

  async function loadHistogram() {
    const range = $('histogram-range').value;
    showError('histogram-error', null);
    let res;
    try {
      res = await api('/api/histogram', { range });
    } catch (e) {
      showError('histogram-error', 'Histogram failed: ' + e.message);
      return;
    }
    const buckets = Array.isArray(res.buckets) ? res.buckets : [];
    const totals = { critical: 0, high: 0, low: 0 };
    for (const b of buckets) {
      for (const s of SEVERITIES) totals[s] += Number(b[s]) || 0;
    }
    for (const s of SEVERITIES) $('histogram-total-' + s).textContent = String(totals[s]);
    $('histogram-span').textContent = buckets.length
      ? 'from ' + fmtTime(buckets[0].t) + ' UTC, ' + buckets.length + ' buckets of ' + res.bucket_seconds + ' s'
      : 'no buckets';
    drawHistogram(buckets, res.bucket_seconds);
    $('histogram-table').tBodies[0].replaceChildren(...buckets
      .filter((b) => SEVERITIES.some((s) => Number(b[s]) > 0))
      .reverse()
      .map((b) => el('tr', { dataset: { t: b.t } },
        el('td', { className: 'ts' }, fmtTime(b.t)),
        ...SEVERITIES.map((s) => el('td', { className: 'num sev-' + s }, Number(b[s]) || 0)))));
    const h = $('view-histogram');
    h.dataset.range = res.range || range;
    h.dataset.bucketSeconds = String(res.bucket_seconds);
    h.dataset.loads = String((Number(h.dataset.loads) || 0) + 1);
  }

  /* Stacked bars, one per bucket, most severe at the bottom. */
  function drawHistogram(buckets, bucketSeconds) {
    const canvas = $('histogram-canvas');
    const ctx = canvas.getContext('2d');
    const css = getComputedStyle(document.body);
    const colour = {
      critical: css.getPropertyValue('--critical').trim() || '#c0392b',
      high: css.getPropertyValue('--high').trim() || '#d68910',
      low: css.getPropertyValue('--low').trim() || '#5d6d7e',
    };
    const W = canvas.width, H = canvas.height;
    const left = 48, bottom = 22, top = 8;
    ctx.clearRect(0, 0, W, H);
    let max = 0;
    for (const b of buckets) {
      max = Math.max(max, SEVERITIES.reduce((n, s) => n + (Number(b[s]) || 0), 0));
    }
    ctx.fillStyle = css.getPropertyValue('--fg').trim() || '#222';
    ctx.font = '12px sans-serif';
    ctx.fillText(String(max), 4, top + 10);
    ctx.fillText('0', 4, H - bottom);
    if (buckets.length === 0) return;
    const plotH = H - bottom - top;
    const step = (W - left) / buckets.length;
    const barW = Math.max(1, step - 1);
    buckets.forEach((b, i) => {
      let y = H - bottom;
      for (const s of SEVERITIES) {
        const n = Number(b[s]) || 0;
        if (n === 0 || max === 0) continue;
        const h = Math.max(1, (n / max) * plotH);
        ctx.fillStyle = colour[s];
        ctx.fillRect(left + i * step, y - h, barW, h);
        y -= h;
      }
    });
    ctx.fillStyle = css.getPropertyValue('--fg').trim() || '#222';
    ctx.fillText(fmtTime(buckets[0].t).slice(11, 16), left, H - 6);
    const lastLabel = fmtTime(buckets[buckets.length - 1].t).slice(11, 16);
    ctx.fillText(lastLabel, W - ctx.measureText(lastLabel).width - 2, H - 6);
    canvas.title = buckets.length + ' buckets of ' + bucketSeconds + ' s';
  }

  /* ------------------------------------------------------------- alerts */

  async function loadAlerts() {
    showError('alerts-error', null);
    let res;
    try {
      res = await api('/api/alerts');
    } catch (e) {
      showError('alerts-error', 'Alerts failed: ' + e.message);
      return;
    }
    const firing = Array.isArray(res.firing) ? res.firing : [];
    const queue = Array.isArray(res.queue) ? res.queue : [];
    const history = Array.isArray(res.history) ? res.history : [];
    fillTable('alerts-firing', firing, (a) => el('tr', { className: 'firing', dataset: { rule: a.rule } },
      el('td', null, a.rule), el('td', { className: 'attrs' }, fmtJson(a.labels)),
      el('td', null, a.state), el('td', { className: 'ts' }, fmtTime(a.since)), el('td', { className: 'num' }, a.value)),
      'nothing is firing');
    fillTable('alerts-queue', queue, (q) => el('tr', null,
      el('td', null, q.destination), el('td', null, q.priority), el('td', { className: 'num' }, q.depth)),
      'the queue is empty');
    fillTable('alerts-history', history, (h) => el('tr', null,
      el('td', { className: 'ts' }, fmtTime(h.sent_at)), el('td', null, h.destination),
      el('td', null, h.status), el('td', { className: 'msg' }, h.summary)),
      'nothing delivered yet');
    stamp('alerts');
  }

  /* ------------------------------------------------------------- status */

  async function loadStatus() {
    showError('status-error', null);
    let res;
    try {
      res = await api('/api/status');
    } catch (e) {
      showError('status-error', 'Status failed: ' + e.message);
      return;
    }
    fillTable('status-workers', Array.isArray(res.workers) ? res.workers : [], (w) =>
      el('tr', { className: w.last_error ? 'has-error' : '' },
        el('td', null, w.name), el('td', { className: 'num' }, w.pid), el('td', null, w.state),
        el('td', { className: 'msg' }, w.last_error)),
      'no workers');
    fillTable('status-sync', Array.isArray(res.sync) ? res.sync : [], (s) => el('tr', null,
      el('td', null, s.window), el('td', null, s.source), el('td', null, s.state),
      el('td', { className: 'ts' }, fmtTime(s.uploaded_at))),
      'no cloud sync windows');
    stamp('status');
  }

  function fillTable(id, rows, toRow, emptyText) {
    const table = $(id);
    const cols = table.tHead.rows[0].cells.length;
    const body = table.tBodies[0];
    if (rows.length === 0) {
      const td = el('td', { className: 'empty' }, emptyText);
      td.colSpan = cols;
      body.replaceChildren(el('tr', null, td));
    } else {
      body.replaceChildren(...rows.map(toRow));
    }
    table.dataset.count = rows.length;
  }

  function stamp(view) {
    $(view + '-updated').textContent = 'updated ' + new Date().toISOString().slice(11, 19) + ' UTC';
    const v = $('view-' + view);
    v.dataset.loads = String((Number(v.dataset.loads) || 0) + 1);
  }

  /* -------------------------------------------------------------- setup */

  function init() {
    $('signin-form').addEventListener('submit', (ev) => {
      ev.preventDefault();
      const t = $('signin-token').value.trim();
      if (t !== '') signIn(t, false);
    });
    $('signout').addEventListener('click', () => signOut(null));
    for (const b of document.querySelectorAll('button.nav')) {
      b.addEventListener('click', () => {
        if (window.location.hash === '#' + b.dataset.view) {
          showView(b.dataset.view);
        } else {
          window.location.hash = b.dataset.view;
        }
      });
    }
    window.addEventListener('hashchange', () => showView(viewFromHash()));

    $('tail-form').addEventListener('submit', (ev) => {
      ev.preventDefault();
      tail.start();
    });
    $('tail-pause').addEventListener('click', () => tail.togglePause());
    $('tail-clear').addEventListener('click', () => tail.clear());

    $('search-form').addEventListener('submit', (ev) => {
      ev.preventDefault();
      runSearch();
    });
    $('search-range').addEventListener('change', () => {
      const custom = $('search-range').value === 'custom';
      for (const l of document.querySelectorAll('.custom-range')) l.hidden = !custom;
    });

    $('histogram-form').addEventListener('submit', (ev) => {
      ev.preventDefault();
      loadHistogram();
    });
    $('histogram-range').addEventListener('change', loadHistogram);
    $('alerts-refresh').addEventListener('click', loadAlerts);
    $('status-refresh').addEventListener('click', loadStatus);

    const saved = sessionStorage.getItem(TOKEN_KEY);
    if (saved) signIn(saved, true);
    document.body.dataset.ready = 'true';
  }

  if (document.readyState === 'loading') {
    document.addEventListener('DOMContentLoaded', init);
  } else {
    init();
  }
})();
