// fl_wasm.test.js - browser clients of federated training (started by
// tests/test_fl_wasm.c, which runs the server and the C clients of the same
// round). Each browser client is its own Chromium context (its own origin
// storage) on the server's page /static/fl.html; the page's driver
// (src/server/web/fl_browser.js) runs the WebAssembly client core
// (pvg_fl_client.js/.wasm from the build directory, served to the page by
// this script) for one round: it joins with the shopper's token, trains,
// submits through SecAgg+ and ranks items locally. The script records every
// request each page makes and writes, per client, the update vector the
// page computed (kept for this test only), its recommendations, and what
// its requests carried, to PVG_FL_OUT as JSON; the C test checks the
// aggregate and the wire. Exits 0 when every client finished its round.
'use strict';
const { chromium } = require('playwright-core');
const fs = require('fs');
const path = require('path');

const BASE = process.env.PVG_BASE_URL;
const WASM = process.env.PVG_WASM_DIR;
const OUT = process.env.PVG_FL_OUT;
// [{token, events: [...], mode}]: mode 'long' (long-polls, the default),
// 'plain' (longPoll: false: polls at retry_ms), 'old' (long-polls against a
// server that does not: this script strips ?wait= from its STATE requests, so
// the answers lack the "waited" flag; and its first wait is answered 503 with
// Retry-After: 1, as a server whose wait slots are all taken)
const CLIENTS = JSON.parse(process.env.PVG_FL_CLIENTS);
const ITEMS = fs.readFileSync(process.env.PVG_FL_ITEMS, 'utf8').split('\n').filter((s) => s);
const CHROMIUM = process.env.PVG_CHROMIUM || '/usr/bin/chromium';
// The coordinator's clock stands still (no round starts) until this script
// creates this file: once every page has joined, the plain-polling page has
// made HOLD_POLLS STATE requests and the 'old' page's second wait was
// stripped. So the round waits for the polling to be observed, not for a time.
const RELEASE = process.env.PVG_FL_RELEASE;
const HOLD_POLLS = 60;
const T0 = Date.now();
const hold = { joined: 0, allJoinedMs: -1, releaseMs: -1, plainPolls: 0, stripped: false };
function holdCheck() {
  if (hold.releaseMs >= 0 || hold.allJoinedMs < 0) return;
  if (hold.plainPolls >= HOLD_POLLS && (hold.stripped || !CLIENTS.some((c) => c.mode === 'old'))) {
    hold.releaseMs = Date.now() - T0;
    if (RELEASE) fs.writeFileSync(RELEASE, String(hold.releaseMs));
  }
}

const watchdog = setTimeout(() => { console.error('FAIL: browser clients exceeded 200 s'); process.exit(1); }, 200000);

(async () => {
  const browser = await chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  });
  const results = [];
  try {
    await Promise.all(CLIENTS.map(async (cl, ci) => {
      const context = await browser.newContext();
      context.setDefaultTimeout(150000);
      const page = await context.newPage();
      // the module from the build directory (the server's web directory is the source tree)
      for (const f of ['pvg_fl_client.js', 'pvg_fl_client.wasm']) {
        await page.route('**/static/' + f, (route) => route.fulfill({
          status: 200,
          contentType: f.endsWith('.wasm') ? 'application/wasm' : 'text/javascript',
          body: fs.readFileSync(path.join(WASM, f)),
        }));
      }
      const sent = [];
      const t0 = T0; // one time line for every page (ms since the script started)
      page.on('request', (r) => {
        const body = r.postDataBuffer();
        sent.push({ method: r.method(), url: r.url(), headers: r.headers(),
          body: body ? body.toString('base64') : '', ms: Date.now() - t0 });
        if (cl.mode === 'plain' && hold.allJoinedMs >= 0 && r.url().includes('/v1/fl/state')) {
          hold.plainPolls++;
          holdCheck();
        }
      });
      page.on('response', (r) => {
        if (r.url().endsWith('/v1/fl/join') && r.status() === 200 && ++hold.joined === CLIENTS.length) {
          hold.allJoinedMs = Date.now() - T0; // the C clients joined before the pages started
          holdCheck();
        }
      });
      const injected = []; // what this script did to the 'old' client's requests
      if (cl.mode === 'old') {
        await page.route('**/v1/fl/state?*', async (route) => {
          const url = route.request().url();
          if (!/[?&]wait=/.test(url)) return route.continue();
          if (!injected.some((x) => x.kind === '503')) {
            injected.push({ kind: '503', url, ms: Date.now() - t0 });
            return route.fulfill({ status: 503, headers: { 'Retry-After': '1' }, contentType: 'application/json',
              body: '{"error":"busy","message":"fl state: every wait slot is taken","status":503}' });
          }
          injected.push({ kind: 'stripped', url, ms: Date.now() - t0 });
          hold.stripped = true;
          holdCheck();
          return route.continue({ url: url.replace(/\?.*$/, '') });
        });
      }
      const logs = [];
      page.on('console', (m) => logs.push(m.text()));
      page.on('pageerror', (e) => logs.push('pageerror: ' + e.message));
      await page.goto(BASE + '/static/fl.html');
      let res;
      try {
        res = await page.evaluate(async (a) => {
          const r = await window.PvgFl.run({ token: a.token, items: a.items, events: a.events,
            rounds: 1, keepUpdate: true, topK: 10, timeoutMs: 150000, longPoll: a.mode !== 'plain' });
          return { rounds: r.rounds, refused: r.refused, lastRefusal: r.lastRefusal,
            recommendations: r.recommendations, stats: r.stats,
            update: r.update ? Array.from(r.update) : null };
        }, { token: cl.token, items: ITEMS, events: cl.events, mode: cl.mode || 'long' });
      } catch (e) {
        throw new Error('browser client ' + ci + ': ' + e.message + '\n' + logs.join('\n'));
      }
      // the page's own rendering of the list (the same run, through its form)
      results[ci] = Object.assign(res, { sent, injected, mode: cl.mode || 'long', hold });
      const states = sent.filter((q) => q.url.includes('/v1/fl/state')).length;
      console.log('ok - browser client ' + ci + ' (' + (cl.mode || 'long') + '): ' + res.rounds +
        ' round(s), ' + sent.length + ' requests (' + states + ' STATE, ' + res.stats.longPolls +
        ' long polls), ' + res.recommendations.length + ' recommendations');
      await context.close();
    }));
  } finally {
    await browser.close();
  }
  fs.writeFileSync(OUT, JSON.stringify(results));
  clearTimeout(watchdog);
})().catch((e) => { console.error('FAIL: ' + (e && e.stack ? e.stack : e)); process.exit(1); });
