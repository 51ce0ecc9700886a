// shop_fl.js - on-device training in the shop page (docs/federated.md, "The
// browser client"). A shopper signed in with their own token may opt in:
// the page then takes part in the rounds of federated training with the
// WebAssembly client (fl_browser.js): it reads the public item list
// (GET /v1/fl/items) and the shopper's own events (their export, GET
// /v1/users/{id}/data, with their token), trains, submits only through
// SecAgg+, and after each round solves the shopper's user factor here and
// ranks the round's public item factors with it: "Recommended on this
// device". The factor and that list never leave the page; they are kept in
// IndexedDB (fl_store.js: the factor and the shopper's own item indices
// encrypted with a non-extractable AES-GCM key), so a reload shows the list
// at once and resumes training; a round under way is kept there too (the
// client's state, its SecAgg keys for the round included, sealed with the
// same key, before each message is posted), so a reload mid-round resumes
// that round instead of dropping out of it. Opting out stops the client and erases all
// of it (so does deleting the account in the portal).
'use strict';
(() => {
  const $ = (id) => document.getElementById(id);
  const TOP = 8;
  // the shopper signed in ({user, token}), the running client's stopper
  let who = null, ctl = null;

  const status = (msg, kind) => PVG.status('fl-status', msg, kind);

  function render(pub, secret) {
    const box = $('fl-recs');
    if (!pub || !secret) { box.replaceChildren(); $('fl-round').textContent = ''; return; }
    const top = PvgFl.rank(pub.V, pub.nItems, pub.k, secret.factor, secret.own, TOP);
    box.replaceChildren(...top.map((r) => PVG.itemCard({ item: pub.items[r.index], why_lines: [
      'ranked in this browser with your own factor and the item factors of round ' + pub.round +
      ' (score ' + r.score.toFixed(3) + '); neither your factor nor this list was sent anywhere'] })));
    $('fl-round').textContent = ' (round ' + pub.round + ')';
  }

  function buttons(optedIn) {
    $('fl-optin').disabled = optedIn;
    $('fl-optout').disabled = !optedIn;
  }

  // f() with the shopper's Web Lock: one client per shopper in this browser
  // (two tabs would both resume the same kept round, its generator's state
  // included, or both join, and post different messages for one round and
  // phase, and overwrite each other's kept round); a second tab waits until
  // the first is closed or stops (signal: stops waiting)
  async function exclusive(user, signal, f) {
    if (!navigator.locks) throw new Error('this browser has no Web Locks (the page must be served over https)');
    const name = 'privguide-fl ' + user;
    let ran = false, out;
    await navigator.locks.request(name, { ifAvailable: true }, async (l) => {
      if (!l) return;
      ran = true;
      out = await f();
    });
    if (ran) return out;
    status('training runs in another tab of this browser: this one takes over once it is closed');
    return navigator.locks.request(name, { signal }, f);
  }

  // Rounds until the server finishes training or the shopper opts out.
  async function train(w) {
    if (ctl) return;
    const me = new AbortController();
    ctl = me;
    try {
      await exclusive(w.user, me.signal, () => trainLocked(w, me));
    } catch (e) {
      if (!me.signal.aborted) status('on-device training: ' + e.message, 'error');
    } finally {
      if (me.optedOut) await PvgFlStore.erase(w.user).catch(() => {}); // a round kept meanwhile
      if (ctl === me) ctl = null;
    }
  }

  async function trainLocked(w, me) {
    // a round under way when the page was left: resumed (its SecAgg keys,
    // masks and update, sealed in IndexedDB), not started afresh
    let resume = null;
    try {
      resume = await PvgFlStore.loadRound(w.user);
    } catch (e) {
      await PvgFlStore.dropRound(w.user);
    }
    try {
      for (;;) {
        status('reading the item list and your events…');
        const it = await PVG.api('GET', '/v1/fl/items', w.token);
        const data = await PVG.api('GET', '/v1/users/' + encodeURIComponent(w.user) + '/data', w.token);
        const history = PvgFl.historyOf(it.items, data.events || []);
        data.events = null;
        if (!history.length) {
          status('none of your events is of an item the training covers: nothing to train on yet');
          return;
        }
        status(resume ? 'resuming the round under way…' : 'waiting for a round of training…');
        const res = await PvgFl.run({ token: w.token, items: it.items, history, rounds: 1,
          keepBroadcast: true, signal: me.signal, timeoutMs: 3600000, resume,
          persist: (r) => PvgFlStore.saveRound(w.user, r),
          onStatus: (s) => status('round under way: ' + s) });
        resume = null;
        await PvgFlStore.dropRound(w.user); // the round's client ended: nothing to resume
        if (me.signal.aborted || who !== w) return;
        if (!res.broadcast) {
          status(res.refused ? 'this device did not take part in the round: ' + res.lastRefusal
            : 'training finished on the server', res.refused ? 'error' : 'ok');
          return;
        }
        const factor = await PvgFl.userFactor(res.broadcast, history);
        const f = PvgFl.itemFactors(res.broadcast);
        const pub = { round: res.broadcastRound, k: f.k, nItems: f.nItems, V: f.V, items: it.items };
        const secret = { factor, own: history };
        if (me.signal.aborted || who !== w) return;
        await PvgFlStore.save(w.user, pub, secret);
        if (me.signal.aborted || who !== w) { // opted out meanwhile: nothing stays
          if (me.signal.aborted) await PvgFlStore.erase(w.user);
          return;
        }
        render(pub, secret);
        factor.fill(0);
        // the round's item factors are public: the list is ranked with them even
        // when the round did not count (refused by this device's DP policy, or
        // the server went on before the sum was confirmed)
        status(res.refused ? 'round ' + pub.round + ': this device did not take part (' + res.lastRefusal +
          '); your list is ranked on this device' : res.rounds
          ? 'round ' + pub.round + ' done: your update is in the sum, your list is ranked on this device'
          : 'round ' + pub.round + ': your update was sent; your list is ranked on this device', 'ok');
      }
    } catch (e) {
      if (!me.signal.aborted) await PvgFlStore.dropRound(w.user).catch(() => {});
      throw e;
    }
  }

  // The shopper signed in (shop.js): their kept list at once, and training
  // resumed when they had opted in.
  async function signedIn(user, token) {
    if (ctl) ctl.abort();
    ctl = null;
    const w = { user, token };
    who = w;
    $('fl-section').hidden = false;
    render(null, null);
    $('fl-optin').disabled = true;
    $('fl-optout').disabled = true;
    // the token must be this shopper's before anything kept for them here is
    // read: the key is this browser's, not theirs, and the name is typed
    try {
      await PVG.api('GET', '/v1/users/' + encodeURIComponent(user) + '/consent', token);
    } catch (e) {
      if (who !== w) return;
      status('not signed in as ' + user + ' (' + e.message + '): nothing kept in this browser is shown', 'error');
      return;
    }
    if (who !== w) return;
    let s = null;
    try {
      s = await PvgFlStore.load(user);
    } catch (e) {
      status('the state kept in this browser cannot be read (' + e.message + '): opt in again', 'error');
    }
    if (who !== w) return;
    buttons(!!(s && s.optedIn));
    if (s && s.pub && s.secret) render(s.pub, s.secret);
    if (s && s.optedIn) train(w);
    else status('not taking part: your events are not used for on-device training');
  }

  function signedOut() {
    if (ctl) ctl.abort();
    ctl = null;
    who = null;
    $('fl-section').hidden = true;
    render(null, null);
  }

  $('fl-optin').addEventListener('click', async () => {
    if (!who) return;
    const w = who;
    await PvgFlStore.setOptIn(w.user, true);
    buttons(true);
    train(w);
  });

  $('fl-optout').addEventListener('click', async () => {
    if (!who) return;
    if (ctl) {
      ctl.optedOut = true;
      ctl.abort();
    }
    ctl = null;
    await PvgFlStore.erase(who.user);
    render(null, null);
    buttons(false);
    status('stopped: your factor and list were erased from this browser', 'ok');
  });

  window.PvgShopFl = { signedIn, signedOut };
})();
