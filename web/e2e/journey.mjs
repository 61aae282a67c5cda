// A newcomer's journey, driven in headless Chromium against a server started by the README's
// product command (tests/e2e/test_journey.py): open the page, drop a photo, click, get a mask,
// export it. Usage: node journey.mjs --url URL --image FILE --out DIR
// Writes DIR/journey.json: the steps passed, and for the first broken one what went wrong.
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
  await step('open the page', async () => {
    const resp = await page.goto(opt.url);
    if (!resp || resp.status() !== 200) throw new Error(`GET / answered ${resp?.status()}`);
    const isolated = await page.evaluate(() => window.crossOriginIsolated);
    if (!isolated) throw new Error('the page is not cross-origin isolated (COOP/COEP headers missing): no WASM threads');
    await waitState(page, (s) => s.decoderReady, 'the decoder to load', 180000);
    return { isolated };
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
    await page.dispatchEvent('[data-testid="stage"]', 'drop', { dataTransfer: dt });
    const s = await waitState(page, (x) => x.imageReady, 'the embedding of the dropped photo', 300000);
    return { original: s.original, input: s.input };
  });

  await step('click the object', async () => {
    const n = (await state(page)).decodeCount;
    const p = await clientPoint(page, Number(opt.x), Number(opt.y));
    await page.mouse.click(p.x, p.y);
    const s = await waitState(page, (x) => x.decodeCount > n, 'a mask after the click', 60000);
    const c2m = await page.evaluate(() => performance.getEntriesByName('clicksam:click-to-mask').map((e) => e.duration));
    if (c2m.length === 0) throw new Error('no clicksam:click-to-mask measure recorded');
    await page.screenshot({ path: path.join(opt.out, 'journey-mask.png') });
    return { decodeCount: s.decodeCount, clickToMaskMs: c2m };
  });

  await step('export the mask', async () => {
    const [dl] = await Promise.all([page.waitForEvent('download'), page.click('[data-testid="export-png"]')]);
    const file = path.join(opt.out, `journey-${dl.suggestedFilename()}`);
    await dl.saveAs(file);
    return { file, suggested: dl.suggestedFilename() };
  });
  report.ok = true;
} catch {
  process.exitCode = 1;
} finally {
  save();
  await close();
}
