// fl_store.js - what the shop page's on-device training keeps in this
// browser (docs/federated.md, "The browser client"), per shopper, in
// IndexedDB (database "privguide-fl"):
//   - keys:  {user, key, kid}: an AES-GCM 256 key made here by WebCrypto
//            when the shopper opts in, not extractable (the page can use it,
//            never read its bytes); kid names it;
//   - state: {user, optedIn, lastRound, pub, sealed}: pub is public (the
//            round's item ids and item factors), sealed = {iv, ct} is the
//            personal part (the shopper's user factor and the indices of
//            their own items) encrypted with that key, the user id and pub
//            (digests of its items and factors) as additional data;
//   - rounds: {user, handle, stack, broadcast, broadcastRound, pending, build, iv, ct}: a round
//            under way (fl_browser.js's persist), so that a reload resumes
//            it: ct is the client module's memory but its stack (the shopper's SecAgg
//            secret keys and masks for the round, their update, history and
//            factor) sealed with the same key, the user id, handle, stack,
//            pending, broadcastRound, the broadcast's digest and build (the
//            SHA-256 of the module that kept it: only the same build resumes
//            it) as additional data; broadcast is public. Dropped when the
//            round's client ends.
// Nothing is written for a shopper who is not opted in under the key the
// writer started with: an opt-out (or the account deleted) in another tab
// stops a client still running there from keeping anything again.
// erase(user) deletes all three (opting out, or the account deleted in the
// portal): without the key, a ciphertext left behind in a disk block cannot
// be read.
'use strict';
(function (global) {
  const DB = 'privguide-fl';

  function idb(req) {
    return new Promise((resolve, reject) => {
      req.onsuccess = () => resolve(req.result);
      req.onerror = () => reject(req.error);
    });
  }

  let dbp = null;
  function open() {
    if (!dbp) {
      const req = indexedDB.open(DB, 2);
      req.onupgradeneeded = () => {
        const db = req.result;
        for (const name of ['keys', 'state', 'rounds'])
          if (!db.objectStoreNames.contains(name)) db.createObjectStore(name, { keyPath: 'user' });
      };
      dbp = idb(req);
      dbp.catch(() => { dbp = null; });
    }
    return dbp;
  }

  async function tx(stores, mode, f) {
    const db = await open();
    const t = db.transaction(stores, mode);
    const done = new Promise((resolve, reject) => {
      t.oncomplete = () => resolve();
      t.onerror = () => reject(t.error);
      t.onabort = () => reject(t.error || new Error('IndexedDB transaction aborted'));
    });
    const out = await f(t);
    await done;
    return out;
  }

  const get = (user, store) => tx([store], 'readonly', (t) => idb(t.objectStore(store).get(user)));

  // the shopper's key {key, kid}: made when they opt in (not extractable), and
  // only then; null once erased (opted out, or the account deleted)
  async function keyOf(user) {
    const k = await get(user, 'keys');
    return k ? { key: k.key, kid: k.kid } : null;
  }

  // f(t) in one transaction with the check that the shopper is still opted
  // in under the key kid: an opt-out or the account's deletion in another tab
  // (or a later opt-in with a new key) meanwhile refuses it, nothing written
  async function putIfOptedIn(user, kid, stores, f) {
    const names = ['state', 'keys'].concat(stores.filter((x) => x !== 'state' && x !== 'keys'));
    const ok = await tx(names, 'readwrite', async (t) => {
      const s = await idb(t.objectStore('state').get(user));
      const k = await idb(t.objectStore('keys').get(user));
      if (!s || !s.optedIn || !k || k.kid !== kid) return false;
      await f(t, s);
      return true;
    });
    if (!ok) throw new Error('fl store: ' + user + ' is not opted in here (stopped, or erased meanwhile): nothing kept');
  }

  const enc = (s) => new TextEncoder().encode(s);
  const hex = (b) => Array.from(new Uint8Array(b), (x) => x.toString(16).padStart(2, '0')).join('');
  const sha256 = async (bytes) => hex(await crypto.subtle.digest('SHA-256', bytes || new Uint8Array(0)));

  // the additional data of the sealed state: the user and the public part
  // kept beside it (round, item ids and factors), so that none of it can be
  // changed without the decryption failing
  async function adState(user, pub) {
    if (!pub) return enc('privguide-fl v2 ' + JSON.stringify([user, null]));
    const V = new Uint8Array(pub.V.buffer, pub.V.byteOffset, pub.V.byteLength);
    return enc('privguide-fl v2 ' + JSON.stringify([user, pub.round, pub.k, pub.nItems,
      await sha256(enc(JSON.stringify(pub.items))), await sha256(V)]));
  }

  // the round's: the user, the handle, the stack's bounds, the pending flag,
  // the broadcast's round and bytes (a changed handle would make the resumed
  // client read its message, or its whole state, from elsewhere in its memory)
  async function adRound(user, r) {
    return enc('privguide-fl round v2 ' + JSON.stringify([user, r.handle, r.stack, !!r.pending,
      r.broadcastRound || 0, r.broadcast ? await sha256(r.broadcast) : null, r.build || '']));
  }

  // secret: {factor: Float32Array, own: [item index]}
  async function seal(kk, secret, adata) {
    const k = secret.factor.length, n = secret.own.length;
    const plain = new ArrayBuffer(8 + 4 * k + 4 * n);
    const dv = new DataView(plain);
    dv.setUint32(0, k, true);
    dv.setUint32(4, n, true);
    for (let i = 0; i < k; i++) dv.setFloat32(8 + 4 * i, secret.factor[i], true);
    for (let i = 0; i < n; i++) dv.setUint32(8 + 4 * k + 4 * i, secret.own[i], true);
    const iv = crypto.getRandomValues(new Uint8Array(12));
    try {
      const ct = await crypto.subtle.encrypt({ name: 'AES-GCM', iv, additionalData: adata }, kk.key, plain);
      return { iv, ct: new Uint8Array(ct) };
    } finally {
      new Uint8Array(plain).fill(0);
    }
  }

  async function unseal(user, sealed, adata) {
    const k0 = await get(user, 'keys');
    if (!k0 || !sealed) return null;
    const plain = await crypto.subtle.decrypt({ name: 'AES-GCM', iv: sealed.iv, additionalData: adata },
      k0.key, sealed.ct);
    const dv = new DataView(plain);
    const k = dv.getUint32(0, true), n = dv.getUint32(4, true);
    if (plain.byteLength !== 8 + 4 * k + 4 * n) throw new Error('fl store: sealed state of the wrong length');
    const factor = new Float32Array(k), own = [];
    for (let i = 0; i < k; i++) factor[i] = dv.getFloat32(8 + 4 * i, true);
    for (let i = 0; i < n; i++) own.push(dv.getUint32(8 + 4 * k + 4 * i, true));
    new Uint8Array(plain).fill(0);
    return { factor, own };
  }

  // The shopper's state: {optedIn, lastRound, pub, secret} (secret
  // decrypted, or null), or null when nothing is kept.
  async function load(user) {
    const s = await get(user, 'state');
    if (!s) return null;
    let secret = null;
    if (s.sealed) secret = await unseal(user, s.sealed, await adState(user, s.pub));
    return { optedIn: !!s.optedIn, lastRound: s.lastRound || 0, pub: s.pub || null, secret };
  }

  // Keeps a round's outcome: pub ({round, k, nItems, items, V}), secret
  // ({factor, own}: sealed here), the round as lastRound. Refused (throws,
  // nothing written) unless the shopper is opted in (setOptIn) in this browser.
  async function save(user, pub, secret) {
    const kk = await keyOf(user);
    if (!kk) throw new Error('fl store: ' + user + ' is not opted in here: nothing kept');
    const sealed = await seal(kk, secret, await adState(user, pub));
    await putIfOptedIn(user, kk.kid, ['state'], (t) => idb(t.objectStore('state').put({
      user, optedIn: true, lastRound: pub.round, pub, sealed })));
  }

  // Opting in makes the shopper's key (kept until erase); opting out here is
  // erase (what the page does).
  async function setOptIn(user, on) {
    let nk = null;
    if (on && !(await keyOf(user))) {
      const key = await crypto.subtle.generateKey({ name: 'AES-GCM', length: 256 }, false, ['encrypt', 'decrypt']);
      nk = { user, key, kid: hex(crypto.getRandomValues(new Uint8Array(16))) };
    }
    await tx(['state', 'keys'], 'readwrite', async (t) => {
      const st = t.objectStore('state');
      const s = (await idb(st.get(user))) || { user, lastRound: 0, pub: null, sealed: null };
      s.optedIn = !!on;
      await idb(st.put(s));
      if (nk && !(await idb(t.objectStore('keys').get(user)))) await idb(t.objectStore('keys').put(nk));
    });
  }

  // Keeps the round under way (fl_browser.js's persist argument); the
  // memory copy is wiped once sealed. Refused (throws, nothing written)
  // unless the shopper is opted in here under the same key as when the
  // round's client started to keep it.
  async function saveRound(user, r) {
    const kk = await keyOf(user);
    try {
      if (!kk) throw new Error('fl store: ' + user + ' is not opted in here: nothing kept');
      const iv = crypto.getRandomValues(new Uint8Array(12));
      const ct = new Uint8Array(await crypto.subtle.encrypt({ name: 'AES-GCM', iv,
        additionalData: await adRound(user, r) }, kk.key, r.memory));
      await putIfOptedIn(user, kk.kid, ['rounds'], (t) => idb(t.objectStore('rounds').put({
        user, handle: r.handle, stack: r.stack, broadcast: r.broadcast, broadcastRound: r.broadcastRound,
        pending: !!r.pending, build: r.build || '', iv, ct })));
    } finally {
      r.memory.fill(0);
    }
  }

  // The round kept (fl_browser.js's resume argument), or null; throws when
  // it does not decrypt (or any of what is kept beside it was changed).
  async function loadRound(user) {
    const r = await get(user, 'rounds');
    const k = await get(user, 'keys');
    if (!r || !k) return null;
    const mem = await crypto.subtle.decrypt({ name: 'AES-GCM', iv: r.iv, additionalData: await adRound(user, r) },
      k.key, r.ct);
    return { memory: new Uint8Array(mem), stack: r.stack, handle: r.handle, broadcast: r.broadcast,
      broadcastRound: r.broadcastRound, pending: !!r.pending, build: r.build || '' };
  }

  async function dropRound(user) {
    await tx(['rounds'], 'readwrite', (t) => idb(t.objectStore('rounds').delete(user)));
  }

  // Erases everything kept for the shopper: the state, the round, the key.
  async function erase(user) {
    await tx(['state', 'rounds', 'keys'], 'readwrite', async (t) => {
      await idb(t.objectStore('state').delete(user));
      await idb(t.objectStore('rounds').delete(user));
      await idb(t.objectStore('keys').delete(user));
    });
  }

  global.PvgFlStore = { load, save, setOptIn, erase, saveRound, loadRound, dropRound };
})(typeof window !== 'undefined' ? window : globalThis);
