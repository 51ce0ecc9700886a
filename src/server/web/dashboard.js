// dashboard.js - the operator dashboard: catalog size, the store's privacy
// budget (total, spent, left, each purpose), the model in service, and for
// admins the exact figures: data volume, the last evaluation, request rates
// (from two successive /v1/stats polls), and charts over the last hour or
// day from GET /v1/admin/timeseries (requests, latency percentiles, error
// rates, ingest volume, budget spent per purpose, model quality per build),
// the access alerts (GET /v1/admin/alerts) with acknowledge, suspend and
// resume, the fairness report (GET /v1/admin/fairness), and the API keys
// with revocation. A panel whose route the server lacks (404) says so.
'use strict';
(() => {
  const $ = (id) => document.getElementById(id);
  const C = PVGCharts;
  $('key').value = PVG.get('key');
  let prev = null;
  let timer = null;
  let slowTimer = null;
  let series = null; // the last time series answer (its x axis is shared by the alerts chart)
  let alertsAll = null;

  const key = () => $('key').value.trim();
  const kpi = (k, v) => PVG.el('div', { class: 'kpi', 'data-kpi': k }, PVG.el('div', { class: 'v' }, v), PVG.el('div', { class: 'k' }, k));
  // the bar width is set through the CSSOM: the page's CSP forbids style attributes
  const fillBar = (frac) => { const d = PVG.el('div', { class: frac > 0.8 ? 'hot' : '' }); d.style.width = (100 * frac).toFixed(1) + '%'; return d; };
  const fmt = (x, d) => (typeof x === 'number' ? x.toFixed(d) : String(x));
  const iso = (t) => new Date(t * 1000).toISOString().replace(/\.\d+Z$/, 'Z');
  const note = (box, text, cls) => box.replaceChildren(PVG.el('div', { class: 'chart-note ' + (cls || 'muted') }, text));
  const adminOnly = (e) => e.status === 403 || e.status === 401;

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
    for (const [k, v] of Object.entries(ev || {})) {
      const m2 = /^([a-z]+)@(\d+)$/.exec(k);
      if (m2 && typeof v === 'number') (byK[m2[2]] = byK[m2[2]] || {})[m2[1]] = v;
    }
    const ks = Object.keys(byK).map(Number).sort((a, c) => a - c);
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

  // ---- charts over time ----
  const CHARTS = ['chart-requests', 'chart-latency', 'chart-errors', 'chart-ingest', 'chart-budget', 'chart-models'];

  function renderSeries(ts) {
    series = ts;
    const S = ts.series, t = S.t, step = ts.step_seconds;
    // before the server started nothing was counted: a gap, not a zero
    const live = (arr) => arr.map((v, i) => (t[i] + step <= ts.server_started_at ? null : v));
    const per = step === 60 ? 'per minute' : 'per ' + step + ' s';
    C.lineChart($('chart-requests'), { title: 'Requests ' + per, x: t, time: true, series: [{ name: 'requests', values: live(S.requests) }] });
    C.lineChart($('chart-latency'), { title: 'Latency percentiles (ms)', x: t, time: true, unit: 'ms', emptyText: 'no requests yet',
      series: [{ name: 'p50', values: S.latency_p50_ms }, { name: 'p95', values: S.latency_p95_ms }, { name: 'p99', values: S.latency_p99_ms }] });
    const rate = (arr) => arr.map((v, i) => (S.requests[i] > 0 ? (100 * v) / S.requests[i] : null));
    C.lineChart($('chart-errors'), { title: 'Error rate (% of requests)', x: t, time: true, unit: '%', emptyText: 'no requests yet', legend: true,
      series: [{ name: '4xx', values: rate(S.client_errors), color: '#b4530a' }, { name: '5xx', values: rate(S.server_errors), color: '#c02a2a' }] });
    C.lineChart($('chart-ingest'), { title: 'Events accepted ' + per + ' (POST /v1/events)', x: t, time: true, series: [{ name: 'events', values: live(S.events_accepted), color: '#1c8a4a' }] });
    const B = ts.budget;
    if (B && B.epsilon_spent) {
      const used = Object.entries(B.epsilon_spent).filter(([, v]) => v.some((e) => e > 0));
      C.lineChart($('chart-budget'), { title: 'ε spent per purpose (cumulative' + (B.total_epsilon !== null ? ', store total ' + C.formatNumber(B.total_epsilon) : '') + ')',
        x: t, time: true, step: true, legend: true, emptyText: 'no release charged yet', series: used.map(([name, v]) => ({ name, values: v })) });
    } else {
      note($('chart-budget'), 'the ledger could not be read');
    }
    const builds = ts.models || [];
    if (!builds.length) {
      note($('chart-models'), 'no model build loaded since the server started');
    } else {
      const cats = builds.map((b) => 'gen ' + b.generation);
      const extra = builds.map((b) => ({ built: iso(b.built_at), type: b.type, users: b.users, items: b.items,
        quality: b.quality ? 'evaluated ' + iso(b.quality.evaluated_at) : 'not recorded' }));
      const k = builds.map((b) => (b.quality ? b.quality.k : null)).find((v) => v) || 10;
      C.barChart($('chart-models'), { title: 'Model quality per build (recall@' + k + ', NDCG@' + k + ' from evaluation.json)', categories: cats, legend: true,
        emptyText: 'no quality recorded for these builds (privguide eval --json > DATA_DIR/evaluation.json)',
        series: [{ name: 'recall@' + k, values: builds.map((b) => (b.quality ? b.quality.recall : null)), extra },
          { name: 'NDCG@' + k, values: builds.map((b) => (b.quality ? b.quality.ndcg : null)), extra }] });
    }
    PVG.status('series-status', 'series of the last ' + ts.window + ' (' + t.length + ' points of ' + step + ' s), updated ' + iso(ts.now), 'ok');
    if (alertsAll) renderAlertsChart(alertsAll);
  }

  async function pollSeries() {
    try {
      renderSeries(await PVG.api('GET', '/v1/admin/timeseries?window=' + $('window').value, key()));
    } catch (e) {
      series = null;
      const why = adminOnly(e) ? 'charts over time: admin only' : e.status === 404 ? 'charts over time are not available on this server' : e.message;
      for (const id of CHARTS) note($(id), why);
      PVG.status('series-status', why, adminOnly(e) || e.status === 404 ? '' : 'error');
    }
  }

  // ---- alerts ----
  function renderAlertsChart(alerts) {
    const box = $('chart-alerts');
    if (!series) { note(box, 'alerts over time need the time series (admin)'); return; }
    const t = series.series.t, step = series.step_seconds;
    const sev = [...new Set(alerts.map((a) => a.severity || 'unknown'))].sort();
    const counts = Object.fromEntries(sev.map((s) => [s, t.map(() => 0)]));
    for (const a of alerts) {
      const at = Date.parse(a.opened) / 1000;
      const i = Math.floor((at - t[0]) / step);
      if (i >= 0 && i < t.length) counts[a.severity || 'unknown'][i]++;
    }
    const colour = { critical: '#c02a2a', high: '#c02a2a', warning: '#b4530a', medium: '#b4530a', low: '#2f6fec', info: '#5b6475' };
    C.lineChart(box, { title: 'Alerts opened per ' + (step === 60 ? 'minute' : step + ' s'), x: t, time: true, legend: true,
      emptyText: 'no alert in this window', series: sev.length ? sev.map((s) => ({ name: s, values: counts[s], color: colour[s] })) : [{ name: 'alerts', values: t.map(() => 0) }] });
  }

  async function act(method, path, what, statusId, after) {
    try {
      await PVG.api(method, path, key());
      PVG.status(statusId, what + ': done', 'ok');
    } catch (e) {
      PVG.status(statusId, what + ': ' + (e.status === 404 ? 'not available (' + e.message + ')' : e.message), 'error');
    }
    if (after) after();
  }

  function renderAlerts(list) {
    const head = PVG.el('tr', {}, ...['#', 'opened', 'severity', 'rule', 'credential', 'summary', 'evidence (audit seq)', 'action', 'state', ''].map((h) => PVG.el('th', {}, h)));
    const rows = [head];
    for (const a of list) {
      const buttons = PVG.el('td', { class: 'actions' });
      if (a.state === 'open')
        buttons.append(PVG.el('button', { class: 'secondary', 'data-ack': String(a.id), onclick: () => {
          if (confirm('Acknowledge alert #' + a.id + ' (' + a.rule + ')?')) act('POST', '/v1/admin/alerts/' + encodeURIComponent(a.id) + '/ack', 'acknowledge alert #' + a.id, 'alerts-status', pollAlerts);
        } }, 'Acknowledge'));
      if (a.credential) {
        // the credential may be named as the audit log's actor ("key:<id>", "token:<id>")
        const cred = String(a.credential).replace(/^(key|token):/, '');
        const suspended = a.action === 'suspended';
        const verb = suspended ? 'resume' : 'suspend';
        buttons.append(PVG.el('button', { class: suspended ? 'secondary' : 'danger', ['data-' + verb]: cred, onclick: () => {
          if (confirm((suspended ? 'Resume' : 'Suspend') + ' credential ' + cred + '?')) act('POST', '/v1/admin/credentials/' + encodeURIComponent(cred) + '/' + verb, verb + ' ' + cred, 'alerts-status', pollAlerts);
        } }, suspended ? 'Resume' : 'Suspend'));
      }
      const evid = Array.isArray(a.evidence) ? a.evidence : [];
      rows.push(PVG.el('tr', { 'data-alert': String(a.id), class: 'sev-' + (a.severity || '') },
        PVG.el('td', {}, a.id), PVG.el('td', {}, a.opened), PVG.el('td', {}, PVG.el('span', { class: 'badge sev ' + (a.severity || '') }, a.severity || '?')),
        PVG.el('td', {}, a.rule), PVG.el('td', { class: 'mono' }, a.credential || ''), PVG.el('td', {}, a.summary || ''),
        PVG.el('td', { class: 'mono' }, evid.slice(0, 8).join(', ') + (evid.length > 8 ? ' … (' + evid.length + ')' : '')),
        PVG.el('td', {}, a.action || 'none'), PVG.el('td', {}, a.state), buttons));
    }
    if (!list.length) rows.push(PVG.el('tr', {}, PVG.el('td', { colspan: '10', class: 'muted' }, $('alerts-state').value === 'open' ? 'no open alert' : 'no alert raised')));
    $('alerts').replaceChildren(...rows);
  }

  async function pollAlerts() {
    try {
      const all = await PVG.api('GET', '/v1/admin/alerts?state=all', key());
      alertsAll = all.alerts || [];
      $('chart-alerts').parentNode.hidden = false;
      renderAlertsChart(alertsAll);
      renderAlerts($('alerts-state').value === 'open' ? alertsAll.filter((a) => a.state === 'open') : alertsAll);
      $('alerts-section').dataset.state = 'ok';
    } catch (e) {
      alertsAll = null;
      const why = e.status === 404 ? 'access monitoring is not available on this server (no /v1/admin/alerts)' : adminOnly(e) ? 'alerts: admin only' : e.message;
      $('chart-alerts').parentNode.hidden = e.status === 404;
      note($('chart-alerts'), why);
      $('alerts').replaceChildren(PVG.el('tr', {}, PVG.el('td', { class: 'muted', 'data-empty': 'alerts' }, why)));
      $('alerts-section').dataset.state = e.status === 404 ? 'unavailable' : 'error';
    }
  }

  // ---- fairness ----
  const num = (v, d) => (typeof v === 'number' ? v.toFixed(d) : '–');
  const ci = (c) => (Array.isArray(c) && c.length === 2 ? ' [' + num(c[0], 3) + ', ' + num(c[1], 3) + ']' : '');
  const kv = (o) => Object.entries(o || {}).map(([k, v]) => k + ': ' + (typeof v === 'number' ? C.formatNumber(v) : typeof v === 'object' && v !== null ? JSON.stringify(v) : String(v))).join('; ');

  function renderFairness(f) {
    const groups = f.groups || [];
    const cats = groups.map((g) => g.group);
    $('fairness-meta').textContent = 'report of ' + (f.generated || '?') + ': model ' + (f.model || '?') + ', shoppers grouped by ' + (f.group_by || '?') +
      ', k = ' + (f.k || '?') + (f.dp ? '; DP-released (' + kv(f.dp) + ')' : '');
    C.barChart($('chart-fairness'), { title: 'Quality per group (recall@' + f.k + ', NDCG@' + f.k + '; whiskers: confidence intervals)', categories: cats, legend: true,
      series: [{ name: 'recall', values: groups.map((g) => g.recall), ci: groups.map((g) => g.recall_ci || null), extra: groups.map((g) => ({ users: g.users })) },
        { name: 'NDCG', values: groups.map((g) => g.ndcg), ci: groups.map((g) => g.ndcg_ci || null), extra: groups.map((g) => ({ users: g.users })) }] });
    C.barChart($('chart-exposure'), { title: 'Exposure per group (catalog coverage, popularity bias)', categories: cats, legend: true,
      series: [{ name: 'coverage', values: groups.map((g) => g.coverage), color: '#1c8a4a' }, { name: 'popularity bias', values: groups.map((g) => g.popularity_bias), color: '#b4530a' }] });
    const rows = [PVG.el('tr', {}, ...['group', 'shoppers', 'recall [CI]', 'NDCG [CI]', 'coverage', 'popularity bias'].map((h) => PVG.el('th', {}, h)))];
    for (const g of groups)
      rows.push(PVG.el('tr', { 'data-group': g.group }, PVG.el('td', {}, g.group), PVG.el('td', {}, g.users),
        PVG.el('td', {}, num(g.recall, 3) + ci(g.recall_ci)), PVG.el('td', {}, num(g.ndcg, 3) + ci(g.ndcg_ci)),
        PVG.el('td', {}, num(g.coverage, 3)), PVG.el('td', {}, num(g.popularity_bias, 3))));
    if (f.gaps) rows.push(PVG.el('tr', { 'data-row': 'gaps' }, PVG.el('td', {}, 'gaps'), PVG.el('td', { colspan: '5' }, kv(f.gaps))));
    rows.push(PVG.el('tr', { 'data-row': 'mitigation' }, PVG.el('td', {}, 'mitigation'), PVG.el('td', { colspan: '5' }, f.mitigation ? kv(f.mitigation) : 'none applied')));
    $('fairness').replaceChildren(...rows);
    $('fairness-section').dataset.state = 'ok';
  }

  async function pollFairness() {
    try {
      renderFairness(await PVG.api('GET', '/v1/admin/fairness', key()));
      $('chart-fairness').parentNode.hidden = false;
      PVG.status('fairness-status', '');
    } catch (e) {
      const why = e.status === 404 ? 'no fairness report saved (run privguide audit fairness --save)'
        : adminOnly(e) ? 'fairness report: admin only' : e.message;
      $('chart-fairness').parentNode.hidden = true;
      $('fairness').replaceChildren();
      $('fairness-meta').textContent = '';
      PVG.status('fairness-status', why, e.status === 404 || adminOnly(e) ? '' : 'error');
      $('fairness-section').dataset.state = e.status === 404 ? 'unavailable' : 'error';
    }
  }

  // ---- credentials and keys ----
  function revoke(id) {
    if (!/^[0-9a-fA-F]{16}$/.test(id)) { PVG.status('keys-status', 'a credential id is 16 hex digits (the part after pvgk_ or pvgt_)', 'error'); return; }
    if (!confirm('Revoke credential ' + id + '? Every request with it is refused from now on; this cannot be undone.')) return;
    act('POST', '/v1/admin/credentials/' + id + '/revoke', 'revoke ' + id, 'keys-status', pollKeys);
  }

  async function pollKeys() {
    try {
      const k = await PVG.api('GET', '/v1/admin/keys', key());
      const rows = [PVG.el('tr', {}, ...['id', 'role', 'label', 'state', 'created', 'expires', ''].map((h) => PVG.el('th', {}, h)))];
      for (const x of k.keys) {
        const mine = x.id === k.you;
        const cell = PVG.el('td', {});
        if (x.state === 'active' && !mine) cell.append(PVG.el('button', { class: 'danger', 'data-revoke': x.id, onclick: () => revoke(x.id) }, 'Revoke'));
        else if (mine) cell.append(PVG.el('span', { class: 'muted' }, 'this page\'s key'));
        rows.push(PVG.el('tr', { 'data-key': x.id, 'data-state': x.state }, PVG.el('td', { class: 'mono' }, x.id), PVG.el('td', {}, x.role),
          PVG.el('td', {}, x.label), PVG.el('td', {}, x.state), PVG.el('td', {}, iso(x.created_at)),
          PVG.el('td', {}, x.expires_at ? iso(x.expires_at) : 'never'), cell));
      }
      $('keys').replaceChildren(...rows);
    } catch (e) {
      $('keys').replaceChildren(PVG.el('tr', {}, PVG.el('td', { class: 'muted' }, adminOnly(e) ? 'API keys: admin only' : e.status === 404 ? 'key management is not available on this server' : e.message)));
    }
  }

  $('revoke').addEventListener('click', () => revoke($('revoke-id').value.trim()));
  $('rotate').addEventListener('click', async () => {
    if (!confirm('Rotate the master key? Every shopper\'s data key is rewrapped under a new master key; requests wait meanwhile. ' +
      'Other processes using this store (privguide commands) must reopen it afterwards. Back up the key file after the rotation.')) return;
    PVG.status('keys-status', 'rotating the master key…');
    try {
      const x = await PVG.api('POST', '/v1/admin/keys/rotate', key());
      PVG.status('keys-status', 'master key rotated: ' + x.rewrapped + ' data keys rewrapped (back up the key file now)', 'ok');
    } catch (e) {
      PVG.status('keys-status', 'rotate: ' + (e.status === 404 ? 'not available on this server' : e.message), 'error');
    }
  });

  async function poll() {
    try {
      render(await PVG.api('GET', '/v1/stats', key()));
      PVG.status('status', 'live (refreshing every 5 s)', 'ok');
    } catch (e) {
      PVG.status('status', e.message, 'error');
      clearInterval(timer);
      clearInterval(slowTimer);
      timer = slowTimer = null;
    }
  }

  async function pollSlow() {
    await pollSeries();
    await Promise.all([pollAlerts(), pollKeys()]);
  }

  $('window').addEventListener('change', pollSeries);
  $('alerts-state').addEventListener('change', pollAlerts);
  $('connect').addEventListener('click', () => {
    PVG.set('key', key());
    if (timer) clearInterval(timer);
    if (slowTimer) clearInterval(slowTimer);
    prev = null;
    poll();
    pollSlow();
    pollFairness();
    timer = setInterval(poll, 5000);
    slowTimer = setInterval(pollSlow, 10000);
  });
  if ($('key').value) $('connect').click();
})();
