// Click-to-mask latency of the real page, read from its own performance.measure entries
// ('clicksam:click-to-mask': input event -> mask painted), with hover previews decoding in between
// as when a person moves the mouse before clicking.
// Usage: node bench.mjs --url URL --image FILE [--rounds 15] [--warmup 2] [--seed 1] [--out results.json]
import { writeFileSync } from 'node:fs';
import { clientPoint, launch, state, waitState } from './browser.mjs';

const o = { rounds: '15', warmup: '2', seed: '1', out: '' };
const argv = process.argv.slice(2);
for (let i = 0; i < argv.length; i += 2) o[argv[i].replace(/^--/, '')] = argv[i + 1];
if (!o.url || !o.image) throw new Error('usage: bench.mjs --url URL --image FILE');

let seed = Number(o.seed) >>> 0;
const rnd = () => {
  seed = (seed + 0x6d2b79f5) | 0;
  let t = Math.imul(seed ^ (seed >>> 15), 1 | seed);
  t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
  return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
};

const { page, close } = await launch();
const entries = () => page.evaluate(() => performance.getEntriesByName('clicksam:click-to-mask').map((e) => e.duration));
try {
  await page.goto(o.url);
  const ready = await waitState(page, (s) => s.decoderReady, 'decoder', 120000);
  await page.setInputFiles('[data-testid="image-input"]', o.image);
  const s0 = await waitState(page, (s) => s.imagesLoaded > 0 && s.imageReady, 'image', 300000);
  const { w, h } = s0.original;
  const samples = [];
  const kinds = [];
  const decodeMs = [];
  let hovers = 0;
  const total = Number(o.rounds) + Number(o.warmup);
  for (let round = 0; round < total; round++) {
    await page.keyboard.press('Escape');
    await waitState(page, (s) => s.prompts.points.length === 0 && s.prompts.box === null, 'clear');
    // Hover: a few mouse moves, each can start a preview decode (stale ones are dropped).
    for (let k = 0; k < 4; k++) {
      const p = await clientPoint(page, rnd() * w, rnd() * h);
      await page.mouse.move(p.x, p.y, { steps: 2 });
      await page.waitForTimeout(40);
    }
    hovers += 4;
    // Two clicks: the first (3 candidates), the second refining it with mask_input.
    for (const kind of ['first', 'refine']) {
      const before = (await entries()).length;
      const n = (await state(page)).decodeCount;
      const p = await clientPoint(page, rnd() * w, rnd() * h);
      await page.mouse.click(p.x, p.y);
      await waitState(page, (s) => s.decodeCount > n, 'click decode');
      let after;
      const t0 = Date.now();
      do {
        after = await entries();
        if (after.length > before) break;
        await page.waitForTimeout(10);
      } while (Date.now() - t0 < 10000);
      if (round >= Number(o.warmup)) {
        samples.push(after[after.length - 1]);
        kinds.push(kind);
        decodeMs.push((await state(page)).lastDecodeMs);
      }
    }
  }
  const paintMs = await page.evaluate(() => performance.getEntriesByName('clicksam:paint').map((e) => e.duration));
  const result = { paintMs, backend: ready.backend, original: s0.original, samples, kinds, decodeMs, hovers, userAgent: await page.evaluate(() => navigator.userAgent) };
  if (o.out) writeFileSync(o.out, JSON.stringify(result, null, 1));
  console.log(JSON.stringify(result));
} finally {
  await close();
}
