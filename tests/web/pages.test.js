// pages.test.js - browser tests of the three pages against a live privguide
// server (started by tests/test_server_web.c): playwright-core drives
// Debian's chromium headless. Loads each page, checks what it shows, records
// views and cart additions from the shop as the shopper (and sees them
// refused without consent), checks the portal's event dates, purpose texts
// and audit list against the API, flips a consent switch, downloads the
// export, deletes the account, and saves a screenshot of every step. Exits 0
// on success, 1 on the first failure.
'use strict';
const { chromium } = require('playwright-core');
const fs = require('fs');
const path = require('path');

const BASE = process.env.PVG_BASE_URL;
const ADMIN = process.env.PVG_ADMIN_KEY;
const TOKEN = process.env.PVG_USER_TOKEN;
const USER = process.env.PVG_USER_ID;
const SHOTS = process.env.PVG_SCREENSHOT_DIR || path.join(process.cwd(), 'web-screenshots');
const CHROMIUM = process.env.PVG_CHROMIUM || '/usr/bin/chromium';

const watchdog = setTimeout(() => { console.error('FAIL: browser tests exceeded 150 s'); process.exit(1); }, 150000);

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

async function main() {
  for (const [k, v] of Object.entries({ PVG_BASE_URL: BASE, PVG_ADMIN_KEY: ADMIN, PVG_USER_TOKEN: TOKEN, PVG_USER_ID: USER }))
    if (!v) throw new Error(k + ' is not set');
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
  try {
    // ---- operator dashboard ----
    let page = await context.newPage();
    page.on('console', (m) => { if (m.type() === 'error') consoleErrors.push(m.text()); });
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

    check(foreign.length === 0, 'no request left the server (no CDN): ' + foreign.join(', '));
    check(consoleErrors.length === 0, 'no console errors: ' + consoleErrors.join(' | '));
  } finally {
    await browser.close();
  }
}

main().then(() => { clearTimeout(watchdog); console.log('PASS'); process.exit(0); })
  .catch((e) => { clearTimeout(watchdog); console.error('FAIL: ' + (e && e.stack || e)); process.exit(1); });
