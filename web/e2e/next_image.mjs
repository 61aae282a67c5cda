// "Next image -> first mask" on the projects page against clicks on an image already open, timed on
// the page's clock. Driven by bench/bench_next_image.py, which starts the server and fills a project.
// Usage: node next_image.mjs --url URL --pid PID --token TOKEN --points points.json [--clicks 4]
//        [--think 250] [--out results.json]
// points.json: per image of the project (in its order), [[x, y], ...] object centres in original px.
// Per image: `clicks` clicks on the open image (each a new object: click, mask, Escape), then, once the
// next image is prefetched, ArrowRight; the first click lands as soon as the next image is clickable.
// Times: the ArrowRight keydown (a capture listener marks its event time), the frame the page shows
// the next image ready to click (polled every animation frame), and each click's own
// 'clicksam:click-to-mask' measure (input event -> mask painted); 'clicksam:decode' is the worker's run.
import { readFileSync } from 'node:fs';
import { clientPoint, launch, parseArgs, state, waitState, writeOutcome } from './browser.mjs';

const o = parseArgs(process.argv.slice(2), ['url', 'pid', 'points'], { clicks: '4', think: '250', out: '' });
/** @type {Array<Array<[number, number]>>} */
const points = JSON.parse(readFileSync(o.points, 'utf8'));

const logs = [];
const { page, close } = await launch({ log: (s) => logs.push(s) });
await page.addInitScript((token) => {
  if (token) localStorage.setItem('clicksam.token', token); // as if the person typed it once
  window.addEventListener('keydown', (e) => {
    if (e.key === 'ArrowRight') performance.mark('bench:next', { startTime: e.timeStamp });
  }, true);
  // where 'next' goes: the page hands the worker the image's embedding, the worker fetches it (HTTP
  // cache) and runs the per-image graph, and answers with its own fetchMs and prepMs
  const post = Worker.prototype.postMessage;
  const hooked = new WeakSet();
  window.__benchEmbeddings = [];
  Worker.prototype.postMessage = function (msg, ...rest) {
    if (!hooked.has(this)) {
      hooked.add(this);
      this.addEventListener('message', (ev) => {
        const e = window.__benchEmbeddings.find((x) => x.id === ev.data?.id);
        if (e && ev.data.type === 'embedding-ready') Object.assign(e, { replied: performance.now(), fetchMs: ev.data.fetchMs, prepMs: ev.data.prepMs });
      });
    }
    if (msg?.type === 'embedding') window.__benchEmbeddings.push({ id: msg.id, posted: performance.now() });
    return post.call(this, msg, ...rest);
  };
}, o.token ?? '');
const project = () => page.evaluate(() => window.__clicksam.project());
const now = () => page.evaluate(() => performance.now());
const byName = (name) => page.evaluate((n) => performance.getEntriesByName(n).map((e) => ({ start: e.startTime, end: e.startTime + e.duration, ms: e.duration, detail: e.detail })), name);

/** Wait until predicate(project state, page state) holds. */
async function waitProject(predicate, what, timeoutMs = 180000) {
  const t0 = Date.now();
  for (;;) {
    const p = await project();
    if (predicate(p, await state(page))) return p;
    if (Date.now() - t0 > timeoutMs) throw new Error(`timed out waiting for ${what}; project: ${JSON.stringify(p)}`);
    await page.waitForTimeout(50);
  }
}

/** One left click at original pixel [x, y] (no rest first, so no hover preview); its measures. */
async function click([x, y]) {
  const p = await clientPoint(page, x, y);
  const before = await now();
  await page.mouse.click(p.x, p.y);
  await page.waitForFunction((t) => performance.getEntriesByName('clicksam:click-to-mask').some((e) => e.startTime >= t), before, { timeout: 120000 });
  const c2m = (await byName('clicksam:click-to-mask')).find((m) => m.start >= before);
  const decode = (await byName('clicksam:decode')).filter((d) => d.end <= c2m.end + 0.01).pop() ?? null;
  return { clickToMaskMs: c2m.ms, start: c2m.start, end: c2m.end, decodeMs: decode?.ms ?? null, decodeHover: decode?.detail?.hover ?? null, requested: before };
}

/** A new object on the open image: click, mask, Escape (clear), a person's look at it. */
async function clickAndClear(pt) {
  const c = await click(pt);
  await page.keyboard.press('Escape');
  await page.waitForTimeout(Number(o.think));
  return c;
}

await writeOutcome(o.out, logs, close, async () => {
  await page.goto(`${o.url}#/projects/${o.pid}`);
  const ready = await waitState(page, (s) => s.decoderReady, 'the decoder', 180000);
  let p = await waitProject((q, s) => q.imageId !== null && s.imageReady && q.index === 0, 'the first image open');
  const ids = p.images.map((i) => i.id);
  const images = [];
  for (let k = 0; k < ids.length; k++) {
    const row = { id: ids[k], index: k, next: null, open: [] };
    if (k > 0) {
      // ArrowRight, then a click as soon as the image is clickable
      const marks = (await byName('bench:next')).length;
      await page.keyboard.press('ArrowRight');
      const shownAt = await page.waitForFunction((id) => {
        const c = window.__clicksam;
        return c.project().imageId === id && c.state().imageReady ? performance.now() : false;
      }, ids[k], { polling: 'raf', timeout: 120000 }).then((h) => h.jsonValue());
      const key = (await byName('bench:next'))[marks];
      const first = await click(points[k][0]);
      const emb = (await page.evaluate(() => window.__benchEmbeddings)).filter((e) => e.posted >= key.start).pop();
      const worker = emb?.replied ? { keyToPostMs: emb.posted - key.start, workerMs: emb.replied - emb.posted, fetchMs: emb.fetchMs, prepMs: emb.prepMs, replyToClickableMs: shownAt - emb.replied } : null;
      row.next = { worker, keyToClickableMs: shownAt - key.start, clickableToClickMs: first.start - shownAt, keyToFirstMaskMs: first.end - key.start, first };
      await page.keyboard.press('Escape');
      await page.waitForTimeout(Number(o.think));
    }
    for (let c = 0; c < Number(o.clicks); c++) row.open.push(await clickAndClear(points[k][1 + (c % (points[k].length - 1))]));
    if (k + 1 < ids.length) {
      p = await waitProject((q) => q.prefetched.includes(ids[k + 1]), `image ${ids[k + 1]} prefetched`);
      await page.waitForTimeout(Number(o.think)); // the person looks at the image before going on
    }
    images.push(row);
  }
  return { backend: ready.backend, images, warmUp: (await byName('clicksam:warm-up')).map((m) => m.ms), userAgent: await page.evaluate(() => navigator.userAgent), logs: logs.slice(-20) };
});
