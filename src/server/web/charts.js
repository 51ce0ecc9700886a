// charts.js - the dashboard's charts: line and bar charts drawn as inline
// SVG (no library, no CDN): linear scales with "nice" ticks (1, 2, 5 x 10^k),
// time ticks on round steps, axes, gaps for missing values, a legend, a
// hover guide with a tooltip, and bars with confidence-interval whiskers.
// Colours are SVG attributes and positions go through the CSSOM, as the
// pages' Content-Security-Policy forbids inline style attributes.
// In the browser: the global PVGCharts; in node: module.exports (the unit
// test of scales and ticks in tests/web/pages.test.js).
'use strict';

const PVGCharts = (() => {
  const NS = 'http://www.w3.org/2000/svg';
  const PALETTE = ['#2f6fec', '#c02a2a', '#1c8a4a', '#b4530a', '#7b3fc4', '#0e8a99', '#8a6d0e', '#5b6475'];

  // Ticks between lo and hi: about n steps of 1, 2 or 5 times a power of ten.
  function niceStep(span, n) {
    if (!(span > 0) || !(n > 0)) return 1;
    const raw = span / n;
    const p = Math.pow(10, Math.floor(Math.log10(raw)));
    const f = raw / p;
    return (f <= 1 ? 1 : f <= 2 ? 2 : f <= 5 ? 5 : 10) * p;
  }

  // Rounds away floating-point noise (0.30000000000000004 -> 0.3).
  function clean(x, step) {
    const d = Math.max(0, -Math.floor(Math.log10(step)) + 1);
    return Number(x.toFixed(Math.min(d, 15)));
  }

  function niceTicks(lo, hi, n) {
    if (!isFinite(lo) || !isFinite(hi)) return [];
    if (hi < lo) [lo, hi] = [hi, lo];
    if (hi === lo) return [clean(lo, 1)];
    const step = niceStep(hi - lo, n || 5);
    const out = [];
    for (let v = Math.ceil(lo / step - 1e-9) * step; v <= hi + step * 1e-9; v += step) out.push(clean(v, step));
    return out;
  }

  // The domain widened to nice ticks (so the top tick sits on the axis end).
  function niceDomain(lo, hi, n) {
    if (!isFinite(lo) || !isFinite(hi)) return [0, 1];
    if (hi === lo) return lo === 0 ? [0, 1] : lo > 0 ? [0, lo * 2] : [lo * 2, 0];
    const step = niceStep(hi - lo, n || 5);
    return [clean(Math.floor(lo / step + 1e-9) * step, step), clean(Math.ceil(hi / step - 1e-9) * step, step)];
  }

  function linearScale(domain, range) {
    const [d0, d1] = domain, [r0, r1] = range;
    const k = d1 !== d0 ? (r1 - r0) / (d1 - d0) : 0;
    const f = (x) => r0 + (x - d0) * k;
    f.invert = (y) => (k ? d0 + (y - r0) / k : d0);
    f.domain = [d0, d1];
    f.range = [r0, r1];
    f.ticks = (n) => niceTicks(d0, d1, n);
    return f;
  }

  // Time ticks (seconds since the epoch, UTC) on round steps.
  const TIME_STEPS = [1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 10800, 21600, 43200, 86400, 172800, 604800];
  function timeTicks(lo, hi, n) {
    if (!(hi > lo)) return [lo];
    const want = (hi - lo) / (n || 6);
    const step = TIME_STEPS.find((s) => s >= want) || Math.ceil(want / 86400) * 86400;
    const out = [];
    for (let t = Math.ceil(lo / step) * step; t <= hi; t += step) out.push(t);
    return out;
  }

  function pad2(x) { return (x < 10 ? '0' : '') + x; }
  function formatTime(t, span) {
    const d = new Date(t * 1000);
    const hm = pad2(d.getUTCHours()) + ':' + pad2(d.getUTCMinutes());
    if (span !== undefined && span < 600) return hm + ':' + pad2(d.getUTCSeconds());
    return hm;
  }
  function formatDateTime(t) { return new Date(t * 1000).toISOString().replace('T', ' ').replace(/\.\d+Z$/, 'Z'); }

  function formatNumber(x) {
    if (x === null || x === undefined || !isFinite(x)) return '–';
    const a = Math.abs(x);
    if (a >= 1e9) return (x / 1e9).toFixed(a >= 1e10 ? 0 : 1) + 'G';
    if (a >= 1e6) return (x / 1e6).toFixed(a >= 1e7 ? 0 : 1) + 'M';
    if (a >= 1e4) return (x / 1e3).toFixed(a >= 1e5 ? 0 : 1) + 'k';
    if (a >= 100 || a === 0) return String(Math.round(x));
    if (a >= 1) return String(Number(x.toFixed(2)));
    return String(Number(x.toPrecision(2)));
  }

  // ---- DOM ----
  function svgEl(tag, attrs, ...kids) {
    const e = document.createElementNS(NS, tag);
    for (const [k, v] of Object.entries(attrs || {})) if (v !== undefined && v !== null) e.setAttribute(k, String(v));
    for (const c of kids) if (c !== null && c !== undefined) e.append(c instanceof Node ? c : document.createTextNode(String(c)));
    return e;
  }
  function htmlEl(tag, cls, text) {
    const e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text !== undefined) e.textContent = text;
    return e;
  }

  function legend(series) {
    const box = htmlEl('div', 'chart-legend');
    for (const s of series) {
      const item = htmlEl('span', 'chart-legend-item');
      item.setAttribute('data-series', s.name);
      const sw = svgEl('svg', { width: 12, height: 12, 'aria-hidden': 'true' }, svgEl('rect', { width: 12, height: 12, rx: 2, fill: s.color }));
      item.append(sw, document.createTextNode(' ' + s.name));
      box.append(item);
    }
    return box;
  }

  function frame(container, opt) {
    const width = opt.width || Math.max(320, Math.floor(container.clientWidth || 520));
    const height = opt.height || 220;
    const m = { top: 12, right: 14, bottom: 28, left: 54 };
    const wrap = htmlEl('div', 'chart');
    if (opt.title) wrap.append(htmlEl('div', 'chart-title', opt.title));
    const svg = svgEl('svg', { width, height, viewBox: '0 0 ' + width + ' ' + height, role: 'img', class: 'chart-svg',
      'aria-label': opt.title || 'chart' });
    const tip = htmlEl('div', 'chart-tip');
    tip.hidden = true;
    const plot = htmlEl('div', 'chart-plot');
    plot.append(svg, tip);
    wrap.append(plot);
    return { wrap, svg, tip, plot, width, height, m, iw: width - m.left - m.right, ih: height - m.top - m.bottom };
  }

  function yAxis(f, y, ticks, label) {
    const g = svgEl('g', { class: 'axis axis-y' });
    for (const t of ticks) {
      const py = y(t);
      g.append(svgEl('line', { x1: f.m.left, x2: f.m.left + f.iw, y1: py, y2: py, stroke: '#e2e5ee' }));
      g.append(svgEl('text', { x: f.m.left - 6, y: py + 4, 'text-anchor': 'end', class: 'tick', 'font-size': 11, fill: '#5b6475' }, formatNumber(t)));
    }
    if (label) g.append(svgEl('text', { x: 4, y: f.m.top - 2, class: 'axis-label', 'font-size': 11, fill: '#5b6475' }, label));
    f.svg.append(g);
  }

  function showTip(f, px, py, lines) {
    f.tip.replaceChildren(...lines.map((l, i) => htmlEl('div', i ? '' : 'chart-tip-head', l)));
    f.tip.hidden = false;
    const left = Math.min(px + 12, f.width - 170);
    f.tip.style.left = Math.max(0, left) + 'px';
    f.tip.style.top = Math.max(0, py - 10) + 'px';
  }

  // series: [{name, values: [number|null], color?}], x: [number] (seconds
  // since the epoch when opt.time). Missing values (null) break the line;
  // opt.step draws steps (a value holds until the next point).
  function lineChart(container, opt) {
    const series = opt.series.map((s, i) => ({ ...s, color: s.color || PALETTE[i % PALETTE.length] }));
    const x = opt.x;
    const f = frame(container, opt);
    let lo = Infinity, hi = -Infinity;
    for (const s of series) for (const v of s.values) if (v !== null && v !== undefined && isFinite(v)) { lo = Math.min(lo, v); hi = Math.max(hi, v); }
    const empty = lo === Infinity;
    if (empty) { lo = 0; hi = 1; }
    if (opt.zero !== false) lo = Math.min(0, lo);
    const yd = niceDomain(lo, hi, 4);
    const y = linearScale(yd, [f.m.top + f.ih, f.m.top]);
    const x0 = x.length ? x[0] : 0, x1 = x.length ? x[x.length - 1] : 1;
    const xs = linearScale([x0, x1 > x0 ? x1 : x0 + 1], [f.m.left, f.m.left + f.iw]);
    yAxis(f, y, y.ticks(4), opt.yLabel);
    const gx = svgEl('g', { class: 'axis axis-x' });
    gx.append(svgEl('line', { x1: f.m.left, x2: f.m.left + f.iw, y1: f.m.top + f.ih, y2: f.m.top + f.ih, stroke: '#5b6475' }));
    const xt = opt.time ? timeTicks(x0, x1, Math.max(2, Math.floor(f.iw / 90))) : niceTicks(x0, x1, Math.max(2, Math.floor(f.iw / 90)));
    for (const t of xt) {
      const px = xs(t);
      gx.append(svgEl('line', { x1: px, x2: px, y1: f.m.top + f.ih, y2: f.m.top + f.ih + 4, stroke: '#5b6475' }));
      gx.append(svgEl('text', { x: px, y: f.m.top + f.ih + 17, 'text-anchor': 'middle', class: 'tick', 'font-size': 11, fill: '#5b6475' },
        opt.time ? formatTime(t, x1 - x0) : formatNumber(t)));
    }
    f.svg.append(gx);
    for (const s of series) {
      let d = '', pen = false, lonely = [];
      s.values.forEach((v, i) => {
        if (v === null || v === undefined || !isFinite(v)) { pen = false; return; }
        const prevOk = i > 0 && s.values[i - 1] !== null && s.values[i - 1] !== undefined;
        const nextOk = i + 1 < s.values.length && s.values[i + 1] !== null && s.values[i + 1] !== undefined;
        if (!prevOk && !nextOk) lonely.push(i);
        const px = xs(x[i]).toFixed(1), py = y(v).toFixed(1);
        // opt.step: a value holds until the next point (cumulative series)
        d += !pen ? 'M' + px + ' ' + py : opt.step ? 'H' + px + 'V' + py : 'L' + px + ' ' + py;
        pen = true;
      });
      const g = svgEl('g', { class: 'series', 'data-series': s.name });
      if (d) g.append(svgEl('path', { d, fill: 'none', stroke: s.color, 'stroke-width': 1.8, 'stroke-linejoin': 'round' }));
      for (const i of lonely) g.append(svgEl('circle', { cx: xs(x[i]), cy: y(s.values[i]), r: 2.5, fill: s.color }));
      f.svg.append(g);
    }
    if (empty) f.svg.append(svgEl('text', { x: f.m.left + f.iw / 2, y: f.m.top + f.ih / 2, 'text-anchor': 'middle', class: 'chart-empty', fill: '#5b6475', 'font-size': 13 }, opt.emptyText || 'no data yet'));
    // hover: a guide at the nearest point and a tooltip with every series
    const guide = svgEl('line', { y1: f.m.top, y2: f.m.top + f.ih, stroke: '#9aa3b5', 'stroke-dasharray': '3 3', visibility: 'hidden' });
    const hit = svgEl('rect', { x: f.m.left, y: f.m.top, width: f.iw, height: f.ih, fill: 'transparent', class: 'chart-hit' });
    f.svg.append(guide, hit);
    const at = (px) => {
      if (!x.length) return -1;
      const t = xs.invert(px);
      let best = 0;
      for (let i = 1; i < x.length; i++) if (Math.abs(x[i] - t) < Math.abs(x[best] - t)) best = i;
      return best;
    };
    hit.addEventListener('mousemove', (ev) => {
      const r = f.svg.getBoundingClientRect();
      const i = at((ev.clientX - r.left) * (f.width / r.width));
      if (i < 0) return;
      const px = xs(x[i]);
      guide.setAttribute('x1', px);
      guide.setAttribute('x2', px);
      guide.setAttribute('visibility', 'visible');
      showTip(f, px, ev.clientY - r.top, [opt.time ? formatDateTime(x[i]) : formatNumber(x[i]),
        ...series.map((s) => s.name + ': ' + formatNumber(s.values[i]) + (opt.unit ? ' ' + opt.unit : ''))]);
    });
    hit.addEventListener('mouseleave', () => { guide.setAttribute('visibility', 'hidden'); f.tip.hidden = true; });
    if (series.length > 1 || opt.legend) f.wrap.append(legend(series));
    container.replaceChildren(f.wrap);
    return { svg: f.svg, x: xs, y };
  }

  // Grouped bars: categories on x, one bar per series in each; a series may
  // carry ci: [[lo, hi] | null] drawn as whiskers.
  function barChart(container, opt) {
    const series = opt.series.map((s, i) => ({ ...s, color: s.color || PALETTE[i % PALETTE.length] }));
    const cats = opt.categories;
    const f = frame(container, opt);
    let hi = -Infinity, lo = Infinity;
    for (const s of series) s.values.forEach((v, i) => {
      const c = s.ci && s.ci[i];
      for (const w of [v, c && c[0], c && c[1]]) if (typeof w === 'number' && isFinite(w)) { hi = Math.max(hi, w); lo = Math.min(lo, w); }
    });
    const empty = hi === -Infinity;
    if (empty) { hi = 1; lo = 0; }
    const yd = niceDomain(Math.min(0, lo), opt.yMax !== undefined ? Math.max(opt.yMax, hi) : hi, 4);
    const y = linearScale(yd, [f.m.top + f.ih, f.m.top]);
    yAxis(f, y, y.ticks(4), opt.yLabel);
    const band = cats.length ? f.iw / cats.length : f.iw;
    const bw = Math.max(3, Math.min(36, (band * 0.8) / Math.max(1, series.length)));
    const gx = svgEl('g', { class: 'axis axis-x' });
    gx.append(svgEl('line', { x1: f.m.left, x2: f.m.left + f.iw, y1: y(0), y2: y(0), stroke: '#5b6475' }));
    const every = Math.max(1, Math.ceil(cats.length / Math.max(1, Math.floor(f.iw / 60))));
    cats.forEach((c, i) => {
      if (i % every) return;
      gx.append(svgEl('text', { x: f.m.left + band * (i + 0.5), y: f.m.top + f.ih + 17, 'text-anchor': 'middle', class: 'tick', 'font-size': 11, fill: '#5b6475' },
        String(c).length > 14 ? String(c).slice(0, 13) + '…' : String(c)));
    });
    f.svg.append(gx);
    series.forEach((s, si) => {
      const g = svgEl('g', { class: 'series', 'data-series': s.name });
      s.values.forEach((v, i) => {
        if (typeof v !== 'number' || !isFinite(v)) return;
        const cx = f.m.left + band * i + (band - bw * series.length) / 2 + bw * si;
        const top = y(Math.max(0, v)), bot = y(Math.min(0, v));
        const bar = svgEl('rect', { x: cx.toFixed(1), y: top.toFixed(1), width: (bw - 1).toFixed(1), height: Math.max(0.5, bot - top).toFixed(1), fill: s.color, class: 'chart-bar', 'data-category': cats[i] });
        const c = s.ci && s.ci[i];
        const lines = [String(cats[i]), s.name + ': ' + formatNumber(v) + (opt.unit ? ' ' + opt.unit : '')];
        if (c) lines.push('interval: [' + formatNumber(c[0]) + ', ' + formatNumber(c[1]) + ']');
        for (const [k, l] of Object.entries(s.extra ? s.extra[i] || {} : {})) lines.push(k + ': ' + l);
        bar.addEventListener('mousemove', (ev) => { const r = f.svg.getBoundingClientRect(); showTip(f, ev.clientX - r.left, ev.clientY - r.top, lines); });
        bar.addEventListener('mouseleave', () => { f.tip.hidden = true; });
        g.append(bar);
        if (c && isFinite(c[0]) && isFinite(c[1])) {
          const mx = cx + (bw - 1) / 2, w = Math.min(8, bw / 2);
          const wk = svgEl('g', { class: 'whisker', stroke: '#1d2330', 'stroke-width': 1.2 });
          wk.append(svgEl('line', { x1: mx, x2: mx, y1: y(c[0]), y2: y(c[1]) }),
            svgEl('line', { x1: mx - w / 2, x2: mx + w / 2, y1: y(c[0]), y2: y(c[0]) }),
            svgEl('line', { x1: mx - w / 2, x2: mx + w / 2, y1: y(c[1]), y2: y(c[1]) }));
          g.append(wk);
        }
      });
      f.svg.append(g);
    });
    if (empty) f.svg.append(svgEl('text', { x: f.m.left + f.iw / 2, y: f.m.top + f.ih / 2, 'text-anchor': 'middle', class: 'chart-empty', fill: '#5b6475', 'font-size': 13 }, opt.emptyText || 'no data yet'));
    if (series.length > 1 || opt.legend) f.wrap.append(legend(series));
    container.replaceChildren(f.wrap);
    return { svg: f.svg, y };
  }

  return { niceStep, niceTicks, niceDomain, linearScale, timeTicks, formatNumber, formatTime, lineChart, barChart, PALETTE };
})();

if (typeof module !== 'undefined' && module.exports) module.exports = PVGCharts;
