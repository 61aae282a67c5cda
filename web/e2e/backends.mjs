// The same clicks on the WebGPU and the WASM decoder backends, for tests/e2e/test_webgpu.py.
// Usage: node backends.mjs --url URL --image FILE --clicks clicks.json --out DIR
// clicks.json: [{"x": 190, "y": 160, "button": "left"}, ...] in original px.
// Chromium exposes WebGPU through SwiftShader (Vulkan on the CPU) with WEBGPU_ARGS, even headless
// with --disable-gpu. For each backend a fresh browser opens the page with ?backend=NAME, waits for
// the decoder's warm-up, opens the image, and after each click records the page state and saves the
// mask PNG (the export button). Then a browser without WEBGPU_ARGS asks for WebGPU, to record the
// page's message. Writes DIR/backends.json.
import { readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { CHROMIUM_ARGS, clientPoint, errorText, launch, state, waitState } from './browser.mjs';

/** Chromium flags that give navigator.gpu a SwiftShader adapter (no shader-f16) on a CPU-only box. */
export const WEBGPU_ARGS = ['--enable-unsafe-webgpu'];

const o = {};
const argv = process.argv.slice(2);
for (let i = 0; i < argv.length; i += 2) o[argv[i].replace(/^--/, '')] = argv[i + 1];
for (const k of ['url', 'image', 'clicks', 'out']) if (!o[k]) throw new Error(`missing --${k}`);
const clicks = JSON.parse(readFileSync(o.clicks, 'utf8'));
const results = { runs: {}, ok: false };
const save = () => writeFileSync(path.join(o.out, 'backends.json'), JSON.stringify(results, null, 1));

async function clickThrough(backend) {
  const logs = [];
  const t0 = Date.now();
  const run = { logs, clicks: [] };
  results.runs[backend] = run;
  const { page, close } = await launch({ args: [...CHROMIUM_ARGS, ...WEBGPU_ARGS], log: (s) => logs.push(s) });
  try {
    await page.goto(`${o.url}?backend=${backend}`);
    run.ready = await waitState(page, (s) => s.decoderReady, `the ${backend} decoder`, 300000);
    run.adapter = await page.evaluate(async () => {
      const a = await navigator.gpu?.requestAdapter();
      return a ? { vendor: a.info?.vendor, architecture: a.info?.architecture, shaderF16: a.features.has('shader-f16') } : null;
    });
    await page.waitForFunction(() => performance.getEntriesByName('clicksam:warm-up').length > 0, null, { timeout: 600000, polling: 200 });
    run.warmUp = await page.evaluate(() => performance.getEntriesByName('clicksam:warm-up').map((e) => ({ ms: e.duration, ...e.detail })));
    await page.setInputFiles('[data-testid="image-input"]', o.image);
    await waitState(page, (s) => s.imageReady, 'the embedding', 300000);
    for (const [i, c] of clicks.entries()) {
      const n = (await state(page)).decodeCount;
      const p = await clientPoint(page, c.x, c.y);
      await page.mouse.click(p.x, p.y, { button: c.button });
      const s = await waitState(page, (x) => x.decodeCount > n, `decode of click ${i + 1}`, 600000);
      const [dl] = await Promise.all([page.waitForEvent('download'), page.click('[data-testid="export-png"]')]);
      const file = path.join(o.out, `${backend}-click${i + 1}.png`);
      await dl.saveAs(file);
      run.clicks.push({ backend: s.backend, token: s.token, ranked: s.ranked, iou: s.iou, maskArea: s.maskArea, decodeMs: s.lastDecodeMs, file });
    }
    run.error = await errorText(page);
  } finally {
    run.seconds = (Date.now() - t0) / 1000;
    await close();
  }
}

try {
  for (const backend of ['wasm', 'webgpu']) await clickThrough(backend);
  // WebGPU asked for where the browser has no adapter: the page must say so, not fall back silently.
  const { page, close } = await launch();
  try {
    await page.goto(`${o.url}?backend=webgpu`);
    await page.waitForFunction(() => !document.querySelector('[data-testid="error"]').hidden, null, { timeout: 120000 });
    results.noAdapter = { error: await errorText(page), state: await state(page) };
  } finally {
    await close();
  }
  results.ok = true;
} catch (e) {
  results.error = String(e?.stack ?? e);
  process.exitCode = 1;
} finally {
  save();
}
