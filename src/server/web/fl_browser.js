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

  const modules = new Map(); // base -> the module's promise (one instance per page)
  function loadModule(base) {
    if (!modules.has(base)) {
      const p = instantiate(base);
      modules.set(base, p);
      p.catch(() => modules.delete(base));
    }
    return modules.get(base);
  }

  // a fresh instance of the module; withBuild: its bytes fetched here and
  // their SHA-256 kept as M.pvgBuild (a round kept by one build is resumed
  // only by the same: its memory layout is that build's)
  async function instantiate(base, withBuild) {
    if (typeof global.PvgFlWasm !== 'function') {
      await new Promise((resolve, reject) => {
        const s = document.createElement('script');
        s.src = base + 'pvg_fl_client.js';
        s.onload = resolve;
        s.onerror = () => reject(new Error('cannot load ' + s.src + ' (build it: wasm/build.sh)'));
        document.head.appendChild(s);
      });
    }
    if (!withBuild) return global.PvgFlWasm({ locateFile: (f) => base + f });
    const r = await fetch(base + 'pvg_fl_client.wasm');
    if (!r.ok) throw new Error('cannot load ' + base + 'pvg_fl_client.wasm: HTTP ' + r.status);
    const bytes = new Uint8Array(await r.arrayBuffer());
    const digest = new Uint8Array(await crypto.subtle.digest('SHA-256', bytes));
    const M = await global.PvgFlWasm({ locateFile: (f) => base + f, wasmBinary: bytes });
    M.pvgBuild = Array.from(digest, (b) => b.toString(16).padStart(2, '0')).join('');
    return M;
  }

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

  // the history of opts.events as item indices into opts.items (events of
  // unknown items and item records skipped)
  function historyOf(items, events) {
    const index = new Map();
    items.forEach((id, i) => index.set(String(id), i));
    const hist = [];
    for (const e of events) {
      if (!e || e.item === undefined || e.type === 'item') continue;
      const i = index.get(String(e.item));
      if (i !== undefined) hist.push(i);
    }
    return hist;
  }

  // Retry-After in seconds (1..60; dflt when absent or malformed), as the C client
  function retryAfter(r, dflt = 1) {
    const h = (r.headers.get('Retry-After') || '').trim();
    const v = /^[0-9]{1,9}$/.test(h) ? parseInt(h, 10) : NaN;
    return Number.isFinite(v) && v >= 1 ? Math.min(v, 60) : dflt;
  }

  // opts: token (the shopper's), items (the server's item ids, in its
  // order), events ([{item, type}] in the native JSONL fields; events of
  // unknown items are skipped) or history (item indices instead), rounds
  // (0: until the server finishes), allowNoDp, maxEpsilon (10), delta
  // (1e-5), q (1), assumedRounds (0), topK (10), server ('' = this origin),
  // base (where the module is; default: next to this script), timeoutMs
  // (600000), onStatus(text), longPoll (true: wait at the server for the
  // round to move on, docs/fl-protocol.md; false: poll at retry_ms),
  // keepBroadcast (res.broadcast: the last broadcast's bytes, public, and
  // res.broadcastRound: the coordinator's round it was fetched for),
  // keepUpdate (tests of the aggregate only: returns the update vector),
  // signal (an AbortSignal: stops the client, its requests included),
  // persist(round) (awaited before each message is posted and after each
  // broadcast: round = {memory, stack, handle, broadcast, broadcastRound, pending
  // (kept before a message is posted: a resumed client posts it again)}, the
  // client's whole state, secrets included, for the caller to seal and
  // keep), resume (such a round: the client goes on from it in a fresh
  // module, with a plain STATE poll instead of a join; no other option
  // but token, items, topK, the transport's and persist is read then).
  // res: rounds, refused, lastRefusal, recommendations, stats (the STATE
  // requests, long polls among them, 429/503 answers, fellBack).
  async function run(opts) {
    const o = Object.assign({ rounds: 1, allowNoDp: false, maxEpsilon: 10, delta: 1e-5, q: 1,
      assumedRounds: 0, topK: 10, server: '', timeoutMs: 600000, keepUpdate: false,
      longPoll: true, keepBroadcast: false, onStatus: () => {} }, opts);
    const base = o.base || run.base;
    // a client that keeps or resumes its round has a module of its own (its
    // memory is what is kept, and taken back)
    const M = o.persist || o.resume ? await instantiate(base, true) : await loadModule(base);
    let h = 0;
    if (o.resume) {
      const mem = o.resume.memory, [lo, hi] = o.resume.stack;
      if (o.resume.build !== M.pvgBuild || lo !== M._pvgw_stack_low() || hi !== M._pvgw_stack_high()) {
        throw new Error('fl client: the round was kept by another build of the module');
      }
      const used = mem.length + (hi - lo);
      if (M._pvgw_memory_reserve(used) < 0) throw new Error('fl client: cannot reserve ' + used + ' bytes to resume');
      M.HEAPU8.set(mem.subarray(0, lo), 0);
      M.HEAPU8.set(mem.subarray(lo), hi);
      mem.fill(0);
      h = o.resume.handle;
    } else {
      const hist = o.history ? Array.from(o.history) : historyOf(o.items, o.events);
      const n = hist.length;
      const pItems = M._malloc(4 * Math.max(n, 1));
      const pW = M._malloc(4 * Math.max(n, 1));
      new Uint32Array(M.HEAPU32.buffer, pItems, n).set(hist);
      new Float32Array(M.HEAPF32.buffer, pW, n).fill(1);
      h = M._pvgw_new(pItems, pW, n, o.allowNoDp ? 1 : 0, o.maxEpsilon, o.delta, o.q,
        o.assumedRounds, o.rounds, o.keepUpdate ? 1 : 0, o.items.length);
      new Uint32Array(M.HEAPU32.buffer, pItems, n).fill(0);
      M._free(pItems);
      M._free(pW);
      hist.fill(0);
      if (!h) throw new Error('fl client: ' + M.UTF8ToString(M._pvgw_new_error()));
    }
    const err = () => new Error(M.UTF8ToString(M._pvgw_error(h)));
    const hdr = { Authorization: 'Bearer ' + o.token, 'Content-Type': 'application/octet-stream' };
    // every request and wait ends when the caller's signal fires or timeoutMs
    // has passed (a server that never answers, or answers slowly, included)
    const stop = new AbortController();
    const onAbort = () => stop.abort();
    if (o.signal) {
      if (o.signal.aborted) stop.abort();
      else o.signal.addEventListener('abort', onAbort, { once: true });
    }
    const deadline = setTimeout(onAbort, o.timeoutMs);
    const nap = (ms) => new Promise((resolve, reject) => {
      if (stop.signal.aborted) return reject(new Error('fl client: stopped'));
      const done = () => { stop.signal.removeEventListener('abort', off); resolve(); };
      const off = () => { clearTimeout(t); reject(new Error('fl client: stopped')); };
      const t = setTimeout(done, ms);
      stop.signal.addEventListener('abort', off, { once: true });
    });
    // 429/503: asked again after the server's Retry-After (200 ms without one)
    const req = async (method, path, body) => {
      for (let attempt = 0; ; attempt++) {
        const r = await fetch(o.server + path, { method, headers: hdr, body, cache: 'no-store', signal: stop.signal });
        if ((r.status === 429 || r.status === 503) && attempt < 50) {
          await r.arrayBuffer();
          await nap(1000 * retryAfter(r, 0.2));
          continue;
        }
        return r;
      }
    };
    // copies bytes into the module, calls f(ptr, len), frees them
    const withBytes = (bytes, f) => {
      const p = M._malloc(Math.max(bytes.length, 1));
      M.HEAPU8.set(bytes, p);
      try { return f(p, bytes.length); } finally { M._free(p); }
    };
    // the transport's figures: STATE requests (long polls among them), the
    // 429/503 answers to them, and whether the server turned out not to long-poll
    const stats = { stateRequests: 0, longPolls: 0, busy: 0, fellBack: false };
    let update = null, broadcast = null, broadcastRound = 0;
    if (o.resume) {
      broadcast = o.resume.broadcast || null;
      broadcastRound = o.resume.broadcastRound || 0;
    }
    // the round kept before each message goes out and after each broadcast:
    // the memory below the break (secrets included: the caller seals it)
    // pending: kept with the message the core just handed out, before it is posted
    // (the stack's region left out: no frame is live between calls)
    const persist = async (pending) => {
      if (!o.persist) return;
      const used = M._pvgw_memory_used(), lo = M._pvgw_stack_low(), hi = M._pvgw_stack_high();
      if (!(lo <= hi && hi <= used)) throw new Error('fl client: unexpected memory layout (stack ' + lo + '..' + hi + ', break ' + used + ')');
      const memory = new Uint8Array(used - (hi - lo));
      memory.set(M.HEAPU8.subarray(0, lo), 0);
      memory.set(M.HEAPU8.subarray(hi, used), lo);
      await o.persist({ memory, stack: [lo, hi], handle: h, broadcast, broadcastRound, pending, build: M.pvgBuild });
    };
    const t0 = Date.now();
    const timedOut = () => Date.now() - t0 > o.timeoutMs;
    // long polling (docs/fl-protocol.md): after a WAIT the next STATE request
    // parks at the server until the round or phase changes; an answer to it
    // without the "waited" flag comes from a server that does not long-poll
    // (then retry_ms from then on), and a 503 (every slot taken) asks for no
    // wait for Retry-After seconds, polling at retry_ms meanwhile
    let longPoll = !!o.longPoll, waiting = false, askedWait = false, noWaitUntil = 0, rejoined = false;
    // the round and phase the last long poll waited on ("wait=1.R.P"), and when it was asked
    let askedOn = '', askedAt = 0;
    const seenOn = () => {
      const q = M._pvgw_wait_query(h, 0);
      return q ? M.UTF8ToString(q).replace(/\.[0-9]+$/, '') : '';
    };
    try {
      // resumed: the message the core had handed out when the round was kept
      // is posted again, the same bytes (it may not have gone out; a server
      // that has it refuses the replay), then the state as it is now (a plain
      // poll); else a join
      if (o.resume && o.resume.pending) {
        const p = M._pvgw_msg(h), len = M._pvgw_msg_len(h);
        if (p && len) {
          const m = await req('POST', '/v1/fl/messages', M.HEAPU8.slice(p, p + len));
          await m.arrayBuffer();
        }
      }
      let r = o.resume ? await req('GET', '/v1/fl/state') : await req('POST', '/v1/fl/join');
      if (r.status === 404 && o.resume) { rejoined = true; r = await req('POST', '/v1/fl/join'); }
      if (r.status !== 200) throw new Error((o.resume ? 'resuming: ' : 'POST /v1/fl/join: ') + 'HTTP ' + r.status + ' ' + await r.text());
      let body = new Uint8Array(await r.arrayBuffer());
      for (;;) {
        if (timedOut()) throw new Error('fl client: timed out');
        if (stop.signal.aborted) throw new Error('fl client: stopped');
        const a = withBytes(body, (p, len) => M._pvgw_state(h, p, len));
        if (a < 0) throw err();
        const answeredWait = askedWait;
        askedWait = false;
        o.onStatus(ACTION[a]);
        if (a === 3) break;
        if (a === 1) {
          const round = M._pvgw_round(h);
          const b = await req('GET', '/v1/fl/broadcast?round=' + round);
          if (b.status === 404) {
            if (M._pvgw_broadcast(h, round, 0, 0) < 0) throw err();
            await persist(false);
          } else if (b.status === 200) {
            // the core checks the exact length the STATE announced (and that
            // announcement against the catalogue); the body is read as a
            // stream and refused once it passes the cap, whatever its headers say
            const bc = await readCapped(b, MAX_BROADCAST);
            if (withBytes(bc, (p, len) => M._pvgw_broadcast(h, round, p, len)) < 0) throw err();
            if (o.keepBroadcast) { broadcast = bc; broadcastRound = round; }
            await persist(false);
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
          await persist(true); // kept before it goes: a resumed client never makes it again
          const m = await req('POST', '/v1/fl/messages', msg);
          await m.arrayBuffer();
          // refused (late, a replay): the next STATE says whether it is held
        } else {
          if (longPoll && answeredWait && !M._pvgw_waited(h)) {
            longPoll = false;
            stats.fellBack = true;
          }
          // a wait answered at once with nothing changed (a server that says
          // "waited" but does not, or a second client of this shopper whose
          // wait ends this one's): the next request after retry_ms, as a
          // plain poll's, not at once (no loop at the network's pace)
          const early = answeredWait && Date.now() - askedAt < 100 && seenOn() === askedOn;
          if (longPoll && !early && Date.now() >= noWaitUntil) waiting = true;
          else await nap(Math.max(10, M._pvgw_wait_ms(h)));
        }
        // the next STATE: a long poll after a WAIT, else a plain one
        for (;;) {
          let path = '/v1/fl/state', asked = false;
          if (waiting) {
            const left = Math.max(0, o.timeoutMs - (Date.now() - t0));
            const q = M._pvgw_wait_query(h, Math.min(M._pvgw_max_wait_ms(), left));
            if (q) {
              const qs = M.UTF8ToString(q);
              path += '?' + qs;
              asked = true;
              askedOn = qs.replace(/\.[0-9]+$/, '');
              askedAt = Date.now();
            }
          }
          waiting = false;
          stats.stateRequests++;
          if (asked) stats.longPolls++;
          r = await fetch(o.server + path, { method: 'GET', headers: hdr, cache: 'no-store', signal: stop.signal });
          if (r.status === 429 || r.status === 503) {
            stats.busy++;
            // a long poll refused (every wait slot taken): plain polls for
            // Retry-After; a plain poll refused (the server is busy): the
            // next one after Retry-After (200 ms without one)
            if (asked) noWaitUntil = Date.now() + 1000 * retryAfter(r);
            await r.arrayBuffer();
            if (timedOut()) throw new Error('fl client: timed out');
            await nap(asked ? 200 : 1000 * retryAfter(r, 0.2));
            continue;
          }
          if (r.status === 404 && !rejoined) { // the server forgot this client (expired): join again once
            rejoined = true;
            await r.arrayBuffer();
            r = await req('POST', '/v1/fl/join');
            if (r.status !== 200) throw new Error('POST /v1/fl/join (again): HTTP ' + r.status + ' ' + await r.text());
            body = new Uint8Array(await r.arrayBuffer());
            break;
          }
          if (r.status !== 200) throw new Error('GET ' + path + ': HTTP ' + r.status + ' ' + await r.text());
          rejoined = false;
          askedWait = asked;
          body = new Uint8Array(await r.arrayBuffer());
          break;
        }
      }
      const res = { rounds: M._pvgw_rounds(h), refused: M._pvgw_refused(h),
        lastRefusal: M.UTF8ToString(M._pvgw_last_refusal(h)), recommendations: [], stats };
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
      if (broadcast) { res.broadcast = broadcast; res.broadcastRound = broadcastRound; }
      return res;
    } catch (e) {
      // a request or a wait cut short: say which of the two ended it
      if (stop.signal.aborted) {
        throw new Error(o.signal && o.signal.aborted ? 'fl client: stopped'
          : 'fl client: timed out after ' + o.timeoutMs + ' ms');
      }
      throw e;
    } finally {
      clearTimeout(deadline);
      if (o.signal) o.signal.removeEventListener('abort', onAbort);
      M._pvgw_free(h);
    }
  }

  // The shopper's user factor (Float32Array of k) for a broadcast and their
  // history (item indices), solved in the module as the round's update
  // solves it; it never leaves the page.
  async function userFactor(bc, history, base) {
    const M = await loadModule(base || run.base);
    const n = history.length;
    const pb = M._malloc(Math.max(bc.length, 1)), pi = M._malloc(4 * Math.max(n, 1)), pf = M._malloc(4 * 256);
    try {
      M.HEAPU8.set(bc, pb);
      new Uint32Array(M.HEAPU32.buffer, pi, n).set(history);
      const k = M._pvgw_user_factor(pb, bc.length, pi, n, pf);
      if (k < 0) throw new Error('user factor: ' + M.UTF8ToString(M._pvgw_new_error()));
      const f = new Float32Array(M.HEAPF32.buffer, pf, k).slice();
      new Uint8Array(M.HEAPU8.buffer, pf, 4 * 256).fill(0);
      new Uint32Array(M.HEAPU32.buffer, pi, n).fill(0);
      return f;
    } finally {
      M._free(pb);
      M._free(pi);
      M._free(pf);
    }
  }

  // The item factors of a broadcast (docs/federated.md's wire format: k at
  // byte 8, n_items at 12, V row-major float32 from byte 88): public.
  function itemFactors(bc) {
    const dv = new DataView(bc.buffer, bc.byteOffset, bc.byteLength);
    const k = dv.getUint32(8, true), nItems = dv.getUint32(12, true), round = dv.getUint32(16, true);
    if (bc.length < 88 + 4 * nItems * k) throw new Error('broadcast: truncated item factors');
    const V = new Float32Array(nItems * k);
    for (let i = 0; i < nItems * k; i++) V[i] = dv.getFloat32(88 + 4 * i, true);
    return { k, nItems, round, V };
  }

  // On device: the top k items by V u (accumulated in double, as the
  // module's scoring), the shopper's own items excluded, ties to the lower
  // index (pvg_fl_client_recommend's order).
  function rank(V, nItems, k, u, own, topK) {
    const skip = new Set(own);
    const sc = [];
    for (let i = 0; i < nItems; i++) {
      if (skip.has(i)) continue;
      let s = 0;
      for (let j = 0; j < k; j++) s += V[i * k + j] * u[j];
      sc.push({ index: i, score: Math.fround(s) });
    }
    sc.sort((x, y) => (y.score - x.score) || (x.index - y.index));
    return sc.slice(0, topK);
  }

  const cur = global.document && global.document.currentScript;
  run.base = cur ? cur.src.replace(/[^/]*$/, '') : '';
  global.PvgFl = { run, historyOf, userFactor, itemFactors, rank, loadModule: (b) => loadModule(b || run.base) };
})(typeof window !== 'undefined' ? window : globalThis);
