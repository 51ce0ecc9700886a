// fl_sampler.test.js - draws of the WebAssembly client's discrete Gaussian
// sampler (pvg_dp_discrete_gaussian, the sampler of each client's
// distributed-noise share) in headless Chromium, for tests/test_fl_wasm.c's
// statistical and exactness checks. The page is served by this script
// (route of a made-up origin: only the module and a blank page); it calls
// the module's test export pvgw_test_discrete_gaussian, which draws from the
// deterministic test generator with the given seed (the client core never
// uses it), and this script writes each configuration's draws as int32
// little-endian to PVG_DG_OUT/dg_<i>.bin.
//   PVG_WASM_DIR  the module (pvg_fl_client.js/.wasm)
//   PVG_DG_CONFIGS  [{num, den, seed, n}]
'use strict';
const { chromium } = require('playwright-core');
const fs = require('fs');
const path = require('path');

const WASM = process.env.PVG_WASM_DIR;
const OUT = process.env.PVG_DG_OUT;
const CONFIGS = JSON.parse(process.env.PVG_DG_CONFIGS);
const CHROMIUM = process.env.PVG_CHROMIUM || '/usr/bin/chromium';
const ORIGIN = 'http://pvg-sampler.test';

const watchdog = setTimeout(() => { console.error('FAIL: sampler draws exceeded 120 s'); process.exit(1); }, 120000);

(async () => {
  const browser = await chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  });
  try {
    const page = await browser.newPage();
    await page.route(ORIGIN + '/**', (route) => {
      const f = new URL(route.request().url()).pathname.slice(1);
      if (f === 'pvg_fl_client.js' || f === 'pvg_fl_client.wasm') {
        return route.fulfill({ status: 200,
          contentType: f.endsWith('.wasm') ? 'application/wasm' : 'text/javascript',
          body: fs.readFileSync(path.join(WASM, f)) });
      }
      return route.fulfill({ status: 200, contentType: 'text/html',
        body: '<!doctype html><html><head><script src="/pvg_fl_client.js"></script></head><body></body></html>' });
    });
    await page.goto(ORIGIN + '/');
    for (let i = 0; i < CONFIGS.length; i++) {
      const c = CONFIGS[i];
      const t = Date.now();
      const b64 = await page.evaluate(async (c) => {
        const M = await window.PvgFlWasm({ locateFile: (f) => '/' + f });
        const p = M._malloc(8 * c.n);
        if (M._pvgw_test_discrete_gaussian(c.num, c.den, c.seed, c.n, p) !== 0)
          throw new Error(M.UTF8ToString(M._pvgw_new_error()));
        const x = new Float64Array(M.HEAPF64.buffer, p, c.n);
        const out = new Int32Array(c.n);
        for (let j = 0; j < c.n; j++) {
          if (!(Math.abs(x[j]) < 2 ** 31)) throw new Error('draw ' + j + ' out of int32: ' + x[j]);
          out[j] = x[j];
        }
        M._free(p);
        const bytes = new Uint8Array(out.buffer);
        let s = '';
        for (let j = 0; j < bytes.length; j += 0x8000) s += String.fromCharCode.apply(null, bytes.subarray(j, j + 0x8000));
        return btoa(s);
      }, c);
      fs.writeFileSync(path.join(OUT, 'dg_' + i + '.bin'), Buffer.from(b64, 'base64'));
      console.log('ok - sigma^2 = ' + c.num + '/' + c.den + ': ' + c.n + ' draws in ' + (Date.now() - t) + ' ms');
    }
  } finally {
    await browser.close();
  }
  clearTimeout(watchdog);
})().catch((e) => { console.error('FAIL: ' + (e && e.stack ? e.stack : e)); process.exit(1); });
