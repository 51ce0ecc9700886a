// fl_store.js - what the shop page's on-device training keeps in this
// browser (docs/federated.md, "The browser client"), per shopper, in
// IndexedDB (database "privguide-fl"):
//   - keys:  {user, key}: an AES-GCM 256 key made here by WebCrypto, not
//            extractable (the page can use it, never read its bytes);
//   - state: {user, optedIn, lastRound, pub, sealed}: pub is public (the
//            round's item ids and item factors), sealed = {iv, ct} is the
//            personal part (the shopper's user factor and the indices of
//            their own items) encrypted with that key, the user id as
//            additional data;
//   - rounds: {user, handle, stack, broadcast, broadcastRound, pending, iv, ct}: a round
//            under way (fl_browser.js's persist), so that a reload resumes
//            it: ct is the client module's memory but its stack (the shopper's SecAgg
//            secret keys and masks for the round, their update, history and
//            factor) sealed with the same key; broadcast is public. Dropped
//            when the round's client ends.
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

  // the shopper's key, made on first use (non-extractable)
  async function keyOf(user) {
    const k = await get(user, 'keys');
    if (k) return k.key;
    const key = await crypto.subtle.generateKey({ name: 'AES-GCM', length: 256 }, false, ['encrypt', 'decrypt']);
    await tx(['keys'], 'readwrite', (t) => idb(t.objectStore('keys').put({ user, key })));
    return key;
  }

  const ad = (user) => new TextEncoder().encode('privguide-fl v1 ' + user);

  // secret: {factor: Float32Array, own: [item index]}
  async function seal(user, secret) {
    const key = await keyOf(user);
    const k = secret.factor.length, n = secret.own.length;
    const plain = new ArrayBuffer(8 + 4 * k + 4 * n);
    const dv = new DataView(plain);
    dv.setUint32(0, k, true);
    dv.setUint32(4, n, true);
    for (let i = 0; i < k; i++) dv.setFloat32(8 + 4 * i, secret.factor[i], true);
    for (let i = 0; i < n; i++) dv.setUint32(8 + 4 * k + 4 * i, secret.own[i], true);
    const iv = crypto.getRandomValues(new Uint8Array(12));
    try {
      const ct = await crypto.subtle.encrypt({ name: 'AES-GCM', iv, additionalData: ad(user) }, key, plain);
      return { iv, ct: new Uint8Array(ct) };
    } finally {
      new Uint8Array(plain).fill(0);
    }
  }

  async function unseal(user, sealed) {
    const k0 = await get(user, 'keys');
    if (!k0 || !sealed) return null;
    const plain = await crypto.subtle.decrypt({ name: 'AES-GCM', iv: sealed.iv, additionalData: ad(user) },
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
    if (s.sealed) secret = await unseal(user, s.sealed);
    return { optedIn: !!s.optedIn, lastRound: s.lastRound || 0, pub: s.pub || null, secret };
  }

  // Keeps a round's outcome: pub ({round, k, nItems, items, V}), secret
  // ({factor, own}: sealed here), the round as lastRound; opted in.
  async function save(user, pub, secret) {
    const sealed = await seal(user, secret);
    await tx(['state'], 'readwrite', (t) => idb(t.objectStore('state').put({
      user, optedIn: true, lastRound: pub.round, pub, sealed })));
  }

  async function setOptIn(user, on) {
    await tx(['state'], 'readwrite', async (t) => {
      const st = t.objectStore('state');
      const s = (await idb(st.get(user))) || { user, lastRound: 0, pub: null, sealed: null };
      s.optedIn = !!on;
      await idb(st.put(s));
    });
  }

  const adRound = (user) => new TextEncoder().encode('privguide-fl round v1 ' + user);

  // Keeps the round under way (fl_browser.js's persist argument); the
  // memory copy is wiped once sealed.
  async function saveRound(user, r) {
    const key = await keyOf(user);
    const iv = crypto.getRandomValues(new Uint8Array(12));
    let ct;
    try {
      ct = new Uint8Array(await crypto.subtle.encrypt({ name: 'AES-GCM', iv, additionalData: adRound(user) }, key, r.memory));
    } finally {
      r.memory.fill(0);
    }
    await tx(['rounds'], 'readwrite', (t) => idb(t.objectStore('rounds').put({
      user, handle: r.handle, stack: r.stack, broadcast: r.broadcast, broadcastRound: r.broadcastRound, pending: !!r.pending,
      iv, ct })));
  }

  // The round kept (fl_browser.js's resume argument), or null.
  async function loadRound(user) {
    const r = await get(user, 'rounds');
    const k = await get(user, 'keys');
    if (!r || !k) return null;
    const mem = await crypto.subtle.decrypt({ name: 'AES-GCM', iv: r.iv, additionalData: adRound(user) }, k.key, r.ct);
    return { memory: new Uint8Array(mem), stack: r.stack, handle: r.handle, broadcast: r.broadcast,
      broadcastRound: r.broadcastRound, pending: !!r.pending };
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
