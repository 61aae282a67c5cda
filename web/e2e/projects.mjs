// The projects page end to end, against a running server with the projects API (started by
// tests/e2e/test_projects_page.py). Usage:
//   node projects.mjs --url URL --images DIR --out DIR [--token TOKEN]
// DIR holds a.png, b.png and folder/ (c.png and a text file). Walks: create a project, add images
// (files and a folder), annotate 2 objects with categories, reload, refine a kept object, next image
// (prefetched), pre-label and keep a proposal, a save conflict (overwritten with the page's edits),
// the COCO export, a phone-sized screen. Writes DIR/projects-results.json with what it saw; the
// pytest side asserts on it, on the server and on the files.
import { mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { clientPoint, errorText, launch, parseArgs, state, waitState } from './browser.mjs';

const o = parseArgs(process.argv.slice(2), ['url', 'images', 'out']);
mkdirSync(o.out, { recursive: true });
const results = { steps: [], dialogs: [] };
const logs = [];
const { page, close } = await launch({ log: (s) => logs.push(s) });
let confirms = 0;
page.on('dialog', async (d) => {
  results.dialogs.push({ type: d.type(), message: d.message() });
  // the first "leave this image?" is dismissed, the next accepted; the token prompt gets the token
  if (d.type() === 'confirm' && confirms++ === 0) await d.dismiss();
  else await d.accept(o.token ?? '');
});
const project = () => page.evaluate(() => window.__clicksam.project());
/** Wait until predicate(project state, page state) holds. */
async function waitProject(predicate, what, timeoutMs = 120000) {
  const t0 = Date.now();
  for (;;) {
    const p = await project();
    const s = await state(page);
    if (predicate(p, s)) return { p, s };
    if (Date.now() - t0 > timeoutMs) throw new Error(`timed out waiting for ${what}; error: ${await errorText(page)}; project: ${JSON.stringify(p)}`);
    await page.waitForTimeout(50);
  }
}
const shot = async (name) => {
  const file = path.join(o.out, `projects-${name}.png`);
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
/** Ids of the proposals the server stores for the image the project state `p` shows, best first. */
const serverProposals = (p) =>
  page.evaluate(async ([pid, iid]) => {
    const token = localStorage.getItem('clicksam.token');
    const r = await fetch(`api/projects/${pid}/images/${iid}/proposals`, { headers: token ? { Authorization: `Bearer ${token}` } : {} });
    return (await r.json()).proposals.map((q) => q.id);
  }, [p.projectId, p.imageId]);
/** Click at image pixel (x, y), wait for its mask, keep it (Enter) as a `category` object. */
async function keepObject(x, y, category, count) {
  await page.selectOption('[data-testid="category"]', category);
  const n = (await state(page)).decodeCount;
  const p = await clientPoint(page, x, y);
  await page.mouse.click(p.x, p.y);
  await waitState(page, (s) => s.decodeCount > n && s.maskArea > 0, `the mask at ${x},${y}`);
  await page.keyboard.press('Enter');
  return waitProject((q) => q.objects.length === count, `object ${count}`);
}
/** What the server has for image `iid` of project `pid` (read by the page, with its token). */
const serverAnnotations = (pid, iid) =>
  page.evaluate(async ([p, i]) => {
    const token = localStorage.getItem('clicksam.token');
    const r = await fetch(`api/projects/${p}/images/${i}/annotations`, { headers: token ? { Authorization: `Bearer ${token}` } : {} });
    return r.json();
  }, [pid, iid]);
/** The page's own click-to-mask measures so far (ms). */
const clickMeasures = () => page.evaluate(() => performance.getEntriesByName('clicksam:click-to-mask').map((e) => e.duration));
const saved = (what) => waitProject((p) => p.saveState === 'saved', what, 30000);
const query = '?points_per_side=6&pred_iou_thresh=0&stability_score_thresh=0&box_nms_thresh=1'; // no NMS: several proposals, so some are left after one is kept

try {
  await page.goto(`${o.url}${query}`);
  await step('start', async () => {
    // an object on the one-image page: going to the projects asks first (it is not saved anywhere)
    await waitState(page, (s) => s.decoderReady, 'the decoder', 180000);
    await page.setInputFiles('[data-testid="image-input"]', path.join(o.images, 'a.png'));
    await waitState(page, (s) => s.imageReady, 'the one-image upload', 180000);
    const pt = await clientPoint(page, 210, 160);
    await page.mouse.click(pt.x, pt.y);
    await waitState(page, (s) => s.maskArea > 0, 'a mask on the one-image page');
    await page.keyboard.press('Enter');
    await waitState(page, (s) => s.objects.length === 1, 'the kept object');
    await page.click('[data-testid="projects-link"]');
    await page.waitForTimeout(300);
    const stayed = { hash: await page.evaluate(() => location.hash), objects: (await state(page)).objects.length };
    await page.click('[data-testid="projects-link"]');
    await page.locator('[data-testid="projects-home"]:not([hidden])').waitFor({ timeout: 30000 });
    return { stayed, hash: await page.evaluate(() => location.hash) };
  });

  await step('create', async () => {
    await page.fill('[data-testid="project-name"]', 'e2e pets');
    await page.fill('[data-testid="project-categories"]', 'cat, dog');
    await page.click('[data-testid="project-create-submit"]');
    const { p } = await waitProject((q) => q.projectId !== null, 'the new project');
    return { project: p, hash: await page.evaluate(() => location.hash), screenshot: await shot('created') };
  });

  await step('add', async () => {
    await page.setInputFiles('[data-testid="add-images"]', [path.join(o.images, 'a.png'), path.join(o.images, 'b.png')]);
    await waitProject((p) => p.images.length === 2, 'two images');
    await page.setInputFiles('[data-testid="add-folder"]', path.join(o.images, 'folder'));
    const { p, s } = await waitProject((q, x) => q.images.length === 3 && q.imageId !== null && x.imageReady, 'three images, the first open', 180000);
    // thumbnails load as their tiles come into view, one after another: give all three the time to arrive
    // (the count below is what the test asserts, so a thumbnail that never comes still fails it)
    await page.waitForFunction(() => document.querySelectorAll('[data-testid="gallery"] img[src^="blob:"]').length >= 3, null, { timeout: 30000 }).catch(() => {});
    return { p, s, hash: await page.evaluate(() => location.hash), thumbs: await page.locator('[data-testid="gallery"] img[src^="blob:"]').count(), error: await errorText(page), screenshot: await shot('added') };
  });

  await step('annotate', async () => {
    await keepObject(210, 160, 'dog', 1);
    await keepObject(470, 335, 'cat', 2);
    const { p } = await saved('the save of 2 objects');
    return { p, measures: await clickMeasures(), badge: await page.locator('[data-testid="save-state"]').textContent(), screenshot: await shot('annotated') };
  });

  await step('reload', async () => {
    const before = await project();
    await page.reload();
    await waitState(page, (s) => s.decoderReady, 'the decoder after reload', 180000);
    const { p, s } = await waitProject((q, x) => q.imageId === before.imageId && x.imageReady && q.objects.length === 2, 'the saved objects after reload');
    return { before, p, s, hash: await page.evaluate(() => location.hash), server: await serverAnnotations(p.projectId, p.imageId) };
  });

  await step('refine', async () => {
    const before = await project();
    await page.click('[data-testid="refine"]');
    const n = (await state(page)).decodeCount;
    const target = before.objects[0].inside;
    const a = await clientPoint(page, target.x, target.y);
    await page.mouse.click(a.x, a.y); // the kept object under the click opens in the editor
    const opened = await waitState(page, (s) => s.prompts.points.length === 1 && s.maskArea > 0, 'the kept object in the editor');
    const hidden = (await project()).objects.map((o) => o.visible);
    const second = { x: Math.min(target.x + 12, 639), y: target.y };
    const b = await clientPoint(page, second.x, second.y);
    await page.mouse.click(b.x, b.y); // refine it with a second click
    await waitState(page, (s) => s.decodeCount > n && s.prompts.points.length === 2 && s.maskArea > 0, 'the refined mask');
    await page.keyboard.press('Enter');
    const { p } = await waitProject((q) => q.objects.length === 2 && q.saveState === 'saved' && q.version > before.version, 'the refined object saved', 30000);
    return { before, target, second, opened, hidden, p, server: await serverAnnotations(p.projectId, p.imageId) };
  });

  await step('next', async () => {
    const here = await project();
    const nextId = here.images[here.index + 1].id;
    await waitProject((p) => p.prefetched.includes(nextId), 'the next image prefetched', 180000);
    const requests = [];
    const record = (r) => requests.push(`${r.method()} ${new URL(r.url()).pathname}`);
    page.on('request', record);
    const t0 = Date.now();
    await page.keyboard.press('ArrowRight');
    const { p, s } = await waitProject((q, x) => q.imageId === nextId && x.imageReady, 'the next image ready');
    const readyMs = Date.now() - t0;
    const n = s.decodeCount;
    const pt = await clientPoint(page, 320, 240);
    await page.mouse.click(pt.x, pt.y);
    const clicked = await waitState(page, (x) => x.decodeCount > n && x.maskArea > 0, 'a click on the next image');
    page.off('request', record);
    await page.keyboard.press('Escape');
    return { p, readyMs, requests, clicked, measures: await clickMeasures(), hash: await page.evaluate(() => location.hash) };
  });

  await step('prelabel', async () => {
    await page.click('[data-testid="prelabel"]');
    const { p } = await waitProject((q) => q.proposals.length > 0, 'proposals', 600000);
    const screenshot = await shot('proposals');
    const first = p.proposals[0];
    const before = await serverProposals(p);
    await page.click(`[data-testid="proposal-keep-${first.id}"]`);
    const after = await waitProject((q) => q.objects.length === 1 && q.saveState === 'saved', 'the kept proposal saved', 30000);
    // once its annotation is saved, the kept proposal leaves the server too
    const t0 = Date.now();
    let left = await serverProposals(p);
    while (left.includes(first.id) && Date.now() - t0 < 30000) {
      await page.waitForTimeout(100);
      left = await serverProposals(p);
    }
    // nothing of this browser's storage but the token: what comes back after the reload is the server's
    await page.evaluate(() => Object.keys(localStorage).filter((k) => k !== 'clicksam.token').forEach((k) => localStorage.removeItem(k)));
    await page.reload();
    const reloaded = await waitProject((q, x) => q.imageId === p.imageId && x.imageReady && q.objects.length === 1, 'the image after a reload', 180000);
    const listed = await page.locator('[data-testid^="proposal-keep-"]').count();
    const storage = await page.evaluate(() => Object.keys(localStorage));
    return { proposals: p.proposals.length, shown: p.proposals.map((q) => q.id), first, before, after: after.p, server: left, reloaded: reloaded.p, listed, storage, screenshot };
  });

  await step('conflict', async () => {
    const before = await project();
    // someone else saves this image meanwhile (same version the page holds)
    const other = await page.evaluate(async ([pid, iid, version]) => {
      const token = localStorage.getItem('clicksam.token');
      const r = await fetch(`api/projects/${pid}/images/${iid}/annotations`, {
        method: 'PUT',
        headers: { 'Content-Type': 'application/json', ...(token ? { Authorization: `Bearer ${token}` } : {}) },
        body: JSON.stringify({ version, annotations: [] }),
      });
      return r.status;
    }, [before.projectId, before.imageId, before.version]);
    await page.selectOption('[data-testid="image-status"]', 'done'); // a local edit on the stale version
    const { p } = await waitProject((q) => q.saveState === 'conflict', 'the conflict', 30000);
    const shown = await page.locator('[data-testid="conflict"]:not([hidden])').count();
    const screenshot = await shot('conflict');
    await page.click('[data-testid="conflict-overwrite"]');
    const after = await saved('the overwrite after the conflict');
    return { other, p, shown, screenshot, after: after.p };
  });

  await step('export', async () => {
    const here = await project();
    const firstId = here.images[0].id;
    await page.goto(`${o.url}${query}#/projects/${here.projectId}/images/${firstId}`); // a hash change: the page stays
    await waitProject((q, x) => q.imageId === firstId && x.imageReady, 'the first image again');
    await page.selectOption('[data-testid="export-format"]', 'coco');
    const [dl] = await Promise.all([page.waitForEvent('download'), page.click('[data-testid="project-export"]')]);
    const file = path.join(o.out, `projects-${dl.suggestedFilename()}`);
    await dl.saveAs(file);
    return { file, suggested: dl.suggestedFilename(), p: await project() };
  });

  await step('phone', async () => {
    await page.setViewportSize({ width: 390, height: 844 });
    await page.reload();
    await waitProject((q, x) => q.imageId !== null && x.imageReady, 'the image on a phone screen', 180000);
    const collapsed = await page.locator('[data-testid="gallery"]').evaluate((el) => el.classList.contains('collapsed'));
    const overflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
    const screenshot = await shot('phone');
    await page.click('[data-testid="gallery-toggle"]');
    const opened = await page.locator('[data-testid="gallery"]').evaluate((el) => !el.classList.contains('collapsed'));
    return { collapsed, opened, overflow, screenshot, opened_screenshot: await shot('phone-gallery') };
  });
  results.ok = true;
} catch (e) {
  results.ok = false;
  results.error = String(e && e.stack ? e.stack : e);
} finally {
  results.logs = logs.slice(-50);
  writeFileSync(path.join(o.out, 'projects-results.json'), JSON.stringify(results, null, 2));
  await close();
}
