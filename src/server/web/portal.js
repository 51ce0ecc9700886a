// portal.js - the privacy portal: a shopper, with their own token, sees
// what is held about them and for which purposes, flips the consent
// switches, downloads their export and deletes their account.
'use strict';
(() => {
  const $ = (id) => document.getElementById(id);
  $('user').value = PVG.get('user');
  $('token').value = PVG.get('token');
  const path = () => '/v1/users/' + encodeURIComponent($('user').value.trim());
  const tok = () => $('token').value.trim();
  const switches = ['personalization', 'analytics'];

  function enable(on) {
    for (const s of switches) $('consent-' + s).disabled = !on;
    $('download').disabled = !on;
    $('delete').disabled = !on;
  }

  function render(exp) {
    const days = exp.retention_days || {};
    $('summary').textContent = (exp.event_count !== undefined ? exp.event_count : (exp.events || []).length) +
      ' events since ' + (exp.created_at || '?') + '. You are known to us only by a pseudonym (' + (exp.pseudonym || '') + ').';
    const rows = [PVG.el('tr', {}, PVG.el('th', {}, 'Purpose'), PVG.el('th', {}, 'What it is for'),
      PVG.el('th', {}, 'Events used'), PVG.el('th', {}, 'Active'))];
    for (const p of exp.purposes || []) {
      rows.push(PVG.el('tr', { 'data-purpose': p.name }, PVG.el('td', {}, p.name), PVG.el('td', {}, p.description || ''),
        PVG.el('td', {}, (p.event_types || []).map((t) => t + (days[t] ? ' (' + days[t] + ' days)' : '')).join(', ')),
        PVG.el('td', {}, p.active ? 'yes' : 'no')));
    }
    $('purposes').replaceChildren(...rows);
    const c = exp.consent || {};
    for (const s of switches) $('consent-' + s).checked = !!c[s];
  }

  async function load() {
    PVG.set('user', $('user').value.trim());
    PVG.set('token', tok());
    try {
      const exp = await PVG.api('GET', path() + '/data', tok());
      render(exp);
      enable(true);
      PVG.status('status', 'account open', 'ok');
    } catch (e) {
      enable(false);
      PVG.status('status', e.message, 'error');
    }
  }

  async function saveConsent() {
    const body = {};
    for (const s of switches) body[s] = $('consent-' + s).checked;
    try {
      const r = await PVG.api('PUT', path() + '/consent', tok(), body);
      for (const s of switches) {
        const row = document.querySelector('#purposes tr[data-purpose="' + s + '"]');
        if (row) row.lastChild.textContent = r[s] ? 'yes' : 'no';
      }
      PVG.status('consent-status', 'saved: personalisation ' + (r.personalization ? 'on' : 'off') +
        ', analytics ' + (r.analytics ? 'on' : 'off'), 'ok');
    } catch (e) { PVG.status('consent-status', e.message, 'error'); }
  }

  async function download() {
    try {
      const exp = await PVG.api('GET', path() + '/data', tok());
      const blob = new Blob([JSON.stringify(exp, null, 2)], { type: 'application/json' });
      const a = PVG.el('a', { href: URL.createObjectURL(blob), download: 'privguide-export-' + $('user').value.trim() + '.json' });
      document.body.append(a);
      a.click();
      a.remove();
      PVG.status('data-status', 'export downloaded', 'ok');
    } catch (e) { PVG.status('data-status', e.message, 'error'); }
  }

  async function del() {
    if (!confirm('Delete your account and all your data? This cannot be undone.')) return;
    try {
      await PVG.api('DELETE', path(), tok());
      enable(false);
      $('summary').textContent = 'Your account was deleted: your data key was destroyed and your records erased. Your token no longer works.';
      $('purposes').replaceChildren();
      PVG.status('data-status', 'account deleted', 'ok');
      PVG.set('token', '');
    } catch (e) { PVG.status('data-status', e.message, 'error'); }
  }

  $('load').addEventListener('click', load);
  for (const s of switches) $('consent-' + s).addEventListener('change', saveConsent);
  $('download').addEventListener('click', download);
  $('delete').addEventListener('click', del);
  if ($('user').value && tok()) load();
})();
