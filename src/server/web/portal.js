// portal.js - the privacy portal: a shopper, with their own token, sees
// what is held about them (with the times of their events), the purposes
// it is used for and the switches that govern them (both as the API states
// them: the store's policy, no copy of its texts here), who accessed their
// data (their audit entries), their searches (the export's search events)
// and assistant conversations (GET /v1/users/{id}/conversations), downloads
// their export and deletes their account (one click and a confirmation,
// from either button).
'use strict';
(() => {
  const $ = (id) => document.getElementById(id);
  $('user').value = PVG.get('user');
  $('token').value = PVG.get('token');
  const path = () => '/v1/users/' + encodeURIComponent($('user').value.trim());
  const tok = () => $('token').value.trim();
  let retention = {};

  function enable(on) {
      for (const b of document.querySelectorAll('#switches input'))
          b.disabled = !on;
      $('download').disabled = !on;
      $('delete').disabled = !on;
      $('delete-all').disabled = !on;
  }

  // The shopper's searches: the search events of their export, newest first.
  function renderSearches(exp)
  {
      const s = (exp.events || []).filter((e) => e.type === 'search');
      s.sort((a, b) => (a.ts < b.ts ? 1 : a.ts > b.ts ? -1 : 0));
      const days = retention.search;
      $('searches-summary').textContent =
          (s.length ? s.length + (s.length === 1 ? ' search' : ' searches') + ' kept.'
                    : 'No search of yours is kept.') +
          (days ? ' Each is kept ' + days + ' days.' : '');
      const rows = s.length ? [ PVG.el('tr', {}, PVG.el('th', {}, 'When (UTC)'), PVG.el('th', {}, 'You searched for')) ] : [];
      for (const e of s)
          rows.push(PVG.el('tr', {'data-search' : e.query || ''}, PVG.el('td', {}, e.ts || ''),
                           PVG.el('td', {}, e.query || '')));
      $('searches').replaceChildren(...rows);
  }

  const when = (t) => new Date(t * 1000).toISOString().replace('T', ' ').slice(0, 16);

  // The shopper's assistant conversations, newest first, each turn with its
  // message and the constraints understood.
  function renderConversations(a)
  {
      const cs = a.conversations || [];
      $('conversations-summary').textContent =
          (cs.length ? cs.length + (cs.length === 1 ? ' conversation' : ' conversations') + ' kept.'
                     : 'No conversation with the assistant is kept.') +
          ' A conversation is kept ' + a.retention_days + ' days after its last message.';
      $('conversations').replaceChildren(...cs.map((c) => {
          const turns = c.turns || [];
          return PVG.el('div', {class : 'conv', 'data-conv' : c.id},
                        PVG.el('div', {class : 'muted'},
                               'started ' + when(c.created_at) + ' UTC, last message ' + when(c.updated_at) +
                                   ', erased by ' + when(c.expires_at) + ' at the latest'),
                        PVG.el('ol', {}, ...turns.map((t) => PVG.el(
                            'li', {'data-turn' : ''}, PVG.el('span', {class : 'you'}, t.message),
                            PVG.el('span', {class : 'muted'},
                                   ' (' + (t.items || []).length + ' items shown)'),
                            PVG.el('div', {class : 'chips'}, ...PVG.constraintChips(t.constraints))))));
      }));
  }

  async function refreshHistory(exp)
  {
      renderSearches(exp);
      try {
          renderConversations(await PVG.api('GET', path() + '/conversations', tok()));
          PVG.status('history-status', '');
      } catch (e) {
          PVG.status('history-status', 'conversations: ' + e.message, 'error');
      }
  }

  // The earliest and latest time of the shopper's own events (ISO strings
  // of one format compare as times), not when they were imported.
  function eventSpan(events)
  {
      let first = null, last = null;
      for (const e of events) {
          if (!e.ts) continue;
          if (first === null || e.ts < first) first = e.ts;
          if (last === null || e.ts > last) last = e.ts;
      }
      return {first, last};
  }

  const day = (iso) => (iso || '').slice(0, 10);

  function renderHeld(exp)
  {
      retention = exp.retention_days || {};
      const events = exp.events || [];
      const n = exp.event_count !== undefined ? exp.event_count : events.length;
      const span = eventSpan(events);
      const what = n === 0 ? 'No events are held about you.'
                           : n + (n === 1 ? ' event' : ' events') + ', from ' + day(span.first) +
                                 ' to ' + day(span.last) + ' (when they happened).';
      $('summary').textContent = what + ' Known to us since ' + day(exp.created_at) +
                                 ', only by a pseudonym (' + (exp.pseudonym || '') + ').';
      $('summary').dataset.first = span.first || '';
      $('summary').dataset.last = span.last || '';
  }

  // The purposes and the switches, from the consent answer.
  function renderConsent(c)
  {
      const purposes = c.purposes || [];
      const rows =
          [ PVG.el('tr', {}, PVG.el('th', {}, 'Purpose'), PVG.el('th', {}, 'What it is for'),
                   PVG.el('th', {}, 'Events used'), PVG.el('th', {}, 'Active')) ];
      for (const p of purposes) {
          rows.push(PVG.el(
              'tr', {'data-purpose' : p.name}, PVG.el('td', {}, p.name),
              PVG.el('td', {}, p.description || ''),
              PVG.el('td', {},
                     (p.event_types || [])
                         .map((t) => t + (retention[t] ? ' (' + retention[t] + ' days)' : ''))
                         .join(', ')),
              PVG.el('td', {}, p.granted ? 'yes' : 'no')));
      }
      $('purposes').replaceChildren(...rows);
      const switches = [];
      for (const p of purposes)
          if (p.consent && !switches.includes(p.consent)) switches.push(p.consent);
      const boxes = switches.map((s) => {
          const governed = purposes.filter((p) => p.consent === s);
          const input =
              PVG.el('input', {type : 'checkbox', id : 'consent-' + s, 'data-switch' : s});
          input.checked = !!c[s];
          input.addEventListener('change', () => saveConsent(s, input.checked));
          return PVG.el('div', {class : 'switch'}, input, PVG.el('label', { for: 'consent-' + s
          }, governed.map((p) => p.description || p.name).join('; ') + ' (' + s + ')'));
      });
      $('switches').className = '';
      $('switches').replaceChildren(...boxes);
  }

  const WHO = {
      you : 'you',
      operator : 'the shop (operator)',
      service : 'the service itself',
      other : 'other'
  };

  function renderAudit(a)
  {
      $('audit-summary').textContent =
          a.total + (a.total === 1 ? ' access' : ' accesses') + ' to your data recorded' +
          (a.shown < a.total ? '; the newest ' + a.shown + ' shown' : '') + ' (times in UTC).';
      const rows = [ PVG.el('tr', {}, PVG.el('th', {}, 'When'), PVG.el('th', {}, 'Who'),
                            PVG.el('th', {}, 'What'), PVG.el('th', {}, 'Purpose'),
                            PVG.el('th', {}, 'Outcome')) ];
      for (const e of a.entries || []) {
          rows.push(PVG.el('tr', {'data-seq' : e.seq, 'data-actor' : e.actor},
                           PVG.el('td', {}, e.time), PVG.el('td', {}, WHO[e.actor] || e.actor),
                           PVG.el('td', {}, e.action), PVG.el('td', {}, e.purpose),
                           PVG.el('td', {}, e.outcome)));
      }
      $('audit').replaceChildren(...rows);
  }

  async function refreshAudit()
  {
      try {
          renderAudit(await PVG.api('GET', path() + '/audit', tok()));
          PVG.status('audit-status', '');
      } catch (e) {
          PVG.status('audit-status', e.message, 'error');
      }
  }

  async function load() {
    PVG.set('user', $('user').value.trim());
    PVG.set('token', tok());
    let exp;
    try {
        exp = await PVG.api('GET', path() + '/data', tok());
        renderHeld(exp);
        renderConsent(await PVG.api('GET', path() + '/consent', tok()));
        enable(true);
        PVG.status('status', 'account open', 'ok');
    } catch (e) {
      enable(false);
      PVG.status('status', e.message, 'error');
      return;
    }
    await refreshHistory(exp);
    await refreshAudit();
  }

  // Only the switch that was flipped is sent (a partial update).
  async function saveConsent(s, on)
  {
      try {
          const r = await PVG.api('PATCH', path() + '/consent', tok(), {[s] : on});
          renderConsent(r);
          PVG.status('consent-status', 'saved: ' + s + ' ' + (r[s] ? 'on' : 'off'), 'ok');
          refreshAudit();
      } catch (e) {
          PVG.status('consent-status', e.message, 'error');
      }
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
      // and what on-device training kept in this browser (the shop page's
      // encrypted user factor and its key: fl_store.js)
      let local = '';
      try { await PvgFlStore.erase($('user').value.trim()); } catch (e) { local = ' (this browser\'s training state could not be erased: ' + e.message + ')'; }
      enable(false);
      $('summary').textContent = 'Your account was deleted: your data key was destroyed and your records erased. Your token no longer works.';
      $('purposes').replaceChildren();
      $('audit').replaceChildren();
      $('audit-summary').textContent = '';
      $('searches').replaceChildren();
      $('conversations').replaceChildren();
      $('searches-summary').textContent = 'Deleted with your account.';
      $('conversations-summary').textContent = 'Deleted with your account.';
      PVG.status('data-status', 'account deleted' + local, local ? 'error' : 'ok');
      PVG.set('token', '');
    } catch (e) { PVG.status('data-status', e.message, 'error'); }
  }

  $('load').addEventListener('click', load);
  $('download').addEventListener('click', download);
  $('delete').addEventListener('click', del);
  $('delete-all').addEventListener('click', del);
  if ($('user').value && tok()) load();
})();
