// pages.test.js - browser tests of the three pages against a live privguide
// server (started by tests/test_server_web.c): playwright-core drives
// Debian's chromium headless. Loads each page, checks what it shows, records
// views and cart additions from the shop as the shopper (and sees them
// refused without consent), checks the portal's event dates, purpose texts
// and audit list against the API, flips a consent switch, downloads the
// export, deletes the account, and saves a screenshot of every step. Then,
// after that traffic, the dashboard's charts (requests, latency, errors,
// ingest, budget per purpose, model quality, alerts, fairness; a panel whose
// route the server lacks says so), a tooltip, and revoking an API key from
// the page. Before the browser: a unit test of the chart module's scales and
// ticks (src/server/web/charts.js). Exits 0 on success, 1 on the first
// failure.
'use strict';
const { chromium } = require('playwright-core');
const fs = require('fs');
const path = require('path');

const BASE = process.env.PVG_BASE_URL;
const ADMIN = process.env.PVG_ADMIN_KEY;
const TOKEN = process.env.PVG_USER_TOKEN;
const USER = process.env.PVG_USER_ID;
const SPARE = process.env.PVG_SPARE_KEY;
const SPARE_ID = process.env.PVG_SPARE_KEY_ID;
const SHOTS = process.env.PVG_SCREENSHOT_DIR || path.join(process.cwd(), 'web-screenshots');
const CHROMIUM = process.env.PVG_CHROMIUM || '/usr/bin/chromium';

const watchdog = setTimeout(() => { console.error('FAIL: browser tests exceeded 210 s'); process.exit(1); }, 210000);

function check(cond, what) {
  if (!cond) throw new Error('check failed: ' + what);
  console.log('ok - ' + what);
}

async function api(method, p, cred, body) {
  const headers = cred ? { Authorization: 'Bearer ' + cred } : {};
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  const res = await fetch(BASE + p, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  let data = null;
  try { data = await res.json(); } catch (e) { data = null; }
  return { status: res.status, body: data };
}

// The chart module's arithmetic, in node (the same file the page loads).
function chartsUnitTest() {
  const C = require(path.join(__dirname, '..', '..', 'src', 'server', 'web', 'charts.js'));
  const same = (a, b) => JSON.stringify(a) === JSON.stringify(b);
  check(same(C.niceTicks(0, 1, 5), [0, 0.2, 0.4, 0.6, 0.8, 1]), 'charts: ticks of [0, 1] are steps of 0.2');
  check(same(C.niceTicks(0, 0.3, 3), [0, 0.1, 0.2, 0.3]), 'charts: ticks carry no floating-point noise (0.3, not 0.30000000000000004)');
  check(same(C.niceTicks(-3, 17, 4), [0, 5, 10, 15]), 'charts: ticks stay inside the domain, on multiples of the step');
  check(same(C.niceTicks(10, 0, 2), [0, 5, 10]), 'charts: a reversed domain gives the same ticks');
  check(same(C.niceTicks(7, 7, 5), [7]) && same(C.niceTicks(NaN, 1, 5), []), 'charts: an empty or invalid domain gives one or no tick');
  for (const [lo, hi, n] of [[0, 1234, 5], [0.001, 0.0173, 4], [0, 3e6, 6], [-50, 50, 4]]) {
    const t = C.niceTicks(lo, hi, n);
    const step = t[1] - t[0];
    const mant = step / Math.pow(10, Math.floor(Math.log10(step) + 1e-9));
    check(t.length >= 2 && t.length <= 2 * n + 1 && [1, 2, 5, 10].some((m) => Math.abs(mant - m) < 1e-6),
      'charts: ' + t.length + ' ticks of [' + lo + ', ' + hi + '] step ' + step + ' (1, 2 or 5 x 10^k)');
  }
  check(same(C.niceDomain(0, 7.3, 4), [0, 8]) && same(C.niceDomain(0, 0, 4), [0, 1]) && same(C.niceDomain(3, 3, 4), [0, 6]),
    'charts: domains widen to nice ends; a flat series still gets an axis');
  const y = C.linearScale([0, 10], [200, 0]);
  check(y(0) === 200 && y(10) === 0 && y(2.5) === 150 && y.invert(150) === 2.5, 'charts: a linear scale maps and inverts (y grows downwards)');
  const tt = C.timeTicks(1000, 4600, 6);
  check(tt.length >= 4 && tt.every((t) => t % 600 === 0 && t >= 1000 && t <= 4600), 'charts: time ticks of an hour fall on round 10-minute marks');
  check(C.timeTicks(0, 86400, 6).every((t) => t % 14400 === 0 || t % 21600 === 0), 'charts: time ticks of a day fall on round hours');
  check(C.formatNumber(12345) === '12.3k' && C.formatNumber(0.01234) === '0.012' && C.formatNumber(null) === '–' && C.formatNumber(2.5) === '2.5',
    'charts: numbers are shortened for ticks and tooltips');
}

async function main() {
  for (const [k, v] of Object.entries({ PVG_BASE_URL: BASE, PVG_ADMIN_KEY: ADMIN, PVG_USER_TOKEN: TOKEN, PVG_USER_ID: USER,
    PVG_SPARE_KEY: SPARE, PVG_SPARE_KEY_ID: SPARE_ID }))
    if (!v) throw new Error(k + ' is not set');
  chartsUnitTest();
  fs.mkdirSync(SHOTS, { recursive: true });
  const browser = await chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  });
  const context = await browser.newContext({ acceptDownloads: true, viewport: { width: 1200, height: 900 } });
  context.setDefaultTimeout(15000);
  const foreign = [];
  const consoleErrors = [];
  context.on('request', (req) => {
    const u = req.url();
    if (!u.startsWith(BASE) && !u.startsWith('blob:') && !u.startsWith('data:')) foreign.push(u);
  });
  const shot = async (page, name) => {
    await page.screenshot({ path: path.join(SHOTS, name + '.png'), fullPage: true });
    console.log('screenshot ' + path.join(SHOTS, name + '.png'));
  };
  let r;
  // The alerts and fairness panels read routes this server may lack (404:
  // the panel says so, and the browser logs the 404 it fetched).
  const alertsRoute = (await api('GET', '/v1/admin/alerts?state=all', ADMIN)).status;
  const fairnessRoute = (await api('GET', '/v1/admin/fairness', ADMIN)).status;
  const dashboardConsole = (m) => {
    const u = (m.location() && m.location().url) || '';
    const lacking = (alertsRoute === 404 && u.includes('/v1/admin/alerts')) || (fairnessRoute === 404 && u.includes('/v1/admin/fairness'));
    if (m.type() === 'error' && !(lacking && m.text().includes('404'))) consoleErrors.push(m.text() + ' (' + u + ')');
  };
  try {
    // ---- operator dashboard ----
    let page = await context.newPage();
    page.on('console', dashboardConsole);
    await page.goto(BASE + '/dashboard#key=' + ADMIN);
    await page.waitForSelector('#volume [data-kpi="users"]');
    const users = Number(await page.textContent('#volume [data-kpi="users"] .v'));
    check(users > 0, 'dashboard shows the number of users (' + users + ')');
    check(Number(await page.textContent('#volume [data-kpi="events"] .v')) > 0, 'dashboard shows events');
    await page.waitForSelector('#budgets tr[data-purpose="total"]');
    const spent = await page.textContent('#budgets tr[data-purpose="total"] td:nth-child(2)');
    check(Number(spent) > 0, 'dashboard shows the privacy budget spent by the store (' + spent + ')');
    check((await page.textContent('#model')).includes('generation'), 'dashboard shows the model in service');
    check((await page.textContent('#evaluation tr[data-k="10"]')).includes('0.4125'), 'dashboard shows the last evaluation (recall@10)');
    check((await page.textContent('#status')).includes('live'), 'dashboard is polling');
    check(!page.url().includes('key='), 'the key is removed from the address bar');
    await shot(page, 'dashboard');
    await page.close();

    // ---- shop demo (operator key, demo shopper list) ----
    page = await context.newPage();
    page.on('console', (m) => { if (m.type() === 'error') consoleErrors.push(m.text()); });
    await page.goto(BASE + '/shop#key=' + ADMIN + '&users=' + encodeURIComponent(USER));
    await page.waitForSelector('#recs .card');
    check((await page.textContent('#recs-kind')) === 'personalised', 'shop shows personalised recommendations');
    const recs = await page.$$('#recs .card');
    check(recs.length > 0 && recs.length <= 8, 'shop shows ' + recs.length + ' recommendations');
    check(/£\d+\.\d\d/.test(await page.textContent('#recs')), 'recommendations show prices');
    await page.waitForSelector('#popular .card');
    check((await page.$$('#popular .card')).length > 0, 'shop shows the DP popular list');
    await recs[0].click();
    await page.waitForSelector('#similar .card');
    check((await page.$$('#similar .card')).length > 0, 'clicking an item shows similar items');
    await shot(page, 'shop');

    // ---- the search box: typed with two misspellings, corrected, a price facet ----
    await page.fill('#search-q', 'hart holdr');
    await page.waitForSelector('#search-results .card');
    const hits = await page.$$eval('#search-results .card', (cs) => cs.map((c) => c.getAttribute('data-item')));
    check(hits.includes('85123A'), 'search finds 85123A for "hart holdr": ' + hits);
    check((await page.textContent('#search-note')).includes('"hart" read as "heart"'), 'search shows the correction');
    await page.fill('#search-q', 'holder ');
    await page.waitForFunction(() => document.querySelectorAll('#search-results .card').length === 2);
    await page.click('#search-facets button[data-facet]');
    await page.waitForFunction(() => document.querySelectorAll('#search-results .card').length === 1);
    check((await page.$$('#search-results .card')).length === 1, 'a price facet narrows the search');
    await shot(page, 'shop-search');
    await page.close();

    // ---- shop demo as the shopper (their token): views and cart additions are recorded ----
    const userPath = '/v1/users/' + encodeURIComponent(USER);
    const countEvents = async (type, item) => {
      const x = await api('GET', userPath + '/data', TOKEN);
      return x.body.events.filter((e) => e.type === type && e.item === item).length;
    };
    page = await context.newPage();
    page.on('console', (m) => { if (m.type() === 'error' && !m.text().includes('422')) consoleErrors.push(m.text()); });
    await page.goto(BASE + '/shop#token=' + TOKEN + '&user=' + encodeURIComponent(USER));
    await page.waitForSelector('#recs .card');
    check((await page.textContent('#recs-kind')) === 'personalised', 'the shopper sees their own recommendations with their token');
    const first = await page.getAttribute('#recs .card', 'data-item');
    const viewsBefore = await countEvents('view', first);
    await page.click('#recs .card[data-item="' + first + '"] .title');
    await page.waitForFunction(() => document.getElementById('record-status').textContent.startsWith('recorded'));
    check(await countEvents('view', first) === viewsBefore + 1, 'opening an item recorded a view of ' + first + ' as the shopper');
    await page.click('#recs .card[data-item="' + first + '"] button[data-cart]');
    await page.waitForFunction(() => document.getElementById('record-status').textContent.includes('added to your cart'));
    check(await countEvents('cart', first) === 1, 'the cart button recorded a cart addition');
    await shot(page, 'shop-shopper');
    r = await api('PATCH', userPath + '/consent', TOKEN, { personalization: false, analytics: false });
    check(r.status === 200 && r.body.personalization === false && r.body.analytics === false, 'the shopper switches both purposes off');
    await page.click('#recs .card[data-item="' + first + '"] button[data-cart]');
    await page.waitForFunction(() => document.getElementById('record-status').textContent.startsWith('not recorded'));
    check((await page.textContent('#record-status')).includes('does not consent'), 'without consent the page says the event was refused, and why');
    check(await countEvents('cart', first) === 1, 'without consent nothing was recorded');
    await shot(page, 'shop-shopper-no-consent');
    r = await api('PATCH', userPath + '/consent', TOKEN, { personalization: true, analytics: true });
    check(r.status === 200 && r.body.personalization === true, 'consent back on');
    await page.close();

    // ---- privacy portal with the shopper's own token ----
    page = await context.newPage();
    page.on('console', (m) => { if (m.type() === 'error' && !m.text().includes('401')) consoleErrors.push(m.text()); });
    await page.goto(BASE + '/portal#user=' + encodeURIComponent(USER) + '&token=' + TOKEN);
    await page.waitForFunction(() => document.getElementById('status').textContent === 'account open');
    check((await page.textContent('#summary')).includes('events'), 'portal shows what is held');
    check((await page.$$('#purposes tr[data-purpose]')).length >= 2, 'portal lists the purposes');
    check(await page.isChecked('#consent-personalization'), 'personalisation consent starts on');
    // the event dates are the events' own (purchases of November 2010), not the import's
    const summary = await page.textContent('#summary');
    check(summary.includes('from 2010-11-29 to '), 'the portal dates the events by their own times: ' + summary);
    // the purpose texts are the API's, word for word
    const consent = (await api('GET', userPath + '/consent', TOKEN)).body;
    for (const p of consent.purposes) {
      check((await page.textContent('#purposes tr[data-purpose="' + p.name + '"] td:nth-child(2)')) === p.description,
        'the purpose table shows the API\'s text for ' + p.name);
      if (p.consent)
        check((await page.textContent('label[for="consent-' + p.consent + '"]')).includes(p.description),
          'the ' + p.consent + ' switch is labelled with the API\'s text for ' + p.name);
    }
    // who accessed the data: the shopper's audit entries, newest first
    await page.waitForSelector('#audit tr[data-seq]');
    const audit = (await api('GET', userPath + '/audit', TOKEN)).body;
    const rows = await page.$$eval('#audit tr[data-seq]', (trs) => trs.map((tr) => ({
      actor: tr.dataset.actor, cells: [...tr.children].map((td) => td.textContent) })));
    check(rows.length > 0 && rows.length <= audit.total, 'the portal lists ' + rows.length + ' accesses to the data');
    check(rows.every((x) => /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$/.test(x.cells[0])), 'each access shows an ISO time');
    check(rows[0].cells[2] === 'audit_read' && rows[0].actor === 'you', 'the newest access is this reading, by the shopper');
    check(rows.some((x) => x.actor === 'operator' && x.cells[2] === 'recommend'), 'the operator\'s recommendations for the shopper are listed');
    check(rows.every((x) => x.cells[3] !== '' && x.cells[4] !== ''), 'each access shows its purpose and outcome');
    check(!(await page.textContent('#audit')).includes('key:'), 'no operator credential id is shown');
    await shot(page, 'portal-open');

    await page.uncheck('#consent-personalization');
    await page.waitForFunction(() => document.getElementById('consent-status').textContent.includes('personalization off'));
    r = await api('GET', '/v1/users/' + encodeURIComponent(USER) + '/consent', TOKEN);
    check(r.status === 200 && r.body.personalization === false && r.body.analytics === true,
      'the consent switch reached the server, and only that switch changed');
    check((await page.textContent('#purposes tr[data-purpose="personalization"] td:last-child')) === 'no', 'the purpose table shows personalisation inactive');
    r = await api('GET', '/v1/users/' + encodeURIComponent(USER) + '/recommendations', TOKEN);
    check(r.status === 200 && r.body.personalized === false, 'consent off gives non-personalised recommendations');
    await shot(page, 'portal-consent-off');

    const [download] = await Promise.all([page.waitForEvent('download'), page.click('#download')]);
    const file = path.join(SHOTS, 'export.json');
    await download.saveAs(file);
    const exp = JSON.parse(fs.readFileSync(file, 'utf8'));
    check(exp.user === USER && Array.isArray(exp.events) && exp.events.length > 0, 'the download is the export (' + exp.events.length + ' events)');

    page.once('dialog', (d) => d.accept());
    await page.click('#delete');
    await page.waitForFunction(() => document.getElementById('data-status').textContent === 'account deleted');
    r = await api('GET', '/v1/users/' + encodeURIComponent(USER) + '/data', ADMIN);
    check(r.status === 404, 'after deletion the user is gone (404)');
    r = await api('GET', '/v1/users/' + encodeURIComponent(USER) + '/data', TOKEN);
    check(r.status === 401, 'after deletion the token is revoked (401)');
    await shot(page, 'portal-deleted');
    await page.close();

    // ---- the dashboard's charts after that traffic, and an operator action ----
    // more traffic of every kind: errors, events accepted through the server
    for (let i = 0; i < 5; i++) await api('GET', '/v1/no-such-route-' + i, ADMIN);
    await api('GET', '/v1/stats', 'pvgk_0000000000000000_wrong');
    r = await api('POST', '/v1/events', ADMIN, { events: [{ user: '17002', type: 'view', item: '71053' }, { user: '17003', type: 'view', item: '22752' }] });
    check(r.status === 200 && r.body.accepted === 2, 'two events accepted through the server');
    const ts = (await api('GET', '/v1/admin/timeseries?window=1h', ADMIN)).body;
    const sum = (a) => a.reduce((x, v) => x + v, 0);
    check(sum(ts.series.requests) > 20 && sum(ts.series.client_errors) >= 6 && sum(ts.series.events_accepted) >= 4,
      'the time series counted the traffic (' + sum(ts.series.requests) + ' requests, ' + sum(ts.series.client_errors) + ' 4xx, ' +
      sum(ts.series.events_accepted) + ' events)');
    page = await context.newPage();
    page.on('console', dashboardConsole);
    await page.goto(BASE + '/dashboard#key=' + ADMIN);
    await page.waitForSelector('#chart-requests svg .series path');
    await page.waitForSelector('#chart-models svg rect.chart-bar');
    const pathPoints = async (sel) => page.$$eval(sel, (ps) => ps.map((p) => (p.getAttribute('d').match(/[ML]/g) || []).length));
    const reqPts = await pathPoints('#chart-requests svg .series[data-series="requests"] path');
    check(reqPts.length === 1 && reqPts[0] >= 2, 'the requests chart draws a line of ' + reqPts[0] + ' points since the server started');
    const yTicks = await page.$$eval('#chart-requests .axis-y text.tick', (ts) => ts.map((t) => t.textContent));
    check(yTicks.length >= 2 && Number(yTicks[yTicks.length - 1].replace('k', 'e3')) >= Math.max(...ts.series.requests),
      'the requests axis reaches the busiest step (' + yTicks.join(', ') + ')');
    check((await page.$$('#chart-requests .axis-x text.tick')).length >= 2, 'the time axis has ticks');
    for (const p of ['p50', 'p95', 'p99'])
      check((await page.$$('#chart-latency .series[data-series="' + p + '"] path, #chart-latency .series[data-series="' + p + '"] circle')).length > 0, 'the latency chart draws ' + p);
    check((await page.$$('#chart-errors .series[data-series="4xx"] path, #chart-errors .series[data-series="4xx"] circle')).length > 0 &&
      (await page.$$('#chart-errors .chart-legend-item')).length === 2, 'the error-rate chart draws 4xx (and has a 4xx/5xx legend)');
    check((await page.$$('#chart-ingest .series[data-series="events"] path')).length === 1, 'the ingest chart draws the events accepted');
    const budgetSeries = await page.$$eval('#chart-budget .series', (gs) => gs.map((g) => g.dataset.series));
    check(budgetSeries.includes('popular_list'), 'the budget chart shows the purposes that spent: ' + budgetSeries.join(', '));
    const bars = await page.$$('#chart-models rect.chart-bar');
    check(bars.length === 2, 'the model chart shows recall and NDCG of the build in service');
    // the charts are redrawn every 10 s (a redraw drops the tooltip): hover again if one came between
    const hoverTip = async (chart, target, right, want) => {
      // the right edge may be a step just begun (no value yet): step left a little on each retry
      for (let i = 0; i < 8; i++) {
        // away first, and a little elsewhere each time: a hover where the mouse already is moves nothing
        await page.mouse.move(0, 0);
        const el = await page.$(chart + ' ' + target);
        const bb = await el.boundingBox();
        await el.hover({ position: { x: right ? Math.max(1, bb.width - 3 - 4 * i) : bb.width / 2 + i, y: bb.height / 2 + (i % 3) } });
        const text = await page.waitForFunction(([sel, re]) => {
          const t = document.querySelector(sel + ' .chart-tip');
          return t && !t.hidden && new RegExp(re).test(t.textContent) ? t.textContent : null;
        }, [chart, want.source], { timeout: 4000 }).then((h) => h.jsonValue()).catch(() => '');
        if (text) return text;
      }
      return '';
    };
    const tip = await hoverTip('#chart-models', 'rect.chart-bar', false, /recall@10: 0\.41/);
    check(tip.includes('gen 1') && tip.includes('evaluated'), 'hovering a bar shows its value in a tooltip: ' + tip);
    const lineTip = await hoverTip('#chart-requests', '.chart-hit', true, /requests: /);
    check(/\d{4}-\d\d-\d\d \d\d:\d\d:\d\dZ/.test(lineTip) && lineTip.includes('requests: '), 'hovering the line chart shows the step\'s time and value: ' + lineTip);
    if (alertsRoute === 404) {
      await page.waitForSelector('#alerts-section[data-state="unavailable"]');
      check((await page.textContent('#alerts')).includes('not available'), 'without access monitoring the alerts panel says it is not available');
    } else {
      await page.waitForSelector('#alerts-section[data-state="ok"]');
      check((await page.$$('#chart-alerts svg.chart-svg')).length === 1, 'the alerts panel draws alerts over time');
    }
    if (fairnessRoute === 404) {
      await page.waitForSelector('#fairness-section[data-state="unavailable"]');
      check((await page.textContent('#fairness-status')).includes('privguide audit fairness --save'), 'without a fairness report the panel says how to make one');
    } else {
      await page.waitForSelector('#fairness-section[data-state="ok"]');
      check((await page.$$('#chart-fairness rect.chart-bar')).length > 0, 'the fairness panel draws bars per group');
    }
    check((await page.$$('#chart-requests svg.chart-svg, #chart-latency svg.chart-svg, #chart-errors svg.chart-svg, #chart-ingest svg.chart-svg, #chart-budget svg.chart-svg, #chart-models svg.chart-svg')).length === 6,
      'six charts are drawn as inline SVG');
    await shot(page, 'dashboard-charts');

    // revoke the spare admin key from the page (after a confirm dialog)
    check((await api('GET', '/v1/stats', SPARE)).status === 200, 'the spare admin key works before');
    await page.waitForSelector('#keys tr[data-key="' + SPARE_ID + '"] button[data-revoke]');
    check((await page.$$('#keys tr[data-key] button[data-revoke]')).length === 1, 'only the other key has a Revoke button (not the page\'s own)');
    let asked = '';
    page.once('dialog', (d) => { asked = d.message(); d.accept(); });
    await page.click('#keys tr[data-key="' + SPARE_ID + '"] button[data-revoke]');
    await page.waitForSelector('#keys tr[data-key="' + SPARE_ID + '"][data-state="revoked"]');
    check(asked.includes(SPARE_ID), 'the page asked for confirmation naming the key');
    check((await page.textContent('#keys-status')).includes('done'), 'the page says the key is revoked');
    check((await api('GET', '/v1/stats', SPARE)).status === 401, 'the revoked key is refused (401)');
    await shot(page, 'dashboard-key-revoked');

    // rotate the master key from the page; the shoppers' data stays readable
    page.once('dialog', (d) => { asked = d.message(); d.accept(); });
    await page.click('#rotate');
    await page.waitForFunction(() => document.getElementById('keys-status').textContent.startsWith('master key rotated'));
    check(asked.includes('Rotate the master key'), 'rotating asks for confirmation first');
    const rotated = await page.textContent('#keys-status');
    check(/rotated: [1-9]\d* data keys rewrapped/.test(rotated), 'the page reports the rotation: ' + rotated);
    r = await api('GET', '/v1/users/17002/data', ADMIN);
    check(r.status === 200 && r.body.events.length > 0, 'after the rotation a shopper\'s records still open (' + r.body.events.length + ' events)');
    await page.close();

    // ---- the alerts and fairness panels against their HTTP contracts ----
    // (answers of the contract's shape served to this page by the browser,
    // whether or not this server has the routes; the actions' requests are
    // caught and checked)
    const now = new Date().toISOString().replace(/\.\d+Z$/, 'Z');
    const alerts = [
      { id: 7, rule: 'many_shoppers_read', severity: 'high', credential: '00aa11bb22cc33dd', opened: now, state: 'open',
        summary: 'one key read 480 shoppers in 5 min (baseline 12)', evidence: [101, 102, 103], action: 'rate_limited' },
      { id: 6, rule: 'auth_failure_storm', severity: 'warning', credential: 'key:44ee55ff66aa77bb', opened: now, state: 'acknowledged',
        summary: '300 failed authentications in 1 min', evidence: [90], action: 'suspended' },
    ];
    const fairness = { generated: now, group_by: 'gender', k: 20, model: 'ials',
      groups: [{ group: 'F', users: 273, recall: 0.21, recall_ci: [0.18, 0.24], ndcg: 0.17, ndcg_ci: [0.15, 0.19], coverage: 0.31, popularity_bias: 0.62 },
        { group: 'M', users: 670, recall: 0.25, recall_ci: [0.23, 0.27], ndcg: 0.2, ndcg_ci: [0.19, 0.21], coverage: 0.44, popularity_bias: 0.58 }],
      gaps: { recall: 0.04, recall_ci: [0.0, 0.08] }, mitigation: { method: 'calibrated re-ranking', recall_gap_after: 0.01 }, dp: null };
    const actions = [];
    page = await context.newPage();
    page.on('console', (m) => { if (m.type() === 'error') consoleErrors.push(m.text()); });
    await page.route(/\/v1\/admin\/(alerts|fairness|credentials\/[0-9a-f]{16}\/(suspend|resume))/, (route) => {
      const u = new URL(route.request().url());
      if (route.request().method() === 'POST') actions.push(u.pathname);
      const body = u.pathname === '/v1/admin/fairness' ? fairness : u.pathname === '/v1/admin/alerts' ? { alerts } : { ok: true };
      route.fulfill({ status: 200, contentType: 'application/json', body: JSON.stringify(body) });
    });
    await page.goto(BASE + '/dashboard#key=' + ADMIN);
    await page.waitForSelector('#alerts tr[data-alert]');
    check((await page.$$('#alerts tr[data-alert]')).length === 1, 'the alerts panel lists the open alert');
    check((await page.textContent('#alerts tr[data-alert="7"]')).includes('480 shoppers') &&
      (await page.textContent('#alerts tr[data-alert="7"]')).includes('101, 102, 103'), 'an alert shows its summary and evidence');
    await page.waitForSelector('#chart-alerts .series[data-series="high"]');
    check((await page.$$eval('#chart-alerts .series', (gs) => gs.map((g) => g.dataset.series))).join() === 'high,warning',
      'alerts over time are drawn per severity');
    page.once('dialog', (d) => d.accept());
    await page.click('#alerts button[data-ack="7"]');
    await page.waitForFunction(() => document.getElementById('alerts-status').textContent.includes('done'));
    page.once('dialog', (d) => d.accept());
    await page.click('#alerts button[data-suspend="00aa11bb22cc33dd"]');
    await page.waitForFunction(() => /suspend 00aa11bb22cc33dd: done/.test(document.getElementById('alerts-status').textContent));
    await page.selectOption('#alerts-state', 'all');
    await page.waitForSelector('#alerts tr[data-alert="6"]');
    page.once('dialog', (d) => d.accept());
    await page.click('#alerts button[data-resume="44ee55ff66aa77bb"]');
    await page.waitForFunction(() => /resume 44ee55ff66aa77bb: done/.test(document.getElementById('alerts-status').textContent));
    check(actions.join() === '/v1/admin/alerts/7/ack,/v1/admin/credentials/00aa11bb22cc33dd/suspend,/v1/admin/credentials/44ee55ff66aa77bb/resume',
      'acknowledge, suspend and resume call their routes: ' + actions.join(', '));
    await page.waitForSelector('#fairness-section[data-state="ok"]');
    check((await page.$$('#chart-fairness rect.chart-bar')).length === 4 && (await page.$$('#chart-fairness .whisker')).length === 4,
      'the fairness chart draws recall and NDCG per group with their intervals');
    check((await page.$$('#fairness tr[data-group]')).length === 2 && (await page.textContent('#fairness tr[data-group="F"]')).includes('[0.180, 0.240]'),
      'the fairness table lists each group with its intervals');
    check((await page.textContent('#fairness tr[data-row="mitigation"]')).includes('calibrated re-ranking'), 'the mitigation is shown');
    await shot(page, 'dashboard-alerts-fairness');
    await page.close();

    check(foreign.length === 0, 'no request left the server (no CDN): ' + foreign.join(', '));
    check(consoleErrors.length === 0, 'no console errors: ' + consoleErrors.join(' | '));
  } finally {
    await browser.close();
  }
}

main().then(() => { clearTimeout(watchdog); console.log('PASS'); process.exit(0); })
  .catch((e) => { clearTimeout(watchdog); console.error('FAIL: ' + (e && e.stack || e)); process.exit(1); });
