// common.js - shared helpers of the privguide pages: the credential (taken
// from the URL fragment, kept in sessionStorage, never sent in a URL), API
// calls with JSON errors shown to the user, and small DOM helpers.
'use strict';

const PVG = (() => {
  const frag = new URLSearchParams(location.hash.replace(/^#/, ''));
  for (const k of ['key', 'token', 'user', 'users']) {
    if (frag.get(k)) sessionStorage.setItem('pvg_' + k, frag.get(k));
  }
  if (location.hash) history.replaceState(null, '', location.pathname + location.search);

  function get(name) { return sessionStorage.getItem('pvg_' + name) || ''; }
  function set(name, v) { if (v) sessionStorage.setItem('pvg_' + name, v); else sessionStorage.removeItem('pvg_' + name); }

  async function api(method, path, cred, body) {
    const headers = { 'Accept': 'application/json' };
    if (cred) headers['Authorization'] = 'Bearer ' + cred;
    if (body !== undefined) headers['Content-Type'] = 'application/json';
    const res = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
    const text = await res.text();
    let data = null;
    try { data = JSON.parse(text); } catch (e) { data = null; }
    if (!res.ok) {
      const msg = data && data.message ? data.message : (res.status + ' ' + res.statusText);
      const err = new Error(msg);
      err.status = res.status;
      err.data = data;
      throw err;
    }
    return data === null ? text : data;
  }

  function el(tag, attrs, ...children) {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (k === 'class') e.className = v;
      else if (k.startsWith('on')) e.addEventListener(k.slice(2), v);
      else e.setAttribute(k, v);
    }
    for (const c of children) if (c !== null && c !== undefined) e.append(c instanceof Node ? c : String(c));
    return e;
  }

  function status(id, msg, kind) {
    const s = document.getElementById(id);
    s.textContent = msg || '';
    s.className = 'status' + (kind ? ' ' + kind : '');
  }

  function money(p) { return (typeof p === 'number' && p >= 0) ? '£' + p.toFixed(2) : ''; }

  // "Why this?": a disclosure with the evidence lines of an item. Opening
  // it does not open the item (no view is recorded for it).
  function whyBox(lines) {
    const d = el('details', { class: 'why', 'data-why': '' },
      el('summary', {}, 'why this?'),
      el('ul', {}, ...(lines.length ? lines : ['no evidence was given for this item']).map((l) => el('li', {}, l))));
    d.addEventListener('click', (e) => e.stopPropagation());
    return d;
  }

  // it.why_lines (an array of strings) adds the "why this?" disclosure.
  function itemCard(it, onclick) {
    const c = el('div', { class: 'card', 'data-item': it.item, onclick: onclick ? () => onclick(it) : null },
      el('div', { class: 'title' }, it.title || it.item),
      el('div', { class: 'meta' }, el('span', {}, it.item), el('span', { class: 'price' }, money(it.price))));
    if (it.why_lines) c.append(whyBox(it.why_lines));
    return c;
  }

  const CUR = { GBP: '£', USD: '$', EUR: '€' };

  // The assistant's parsed constraints as short labelled chips (the shop's
  // answers and the portal's conversations).
  function constraintChips(c) {
    const chips = [];
    const add = (kind, text) => chips.push(el('span', { class: 'chip', 'data-chip': kind }, text));
    if (!c) return chips;
    const p = c.price || {};
    const sym = CUR[p.currency] || '£';
    const m = (x) => sym + Number(x).toFixed(2);
    if (p.min !== null && p.min !== undefined && p.max !== null && p.max !== undefined) add('price', m(p.min) + ' to ' + m(p.max));
    else if (p.max !== null && p.max !== undefined) add('price', 'under ' + m(p.max));
    else if (p.min !== null && p.min !== undefined) add('price', 'over ' + m(p.min));
    if (p.relative) add('price', p.relative);
    for (const x of c.categories || []) add('category', 'category: ' + x);
    if ((c.terms || []).length) add('terms', 'words: ' + c.terms.join(' '));
    for (const x of c.exclusions || []) add('exclusion', 'not ' + x);
    if (c.recipient) add('recipient', 'for ' + c.recipient);
    if (c.occasion) add('occasion', c.occasion);
    if (c.quantity) add('quantity', c.quantity + ' wanted');
    if (c.similar_to) add('similar', 'like ' + (c.similar_to.item || c.similar_to.title));
    if (c.reference && c.reference.kind && c.reference.kind !== 'none')
      add('reference', c.reference.kind + (c.reference.index !== null && c.reference.index !== undefined ? ' (' + c.reference.index + ')' : ''));
    return chips;
  }

  return { get, set, api, el, status, money, itemCard, whyBox, constraintChips };
})();
