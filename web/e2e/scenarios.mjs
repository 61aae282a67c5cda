// End-to-end scenarios against a running `clicksam serve` (started by tests/e2e/test_page.py).
// Usage: node scenarios.mjs --url URL --images DIR --out DIR [--steps click,candidates,...]
// Drives the page in headless Chromium and writes DIR/results.json with what it saw (states,
// exported files, error texts, screenshots); the pytest side asserts on it and on the files.
// --steps runs only the named scenarios (in their usual order; 'start' always runs), e.g. for a
// second model whose encodes are slow.
import { mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { clientPoint, errorText, launch, parseArgs, state, waitState } from './browser.mjs';

const o = parseArgs(process.argv.slice(2), ['url', 'images', 'out']);
const only = o.steps ? new Set(['start', ...o.steps.split(',')]) : null;
mkdirSync(o.out, { recursive: true });
const results = { steps: [] };
const logs = [];
const { page, close } = await launch({ log: (s) => logs.push(s) });
const shot = async (name) => {
  const file = path.join(o.out, `${name}.png`);
  await page.screenshot({ path: file });
  return file;
};
const step = async (name, fn) => {
  if (only && !only.has(name)) return;
  const t0 = Date.now();
  try {
    const r = await fn();
    results[name] = r;
    results.steps.push({ name, ok: true, ms: Date.now() - t0 });
  } catch (e) {
    results.steps.push({ name, ok: false, ms: Date.now() - t0, error: String(e && e.stack ? e.stack : e) });
    await shot(`failed-${name}`).catch(() => {});
    throw e;
  }
};
const decodes = async () => (await state(page)).decodeCount;
/** Do `action` and wait for the decode it causes to be painted. */
const decoded = async (action, what) => {
  const n = await decodes();
  await action();
  return waitState(page, (s) => s.decodeCount > n, what);
};
const upload = async (file) => {
  const n = (await state(page)).imagesLoaded;
  await page.setInputFiles('[data-testid="image-input"]', file);
  return waitState(page, (s) => s.imagesLoaded > n && s.imageReady, `encoding ${file}`, 180000);
};
const download = async (testid, prefix) => {
  const [dl] = await Promise.all([page.waitForEvent('download'), page.click(`[data-testid="${testid}"]`)]);
  // prefixed by the step: two steps may download files of the same suggested name
  const file = path.join(o.out, `${prefix}-${dl.suggestedFilename()}`);
  await dl.saveAs(file);
  return { file, suggested: dl.suggestedFilename() };
};
const img = (name) => path.join(o.images, name);

try {
  await page.goto(o.url);
  await step('start', async () => waitState(page, (s) => s.decoderReady, 'the decoder', 120000));

  await step('broken', async () => {
    await page.setInputFiles('[data-testid="image-input"]', img('broken.png'));
    await page.locator('[data-testid="error"]:not([hidden])').waitFor({ timeout: 30000 });
    return { error: await errorText(page), screenshot: await shot('broken-file') };
  });

  await step('click', async () => {
    const s0 = await upload(img('scene.png'));
    const errorAfterUpload = await errorText(page);
    const p = await clientPoint(page, 210, 160);
    const s = await decoded(() => page.mouse.click(p.x, p.y), 'the first click');
    // the thumbnails follow the mask's frame
    await page.locator('[data-testid="candidate-0"]').waitFor({ timeout: 10000 });
    const candidates = await page.locator('[data-testid^="candidate-"]').count();
    const measures = await page.evaluate(() => performance.getEntriesByName('clicksam:click-to-mask').map((e) => e.duration));
    return { s0, s, errorAfterUpload, candidates, measures, screenshot: await shot('click') };
  });

  await step('candidates', async () => {
    const before = await state(page);
    await page.click('[data-testid="candidate-1"]');
    const picked = await waitState(page, (s) => s.token === before.ranked[1], 'candidate 2 picked');
    const selected = await page.locator('[data-testid="candidate-1"]').getAttribute('aria-pressed');
    await page.keyboard.press('3');
    const third = await waitState(page, (s) => s.token === before.ranked[2], 'key 3');
    await page.keyboard.press('Tab');
    const tab = await waitState(page, (s) => s.token === before.ranked[0], 'Tab wraps to the best');
    return { before, picked, selected, third, tab };
  });

  await step('export', async () => {
    const png = await download('export-png', 'export');
    const coco = await download('export-coco', 'export');
    const cutout = await download('export-cutout', 'export');
    return { png, coco, cutout, s: await state(page) };
  });

  await step('rightclick', async () => {
    const before = await state(page);
    const p = await clientPoint(page, 520, 80);
    const s = await decoded(() => page.mouse.click(p.x, p.y, { button: 'right' }), 'the right click');
    return { before, s, screenshot: await shot('right-click') };
  });

  await step('undo', async () => {
    await page.keyboard.press('Control+z');
    const s = await waitState(page, (x) => x.prompts.points.length === 1, 'undo');
    await page.waitForTimeout(100);
    await page.keyboard.press('Control+Shift+z');
    const redo = await waitState(page, (x) => x.prompts.points.length === 2, 'redo');
    await page.click('[data-testid="undo"]');
    const again = await waitState(page, (x) => x.prompts.points.length === 1, 'undo button');
    return { s, redo, again };
  });

  await step('box', async () => {
    await page.keyboard.press('Escape');
    await waitState(page, (s) => s.prompts.points.length === 0 && s.prompts.box === null, 'clear');
    const a = await clientPoint(page, 360, 230);
    const b = await clientPoint(page, 580, 440);
    const s = await decoded(async () => {
      await page.mouse.move(a.x, a.y);
      await page.mouse.down();
      await page.mouse.move((a.x + b.x) / 2, (a.y + b.y) / 2, { steps: 4 });
      await page.mouse.move(b.x, b.y, { steps: 4 });
      await page.mouse.up();
    }, 'the box');
    const shotFile = await shot('box');
    await page.keyboard.press('Enter');
    const kept = await waitState(page, (x) => x.objects.length === 1 && x.prompts.box === null, 'keep object');
    const listed = await page.locator('[data-testid="objects-list"] li').count();
    return { s, kept, listed, screenshot: shotFile };
  });

  await step('hover', async () => {
    const p = await clientPoint(page, 210, 160);
    await page.mouse.move(p.x - 5, p.y - 5);
    await page.mouse.move(p.x, p.y, { steps: 3 });
    return waitState(page, (s) => s.hover, 'hover preview', 30000);
  });

  await step('exif', async () => {
    const s0 = await upload(img('exif6.jpg'));
    const p = await clientPoint(page, 100, 120);
    const s = await decoded(() => page.mouse.click(p.x, p.y), 'the click on the rotated photo');
    const png = await download('export-png', 'exif');
    const coco = await download('export-coco', 'exif');
    return { s0, s, png, coco, screenshot: await shot('exif') };
  });

  await step('help', async () => {
    await page.keyboard.press('?');
    const open = await page.locator('[data-testid="help-overlay"]').isVisible();
    await page.keyboard.press('Escape');
    const closed = !(await page.locator('[data-testid="help-overlay"]').isVisible());
    return { open, closed };
  });

  await step('phone', async () => {
    await page.setViewportSize({ width: 390, height: 800 });
    await page.waitForTimeout(300);
    const stage = await page.locator('[data-testid="stage"]').boundingBox();
    const overflow = await page.evaluate(() => document.documentElement.scrollWidth > window.innerWidth + 1);
    return { stage, overflow, screenshot: await shot('phone') };
  });
  if (o.everything === '1') {
    await step('everything', async () => {
      await page.setViewportSize({ width: 1280, height: 860 });
      // random test weights: a small grid and no confidence filters, so it is quick and finds masks
      await page.goto(`${o.url}?points_per_side=6&pred_iou_thresh=0&stability_score_thresh=0`);
      await waitState(page, (s) => s.decoderReady, 'the decoder', 120000);
      await upload(img('scene.png'));
      await page.click('[data-testid="everything"]');
      const s = await waitState(page, (x) => x.everything && x.everything.shown, 'everything masks', 600000);
      // hovering a mask highlights it; clicking it makes it the current one
      const inside = s.everything.inside;
      if (!inside) throw new Error('no pixel is covered by an automatic mask');
      const p = await clientPoint(page, inside.x, inside.y);
      await page.mouse.move(p.x - 3, p.y - 3);
      await page.mouse.move(p.x, p.y, { steps: 2 });
      const hovered = await waitState(page, (x) => x.everything.hover >= 0, 'everything hover', 10000).catch(() => null);
      const screenshot = await shot('everything');
      const coco = await download('export-coco', 'everything');
      await page.mouse.click(p.x, p.y);
      const picked = await waitState(page, (x) => x.prompts.points.length === 1 && x.maskArea > 0, 'pick a mask', 10000).catch(() => null);
      return { s, hovered, picked, coco, screenshot };
    });
  }
  results.ok = true;
} catch (e) {
  results.ok = false;
  results.error = String(e && e.stack ? e.stack : e);
} finally {
  await close();
}

// Touch: a phone-sized touch screen; tap = foreground, the toggle makes taps background, a long
// press is background too, a drag is a box.
if (results.ok && (!only || only.has('touch'))) {
  const t = await launch({ touch: true, viewport: { width: 390, height: 800 }, log: (s) => logs.push(s) });
  try {
    const tp = t.page;
    await tp.goto(o.url);
    await waitState(tp, (s) => s.decoderReady, 'the decoder (touch)', 120000);
    await tp.setInputFiles('[data-testid="image-input"]', img('scene.png'));
    await waitState(tp, (s) => s.imagesLoaded > 0 && s.imageReady, 'image (touch)', 180000);
    const cdp = await t.ctx.newCDPSession(tp);
    const touch = async (type, p) =>
      cdp.send('Input.dispatchTouchEvent', { type, touchPoints: type === 'touchEnd' ? [] : [{ x: p.x, y: p.y }] });
    const a = await clientPoint(tp, 210, 160);
    await tp.touchscreen.tap(a.x, a.y);
    const tap = await waitState(tp, (s) => s.decodeCount >= 1, 'tap');
    await tp.click('[data-testid="mode-toggle"]');
    const b = await clientPoint(tp, 500, 100);
    await tp.touchscreen.tap(b.x, b.y);
    const toggled = await waitState(tp, (s) => s.prompts.points.length === 2 && s.decodeCount >= 2, 'background tap');
    await tp.click('[data-testid="mode-toggle"]');
    const c = await clientPoint(tp, 100, 400);
    await touch('touchStart', c);
    await tp.waitForTimeout(800);
    await touch('touchEnd', c);
    const held = await waitState(tp, (s) => s.prompts.points.length === 3 && s.decodeCount >= 3, 'long press');
    const screenshot = path.join(o.out, 'touch.png');
    await tp.screenshot({ path: screenshot });
    results.touch = { labels: held.prompts.points.map((q) => q.label), tap, toggled, screenshot };
    results.steps.push({ name: 'touch', ok: true });
  } catch (e) {
    results.ok = false;
    results.steps.push({ name: 'touch', ok: false, error: String(e && e.stack ? e.stack : e) });
  } finally {
    await t.close();
  }
}
results.logs = logs;
writeFileSync(path.join(o.out, 'results.json'), JSON.stringify(results, null, 1));
process.exit(results.ok ? 0 : 1);
