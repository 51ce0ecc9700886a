// shop.js - the shop demo: recommendations for a chosen demo shopper (with
// titles and prices), items similar to a clicked item, and the DP popular
// list, all through the /v1 API.
'use strict';
(() => {
  const $ = (id) => document.getElementById(id);
  const cred = () => $('cred').value.trim();

  $('cred').value = PVG.get('token') || PVG.get('key');
  const users = (PVG.get('users') || PVG.get('user')).split(',').filter(Boolean);
  for (const u of users) $('shoppers').append(PVG.el('option', { value: u }));
  if (users.length) $('shopper').value = users[0];

  function fill(id, items, onclick) {
    const box = $(id);
    box.replaceChildren(...items.map((it) => PVG.itemCard(it, onclick)));
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
    PVG.set(cred().startsWith('pvgt_') ? 'token' : 'key', cred());
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

  $('go').addEventListener('click', show);
  $('shopper').addEventListener('keydown', (e) => { if (e.key === 'Enter') show(); });
  if (cred()) show();
})();
