// console_browser.js -- drive the logagg web console in a real browser
// (Debian's chromium, headless, through puppeteer-core) against a running
// server, for test/t/620_console_browser.pl.
//
// usage: node console_browser.js < CONFIG.json
// CONFIG: {"chromium": "/usr/bin/chromium", "console": "http://127.0.0.1:RPORT",
//          "ingest": "http://127.0.0.1:PORT", "reader_token": "lgr_...",
//          "wrong_token": "lgr_...", "sources": {"service-a": TOKEN, ...},
//          "screenshots": DIR, "firing_rule": NAME, "hidden_rule": NAME,
//          "secret": the webhook destination's secret,
//          "connstr": libpq connection string, "revoke_sql": SQL revoking the
//          reader token (run with psql at the end)}
// (on stdin, so that no token is on a command line).
//
// It signs in, sends records with the source tokens (POST /ingest on the
// ingest port, answered after COMMIT) and watches the views.  Every
// observation is one JSON line on stdout: {"check": NAME, "ok": BOOL,
// "detail": ...} for a pass/fail observation, {"value": NAME, "data": ...}
// for what the TAP test compares with SQL.  Waits are on DOM conditions
// (waitForFunction / waitForSelector with timeouts), never sleeps.  Exits
// non-zero if a step could not be carried out at all.
'use strict';
const fs = require('fs');
const { execFileSync } = require('child_process');
const path = require('path');
const puppeteer = require('puppeteer-core');

const cfg = JSON.parse(fs.readFileSync(0, 'utf8'));
const WAIT = { timeout: 30000 };

const emit = (o) => process.stdout.write(JSON.stringify(o) + '\n');
const check = (name, ok, detail) => emit({ check: name, ok: !!ok, detail: detail === undefined ? null : detail });
const value = (name, data) => emit({ value: name, data });

// POST records (an array) to /ingest with SOURCE's token; the reply comes
// after COMMIT, so when this resolves the records are committed.
async function ingest(source, records) {
  const resp = await fetch(cfg.ingest + '/ingest', {
    method: 'POST',
    headers: { 'Authorization': 'Bearer ' + cfg.sources[source], 'Content-Type': 'application/json' },
    body: JSON.stringify(records),
  });
  const body = await resp.text();
  if (resp.status !== 200) throw new Error(`POST /ingest for ${source}: HTTP ${resp.status} ${body}`);
  const r = JSON.parse(body);
  if (r.accepted !== records.length) throw new Error(`POST /ingest for ${source}: ${body}`);
}

async function shot(page, name) {
  await page.screenshot({ path: path.join(cfg.screenshots, name + '.png') });
}

// Rows of the live tail as {id, source, severity, cls, message}.
async function tailRows(page) {
  return page.$$eval('#tail-log .rec', (rows) => rows.map((r) => ({
    id: Number(r.dataset.id),
    source: r.dataset.source,
    cls: r.className,
    message: r.querySelector('.msg').textContent,
  })));
}

async function waitTailMessage(page, message) {
  await page.waitForFunction((m) => [...document.querySelectorAll('#tail-log .rec .msg')]
    .some((e) => e.textContent === m), WAIT, message);
}

async function waitTailOpen(page) {
  await page.waitForSelector('#tail-state[data-state="open"]', WAIT);
}

async function gotoView(page, view) {
  await page.click(`button.nav[data-view="${view}"]`);
  await page.waitForSelector(`#view-${view}:not([hidden])`, WAIT);
}

async function main() {
  fs.mkdirSync(cfg.screenshots, { recursive: true });
  const browser = await puppeteer.launch({
    executablePath: cfg.chromium,
    headless: true,
    // root in CI: no sandbox; loopback only: no proxy, no background traffic
    args: ['--no-sandbox', '--disable-gpu', '--no-proxy-server', '--disable-background-networking',
           '--disable-component-update', '--disable-sync', '--no-first-run'],
    defaultViewport: { width: 1280, height: 800 },
  });
  try {
    await run(browser);
  } finally {
    await browser.close();
  }
}

async function run(browser) {
  const page = await browser.newPage();
  const dialogs = [];
  const pageErrors = [];
  const cspReports = [];
  page.on('dialog', (d) => { dialogs.push(d.message()); d.dismiss().catch(() => {}); });
  page.on('pageerror', (e) => pageErrors.push(String(e.message || e)));
  page.on('console', (m) => {
    if (/Content.Security.Policy/i.test(m.text())) cspReports.push(m.text());
  });

  // ---- the page and its headers
  const resp = await page.goto(cfg.console + '/', { waitUntil: 'load' });
  check('GET / serves the console', resp.status() === 200, resp.status());
  const csp = resp.headers()['content-security-policy'] || '';
  check('the console is served with a Content-Security-Policy of default-src \'self\'',
    /default-src 'self'/.test(csp), csp);
  await page.waitForSelector('body[data-ready="true"]', WAIT);

  // ---- a wrong token is refused
  await page.type('#signin-token', cfg.wrong_token);
  await page.click('#signin-submit');
  await page.waitForSelector('#signin-error:not([hidden])', WAIT);
  const refusal = await page.$eval('#signin-error', (e) => e.textContent);
  check('a wrong token is refused with a clear message', /refused/.test(refusal) && /401/.test(refusal), refusal);
  const afterRefusal = await page.evaluate(() => ({
    nav: document.getElementById('nav').hidden,
    tail: document.getElementById('view-tail').hidden,
    stored: sessionStorage.length,
  }));
  check('after a refusal no view is shown and nothing is stored',
    afterRefusal.nav && afterRefusal.tail && afterRefusal.stored === 0, afterRefusal);
  await shot(page, 'signin-refused');

  // ---- sign in with the service-a* reader token; the live tail opens
  await page.$eval('#signin-token', (e) => { e.value = ''; });
  await page.type('#signin-token', cfg.reader_token);
  await page.click('#signin-submit');
  await page.waitForSelector('body[data-signed-in="true"]', WAIT);
  const who = await page.$eval('#whoami-text', (e) => e.textContent);
  check('signed in: the console names the token and its sources', /service-a\*/.test(who), who);
  check('the error of the refused attempt is gone', await page.$eval('#signin-error', (e) => e.hidden));
  await waitTailOpen(page);
  check('the live tail is connected', true);

  // ---- records arrive live; service-b's never do
  const xss = '<img src=x onerror=alert(1)>';
  const xss2 = '<img src=x onerror="window.__xssFired=1"><script>window.__xssFired=2</script><b>bold</b>';
  await ingest('service-b', [
    { message: 'shared-marker from service-b secret-b', level: 'error' },
    { message: 'service-b critical secret-b', status: 500 },
  ]);
  await ingest('service-a', [
    { message: 'shared-marker checkout ok order=1', level: 'info', region: 'eu' },
    { message: 'shared-marker payment failed order=2', level: 'error', region: 'us' },
    { message: 'shared-marker upstream answered 503 order=3', status: 503 },
    { message: xss, level: 'warn' },
    { message: xss2, level: 'info' },
  ]);
  await ingest('service-b', [{ message: 'late service-b secret-b', level: 'info' }]);
  // committed after every service-b record above: once it is shown, those
  // would have been shown before it (commit order)
  await ingest('service-a2', [{ message: 'shared-marker sentinel from service-a2', level: 'warn' }]);
  // the last record sent: once it is shown, every earlier one is too
  await waitTailMessage(page, 'shared-marker sentinel from service-a2');
  let rows = await tailRows(page);
  const expected = ['shared-marker checkout ok order=1', 'shared-marker payment failed order=2',
                    'shared-marker upstream answered 503 order=3', xss, xss2,
                    'shared-marker sentinel from service-a2'];
  check('records of service-a and service-a2 arrive live in the tail, in commit order, each as its text',
    JSON.stringify(rows.map((r) => r.message)) === JSON.stringify(expected), rows.map((r) => r.message));
  check('no record of service-b in the tail', rows.every((r) => r.source.startsWith('service-a')) &&
    !(await page.$eval('#tail-log', (e) => e.textContent.includes('secret-b'))), rows.map((r) => r.source));
  const bySev = (m) => (rows.find((r) => r.message === m) || {}).cls || '';
  check('severity colours: a 503 is critical, an error line high, an info line low',
    /sev-critical/.test(bySev('shared-marker upstream answered 503 order=3')) &&
    /sev-high/.test(bySev('shared-marker payment failed order=2')) &&
    /sev-low/.test(bySev('shared-marker checkout ok order=1')),
    rows.map((r) => r.cls));

  // ---- hostile text is shown as text and runs nothing
  const dom = await page.evaluate(() => ({
    imgs: document.querySelectorAll('img').length,
    bold: document.querySelectorAll('#tail-log b, main b').length,
    scripts: document.scripts.length,
    flag: window.__xssFired === undefined ? null : window.__xssFired,
  }));
  check('the message "<img src=x onerror=alert(1)>" is shown as that literal text',
    rows.some((r) => r.message === xss), xss);
  check('no element made from log text (no img, b or extra script in the DOM)',
    dom.imgs === 0 && dom.bold === 0 && dom.scripts === 1, dom);
  check('no handler ran (no dialog, window flag unset)', dialogs.length === 0 && dom.flag === null,
    { dialogs, flag: dom.flag });
  await shot(page, 'tail');

  // ---- tail filters: minimum severity critical, no replay
  await page.click('#tail-clear');
  await page.select('#tail-severity', 'critical');
  await page.$eval('#tail-since', (e) => { e.value = '0'; });
  await page.click('#tail-apply');
  await waitTailOpen(page);
  await ingest('service-a', [{ message: 'filter-low-marker', level: 'info' }]);
  await ingest('service-a', [{ message: 'filter-critical-marker', status: 500 }]);
  await waitTailMessage(page, 'filter-critical-marker');
  rows = await tailRows(page);
  check('with min_severity=critical only critical records arrive',
    rows.length === 1 && rows[0].message === 'filter-critical-marker', rows.map((r) => r.message));

  // ---- pause holds records, resume shows them
  await page.select('#tail-severity', '');
  await page.click('#tail-apply');
  await waitTailOpen(page);
  await page.click('#tail-pause');
  await ingest('service-a', [{ message: 'paused-marker', level: 'info' }]);
  await page.waitForFunction(() => /^1 new records held/.test(document.getElementById('tail-held').textContent), WAIT);
  rows = await tailRows(page);
  check('paused: the record is held, not shown', !rows.some((r) => r.message === 'paused-marker'),
    rows.map((r) => r.message));
  await page.click('#tail-pause');
  await waitTailMessage(page, 'paused-marker');
  check('resumed: the held record is shown', true);

  // ---- tail filters: regex on the message and attrs containment
  await page.click('#tail-clear');
  await page.type('#tail-q', '^attr-');
  await page.type('#tail-attrs', '{"region": "eu"}');
  await page.click('#tail-apply');
  await waitTailOpen(page);
  await ingest('service-a', [
    { message: 'attr-us', region: 'us' },
    { message: 'attr-eu-first', region: 'eu', level: 'info' },
    { message: 'not matching the regex', region: 'eu' },
  ]);
  await ingest('service-a', [{ message: 'attr-eu-last', region: 'eu', level: 'info' }]);
  await waitTailMessage(page, 'attr-eu-last');
  rows = await tailRows(page);
  check('with q=^attr- and attrs={"region": "eu"} only the matching records arrive',
    JSON.stringify(rows.map((r) => r.message)) === JSON.stringify(['attr-eu-first', 'attr-eu-last']),
    rows.map((r) => r.message));
  // attrs that are not a JSON object are refused in the page, with a reason
  await page.$eval('#tail-attrs', (e) => { e.value = '["eu"]'; });
  await page.click('#tail-apply');
  await page.waitForSelector('#tail-error:not([hidden])', WAIT);
  const attrsError = await page.$eval('#tail-error', (e) => e.textContent);
  check('attrs that are not a JSON object are refused with a reason', /JSON object/.test(attrsError), attrsError);
  await page.$eval('#tail-attrs', (e) => { e.value = ''; });
  await page.$eval('#tail-q', (e) => { e.value = ''; });
  await page.click('#tail-apply');
  await waitTailOpen(page);

  // ---- search (all records are in now)
  await gotoView(page, 'search');
  const search = async (q) => {
    const before = await page.$eval('#view-search', (e) => Number(e.dataset.searches) || 0);
    await page.$eval('#search-q', (e) => { e.value = ''; });
    await page.type('#search-q', q);
    await page.click('#search-submit');
    await page.waitForFunction((n) => Number(document.getElementById('view-search').dataset.searches) > n,
      WAIT, before);
    const err = await page.$eval('#search-error', (e) => (e.hidden ? '' : e.textContent));
    const found = await page.$$eval('#search-results tbody tr', (trs) => trs.map((tr) => ({
      id: Number(tr.dataset.id), source: tr.dataset.source, message: tr.querySelector('.msg').textContent,
    })));
    return { err, found };
  };
  let res = await search('secret-b');
  check('searching for service-b\'s text finds nothing', res.err === '' && res.found.length === 0, res);
  res = await search('payment failed');
  check('search finds the record', res.err === '' && res.found.length === 1 &&
    res.found[0].message === 'shared-marker payment failed order=2', res);
  res = await search(xss);
  check('search shows the hostile message as text', res.found.length === 1 && res.found[0].message === xss &&
    (await page.evaluate(() => document.querySelectorAll('img').length)) === 0, res);
  res = await search('shared-marker');
  check('search lists only service-a* records', res.err === '' && res.found.length > 0 &&
    res.found.every((r) => r.source.startsWith('service-a')), res.found.map((r) => r.source));
  value('search_shared_marker_ids', res.found.map((r) => r.id));
  await shot(page, 'search');

  // ---- histogram: last hour (shown first), then last day
  const readHistogram = () => page.evaluate(() => ({
    range: document.getElementById('view-histogram').dataset.range,
    error: document.getElementById('histogram-error').hidden ? '' : document.getElementById('histogram-error').textContent,
    critical: Number(document.getElementById('histogram-total-critical').textContent),
    high: Number(document.getElementById('histogram-total-high').textContent),
    low: Number(document.getElementById('histogram-total-low').textContent),
    bucket_seconds: Number(document.getElementById('view-histogram').dataset.bucketSeconds),
    buckets: [...document.querySelectorAll('#histogram-table tbody tr')].map((tr) => ({
      t: tr.dataset.t,
      counts: [...tr.cells].slice(1).map((td) => Number(td.textContent)),
    })),
  }));
  const histogramLoads = () => page.$eval('#view-histogram', (e) => Number(e.dataset.loads) || 0);
  const waitHistogramLoad = (n, range) => page.waitForFunction((k, r) => {
    const v = document.getElementById('view-histogram');
    return Number(v.dataset.loads) > k && v.dataset.range === r;
  }, WAIT, n, range);
  let loads = await histogramLoads();
  await gotoView(page, 'histogram');
  await waitHistogramLoad(loads, '1h');
  value('histogram_1h', await readHistogram());
  await shot(page, 'histogram');
  loads = await histogramLoads();
  await page.select('#histogram-range', '1d');
  await waitHistogramLoad(loads, '1d');
  value('histogram_1d', await readHistogram());

  // ---- alerts: the service-a* rule fires (evaluated every few hundred ms);
  // refresh until it is listed, and the deliveries of the per-record alerts
  // to the webhook are in the history
  await gotoView(page, 'alerts');
  await page.waitForFunction((rule) => {
    const view = document.getElementById('view-alerts');
    if ([...document.querySelectorAll('#alerts-firing tbody tr')].some((tr) => tr.dataset.rule === rule) &&
        Number(document.getElementById('alerts-history').dataset.count) > 0) return true;
    // one refresh at a time: click again only when the previous one landed
    const loads = Number(view.dataset.loads) || 0;
    if (Number(view.dataset.clicked || -1) < loads) {
      view.dataset.clicked = String(loads);
      document.getElementById('alerts-refresh').click();
    }
    return false;
  }, { timeout: 30000, polling: 100 }, cfg.firing_rule);
  const firing = await page.$$eval('#alerts-firing tbody tr', (trs) => trs.map((tr) => ({
    rule: tr.dataset.rule, text: tr.textContent,
  })));
  check('the alerts page lists the firing service-a* alert',
    firing.some((f) => f.rule === cfg.firing_rule && /service-a/.test(f.text)), firing);
  check('the alerts page does not list service-b\'s alert',
    !firing.some((f) => f.rule === cfg.hidden_rule || /service-b/.test(f.text)), firing);
  const history = await page.$$eval('#alerts-history tbody tr', (trs) => trs.map((tr) => tr.textContent));
  check('the alerts page lists deliveries, none of service-b',
    history.length > 0 && !history.some((h) => /service-b|secret-b/.test(h)), history);
  check('no destination secret on the alerts page',
    !(await page.$eval('#view-alerts', (e, secret) => e.textContent.includes(secret), cfg.secret)));
  value('alerts_firing', firing);
  await shot(page, 'alerts');

  // ---- status
  await gotoView(page, 'status');
  await page.waitForFunction(() => Number(document.getElementById('view-status').dataset.loads) > 0, WAIT);
  const workers = await page.$$eval('#status-workers tbody tr', (trs) => trs.map((tr) => tr.textContent));
  check('the status page lists the workers', workers.some((w) => /ingest/.test(w)), workers);
  await shot(page, 'status');

  // ---- at the end: still nothing of service-b anywhere, nothing ran
  const end = await page.evaluate(() => ({
    secret: document.body.textContent.includes('secret-b'),
    imgs: document.querySelectorAll('img').length,
    flag: window.__xssFired === undefined ? null : window.__xssFired,
  }));
  check('service-b\'s records appeared nowhere', !end.secret, end);
  check('at the end: no dialog, no img, no handler ran', dialogs.length === 0 && end.imgs === 0 && end.flag === null,
    { dialogs, end });

  // ---- the token is revoked while the console shows the live tail (no
  // periodic refresh there): the tail ends, and the console goes back to
  // the sign-in form and says why
  await gotoView(page, 'tail');
  await waitTailOpen(page);
  execFileSync('psql', ['-X', '-q', '-v', 'ON_ERROR_STOP=1', '-d', cfg.connstr, '-c', cfg.revoke_sql]);
  await page.waitForSelector('#view-signin:not([hidden])', WAIT);
  const revoked = await page.evaluate(() => ({
    message: document.getElementById('signin-error').textContent,
    nav: document.getElementById('nav').hidden,
    stored: sessionStorage.length,
  }));
  check('revoking the token signs the console out, saying why',
    /no longer accepts/.test(revoked.message) && revoked.nav && revoked.stored === 0, revoked);

  check('no script error on the page', pageErrors.length === 0, pageErrors);
  check('nothing the page did was blocked by the Content-Security-Policy', cspReports.length === 0, cspReports);
}

main().then(() => emit({ done: true }), (e) => {
  process.stderr.write('console_browser: ' + (e && e.stack ? e.stack : e) + '\n');
  process.exit(1);
});
