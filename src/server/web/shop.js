// shop.js - the shop demo: recommendations for a chosen demo shopper (with
// titles and prices), items similar to a clicked item, and the DP popular
// list, all through the /v1 API. Signed in with the shopper's own token, the
// page records what they look at (a view when an item is opened) and what
// they add to the cart, as that shopper, through POST /v1/events: the server
// takes an event only for a purpose the shopper consents to, so with their
// switches off nothing is recorded and the page says why. With an operator
// key nothing is recorded (the page does not act as the shopper). The search
// box asks the public GET /v1/search as the shopper types (no credential; the
// last word is completed), shows the corrections and completions it applied,
// category and price facets, and pages of results; pressing Enter or picking
// a suggestion makes it a search of the signed-in shopper (their token and
// user=: kept in their history, under their consent). The assistant panel
// asks POST /v1/assist (anonymous) or /v1/users/{id}/assist (the shopper's
// token: the conversation is kept sealed under their key); follow-up turns
// refine the last answer, and its parsed constraints show as chips. Every
// item has a "why this?" disclosure with the evidence the API gave for it:
// for the shopper's own recommendations (?explain=1, their own token) the
// items of their history that made it rank, the public DP popular rank,
// the query words a search hit matched, the assistant's reasons.
'use strict';
(() => {
  const $ = (id) => document.getElementById(id);
  const cred = () => $('cred').value.trim();
  const asShopper = () => cred().startsWith('pvgt_');

  $('cred').value = PVG.get('token') || PVG.get('key');
  const users = (PVG.get('users') || PVG.get('user')).split(',').filter(Boolean);
  for (const u of users) $('shoppers').append(PVG.el('option', { value: u }));
  if (users.length) $('shopper').value = users[0];

  // Records one event of the shown shopper with their token; says whether
  // it was taken (refused: the server's reason, e.g. no consent).
  async function record(type, it)
  {
      if (!asShopper()) return;
      const user = $('shopper').value.trim();
      const ev = {user, type, item : it.item};
      if (type === 'cart') ev.quantity = 1;
      const what = (type === 'cart' ? 'added to your cart: ' : 'viewed: ') + (it.title || it.item);
      try {
          await PVG.api('POST', '/v1/events', cred(), [ ev ]);
          PVG.status('record-status', 'recorded (' + what + ')', 'ok');
      } catch (e) {
          const errs = e.data && e.data.errors;
          PVG.status('record-status',
                     'not recorded (' + what +
                         '): ' + (errs && errs.length ? errs[0].message : e.message),
                     'error');
      }
  }

  function card(it, onclick)
  {
      const c = PVG.itemCard(it, onclick ? (x) => {
          record('view', x);
          onclick(x);
      } : null);
      if (asShopper())
          c.append(PVG.el('button', {
              class : 'secondary',
              'data-cart' : it.item,
              onclick : (e) => {
                  e.stopPropagation();
                  record('cart', it);
              }
          },
                          'Add to cart'));
      return c;
  }

  // ---- "why this?": the API's evidence as lines ----
  const quote = (w) => '"' + w + '"';

  function recWhy(it, r) {
    const lines = [];
    for (const w of it.why || []) {
      if (w.kind === 'history')
        lines.push('you bought or looked at ' + quote(w.title || w.item) + ' (weight ' + w.contribution.toFixed(3) + ')');
      else if (w.kind === 'popular')
        lines.push('#' + w.rank + ' of ' + w.of + ' in the popular list (released with differential privacy)');
    }
    const ex = r.explain || {};
    if (r.personalized && !ex.history)
      lines.push(ex.reason === 'not_own_token' || !asShopper()
        ? 'picked from this shopper\'s history by the model: the history behind it is shown only to the shopper (their own token)'
        : 'picked by the model from this shopper\'s history (' + (ex.reason || 'no evidence') + ')');
    else if (r.personalized && ex.method)
      lines.push(ex.exact ? 'these are the exact terms of the model\'s score (' + ex.method + ')'
                          : 'the model\'s score split over your history (' + ex.method + ', an approximation)');
    if (!r.personalized && !lines.length) lines.push('popular with shoppers (you get no personal list: ' + (r.reason || '') + ')');
    return lines;
  }

  function searchWhy(it, r) {
    const lines = [];
    const words = (it.why && it.why.matched_words) || [];
    if (words.length) lines.push('matches ' + words.map(quote).join(', '));
    else if (!r.query.terms.length) lines.push('in the catalog (no words to match)');
    if (r.personalized) lines.push('re-ranked for you by your own model scores (your consent)');
    if (r.sort !== 'relevance') lines.push('ordered by ' + r.sort.replace('_', ', '));
    return lines;
  }

  function assistWhy(it) {
    const w = it.why || {};
    const lines = [];
    if ((w.matched_words || []).length) lines.push('matches ' + w.matched_words.map(quote).join(', '));
    for (const c of w.constraints_satisfied || []) lines.push('satisfies ' + c);
    if (w.popularity) lines.push('#' + w.popularity.rank + ' in the popular list (differentially private)');
    if (w.similar_to) lines.push('similar to ' + w.similar_to);
    for (const s of w.similar_interacted || []) lines.push('like ' + quote(s.title || s.item) + ', which you interacted with');
    return lines;
  }

  function fill(id, items, onclick) {
    const box = $(id);
    box.replaceChildren(...items.map((it) => card(it, onclick)));
    if (!items.length) box.append(PVG.el('div', { class: 'muted' }, 'nothing to show'));
  }

  function age(s) {
    if (s < 120) return s + ' s';
    if (s < 7200) return Math.round(s / 60) + ' min';
    if (s < 172800) return Math.round(s / 3600) + ' h';
    return Math.round(s / 86400) + ' days';
  }

  function note(id, text) {
    const box = $(id);
    box.append(PVG.el('div', { class: 'muted', 'data-note': id }, text));
  }

  async function similar(it) {
    $('similar-to').textContent = it.title || it.item;
    try {
      const r = await PVG.api('GET', '/v1/items/' + encodeURIComponent(it.item) + '/similar?k=8', cred());
      const src = r.source === 'dp_release' ? 'bought together, from a differentially private release'
                : r.source === 'dp_model' ? 'from a model trained with differential privacy' : 'from the model (operator view)';
      fill('similar', r.items.map((x) => Object.assign({}, x, {
        why_lines: ['similar to ' + quote(it.title || it.item) + ' (' + src + ')'] })), similar);
      if (r.source === 'dp_release' && r.release)
        note('similar', 'from a differentially private release (ε ' + r.release.epsilon + ', released ' +
             age(r.release.age_s) + ' ago)' + (r.note ? '; ' + r.note : ''));
      PVG.status('status', '');
    } catch (e) { PVG.status('status', 'similar items: ' + e.message, 'error'); }
  }

  // The popular list never blanks the page: a failure says so in its own
  // box (the server serves the last release when no budget is left, and says
  // plainly when no public list exists yet); recommendations still show.
  async function popular() {
    try {
      const pop = await PVG.api('GET', '/v1/items/popular?k=8', cred());
      fill('popular', pop.items.map((x, i) => Object.assign({}, x, {
        why_lines: ['#' + (i + 1) + ' in the popular list, released with differential privacy (ε ' +
                    (pop.release ? pop.release.epsilon : (pop.model || {}).epsilon) + ')'] })), similar);
      if (pop.release && pop.release.stale)
        note('popular', 'the last public list, released ' + age(pop.age_s) + ' ago (no newer release: privacy budget)');
    } catch (e) {
      $('popular').replaceChildren(PVG.el('div', { class: 'muted', 'data-note': 'popular' },
        'No public popular list is available yet (' + e.message + ').'));
    }
  }

  async function show() {
    const user = $('shopper').value.trim();
    PVG.set(asShopper() ? 'token' : 'key', cred());
    // on-device training (shop_fl.js): the shopper's own, with their token only
    if (asShopper() && user) PvgShopFl.signedIn(user, cred());
    else PvgShopFl.signedOut();
    PVG.status(
        'record-status',
        asShopper()
            ? 'signed in as the shopper: what you open or add to the cart is recorded if you consent'
            : 'operator key: browsing is not recorded (open the page with the shopper\'s token to record it)');
    popular();
    try {
      if (user) {
        // The history evidence is the shopper's alone: asked for only with a
        // shopper token (an operator key's request would be refused and
        // logged in the shopper's audit trail as a denied access).
        const q = asShopper() ? '?k=8&explain=1' : '?k=8';
        const r = await PVG.api('GET', '/v1/users/' + encodeURIComponent(user) + '/recommendations' + q, cred());
        $('recs-user').textContent = user;
        $('recs-kind').textContent = r.personalized ? 'personalised' : 'popular (no personalisation: ' + (r.reason || '') + ')';
        $('recs-kind').className = r.personalized ? 'badge' : 'badge dp';
        fill('recs', r.items.map((x) => Object.assign({}, x, { why_lines: recWhy(x, r) })), similar);
      }
      PVG.status('status', 'loaded', 'ok');
    } catch (e) { PVG.status('status', e.message, 'error'); }
  }

  // ---- search: as you type (the last word is completed), facets, pages ----
  // GET /v1/search is public: no credential is sent and nothing is kept.
  const search = { category: '', price_min: '', price_max: '', offset: 0, seq: 0 };
  const PAGE = 8;

  function facetButton(label, active, onclick) {
    return PVG.el('button', { class: active ? '' : 'secondary', 'data-facet': label, onclick }, label);
  }

  // Suggestions as you type: the completions of the last word.
  function suggest(r, q) {
    const pe = r.query.prefix_expansion;
    const box = $('search-suggest');
    if (!pe || !pe.completions.length || /\s$/.test(q)) { box.replaceChildren(); return; }
    box.replaceChildren(...pe.completions.slice(0, 6).map((w) => {
      const text = (q.replace(/\S+$/, '') + w).trim();
      return PVG.el('li', {}, PVG.el('button', { class: 'secondary', 'data-suggest': text, onclick: () => {
        $('search-q').value = text + ' ';
        box.replaceChildren();
        search.offset = 0;
        runSearch(true);
      } }, text));
    }));
  }

  // committed: Enter, a suggestion, a facet or a page on a committed query;
  // as the signed-in shopper such a search is theirs (kept, with consent)
  async function runSearch(committed) {
    const q = $('search-q').value;
    const seq = ++search.seq;
    if (committed === true) search.committed = q;
    if (!q.trim() && !search.category) {
      ['search-results', 'search-facets', 'search-pages', 'search-suggest'].forEach((id) => $(id).replaceChildren());
      $('search-note').textContent = '';
      return;
    }
    const params = new URLSearchParams({ q, k: String(PAGE), offset: String(search.offset),
                                         sort: $('search-sort').value });
    if (search.category) params.set('category', search.category);
    if (search.price_min !== '') params.set('price_min', search.price_min);
    if (search.price_max !== '') params.set('price_max', search.price_max);
    const user = $('shopper').value.trim();
    const mine = asShopper() && user && search.committed === q && q.trim() !== '';
    if (mine) params.set('user', user);
    let r;
    try {
      r = await PVG.api('GET', '/v1/search?' + params.toString(), mine ? cred() : '');
    } catch (e) {
      if (seq === search.seq) $('search-note').textContent = 'search: ' + e.message;
      return;
    }
    if (seq !== search.seq) return; /* a newer key press answered first */
    if (!mine) suggest(r, q); else $('search-suggest').replaceChildren();
    const items = r.items.map((it) => ({ item: it.id, title: it.title, price: it.price, why_lines: searchWhy(it, r) }));
    fill('search-results', items, similar);
    const notes = [r.total + ' item' + (r.total === 1 ? '' : 's')];
    if (mine) notes.push('searched as you (kept in your history if you consent)' + (r.personalized ? ', re-ranked for you' : ''));
    for (const c of r.query.corrections)
      notes.push('"' + c.word + '" read as ' + c.to.map((w) => '"' + w + '"').join(' or '));
    const pe = r.query.prefix_expansion;
    if (pe && pe.completions.length)
      notes.push('"' + pe.word + '…": ' + pe.completions.slice(0, 5).join(', '));
    if (r.query.terms.length && r.query.matched_terms < r.query.terms.length)
      notes.push('no item has every word: these match ' + r.query.matched_terms);
    $('search-note').textContent = notes.join(' · ');
    const facets = [];
    for (const c of r.facets.categories.slice(0, 8))
      facets.push(facetButton(c.category + ' (' + c.count + ')', search.category === c.category, () => {
        search.category = search.category === c.category ? '' : c.category;
        search.offset = 0;
        runSearch();
      }));
    for (const b of r.facets.price) {
      if (!b.count) continue;
      const on = search.price_min === String(b.min);
      facets.push(facetButton('£' + b.range + ' (' + b.count + ')', on, () => {
        search.price_min = on ? '' : String(b.min);
        search.price_max = on || b.max === null ? '' : String(b.max);
        search.offset = 0;
        runSearch();
      }));
    }
    $('search-facets').replaceChildren(...facets);
    const pages = [];
    if (search.offset > 0)
      pages.push(facetButton('previous', false, () => { search.offset = Math.max(0, search.offset - PAGE); runSearch(); }));
    if (search.offset + PAGE < r.total)
      pages.push(facetButton('next', false, () => { search.offset += PAGE; runSearch(); }));
    $('search-pages').replaceChildren(...pages);
  }

  let searchTimer = null;
  $('search-q').addEventListener('input', () => {
    search.offset = 0;
    clearTimeout(searchTimer);
    searchTimer = setTimeout(runSearch, 120);
  });
  $('search-q').addEventListener('keydown', (e) => {
    if (e.key !== 'Enter') return;
    clearTimeout(searchTimer);
    search.offset = 0;
    runSearch(true);
  });

  // ---- the assistant: a conversation of turns ----
  const assist = { conversation: null, turns: 0 };

  function assistTurn(msg, r) {
    const box = PVG.el('div', { class: 'turn', 'data-turn': String(assist.turns) });
    box.append(PVG.el('div', { class: 'you' }, msg));
    box.append(PVG.el('div', { class: 'chips', 'data-chips': '' }, ...PVG.constraintChips(r.constraints)));
    const notes = [];
    notes.push(r.items.length + ' item' + (r.items.length === 1 ? '' : 's'));
    if (r.followup) notes.push('refining your last answer');
    if (r.relaxed_words) notes.push(r.relaxed_words + ' word(s) dropped to find anything');
    if (r.personalization) notes.push('personal ranking: ' + r.personalization);
    if (r.constraints && r.constraints.notes) notes.push(r.constraints.notes);
    box.append(PVG.el('div', { class: 'muted' }, notes.join(' · ')));
    const grid = PVG.el('div', { class: 'grid' });
    for (const it of r.items) {
      const c = card(Object.assign({}, it, { why_lines: assistWhy(it) }), similar);
      c.insertBefore(PVG.el('div', { class: 'reason' }, it.reason || ''), c.querySelector('details'));
      grid.append(c);
    }
    if (!r.items.length) grid.append(PVG.el('div', { class: 'muted' }, 'nothing in the catalog satisfies all of that'));
    box.append(grid);
    $('assist-log').prepend(box);
  }

  async function ask() {
    const msg = $('assist-msg').value.trim();
    if (!msg) return;
    const user = $('shopper').value.trim();
    const mine = asShopper() && user;
    const body = { message: msg, k: 6 };
    if (assist.conversation) body.conversation = assist.conversation;
    try {
      PVG.status('assist-status', 'asking…');
      const r = await PVG.api('POST', mine ? '/v1/users/' + encodeURIComponent(user) + '/assist' : '/v1/assist',
                              mine ? cred() : '', body);
      assist.conversation = r.conversation;
      assist.turns++;
      assistTurn(msg, r);
      $('assist-kind').textContent = r.stored === 'sealed' ? 'kept sealed in your history' : 'anonymous, not kept';
      $('assist-msg').value = '';
      PVG.status('assist-status', 'answered', 'ok');
    } catch (e) {
      if (e.status === 404 && assist.conversation) assist.conversation = null; /* expired: start afresh */
      PVG.status('assist-status', e.message, 'error');
    }
  }

  $('assist-send').addEventListener('click', ask);
  $('assist-msg').addEventListener('keydown', (e) => { if (e.key === 'Enter') ask(); });
  $('assist-new').addEventListener('click', () => {
    assist.conversation = null;
    assist.turns = 0;
    $('assist-log').replaceChildren();
    PVG.status('assist-status', 'new conversation');
  });
  $('search-sort').addEventListener('change', () => { search.offset = 0; runSearch(); });

  $('go').addEventListener('click', show);
  $('shopper').addEventListener('keydown', (e) => { if (e.key === 'Enter') show(); });
  if (cred()) show();
})();
