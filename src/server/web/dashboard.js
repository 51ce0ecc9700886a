// dashboard.js - the operator dashboard: catalog size, the store's privacy
// budget (total, spent, left, each purpose), the model in service, and for
// admins the exact figures: data volume, the last evaluation and request
// rates (from two successive /v1/stats polls).
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
    // Analysts get only DP releases and non-personal facts; the exact figures
    // (store volume, the model's users and items, the evaluation, request
    // counters) come under s.exact, for admins only.
    const x = s.exact || null;
    const exact = (o, k) => (x && x[o] && x[o][k] !== undefined ? x[o][k] : 'admin only');
    $('volume').replaceChildren(kpi('catalog items', s.catalog.items), kpi('users', exact('store', 'users')),
      kpi('events', exact('store', 'events')), kpi('item rows', exact('store', 'items')),
      kpi('anonymous rows', exact('store', 'anonymous_rows')));
    const rows = [PVG.el('tr', {}, ...['', 'ε spent', 'ε cap / total', 'ε left', 'δ spent', 'releases', ''].map((h) => PVG.el('th', {}, h)))];
    const b = s.budget;
    if (b && b.total) {
      const left = b.remaining.epsilon;
      rows.push(PVG.el('tr', { 'data-purpose': 'total' }, PVG.el('td', {}, 'store total'), PVG.el('td', {}, fmt(b.spent.epsilon, 3)),
        PVG.el('td', {}, fmt(b.total.epsilon, 3)), PVG.el('td', {}, fmt(left, 3)), PVG.el('td', {}, b.spent.delta.toExponential(2)),
        PVG.el('td', {}, b.releases),
        PVG.el('td', {}, PVG.el('div', { class: 'bar' }, fillBar(b.total.epsilon > 0 ? Math.min(1, b.spent.epsilon / b.total.epsilon) : 1)))));
      for (const p of b.purposes) {
        const limit = p.cap ? p.cap.epsilon : b.total.epsilon;
        const pleft = Math.max(0, Math.min(left, limit - p.spent_epsilon));
        rows.push(PVG.el('tr', { 'data-purpose': p.purpose }, PVG.el('td', {}, p.purpose), PVG.el('td', {}, fmt(p.spent_epsilon, 3)),
          PVG.el('td', {}, p.cap ? fmt(p.cap.epsilon, 3) + ' (cap)' : '–'), PVG.el('td', {}, fmt(pleft, 3)),
          PVG.el('td', {}, p.spent_delta.toExponential(2)), PVG.el('td', {}, p.releases),
          PVG.el('td', {}, PVG.el('div', { class: 'bar' }, fillBar(limit > 0 ? Math.min(1, p.spent_epsilon / limit) : 1)))));
      }
    } else {
      rows.push(PVG.el('tr', {}, PVG.el('td', { colspan: '7', class: 'muted' }, 'no budget set (privguide budget set --epsilon E --delta D)')));
    }
    $('budgets').replaceChildren(...rows);
    const m = s.model;
    const xm = x && x.model;
    $('model').textContent = m ? (m.type + ' model, ' + (xm ? xm.items + ' items, ' + xm.users + ' users, ' : '') + 'generation ' + m.generation +
      ', built ' + new Date(m.built_at * 1000).toISOString() + ', loaded ' + new Date(m.loaded_at * 1000).toISOString() +
      (m.popular_release ? '; DP popular list: ε ' + m.popular_release.epsilon + ' (' + m.popular_release.mechanism + ')' : '; popular list: ' + (m.popular_error || 'none'))) : 'no model in service';
    const ev = x ? x.evaluation : null;
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
    } else if (!x) {
      erows.push(PVG.el('tr', {}, PVG.el('td', { class: 'muted' }, 'evaluation: admin only (exact figures)')));
    } else {
      erows.push(PVG.el('tr', {}, PVG.el('td', { class: 'muted' }, 'no evaluation yet (privguide eval --json > DATA_DIR/evaluation.json)')));
    }
    $('evaluation').replaceChildren(...erows);
    if (!x) {
      $('requests').replaceChildren(kpi('requests', 'admin only'), kpi('uptime (s)', s.uptime_seconds));
      prev = null;
      return;
    }
    // between two polls; on the first poll, the average since the server started
    const q = x.requests;
    let rate = s.uptime_seconds > 0 ? fmt(q.total / s.uptime_seconds, 2) : '…';
    if (prev && s.now > prev.now) rate = fmt((q.total - prev.exact.requests.total) / (s.now - prev.now), 2);
    $('requests').replaceChildren(kpi('requests/s', rate), kpi('requests', q.total), kpi('client errors', q.client_errors),
      kpi('server errors', q.server_errors), kpi('personalised', q.personalized), kpi('popular (DP)', q.popular),
      kpi('rate limited', q.rate_limited), kpi('uptime (s)', s.uptime_seconds));
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
