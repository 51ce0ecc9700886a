// assist.test.js - browser tests of the shop's assistant panel, "why this?",
// search suggestions and facets, and the portal's searches and
// conversations, against a live privguide server (started by
// tests/test_server_web_assist.c): playwright-core drives Debian's chromium
// headless. As the signed-in shopper: opens "why this?" on a recommendation
// (the history items that made it rank) and on the popular list; types a
// query and sees suggestions, picks one (a search of the shopper, kept in
// their history), opens a category facet; asks the assistant a two-turn
// question ("a gift for a tea lover under £10", then "cheaper") and checks
// the chips and that every item keeps to them; opens "why this?" on an
// answer; then the portal lists the search and the conversation with both
// turns. An operator key gets no history evidence. Saves a screenshot of
// each step. Exits 0 on success, 1 on the first failure.
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

const price = (t) => { const m = /£(\d+\.\d\d)/.exec(t); return m ? Number(m[1]) : NaN; };

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
  const context = await browser.newContext({ viewport: { width: 1200, height: 900 } });
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
  try {
    // ---- the shop as the shopper: "why this?" on a recommendation ----
    let page = await context.newPage();
    page.on('console', (m) => { if (m.type() === 'error') consoleErrors.push(m.text()); });
    await page.goto(BASE + '/shop#token=' + TOKEN + '&user=' + encodeURIComponent(USER));
    await page.waitForSelector('#recs .card details.why');
    check((await page.textContent('#recs-kind')) === 'personalised', 'the shopper gets personalised recommendations');
    const mine = await api('GET', '/v1/users/' + USER + '/data', TOKEN);
    const bought = new Set(mine.body.events.filter((e) => e.item).map((e) => e.item));
    const hist = await api('GET', '/v1/users/' + USER + '/recommendations?k=8&explain=1', TOKEN);
    const titles = new Map();
    for (const it of hist.body.items) for (const w of it.why) if (w.kind === 'history') titles.set(w.item, w.title);
    check(hist.body.explain.history && titles.size > 0 && [...titles.keys()].every((i) => bought.has(i)),
      'the API names only items of the shopper\'s own history as evidence: ' + [...titles.keys()]);
    const whyRec = page.locator('#recs .card details.why').first();
    await whyRec.locator('summary').click();
    const recWhy = await whyRec.textContent();
    check(/you bought or looked at "/.test(recWhy) && [...titles.values()].some((t) => recWhy.includes(t)),
      '"why this?" on a recommendation names an item the shopper bought: ' + recWhy.replace(/\s+/g, ' ').slice(0, 160));
    check((await page.$$('#similar .card')).length === 0, 'opening "why this?" does not open the item');
    await page.waitForSelector('#popular .card details.why');
    const popWhy = page.locator('#popular .card details.why').first();
    await popWhy.locator('summary').click();
    check((await popWhy.textContent()).includes('#1 in the popular list'), '"why this?" on the popular list gives the DP rank');
    await shot(page, 'shop-why');

    // ---- search: suggestions as you type, pick one, open a facet ----
    await page.click('#search-q');
    await page.keyboard.type('te', { delay: 60 });
    await page.waitForSelector('#search-suggest button[data-suggest="tea"]');
    const sugg = await page.$$eval('#search-suggest button', (bs) => bs.map((b) => b.textContent));
    check(sugg.includes('tea'), 'typing "te" suggests ' + sugg.join(', '));
    await shot(page, 'shop-suggest');
    await page.click('#search-suggest button[data-suggest="tea"]');
    await page.waitForFunction(() => document.querySelector('#search-q').value === 'tea ' &&
      document.querySelector('#search-note').textContent.includes('as you'));
    check((await page.textContent('#search-note')).includes('searched as you'), 'a picked suggestion is a search of the shopper');
    await page.waitForSelector('#search-facets button[data-facet^="tea ("]');
    const facet = await page.textContent('#search-facets button[data-facet^="tea ("]');
    const want = Number(/\((\d+)\)/.exec(facet)[1]);
    await page.click('#search-facets button[data-facet^="tea ("]');
    await page.waitForFunction((n) => {
      const cards = document.querySelectorAll('#search-results .card');
      const b = document.querySelector('#search-facets button[data-facet^="tea ("]');
      return b && !b.classList.contains('secondary') && cards.length === Math.min(n, 8);
    }, want);
    const ids = await page.$$eval('#search-results .card', (cs) => cs.map((c) => c.getAttribute('data-item')));
    check(ids.length === Math.min(want, 8) && ids.every((i) => i.startsWith('T') && i !== 'T06'),
      'the category facet "tea" narrows the results to the ' + want + ' teas: ' + ids);
    const sWhy = page.locator('#search-results .card details.why').first();
    await sWhy.locator('summary').click();
    check((await sWhy.textContent()).includes('matches "tea"'), '"why this?" on a search hit names the word it matched');
    await shot(page, 'shop-search-facet');

    // ---- the assistant: two turns ----
    await page.fill('#assist-msg', 'a gift for a tea lover under £10');
    await page.click('#assist-send');
    await page.waitForSelector('#assist-log .turn[data-turn="1"] .card');
    const t1 = page.locator('#assist-log .turn[data-turn="1"]');
    const chips1 = await t1.locator('.chip').allTextContents();
    check(chips1.includes('under £10.00'), 'the first answer shows the price chip: ' + chips1.join(' | '));
    check(chips1.some((c) => c.includes('tea lover')), 'the first answer shows the recipient chip');
    const p1 = (await t1.locator('.card .price').allTextContents()).map(price);
    check(p1.length >= 2 && p1.every((p) => p <= 10), 'every item of the first answer is under £10: ' + p1);
    const titles1 = await t1.locator('.card .title').allTextContents();
    check(titles1.every((t) => /TEA/.test(t)), 'the first answer is teas: ' + titles1.join(', '));
    check((await t1.locator('.card .reason').first().textContent()).includes('under £10.00'), 'each answer item says why (reason)');
    await page.fill('#assist-msg', 'cheaper');
    await page.press('#assist-msg', 'Enter');
    await page.waitForSelector('#assist-log .turn[data-turn="2"] .card');
    const t2 = page.locator('#assist-log .turn[data-turn="2"]');
    const chips2 = await t2.locator('.chip').allTextContents();
    const cap = price(chips2.find((c) => c.startsWith('under £')) || '');
    check(cap < 10, 'the follow-up lowers the price chip: ' + chips2.join(' | '));
    check(chips2.some((c) => c.startsWith('cheaper')), 'the follow-up shows its reference chip');
    check((await t2.textContent()).includes('refining your last answer'), 'the follow-up refines the last answer');
    const p2 = (await t2.locator('.card .price').allTextContents()).map(price);
    check(p2.length >= 1 && p2.every((p) => p < cap) && Math.max(...p2) < Math.max(...p1),
      'every item of the follow-up is cheaper: ' + p2 + ' (was ' + p1 + ')');
    const aWhy = t2.locator('details.why').first();
    await aWhy.locator('summary').click();
    const aWhyText = await aWhy.textContent();
    check(aWhyText.includes('matches "tea"') && aWhyText.includes('satisfies under £'),
      '"why this?" on an answer gives the matched words and the constraints: ' + aWhyText.replace(/\s+/g, ' ').slice(0, 160));
    check((await page.textContent('#assist-kind')).includes('sealed'), 'the shopper\'s conversation is said to be kept sealed');
    await shot(page, 'shop-assistant');
    await page.close();

    // ---- an operator key: the shopper's history is not shown ----
    page = await context.newPage();
    page.on('console', (m) => { if (m.type() === 'error') consoleErrors.push(m.text()); });
    const opUrls = [];
    page.on('request', (q) => opUrls.push(q.url()));
    await page.goto(BASE + '/shop#key=' + ADMIN + '&users=' + encodeURIComponent(USER));
    await page.waitForSelector('#recs .card details.why');
    const opWhy = page.locator('#recs .card details.why').first();
    await opWhy.locator('summary').click();
    const opText = await opWhy.textContent();
    check(!opText.includes('you bought') && opText.includes('shown only to the shopper'),
      'an operator key gets no history evidence: ' + opText.replace(/\s+/g, ' ').slice(0, 120));
    check(opUrls.some((u) => u.includes('/recommendations')) && !opUrls.some((u) => u.includes('explain=1')),
      'with an operator key the page does not ask for the shopper\'s explanations');
    const opAudit = await api('GET', '/v1/users/' + USER + '/audit', TOKEN);
    check(opAudit.status === 200 && !JSON.stringify(opAudit.body).includes('not_own_token'),
      'an operator\'s view adds no denied explain entry to the shopper\'s audit log');
    await page.close();

    // ---- the portal: the search and the conversation ----
    page = await context.newPage();
    page.on('console', (m) => { if (m.type() === 'error') consoleErrors.push(m.text()); });
    await page.goto(BASE + '/portal#user=' + encodeURIComponent(USER) + '&token=' + TOKEN);
    await page.waitForSelector('#conversations .conv li[data-turn]');
    const conv = await api('GET', '/v1/users/' + USER + '/conversations', TOKEN);
    check(conv.body.conversations.length === 1, 'the API lists one conversation');
    const turns = await page.$$eval('#conversations .conv li[data-turn] .you', (xs) => xs.map((x) => x.textContent));
    check(turns.length === 2 && turns[0] === 'a gift for a tea lover under £10' && turns[1] === 'cheaper',
      'the portal shows the conversation with both turns: ' + turns.join(' / '));
    check((await page.$$('#conversations .conv .chip')).length >= 2, 'the portal shows each turn\'s constraints');
    await page.waitForSelector('#searches tr[data-search]');
    const qs = await page.$$eval('#searches tr[data-search]', (rs) => rs.map((r) => r.getAttribute('data-search')));
    check(qs.includes('tea '), 'the portal shows the search the shopper made: ' + JSON.stringify(qs));
    check(!qs.includes('te'), 'keystrokes typed before picking a suggestion were not kept');
    check(!(await page.isDisabled('#delete-all')) && !(await page.isDisabled('#delete')), 'deleting everything is one click away');
    await shot(page, 'portal-conversations');
    await page.close();

    check(foreign.length === 0, 'the pages fetch nothing outside the server (' + foreign.join(', ') + ')');
    check(consoleErrors.length === 0, 'no console errors (' + consoleErrors.join(' | ') + ')');
  } finally {
    await browser.close();
  }
}

main().then(() => { clearTimeout(watchdog); console.log('PASS'); process.exit(0); })
  .catch((e) => { clearTimeout(watchdog); console.error('FAIL: ' + (e && e.stack || e)); process.exit(1); });
