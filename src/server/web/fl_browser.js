// fl_browser.js - the federated-training client in the browser
// (docs/federated.md, "The browser client"). The client core is privguide's
// C (src/fl/fl_client_core.c, fedcf.c, the SecAgg+ client, libsodium),
// compiled to WebAssembly by wasm/build.sh into pvg_fl_client.js/.wasm,
// which must sit next to this file. This script only makes the requests of
// docs/fl-protocol.md and copies bytes in and out of the module's memory:
// every decision (what to send, what to refuse) is the C core's. The
// shopper's events and user factor stay in this page; only SecAgg messages
// are posted, with the shopper's token in the Authorization header.
//
//   const res = await PvgFl.run({token, items, events, rounds: 1});
//   res.recommendations  // [{item, score}], ranked on this device
'use strict';
(function (global) {
  const ACTION = ['wait', 'broadcast', 'send', 'finished'];
  // the native client's cap on an answer: 4 PVG_SECAGG_MAX_DIM + 4 MiB (a
  // broadcast's item factors are fewer words than the update dimension)
  const MAX_BROADCAST = 4 * 2 ** 28 + 2 ** 22;

  function loadModule(base) {
    if (typeof global.PvgFlWasm === 'function') {
      return global.PvgFlWasm({ locateFile: (f) => base + f });
    }
    return new Promise((resolve, reject) => {
      const s = document.createElement('script');
      s.src = base + 'pvg_fl_client.js';
      s.onload = () => resolve(global.PvgFlWasm({ locateFile: (f) => base + f }));
      s.onerror = () => reject(new Error('cannot load ' + s.src + ' (build it: wasm/build.sh)'));
      document.head.appendChild(s);
    });
  }

  const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

  // opts: token (the shopper's), items (the server's item ids, in its
  // order), events ([{item, type}] in the native JSONL fields; events of
  // unknown items are skipped), rounds (0: until the server finishes),
  // allowNoDp, maxEpsilon (10), delta (1e-5), q (1), assumedRounds (0),
  // topK (10), server ('' = this origin), base (where the module is;
  // default: next to this script), timeoutMs (600000), onStatus(text),
  // keepUpdate (tests of the aggregate only: returns the update vector).
  // the body of r, refused once more than cap bytes have arrived (a
  // Content-Length may be absent, or the compressed size)
  async function readCapped(r, cap) {
    const reader = r.body.getReader();
    const parts = [];
    let n = 0;
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      n += value.length;
      if (n > cap) {
        await reader.cancel();
        throw new Error('GET /v1/fl/broadcast: body larger than ' + cap + ' bytes');
      }
      parts.push(value);
    }
    const out = new Uint8Array(n);
    let o = 0;
    for (const p of parts) { out.set(p, o); o += p.length; }
    return out;
  }

  async function run(opts) {
    const o = Object.assign({ rounds: 1, allowNoDp: false, maxEpsilon: 10, delta: 1e-5, q: 1,
      assumedRounds: 0, topK: 10, server: '', timeoutMs: 600000, keepUpdate: false,
      onStatus: () => {} }, opts);
    const base = o.base || run.base;
    const M = await loadModule(base);
    const index = new Map();
    o.items.forEach((id, i) => index.set(String(id), i));
    const hist = [];
    for (const e of o.events) {
      if (e.item === undefined || e.type === 'item') continue;
      const i = index.get(String(e.item));
      if (i !== undefined) hist.push(i);
    }
    const n = hist.length;
    const pItems = M._malloc(4 * Math.max(n, 1));
    const pW = M._malloc(4 * Math.max(n, 1));
    new Uint32Array(M.HEAPU32.buffer, pItems, n).set(hist);
    new Float32Array(M.HEAPF32.buffer, pW, n).fill(1);
    const h = M._pvgw_new(pItems, pW, n, o.allowNoDp ? 1 : 0, o.maxEpsilon, o.delta, o.q,
      o.assumedRounds, o.rounds, o.keepUpdate ? 1 : 0, o.items.length);
    M._free(pItems);
    M._free(pW);
    hist.fill(0);
    if (!h) throw new Error('fl client: ' + M.UTF8ToString(M._pvgw_new_error()));
    const err = () => new Error(M.UTF8ToString(M._pvgw_error(h)));
    const hdr = { Authorization: 'Bearer ' + o.token, 'Content-Type': 'application/octet-stream' };
    const req = async (method, path, body) => {
      for (let attempt = 0; ; attempt++) {
        const r = await fetch(o.server + path, { method, headers: hdr, body, cache: 'no-store' });
        if ((r.status === 429 || r.status === 503) && attempt < 50) { await sleep(200); continue; }
        return r;
      }
    };
    // copies bytes into the module, calls f(ptr, len), frees them
    const withBytes = (bytes, f) => {
      const p = M._malloc(Math.max(bytes.length, 1));
      M.HEAPU8.set(bytes, p);
      try { return f(p, bytes.length); } finally { M._free(p); }
    };
    let update = null;
    const t0 = Date.now();
    try {
      let r = await req('POST', '/v1/fl/join');
      if (r.status !== 200) throw new Error('POST /v1/fl/join: HTTP ' + r.status + ' ' + await r.text());
      let body = new Uint8Array(await r.arrayBuffer());
      for (;;) {
        if (Date.now() - t0 > o.timeoutMs) throw new Error('fl client: timed out');
        const a = withBytes(body, (p, len) => M._pvgw_state(h, p, len));
        if (a < 0) throw err();
        o.onStatus(ACTION[a]);
        if (a === 3) break;
        if (a === 1) {
          const round = M._pvgw_round(h);
          const b = await req('GET', '/v1/fl/broadcast?round=' + round);
          if (b.status === 404) {
            if (M._pvgw_broadcast(h, round, 0, 0) < 0) throw err();
          } else if (b.status === 200) {
            // the core checks the exact length the STATE announced (and that
            // announcement against the catalogue); the body is read as a
            // stream and refused once it passes the cap, whatever its headers say
            const bc = await readCapped(b, MAX_BROADCAST);
            if (withBytes(bc, (p, len) => M._pvgw_broadcast(h, round, p, len)) < 0) throw err();
            if (o.keepUpdate) {
              const pd = M._malloc(4);
              const pv = M._pvgw_last_update(h, pd);
              const d = M.HEAPU32[pd >> 2];
              M._free(pd);
              if (pv) update = new Uint32Array(M.HEAPU32.buffer, pv, d).slice();
            }
          } else {
            throw new Error('GET /v1/fl/broadcast: HTTP ' + b.status + ' ' + await b.text());
          }
        } else if (a === 2) {
          const p = M._pvgw_msg(h), len = M._pvgw_msg_len(h);
          const msg = M.HEAPU8.slice(p, p + len);
          await req('POST', '/v1/fl/messages', msg);
          // refused (late, a replay): the next STATE says whether it is held
        } else {
          await sleep(M._pvgw_wait_ms(h));
        }
        r = await req('GET', '/v1/fl/state');
        if (r.status !== 200) throw new Error('GET /v1/fl/state: HTTP ' + r.status + ' ' + await r.text());
        body = new Uint8Array(await r.arrayBuffer());
      }
      const res = { rounds: M._pvgw_rounds(h), refused: M._pvgw_refused(h),
        lastRefusal: M.UTF8ToString(M._pvgw_last_refusal(h)), recommendations: [] };
      const k = o.topK;
      const pi = M._malloc(4 * k), ps = M._malloc(4 * k);
      const got = M._pvgw_recommend(h, k, pi, ps);
      if (got >= 0) {
        const ii = new Uint32Array(M.HEAPU32.buffer, pi, got), ss = new Float32Array(M.HEAPF32.buffer, ps, got);
        for (let j = 0; j < got; j++) res.recommendations.push({ item: o.items[ii[j]], index: ii[j], score: ss[j] });
      }
      M._free(pi);
      M._free(ps);
      if (update) res.update = update;
      return res;
    } finally {
      M._pvgw_free(h);
    }
  }
  const cur = global.document && global.document.currentScript;
  run.base = cur ? cur.src.replace(/[^/]*$/, '') : '';
  global.PvgFl = { run };
})(typeof window !== 'undefined' ? window : globalThis);
