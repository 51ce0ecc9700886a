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

  function itemCard(it, onclick) {
    return el('div', { class: 'card', 'data-item': it.item, onclick: onclick ? () => onclick(it) : null },
      el('div', { class: 'title' }, it.title || it.item),
      el('div', { class: 'meta' }, el('span', {}, it.item), el('span', { class: 'price' }, money(it.price))));
  }

  return { get, set, api, el, status, money, itemCard };
})();
