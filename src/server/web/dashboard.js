// dashboard.js - the operator dashboard: data volume, privacy budget spent
// and left per dataset, the model in service and its last evaluation, and
// request rates (from two successive /v1/stats polls).
'use strict';
(() => {
  const $ = (id) => document.getElementById(id);
  $('key').value = PVG.get('key');
  let prev = null;
  let timer = null;

  const kpi = (k, v) => PVG.el('div', { class: 'kpi', 'data-kpi': k }, PVG.el('div', { class: 'v' }, v), PVG.el('div', { class: 'k' }, k));
  // the bar width is set through the CSSOM: the page's CSP forbids style attributes
  const fillBar = (frac) => { const d = PVG.el('div', { class: frac > 0.8 ? 'hot' : '' }); d.style.width = (100 * frac).toFixed(1) + '%'; return d; };
  const fmt = (x, d) => (typeof x === 'number' ? x.toFixed(d) : String(x));

  function render(s) {
    // exact shopper and event counts are shown to admins only (analysts get DP answers)
    const exact = (v) => (v === undefined ? 'admin only' : v);
    $('volume').replaceChildren(kpi('users', exact(s.store.users)), kpi('items', s.store.items),
      kpi('events', exact(s.store.events)), kpi('anonymous rows', exact(s.store.anonymous_rows)));
    const rows = [PVG.el('tr', {}, ...['dataset', 'ε spent', 'ε total', 'ε left', 'δ spent', 'releases', ''].map((h) => PVG.el('th', {}, h)))];
    for (const b of s.budgets) {
      const frac = b.total_epsilon > 0 ? Math.min(1, b.spent_epsilon / b.total_epsilon) : 1;
      rows.push(PVG.el('tr', { 'data-dataset': b.dataset }, PVG.el('td', {}, b.dataset), PVG.el('td', {}, fmt(b.spent_epsilon, 3)),
        PVG.el('td', {}, fmt(b.total_epsilon, 3)), PVG.el('td', {}, fmt(b.left_epsilon, 3)), PVG.el('td', {}, b.spent_delta.toExponential(2)),
        PVG.el('td', {}, b.releases),
        PVG.el('td', {}, PVG.el('div', { class: 'bar' }, fillBar(frac)))));
    }
    if (!s.budgets.length) rows.push(PVG.el('tr', {}, PVG.el('td', { colspan: '7', class: 'muted' }, 'no budget set (privguide dp budget set)')));
    $('budgets').replaceChildren(...rows);
    const m = s.model;
    $('model').textContent = m ? (m.type + ' model, ' + m.items + ' items, ' + (m.users >= 0 ? m.users + ' users, ' : '') + 'generation ' + m.generation +
      ', loaded ' + new Date(m.loaded_at * 1000).toISOString() +
      (m.popular_release ? '; DP popular list: ε ' + m.popular_release.epsilon + ' (' + m.popular_release.mechanism + ')' : '; popular list: ' + (m.popular_error || 'none'))) : 'no model in service';
    const ev = s.evaluation;
    const erows = [];
    // `privguide eval --json` writes flat keys "recall@10", "ndcg@10", ...
    const byK = {};
    for (const [key, v] of Object.entries(ev || {})) {
      const m2 = /^([a-z]+)@(\d+)$/.exec(key);
      if (m2 && typeof v === 'number') (byK[m2[2]] = byK[m2[2]] || {})[m2[1]] = v;
    }
    const ks = Object.keys(byK).map(Number).sort((a, b) => a - b);
    if (ks.length) {
      $('model').append(PVG.el('div', {}, 'last evaluation: ' + (ev.model || '?') + ', ' + (ev.protocol || '?') +
        ' protocol, ' + (ev.users_evaluated || '?') + ' users evaluated (' + (ev.split || 'test') + ' split)'));
      const cols = ['recall', 'ndcg', 'precision', 'map', 'hr', 'coverage'];
      erows.push(PVG.el('tr', {}, PVG.el('th', {}, 'k'), ...cols.map((h) => PVG.el('th', {}, h))));
      for (const k of ks) erows.push(PVG.el('tr', { 'data-k': String(k) }, PVG.el('td', {}, k),
        ...cols.map((c) => PVG.el('td', {}, typeof byK[k][c] === 'number' ? byK[k][c].toFixed(4) : ''))));
    } else if (ev) {
      erows.push(PVG.el('tr', {}, PVG.el('td', {}, PVG.el('pre', {}, JSON.stringify(ev, null, 1).slice(0, 2000)))));
    } else {
      erows.push(PVG.el('tr', {}, PVG.el('td', { class: 'muted' }, 'no evaluation yet (privguide eval --json > DATA_DIR/evaluation.json)')));
    }
    $('evaluation').replaceChildren(...erows);
    // between two polls; on the first poll, the average since the server started
    let rate = s.uptime_seconds > 0 ? fmt(s.requests.total / s.uptime_seconds, 2) : '…';
    if (prev && s.now > prev.now) rate = fmt((s.requests.total - prev.requests.total) / (s.now - prev.now), 2);
    $('requests').replaceChildren(kpi('requests/s', rate), kpi('requests', s.requests.total), kpi('client errors', s.requests.client_errors),
      kpi('server errors', s.requests.server_errors), kpi('personalised', s.requests.personalized), kpi('popular (DP)', s.requests.popular),
      kpi('rate limited', s.requests.rate_limited), kpi('uptime (s)', s.uptime_seconds));
    prev = s;
  }

  async function poll() {
    try {
      render(await PVG.api('GET', '/v1/stats', $('key').value.trim()));
      PVG.status('status', 'live (refreshing every 5 s)', 'ok');
    } catch (e) {
      PVG.status('status', e.message, 'error');
      clearInterval(timer);
      timer = null;
    }
  }

  $('connect').addEventListener('click', () => {
    PVG.set('key', $('key').value.trim());
    if (timer) clearInterval(timer);
    prev = null;
    poll();
    timer = setInterval(poll, 5000);
  });
  if ($('key').value) $('connect').click();
})();
