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
// category and price facets, and pages of results.
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
      fill('similar', r.items, similar);
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
      fill('popular', pop.items, similar);
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
    PVG.status(
        'record-status',
        asShopper()
            ? 'signed in as the shopper: what you open or add to the cart is recorded if you consent'
            : 'operator key: browsing is not recorded (open the page with the shopper\'s token to record it)');
    popular();
    try {
      if (user) {
        const r = await PVG.api('GET', '/v1/users/' + encodeURIComponent(user) + '/recommendations?k=8', cred());
        $('recs-user').textContent = user;
        $('recs-kind').textContent = r.personalized ? 'personalised' : 'popular (no personalisation: ' + (r.reason || '') + ')';
        $('recs-kind').className = r.personalized ? 'badge' : 'badge dp';
        fill('recs', r.items, similar);
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

  async function runSearch() {
    const q = $('search-q').value;
    const seq = ++search.seq;
    if (!q.trim() && !search.category) {
      ['search-results', 'search-facets', 'search-pages'].forEach((id) => $(id).replaceChildren());
      $('search-note').textContent = '';
      return;
    }
    const params = new URLSearchParams({ q, k: String(PAGE), offset: String(search.offset),
                                         sort: $('search-sort').value });
    if (search.category) params.set('category', search.category);
    if (search.price_min !== '') params.set('price_min', search.price_min);
    if (search.price_max !== '') params.set('price_max', search.price_max);
    let r;
    try {
      r = await PVG.api('GET', '/v1/search?' + params.toString(), '');
    } catch (e) {
      if (seq === search.seq) $('search-note').textContent = 'search: ' + e.message;
      return;
    }
    if (seq !== search.seq) return; /* a newer key press answered first */
    const items = r.items.map((it) => ({ item: it.id, title: it.title, price: it.price }));
    fill('search-results', items, similar);
    const notes = [r.total + ' item' + (r.total === 1 ? '' : 's')];
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
  $('search-sort').addEventListener('change', () => { search.offset = 0; runSearch(); });

  $('go').addEventListener('click', show);
  $('shopper').addEventListener('keydown', (e) => { if (e.key === 'Enter') show(); });
  if (cred()) show();
})();
