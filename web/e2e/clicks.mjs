// A person's first clicks on a fresh image, timed from the page's own performance entries
// ('clicksam:click-to-mask': input event -> mask painted; 'clicksam:decode': the worker's
// session.run). Driven by bench/bench_clicks.py, which draws the image and says where its objects are.
// Usage: node clicks.mjs --url URL --image FILE --objects objects.json [--clicks 20] [--query ?backend=wasm]
//        [--args '["--enable-unsafe-webgpu"]'] [--out results.json]
// Per object: a click on it, a second click inside it, a right click on the background next to it,
// then Enter (accept) and on to the next object. Between clicks the pointer travels to the target in
// small moves and rests there, as a hand does, so hover previews run where a person's would.
import { readFileSync, writeFileSync } from 'node:fs';
import { CHROMIUM_ARGS, clientPoint, launch, waitState } from './browser.mjs';

const o = { clicks: '20', query: '', args: '[]', out: '', think: '250' };
const argv = process.argv.slice(2);
for (let i = 0; i < argv.length; i += 2) o[argv[i].replace(/^--/, '')] = argv[i + 1];
if (!o.url || !o.image || !o.objects) throw new Error('usage: clicks.mjs --url URL --image FILE --objects FILE');
/** @type {Array<{fg: [number, number][], bg: [number, number]}>} */
const objects = JSON.parse(readFileSync(o.objects, 'utf8'));

const logs = [];
const { page, close } = await launch({ args: [...CHROMIUM_ARGS, ...JSON.parse(o.args)], log: (s) => logs.push(s) });
const measures = (name) => page.evaluate((n) => performance.getEntriesByName(n).map((e) => ({ start: e.startTime, end: e.startTime + e.duration, ms: e.duration, detail: e.detail })), name);

/** Move the pointer to (x, y) in 8 moves of 25 ms (about a hand's speed over a short distance), then rest. */
let at = { x: 0, y: 0 };
async function travel(p, restMs) {
  for (let k = 1; k <= 8; k++) {
    await page.mouse.move(at.x + ((p.x - at.x) * k) / 8, at.y + ((p.y - at.y) * k) / 8);
    await page.waitForTimeout(25);
  }
  at = p;
  await page.waitForTimeout(restMs);
}

try {
  await page.goto(o.url + o.query);
  const ready = await waitState(page, (s) => s.decoderReady, 'the decoder', 180000);
  await page.setInputFiles('[data-testid="image-input"]', o.image);
  await waitState(page, (s) => s.imageReady, 'the embedding', 300000);
  at = await clientPoint(page, 0, 0);
  const clicks = [];
  for (let i = 0; i < Number(o.clicks); i++) {
    const obj = objects[Math.floor(i / 3) % objects.length];
    const step = i % 3;
    if (step === 0 && i > 0) await page.keyboard.press('Enter'); // accept the object, start the next
    const [x, y] = step === 2 ? obj.bg : obj.fg[step];
    const p = await clientPoint(page, x, y);
    const before = (await measures('clicksam:click-to-mask')).length;
    await travel(p, 80);
    await page.mouse.down({ button: step === 2 ? 'right' : 'left' });
    await page.waitForTimeout(60);
    await page.mouse.up({ button: step === 2 ? 'right' : 'left' });
    await page.waitForFunction((k) => performance.getEntriesByName('clicksam:click-to-mask').length > k, before, { timeout: 120000 });
    const c2m = (await measures('clicksam:click-to-mask'))[before];
    // the decode that produced this mask: the last worker run that ended before it was painted
    const decode = (await measures('clicksam:decode')).filter((d) => d.end <= c2m.end + 0.01).pop() ?? null;
    const paint = (await measures('clicksam:paint')).find((m) => Math.abs(m.end - c2m.end) < 0.01) ?? null;
    // where the rest went: input -> decode start, decode end -> paint start (worker tail, message,
    // main-thread work, frame wait), and the paint itself
    const parts = decode && paint ? { beforeDecode: decode.start - c2m.start, afterDecode: paint.start - decode.end, paint: paint.ms } : null;
    clicks.push({ index: i + 1, step, clickToMaskMs: c2m.ms, decodeMs: decode ? decode.ms : null, decodeHover: decode?.detail?.hover ?? null, parts });
    await page.waitForTimeout(Number(o.think)); // a person looks at the mask before moving on
  }
  const s = await page.evaluate(() => window.__clicksam.state());
  const paintMs = (await measures('clicksam:paint')).map((m) => m.ms);
  const hoverDecodes = (await measures('clicksam:decode')).filter((d) => d.detail?.hover).length;
  const warmUp = (await measures('clicksam:warm-up')).map((m) => ({ ms: m.ms, runs: m.detail?.runs }));
  const result = { backend: ready.backend, original: s.original, clicks, paintMs, hoverDecodes, warmUp, userAgent: await page.evaluate(() => navigator.userAgent), logs: logs.slice(-20) };
  if (o.out) writeFileSync(o.out, JSON.stringify(result, null, 1));
  else console.log(JSON.stringify(result));
} catch (e) {
  if (o.out) writeFileSync(o.out, JSON.stringify({ error: String(e?.stack ?? e), logs: logs.slice(-30) }, null, 1));
  throw e;
} finally {
  await close();
}
