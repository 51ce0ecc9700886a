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

  async function similar(it) {
    $('similar-to').textContent = it.title || it.item;
    try {
      const r = await PVG.api('GET', '/v1/items/' + encodeURIComponent(it.item) + '/similar?k=8', cred());
      fill('similar', r.items, similar);
      PVG.status('status', '');
    } catch (e) { PVG.status('status', 'similar items: ' + e.message, 'error'); }
  }

  async function show() {
    const user = $('shopper').value.trim();
    PVG.set(cred().startsWith('pvgt_') ? 'token' : 'key', cred());
    try {
      const pop = await PVG.api('GET', '/v1/items/popular?k=8', cred());
      fill('popular', pop.items, similar);
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
