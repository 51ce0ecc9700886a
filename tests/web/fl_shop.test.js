// fl_shop.test.js - the shop page's on-device training end to end (started
// by tests/test_fl_wasm.c, which runs the server with a round coordinator and
// the C clients of the same round). One Chromium context (its own origin
// storage, kept across reloads) on /shop, signed in with the shopper's token:
//  1. opts in: the page reads the item list and the shopper's export, takes
//     part in round 1 (the WebAssembly client, SecAgg+) and shows
//     "Recommended on this device"; in round 2 it is reloaded right after
//     its second message (SHARES) went out, and the reloaded page resumes
//     the round from what it kept in IndexedDB (no join, no message made
//     again) and completes it;
//  2. what IndexedDB holds: the AES-GCM key is not extractable, the factor
//     is only in the ciphertext;
//  3. reloads: the same list shows from IndexedDB and training resumes (a
//     join after the reload);
//  4. opts out: IndexedDB no longer holds the shopper's state or key, and a
//     reload shows no list and joins nothing;
//  5. the portal's account deletion erases what the page keeps (state put
//     back by the page's own store first).
// Writes what it saw to PVG_FL_OUT as JSON for the C test's checks.
'use strict';
const { chromium } = require('playwright-core');
const fs = require('fs');
const path = require('path');

const BASE = process.env.PVG_BASE_URL;
const WASM = process.env.PVG_WASM_DIR;
const OUT = process.env.PVG_FL_OUT;
const TOKEN = process.env.PVG_USER_TOKEN;
const USER = process.env.PVG_USER_ID;
const CHROMIUM = process.env.PVG_CHROMIUM || '/usr/bin/chromium';

const watchdog = setTimeout(() => { console.error('FAIL: the shop page exceeded 200 s'); process.exit(1); }, 200000);

// what IndexedDB holds for the user (in the page)
async function kept(page, user) {
  return page.evaluate(async (user) => {
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
    const st = await get('state'), k = await get('keys'), rd = await get('rounds');
    db.close();
    const b64 = (u8) => btoa(String.fromCharCode.apply(null, Array.from(u8)));
    const out = { state: !!st, key: !!k, round: !!rd };
    if (rd) {
      out.roundFields = Object.keys(rd).sort();
      out.roundCt = rd.ct.length;
      out.roundOf = rd.broadcastRound;
    }
    if (k) {
      out.keyExtractable = k.key.extractable;
      out.keyAlgorithm = k.key.algorithm.name + '-' + k.key.algorithm.length;
      try { await crypto.subtle.exportKey('raw', k.key); out.exported = true; } catch (e) { out.exported = false; }
    }
    if (st) {
      out.optedIn = st.optedIn;
      out.lastRound = st.lastRound;
      out.fields = Object.keys(st).sort();
      out.pubFields = st.pub ? Object.keys(st.pub).sort() : [];
      out.ct = st.sealed ? b64(st.sealed.ct) : '';
      out.ivLength = st.sealed ? st.sealed.iv.length : 0;
      if (st.pub) out.V = b64(new Uint8Array(st.pub.V.buffer, st.pub.V.byteOffset, st.pub.V.byteLength));
      const s = await window.PvgFlStore.load(user); // decrypted, to check the ciphertext against
      if (s && s.secret) {
        out.factor = b64(new Uint8Array(s.secret.factor.buffer));
        out.own = s.secret.own;
      }
    }
    return out;
  }, user);
}

const listed = (page) => page.$$eval('#fl-recs [data-item]', (cs) => cs.map((c) => c.getAttribute('data-item')));
const statusOf = (page) => page.$eval('#fl-status', (e) => e.textContent);

(async () => {
  const browser = await chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  });
  const out = { steps: [] };
  const logs = [];
  try {
    const context = await browser.newContext();
    context.setDefaultTimeout(150000);
    const page = await context.newPage();
    for (const f of ['pvg_fl_client.js', 'pvg_fl_client.wasm']) {
      await page.route('**/static/' + f, (route) => route.fulfill({
        status: 200,
        contentType: f.endsWith('.wasm') ? 'application/wasm' : 'text/javascript',
        body: fs.readFileSync(path.join(WASM, f)),
      }));
    }
    const sent = [];
    const t0 = Date.now();
    page.on('request', (r) => {
      const body = r.postDataBuffer();
      sent.push({ method: r.method(), url: r.url(), headers: r.headers(),
        body: body ? body.toString('base64') : '', ms: Date.now() - t0 });
    });
    page.on('console', (m) => logs.push(m.text()));
    page.on('pageerror', (e) => logs.push('pageerror: ' + e.message));
    page.on('dialog', (d) => d.accept());
    const joinsSince = (i) => sent.slice(i).filter((q) => q.url.endsWith('/v1/fl/join')).length;

    // 1. sign in, opt in: round 1, and round 2 with a reload after its SHARES
    // after the 6th message the old page's requests to /v1/fl/ are held (never
    // answered: the reload cancels them), so it cannot go on with the round
    // while the script looks and reloads; the reloaded page's go through
    let posted = 0, reloadedAt = -1, holding = false;
    await page.route('**/v1/fl/**', (route) => (holding ? undefined : route.continue()));
    let onReloaded;
    const reloaded = new Promise((resolve, reject) => { onReloaded = { resolve, reject }; });
    page.on('requestfinished', (r) => {
      if (!r.url().endsWith('/v1/fl/messages') || ++posted !== 6) return;
      holding = true;
      (async () => {
        out.midRound = await kept(page, USER);
        reloadedAt = sent.length;
        // the new document's requests go through (the old one's die with it)
        page.once('framenavigated', () => { holding = false; });
        await page.reload();
        onReloaded.resolve();
      })().catch((e) => onReloaded.reject(e));
    });
    await page.goto(BASE + '/shop#token=' + encodeURIComponent(TOKEN) + '&user=' + encodeURIComponent(USER));
    await page.waitForFunction(() => /not taking part/.test(document.getElementById('fl-status').textContent));
    out.visible = await page.isVisible('#fl-section');
    out.joinsBeforeOptIn = joinsSince(0);
    await page.click('#fl-optin');
    await reloaded;
    await page.waitForFunction(() => /training finished on the server|on-device training:|did not take part/.test(
      document.getElementById('fl-status').textContent));
    out.resumed = sent.slice(reloadedAt).filter((q) => q.url.includes('/v1/fl/')).map((q) => q.method + ' ' + q.url.replace(/^.*\/v1\/fl\//, ''));
    out.afterRound = { status: await statusOf(page), list: await listed(page), kept: await kept(page, USER) };
    console.log('ok - opted in: ' + out.afterRound.status + '; ' + out.afterRound.list.length + ' items listed; after the reload in round 2: ' + out.resumed.join(', '));

    // 3. reload: the list from IndexedDB, training resumed
    let mark = sent.length;
    await page.reload();
    await page.waitForFunction(() => document.querySelectorAll('#fl-recs [data-item]').length > 0);
    const listAtOnce = await listed(page);
    await page.waitForFunction(() => /training finished on the server|on-device training:/.test(
      document.getElementById('fl-status').textContent));
    out.afterReload = { list: listAtOnce, status: await statusOf(page), joins: joinsSince(mark) };
    console.log('ok - the round kept mid-round 2: ' + out.midRound.roundCt + ' sealed bytes');
    console.log('ok - reloaded: ' + listAtOnce.length + ' items listed, ' + out.afterReload.joins + ' join(s)');

    // 4. opt out: erased; a reload shows nothing and joins nothing
    await page.click('#fl-optout');
    await page.waitForFunction(() => /stopped/.test(document.getElementById('fl-status').textContent));
    out.afterOptOut = { kept: await kept(page, USER), list: await listed(page) };
    mark = sent.length;
    await page.reload();
    await page.waitForFunction(() => /not taking part/.test(document.getElementById('fl-status').textContent));
    out.afterOptOutReload = { list: await listed(page), joins: joinsSince(mark), kept: await kept(page, USER) };
    console.log('ok - opted out: state ' + out.afterOptOut.kept.state + ', key ' + out.afterOptOut.kept.key);

    // 5. the account deleted in the portal erases what the page keeps
    await page.evaluate(async (user) => {
      await window.PvgFlStore.setOptIn(user, true); // the store keeps nothing for a shopper not opted in
      await window.PvgFlStore.save(user, { round: 9, k: 1, nItems: 1, V: new Float32Array([1]), items: ['x'] },
        { factor: new Float32Array([0.5]), own: [0] });
    }, USER);
    out.beforeDelete = await kept(page, USER);
    await page.goto(BASE + '/portal#token=' + encodeURIComponent(TOKEN) + '&user=' + encodeURIComponent(USER));
    await page.waitForFunction(() => !document.getElementById('delete').disabled);
    await page.click('#delete');
    await page.waitForFunction(() => /account deleted/.test(document.getElementById('data-status').textContent));
    out.deleteStatus = await page.$eval('#data-status', (e) => e.textContent);
    out.afterDelete = await kept(page, USER);
    console.log('ok - account deleted: state ' + out.afterDelete.state + ', key ' + out.afterDelete.key);
    out.sent = sent;
    await context.close();
  } catch (e) {
    throw new Error(e.message + '\n' + logs.join('\n'));
  } finally {
    await browser.close();
  }
  fs.writeFileSync(OUT, JSON.stringify(out));
  clearTimeout(watchdog);
})().catch((e) => { console.error('FAIL: ' + (e && e.stack ? e.stack : e)); process.exit(1); });
