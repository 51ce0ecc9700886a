// fl_page.js - the form of /static/fl.html: one round of federated training in
// this browser (fl_browser.js) and the items ranked on this device.
'use strict';
(function () {
  const $ = (id) => document.getElementById(id);
  $('fl-go').addEventListener('click', async () => {
    const status = $('fl-status'), list = $('fl-recs');
    list.textContent = '';
    try {
      const items = $('fl-items').value.split('\n').map((s) => s.trim()).filter((s) => s);
      const events = $('fl-events').value.split('\n').filter((s) => s.trim()).map((s) => JSON.parse(s));
      const res = await PvgFl.run({ token: $('fl-token').value.trim(), items, events, rounds: 1,
        allowNoDp: $('fl-nodp').checked, onStatus: (s) => { status.textContent = 'round under way: ' + s; } });
      status.textContent = res.rounds ? 'round done: your update is in the sum' :
        'no round completed' + (res.lastRefusal ? ' (refused: ' + res.lastRefusal + ')' : '');
      for (const r of res.recommendations) {
        const li = document.createElement('li');
        li.textContent = r.item + ' (' + r.score.toFixed(3) + ')';
        list.appendChild(li);
      }
    } catch (e) {
      status.textContent = 'error: ' + e.message;
    }
  });
})();
