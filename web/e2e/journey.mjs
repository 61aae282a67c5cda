// A newcomer's journey, driven in headless Chromium against a server started by the README's
// product command (tests/e2e/test_journey.py): open the page, drop a photo, click, get a mask,
// export it. Usage: node journey.mjs --url URL --image FILE --out DIR
// Writes DIR/journey.json: the steps passed, and for the first broken one what went wrong.
// With --clicks N it then clicks N more times (steady state) and reports timings for bench/bench_e2e.py.
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { clientPoint, errorText, launch, state, waitState } from './browser.mjs';

const argv = process.argv.slice(2);
const opt = {};
for (let i = 0; i < argv.length; i += 2) opt[argv[i].replace(/^--/, '')] = argv[i + 1];
for (const k of ['url', 'image', 'out']) if (!opt[k]) throw new Error(`missing --${k}`);
mkdirSync(opt.out, { recursive: true });

const report = { steps: [], ok: false };
const logs = [];
const { page, close } = await launch({ log: (s) => logs.push(s) });
const save = () => writeFileSync(path.join(opt.out, 'journey.json'), JSON.stringify({ ...report, logs: logs.slice(-30) }, null, 1));

async function step(name, fn) {
  const t0 = Date.now();
  try {
    const result = await fn();
    report.steps.push({ name, ok: true, ms: Date.now() - t0, result });
  } catch (e) {
    const banner = await errorText(page).catch(() => null);
    report.steps.push({ name, ok: false, ms: Date.now() - t0, error: String(e?.message ?? e), banner });
    await page.screenshot({ path: path.join(opt.out, `journey-failed-${name}.png`) }).catch(() => {});
    throw e;
  }
}

try {
  const tOpen = Date.now();
  await step('open the page', async () => {
    const resp = await page.goto(opt.url);
    if (!resp || resp.status() !== 200) throw new Error(`GET / answered ${resp?.status()}`);
    const isolated = await page.evaluate(() => window.crossOriginIsolated);
    if (!isolated) throw new Error('the page is not cross-origin isolated (COOP/COEP headers missing): no WASM threads');
    await waitState(page, (s) => s.decoderReady, 'the decoder to load', 180000);
    return { isolated, readyMs: Date.now() - tOpen };
  });

  await step('drop a photo', async () => {
    const bytes = [...readFileSync(opt.image)];
    const name = path.basename(opt.image);
    // a real drop event carrying the file, as a drag from the desktop delivers it
    const dt = await page.evaluateHandle(([data, fileName]) => {
      const transfer = new DataTransfer();
      transfer.items.add(new File([new Uint8Array(data)], fileName, { type: 'image/jpeg' }));
      return transfer;
    }, [bytes, name]);
    await page.dispatchEvent('[data-testid="stage"]', 'dragover', { dataTransfer: dt });
    report.tDrop = Date.now();
    await page.dispatchEvent('[data-testid="stage"]', 'drop', { dataTransfer: dt });
    const s = await waitState(page, (x) => x.imageReady, 'the embedding of the dropped photo', 600000);
    return { original: s.original, input: s.input, embeddingMs: Date.now() - report.tDrop };
  });

  await step('click the object', async () => {
    const n = (await state(page)).decodeCount;
    const p = await clientPoint(page, Number(opt.x), Number(opt.y));
    await page.mouse.click(p.x, p.y);
    const s = await waitState(page, (x) => x.decodeCount > n, 'a mask after the click', 60000);
    const c2m = await page.evaluate(() => performance.getEntriesByName('clicksam:click-to-mask').map((e) => e.duration));
    if (c2m.length === 0) throw new Error('no clicksam:click-to-mask measure recorded');
    const firstMaskAt = Date.now();
    await page.screenshot({ path: path.join(opt.out, 'journey-mask.png') });
    return {
      decodeCount: s.decodeCount, clickToMaskMs: c2m,
      dropToFirstMaskMs: firstMaskAt - report.tDrop,
    };
  });

  await step('export the mask', async () => {
    const [dl] = await Promise.all([page.waitForEvent('download'), page.click('[data-testid="export-png"]')]);
    const file = path.join(opt.out, `journey-${dl.suggestedFilename()}`);
    await dl.saveAs(file);
    return { file, suggested: dl.suggestedFilename() };
  });
  const extra = Number(opt.clicks ?? 0);
  if (extra > 0) {
    await step('steady-state clicks', async () => {
      await page.keyboard.press('Escape');
      const s0 = await state(page);
      const { w, h } = s0.original;
      let seed = 7;
      const rand = () => ((seed = (seed * 16807) % 2147483647) / 2147483647);
      const durations = [];
      for (let i = 0; i < extra; i += 1) {
        if (i % 3 === 0) {
          await page.keyboard.press('Escape'); // a fresh object now and then, else refine
          // Escape repaints too (and records a measure): let that land before counting
          await page.evaluate(() => new Promise((r) => requestAnimationFrame(() => requestAnimationFrame(r))));
        }
        const measured = () => page.evaluate(() => performance.getEntriesByName('clicksam:click-to-mask').length);
        const n = await measured();
        const p = await clientPoint(page, Math.floor(w * (0.1 + 0.8 * rand())), Math.floor(h * (0.1 + 0.8 * rand())));
        await page.mouse.move(p.x - 3, p.y - 3); // a hover event first, as a real pointer makes
        await page.mouse.click(p.x, p.y, { button: i % 3 === 2 ? 'right' : 'left' });
        await page.waitForFunction((k) => performance.getEntriesByName('clicksam:click-to-mask').length > k, n, { timeout: 60000 });
        // this click's own measure (Escape's repaint, which also records one, landed before n)
        durations.push(await page.evaluate((k) => performance.getEntriesByName('clicksam:click-to-mask')[k].duration, n));
      }
      return { clickToMaskMs: durations };
    });
  }
  report.ok = true;
} catch {
  process.exitCode = 1;
} finally {
  save();
  await close();
}
