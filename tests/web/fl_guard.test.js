// fl_guard.test.js - the shop page's on-device training against misuse
// (started by tests/test_fl_wasm.c). No privguide server: the page, its
// scripts and the WebAssembly client are served from the source tree by the
// browser context's router, on http://localhost:9 (a secure context), and
// the /v1 API is a fake whose answers each check chooses. Checks:
//  1. another shopper's token: the page signed in as "alice" with bob's
//     token shows nothing of what alice's training kept here, and neither
//     resumes nor drops her round;
//  2. two tabs of one shopper: only one of them trains (a second client of
//     the same shopper would resume the same sealed round, its generator
//     state included, or join again); the second takes over once the first
//     is closed;
//  3. opted out (or the account deleted) elsewhere: a round or a state
//     written afterwards by a client still running is refused, and no key
//     is made again;
//  4. the round kept: its handle, stack bounds and pending flag are
//     authenticated with the ciphertext (a changed handle is refused);
//  5. a server answering 503 with Retry-After: 30 is asked again after 30 s,
//     not every 200 ms, and timeoutMs stops the client;
//  6. a server that never answers: the client stops at timeoutMs;
//  7. a server whose answers to long polls come at once with the "waited"
//     flag and nothing changed (a lie, or a second client of the shopper
//     whose wait answers this one's): polled at retry_ms, not in a loop;
//  8. a round kept by another build of the module (its memory layout may
//     differ even where the stack's bounds are the same) is not resumed.
// Prints "ok - ..." or "not ok - ..." per check; exits non-zero when one failed.
'use strict';
const { chromium } = require('playwright-core');
const fs = require('fs');
const path = require('path');

const WASM = process.env.PVG_WASM_DIR;
const WEB = process.env.PVG_WEB_DIR;
const CHROMIUM = process.env.PVG_CHROMIUM || '/usr/bin/chromium';
const BASE = 'http://localhost:9';

const watchdog = setTimeout(() => { console.error('FAIL: the guard checks exceeded 150 s'); process.exit(1); }, 150000);

const failed = [];
function check(cond, what) {
  if (!cond) {
    failed.push(what);
    console.log('not ok - ' + what);
  } else console.log('ok - ' + what);
}

const ITEMS = ['i0', 'i1', 'i2', 'i3'];
const TOKENS = { pvgt_alice: 'alice', pvgt_bob: 'bob' };

// the fake server: api(route, request, url) may answer a /v1 request first
// (returns true); else the defaults below
async function serve(context, api) {
  await context.route(BASE + '/**', async (route) => {
    const req = route.request();
    const url = new URL(req.url());
    const p = url.pathname;
    const json = (status, o, headers) => route.fulfill({ status, contentType: 'application/json',
      headers: headers || {}, body: JSON.stringify(o) });
    if (p === '/shop') return route.fulfill({ status: 200, contentType: 'text/html',
      body: fs.readFileSync(path.join(WEB, 'shop.html')) });
    if (p.startsWith('/static/')) {
      const f = p.slice(8);
      const file = f.startsWith('pvg_fl_client') ? path.join(WASM, f) : path.join(WEB, f);
      if (!/^[a-z_.]+$/.test(f) || !fs.existsSync(file)) return route.fulfill({ status: 404, body: '' });
      return route.fulfill({ status: 200, body: fs.readFileSync(file), contentType:
        f.endsWith('.wasm') ? 'application/wasm' : f.endsWith('.css') ? 'text/css' : 'text/javascript' });
    }
    if (api && await api(route, req, url)) return undefined;
    const who = TOKENS[(req.headers().authorization || '').replace(/^Bearer /, '')];
    const m = /^\/v1\/users\/([^/]+)\/(consent|data)$/.exec(p);
    if (m) {
      if (!who) return json(401, { error: 'unauthorized', message: 'bad token' });
      if (who !== decodeURIComponent(m[1])) return json(403, { error: 'forbidden', message: 'not your data' });
      return json(200, m[2] === 'data' ? { events: [{ item: 'i1', type: 'view' }] } : { purposes: {} });
    }
    if (p === '/v1/fl/items') return who ? json(200, { n: ITEMS.length, items: ITEMS }) : json(401, { error: 'unauthorized', message: 'bad token' });
    return json(404, { error: 'not_found', message: 'no such route here' });
  });
}

// IndexedDB as the page sees it, for user
const kept = (page, user) => page.evaluate(async (user) => {
  const db = await new Promise((resolve, reject) => {
    const r = indexedDB.open('privguide-fl');
    r.onsuccess = () => resolve(r.result);
    r.onerror = () => reject(r.error);
  });
  const get = (store) => new Promise((resolve, reject) => {
    if (!db.objectStoreNames.contains(store)) return resolve(undefined);
    const q = db.transaction([store]).objectStore(store).get(user);
    q.onsuccess = () => resolve(q.result);
    q.onerror = () => reject(q.error);
  });
  const out = { state: await get('state'), key: !!(await get('keys')), round: !!(await get('rounds')) };
  if (out.state) out.state = { optedIn: out.state.optedIn, lastRound: out.state.lastRound };
  db.close();
  return out;
}, user);

// alice's training as a finished round 7 and a round under way would leave it
const seedAlice = (page) => page.evaluate(async () => {
  await PvgFlStore.setOptIn('alice', true);
  await PvgFlStore.save('alice', { round: 7, k: 2, nItems: 4, items: ['i0', 'i1', 'i2', 'i3'],
    V: new Float32Array([1, 0, 0, 1, 1, 1, 0.5, 0.5]) }, { factor: new Float32Array([1, 1]), own: [1] });
  await PvgFlStore.saveRound('alice', { memory: new Uint8Array(64).fill(7), stack: [16, 32], handle: 40,
    broadcast: null, broadcastRound: 7, pending: true });
});

const listed = (page) => page.$$eval('#fl-recs [data-item]', (cs) => cs.map((c) => c.getAttribute('data-item')));
const statusOf = (page) => page.$eval('#fl-status', (e) => e.textContent);

(async () => {
  const browser = await chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  });
  const logs = [];
  try {
    // 1. another shopper's token
    {
      const context = await browser.newContext();
      context.setDefaultTimeout(30000);
      const fl = [];
      await serve(context, async (route, req, url) => {
        if (url.pathname.startsWith('/v1/fl/')) fl.push(req.headers().authorization);
        return false;
      });
      const page = await context.newPage();
      page.on('console', (m) => logs.push(m.text()));
      await page.goto(BASE + '/shop');
      await seedAlice(page);
      await page.goto(BASE + '/shop?as=bob#token=pvgt_bob&user=alice');
      // the page's last word: refused, or (a client started) the error of
      // reading alice's export with bob's token, after the item list
      await page.waitForFunction(() => /not signed in|on-device training:/.test(document.getElementById('fl-status').textContent));
      check((await listed(page)).length === 0, 'bob\'s token as "alice": none of alice\'s kept list is shown (' +
        JSON.stringify(await statusOf(page)) + ')');
      check(fl.length === 0, 'bob\'s token as "alice": no /v1/fl/ request (' + fl.length + ')');
      check((await kept(page, 'alice')).round, 'bob\'s token as "alice": alice\'s round is neither resumed nor dropped');
      await context.close();
    }

    // 2. two tabs of one shopper: one client
    {
      const context = await browser.newContext();
      context.setDefaultTimeout(30000);
      const joins = [];
      await serve(context, async (route, req, url) => {
        if (url.pathname === '/v1/fl/join' || url.pathname === '/v1/fl/state' || url.pathname === '/v1/fl/messages') {
          joins.push(req.frame().page());
          return true; // held: never answered
        }
        return false;
      });
      const page1 = await context.newPage();
      await page1.goto(BASE + '/shop');
      await page1.evaluate(() => PvgFlStore.setOptIn('alice', true));
      await page1.goto(BASE + '/shop?tab=1#token=pvgt_alice&user=alice');
      await page1.waitForFunction(() => /round under way|waiting for a round/.test(document.getElementById('fl-status').textContent));
      const page2 = await context.newPage();
      await page2.goto(BASE + '/shop#token=pvgt_alice&user=alice');
      // until the second tab says it waits, or (a client started) has asked /v1/fl/
      for (let i = 0; i < 300 && !joins.includes(page2) && !/another tab/.test(await statusOf(page2)); i++)
        await page2.waitForTimeout(100);
      const from2 = joins.filter((p) => p === page2).length;
      check(joins.filter((p) => p === page1).length === 1 && from2 === 0,
        'two tabs of alice: one trains, the other waits (' + JSON.stringify(await statusOf(page2)) + ')');
      await page1.close();
      await page2.waitForFunction(() => /round under way|waiting for a round/.test(document.getElementById('fl-status').textContent));
      for (let i = 0; i < 100 && !joins.includes(page2); i++) await page2.waitForTimeout(100);
      check(joins.includes(page2), 'the first tab closed: the second one trains');
      await context.close();
    }

    // 3. and 4. the store
    {
      const context = await browser.newContext();
      await serve(context, null);
      const page = await context.newPage();
      page.on('console', (m) => logs.push(m.text()));
      await page.goto(BASE + '/shop');
      await seedAlice(page);
      const refused = await page.evaluate(async () => {
        const out = {};
        await PvgFlStore.erase('alice'); // opted out in another tab, or the account deleted
        try {
          await PvgFlStore.saveRound('alice', { memory: new Uint8Array(64), stack: [16, 32], handle: 40,
            broadcast: null, broadcastRound: 8, pending: true });
          out.round = 'kept';
        } catch (e) { out.round = 'refused: ' + e.message; }
        try {
          await PvgFlStore.save('alice', { round: 8, k: 1, nItems: 1, V: new Float32Array([1]), items: ['i0'] },
            { factor: new Float32Array([1]), own: [0] });
          out.state = 'kept';
        } catch (e) { out.state = 'refused: ' + e.message; }
        return out;
      });
      const after = await kept(page, 'alice');
      check(/^refused/.test(refused.round) && /^refused/.test(refused.state) && !after.key && !after.round && !after.state,
        'after an opt-out elsewhere a running client keeps nothing (' + JSON.stringify(refused) + ', ' + JSON.stringify(after) + ')');

      await seedAlice(page);
      const tampered = await page.evaluate(async () => {
        const db = await new Promise((resolve, reject) => {
          const r = indexedDB.open('privguide-fl');
          r.onsuccess = () => resolve(r.result);
          r.onerror = () => reject(r.error);
        });
        const rw = (f) => new Promise((resolve, reject) => {
          const t = db.transaction(['rounds'], 'readwrite');
          const q = t.objectStore('rounds').get('alice');
          q.onsuccess = () => { const v = q.result; f(v); t.objectStore('rounds').put(v); };
          t.oncomplete = resolve;
          t.onerror = () => reject(t.error);
        });
        const out = {};
        for (const [name, f] of [['handle', (v) => { v.handle = 48; }], ['pending', (v) => { v.pending = false; }],
          ['stack', (v) => { v.stack = [16, 24]; }]]) {
          await PvgFlStore.saveRound('alice', { memory: new Uint8Array(64), stack: [16, 32], handle: 40,
            broadcast: null, broadcastRound: 7, pending: true });
          await rw(f);
          try {
            const r = await PvgFlStore.loadRound('alice');
            out[name] = 'loaded handle ' + r.handle + ' pending ' + r.pending + ' stack ' + r.stack;
          } catch (e) { out[name] = 'refused'; }
        }
        db.close();
        return out;
      });
      check(tampered.handle === 'refused' && tampered.pending === 'refused' && tampered.stack === 'refused',
        'a kept round whose handle, pending flag or stack bounds were changed is refused (' + JSON.stringify(tampered) + ')');
      await context.close();
    }

    // 5. and 6. the transport
    {
      const context = await browser.newContext();
      let mode = 'busy';
      const asked = [];
      // an idle STATE (round 1, not sampled), retry_ms 500; waited: flag bit 2
      const idle = (waited) => {
        const b = Buffer.alloc(80);
        b.write('PVFL', 0, 'latin1');
        b[4] = 1;
        b[5] = 1;
        b[8] = 1;
        b[17] = waited ? 4 : 0;
        b.writeUInt32LE(0xffffffff, 20);
        b.writeUInt32LE(500, 60);
        return b;
      };
      await serve(context, async (route, req, url) => {
        if (!url.pathname.startsWith('/v1/fl/')) return false;
        asked.push(Date.now());
        if (mode === 'liar') {
          await route.fulfill({ status: 200, contentType: 'application/octet-stream',
            body: idle(url.searchParams.has('wait')) });
        } else if (mode === 'busy') {
          await route.fulfill({ status: 503, contentType: 'application/json', headers: { 'Retry-After': '30' },
            body: JSON.stringify({ error: 'busy', message: 'every slot is taken' }) });
        }
        return true; // mode 'silent': never answered
      });
      const page = await context.newPage();
      page.on('console', (m) => logs.push(m.text()));
      await page.goto(BASE + '/shop');
      const runFor = (ms) => page.evaluate(async (ms) => {
        const t0 = Date.now();
        const guard = new Promise((resolve) => setTimeout(() => resolve('still running after ' + (ms + 6000) + ' ms'), ms + 6000));
        const r = await Promise.race([guard, PvgFl.run({ token: 'pvgt_alice', items: ['i0', 'i1', 'i2', 'i3'],
          history: [1], timeoutMs: ms }).then(() => 'finished', (e) => 'stopped: ' + e.message)]);
        return { r, ms: Date.now() - t0 };
      }, ms);
      const busy = await runFor(3000);
      check(asked.length <= 2 && /^stopped/.test(busy.r),
        '503 with Retry-After: 30: ' + asked.length + ' request(s) in ' + busy.ms + ' ms (' + busy.r + ')');
      mode = 'silent';
      const silent = await runFor(2000);
      check(/^stopped/.test(silent.r) && silent.ms < 5000,
        'a server that never answers: the client stops at timeoutMs (' + silent.r + ' after ' + silent.ms + ' ms)');
      mode = 'liar';
      asked.length = 0;
      const liar = await runFor(3000);
      check(asked.length <= 16 && /timed out/.test(liar.r),
        'long polls answered at once, "waited" and unchanged: ' + asked.length + ' request(s) in ' + liar.ms + ' ms (' + liar.r + ')');
      // 8. a kept round of another build: refused before its memory is taken back
      mode = 'silent';
      const other = await page.evaluate(async () => {
        const M = await PvgFl.loadModule();
        const lo = M._pvgw_stack_low(), hi = M._pvgw_stack_high();
        const resume = { memory: new Uint8Array(lo + 64), stack: [lo, hi], handle: 16, broadcast: null,
          broadcastRound: 0, pending: false, build: 'another build' };
        try {
          await PvgFl.run({ token: 'pvgt_alice', items: ['i0', 'i1', 'i2', 'i3'], resume, timeoutMs: 1500 });
          return 'resumed';
        } catch (e) { return 'refused: ' + e.message; }
      });
      check(/another build/.test(other), 'a round kept by another build of the module is not resumed (' + other + ')');
      await context.close();
    }
  } catch (e) {
    throw new Error(e.message + '\n' + logs.join('\n'));
  } finally {
    await browser.close();
  }
  clearTimeout(watchdog);
  if (failed.length) {
    console.error('FAIL: ' + failed.length + ' check(s) failed');
    process.exit(1);
  }
})().catch((e) => { console.error('FAIL: ' + (e && e.stack ? e.stack : e)); process.exit(1); });
