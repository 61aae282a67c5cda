// "Find…" (issue 19) end to end, against two running servers (started by tests/e2e/test_find.py):
// one with a tiny random OWLv2 detector, one without. Usage:
//   node find.mjs --url URL --url-off URL --images DIR --out DIR
// DIR holds scene.png (non-square). Walks: the field is shown; type a query and Enter; the boxes are
// drawn with label and score and a mask is decoded in the browser for each; keep one from the list;
// click another and refine it with a click (box + point), keep it with Enter; export COCO; "More like
// this" from a drawn box; a phone-sized screen; on the server without a detector the field is hidden
// and the hint shown. Writes DIR/find-results.json; the pytest side asserts on it and the files.
import { mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { clientPoint, errorText, launch, parseArgs, state, waitState } from './browser.mjs';

const o = parseArgs(process.argv.slice(2), ['url', 'url-off', 'images', 'out']);
mkdirSync(o.out, { recursive: true });
const results = { steps: [] };
const logs = [];
const { page, close } = await launch({ log: (s) => logs.push(s) });
const find = () => page.evaluate(() => window.__clicksam.find());
/** Wait until predicate(find state, page state) holds. */
async function waitFind(predicate, what, timeoutMs = 120000) {
  const t0 = Date.now();
  for (;;) {
    const f = await find();
    const s = await state(page);
    if (predicate(f, s)) return { f, s };
    if (Date.now() - t0 > timeoutMs) throw new Error(`timed out waiting for ${what}; error: ${await errorText(page)}; find: ${JSON.stringify(f)}`);
    await page.waitForTimeout(50);
  }
}
const shot = async (name) => {
  const file = path.join(o.out, `find-${name}.png`);
  await page.screenshot({ path: file });
  return file;
};
const step = async (name, fn) => {
  const t0 = Date.now();
  try {
    results[name] = await fn();
    results.steps.push({ name, ok: true, ms: Date.now() - t0 });
  } catch (e) {
    results.steps.push({ name, ok: false, ms: Date.now() - t0, error: String(e && e.stack ? e.stack : e) });
    await shot(`failed-${name}`).catch(() => {});
    throw e;
  }
};
/** What the server answers for the same request (read by the page, so the same origin). */
const serverDetect = (id, body) =>
  page.evaluate(async ([i, b]) => (await fetch(`api/embeddings/${i}/detect`, { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify(b) })).json(), [id, body]);
const boxesDrawn = () =>
  page.evaluate(() => Array.from(document.querySelectorAll('[data-testid^="detection-box-"]')).map((g) => ({ testid: g.getAttribute('data-testid'), caption: g.querySelector('text')?.textContent ?? '' })));
const objectsListed = () => page.evaluate(() => Array.from(document.querySelectorAll('[data-testid="objects-list"] li .name')).map((e) => e.textContent));
/** A drag from image pixel a to b (a box prompt). */
async function drag(a, b) {
  const p = await clientPoint(page, a[0], a[1]);
  const q = await clientPoint(page, b[0], b[1]);
  await page.mouse.move(p.x, p.y);
  await page.mouse.down();
  await page.mouse.move((p.x + q.x) / 2, (p.y + q.y) / 2, { steps: 4 });
  await page.mouse.move(q.x, q.y, { steps: 4 });
  await page.mouse.up();
}
// the tiny detector's scores are random: no threshold, a small cap
const query = '?detect_threshold=0&max_detections=4';

try {
  await page.goto(o.url + query);
  await step('start', async () => {
    await waitState(page, (s) => s.decoderReady, 'the decoder', 120000);
    const { f } = await waitFind((f) => f.enabled, 'the detector config', 30000);
    const n = (await state(page)).imagesLoaded;
    await page.setInputFiles('[data-testid="image-input"]', path.join(o.images, 'scene.png'));
    const s = await waitState(page, (x) => x.imagesLoaded > n && x.imageReady, 'encoding scene.png', 180000);
    const formShown = await page.locator('[data-testid="find-form"]').isVisible();
    const hintShown = await page.locator('[data-testid="find-hint"]').isVisible();
    return { detector: f.detector, formShown, hintShown, original: s.original, embeddingId: (await find()).embeddingId };
  });

  await step('query', async () => {
    const before = (await state(page)).decodeCount;
    await page.fill('[data-testid="find-input"]', 'dog, red car');
    await page.press('[data-testid="find-input"]', 'Enter');
    const { f, s } = await waitFind((f) => !f.busy && f.query !== null && f.pending === 0 && f.detections.length > 0, 'detections decoded');
    const server = await serverDetect(f.embeddingId, f.query);
    return {
      request: f.query,
      detections: f.detections,
      server,
      decodes: s.decodeCount - before,
      drawn: await boxesDrawn(),
      listed: await page.locator('[data-testid="detection-list"] li').count(),
      screenshot: await shot('query'),
    };
  });

  await step('keep', async () => {
    const first = results.query.detections[0];
    await page.click(`[data-testid="detection-keep-${first.id}"]`);
    const { f, s } = await waitFind((_f, s) => s.objects.length === 1, 'the kept detection');
    return { kept: first, objects: s.objects, left: f.detections.map((d) => d.id), listed: await objectsListed() };
  });

  await step('refine', async () => {
    const f0 = await find();
    // a click where this detection is the smallest mask under the pointer picks it
    const target = f0.detections.find((d) => d.pick !== null);
    if (!target) throw new Error(`no detection can be picked by a click: ${JSON.stringify(f0.detections)}`);
    const n = (await state(page)).decodeCount;
    const c = await clientPoint(page, target.pick.x, target.pick.y);
    await page.mouse.click(c.x, c.y);
    const { s: boxed } = await waitFind((_f, s) => s.decodeCount > n && s.prompts.box !== null && s.maskArea > 0, 'the picked detection as a box prompt');
    const [x0, y0, x1, y1] = target.box;
    const inside = await clientPoint(page, (x0 + x1) / 2 + (x1 - x0) / 8, (y0 + y1) / 2);
    await page.mouse.click(inside.x, inside.y);
    const { s: refined } = await waitFind((_f, s) => s.decodeCount > boxed.decodeCount && s.prompts.points.length === 1, 'the refining click');
    await page.keyboard.press('Enter');
    const { s, f } = await waitFind((_f, x) => x.objects.length === 2, 'the refined detection kept');
    return { picked: target, boxed: { prompts: boxed.prompts, maskArea: boxed.maskArea }, refined: { prompts: refined.prompts, maskArea: refined.maskArea }, objects: s.objects, adopted: f.adopted, listed: await objectsListed() };
  });

  await step('export', async () => {
    const [dl] = await Promise.all([page.waitForEvent('download'), page.click('[data-testid="export-coco"]')]);
    const file = path.join(o.out, `find-${dl.suggestedFilename()}`);
    await dl.saveAs(file);
    return { file };
  });

  await step('more', async () => {
    await drag([380, 250], [560, 420]);
    await waitState(page, (s) => s.prompts.box !== null && s.maskArea > 0, 'the drawn box');
    await page.click('[data-testid="more-like-this"]');
    const { f } = await waitFind((f) => !f.busy && f.query?.exemplars !== undefined && f.pending === 0, 'the exemplar query');
    return { request: f.query, detections: f.detections, drawn: await boxesDrawn(), screenshot: await shot('more') };
  });

  await step('phone', async () => {
    await page.setViewportSize({ width: 390, height: 800 });
    await page.waitForTimeout(300);
    const field = await page.locator('[data-testid="find-input"]').boundingBox();
    const overflow = await page.evaluate(() => document.documentElement.scrollWidth > window.innerWidth + 1);
    return { field, visible: await page.locator('[data-testid="find-input"]').isVisible(), overflow, screenshot: await shot('phone') };
  });

  await step('off', async () => {
    await page.setViewportSize({ width: 1280, height: 860 });
    await page.goto(o['url-off']);
    await waitState(page, (s) => s.decoderReady, 'the decoder (server without a detector)', 120000);
    const { f } = await waitFind((f) => f.hint !== null, 'the hint', 30000);
    const config = await page.evaluate(async () => (await fetch('api/config')).json());
    return {
      find: f,
      formShown: await page.locator('[data-testid="find-form"]').isVisible(),
      hintShown: await page.locator('[data-testid="find-hint"]').isVisible(),
      hintText: await page.locator('[data-testid="find-hint"]').textContent(),
      config: { detector: config.detector ?? null, detector_hint: config.detector_hint ?? null },
      screenshot: await shot('off'),
    };
  });
  results.ok = true;
} catch (e) {
  results.ok = false;
  results.error = String(e && e.stack ? e.stack : e);
} finally {
  await close();
}
results.logs = logs;
writeFileSync(path.join(o.out, 'find-results.json'), JSON.stringify(results, null, 1));
process.exit(results.ok ? 0 : 1);
