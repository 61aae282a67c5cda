// clicksam decoder benchmark page (onnxruntime-web, WASM SIMD + threads under cross-origin isolation).
// Query parameters:
//   mode=bench|check|probe   bench: time clicks on one model; check: compare a low-res model's
//                            page-side masks with a full-size (official) model's masks; probe: env only
//   model=URL                decoder .onnx (bench; in check mode: the low-res model)
//   ref=URL                  check mode: the full-size model (official interface)
//   iface=official|low_res   interface of `model` (official: `masks` at orig_im_size in the graph)
//   emb=float32|float16      dtype of the image_embeddings input of `model`
//   prep=URL                 per-image graph of `model` (its outputs replace image_embeddings as
//                            inputs of every click); run once per embedding, timed as `prepMs`
//                            (ref_prep: the same for `ref` in pair mode)
//   w, h                     original image size (orig_im_size = [h, w]; the canvas is w x h)
//   embs=URL,URL             two raw float32 (1, 256, 64, 64) embeddings to click on (default:
//                            seeded uniform random values)
//   threads=2, warmup=3, runs=20, seed=1, ep=wasm
//   image_size=1024, low_res=256, threshold=0   from the decoder manifest
//   canvas=display|full      display (default, as the page draws): the mask canvas is the image
//                            fitted into display=WxH (default 1280x960, never enlarged); full: W x H
//                            low_res models upsample straight to the canvas size (page-side);
//                            official models threshold their full-size mask, sampled at the canvas
//                            pixels (nearest) when the canvas is smaller
// Results: window.__bench = {done, ok, error, result}
// The low-res masks are postprocessed by the page's own code (web/src/mask.ts, bundled by run.py
// into shipped.js): what is timed and checked here is what the page ships.
import { logitsToMask, makeGeometry } from './shipped.js';

const $log = document.getElementById('log');
const log = (s) => { $log.textContent += '\n' + s; };
window.__bench = { done: false, ok: false, error: null, result: null };

const q = new URLSearchParams(location.search);
const P = {
  mode: q.get('mode') || 'bench',
  model: q.get('model'),
  ref: q.get('ref'),
  prep: q.get('prep'),
  iface: q.get('iface') || 'official',
  emb: q.get('emb') || 'float32',
  ep: q.get('ep') || 'wasm',
  threads: parseInt(q.get('threads') || '2', 10),
  w: parseInt(q.get('w') || '1024', 10),
  h: parseInt(q.get('h') || '768', 10),
  warmup: parseInt(q.get('warmup') || '3', 10),
  runs: parseInt(q.get('runs') || '20', 10),
  seed: parseInt(q.get('seed') || '1', 10),
  imageSize: parseInt(q.get('image_size') || '1024', 10),
  lowRes: parseInt(q.get('low_res') || '256', 10),
  threshold: parseFloat(q.get('threshold') || '0'),
  profile: q.get('profile') === '1',
  canvas: q.get('canvas') || 'display',
  display: (q.get('display') || '1280x960').split('x').map((v) => parseInt(v, 10)),
};

// the mask canvas: the original size, or the image fitted into the display box
function canvasSize(W, H) {
  if (P.canvas === 'full') return [W, H];
  const s = Math.min(1, P.display[0] / W, P.display[1] / H);
  return [Math.max(1, Math.round(W * s)), Math.max(1, Math.round(H * s))];
}

// out -> best token's mask thresholded into the canvas pixels; returns the number of pixels on
function makeRenderer(iface, W, H, cw, ch) {
  if (iface === 'low_res') {
    const geom = makeGeometry({ w: W, h: H }, P.imageSize, P.lowRes);
    const size = { w: cw, h: ch };
    return (out, best, px, color) => {
      const mask = logitsToMask(out.low_res_masks.data, best, geom, size, P.threshold);
      let on = 0;
      for (let k = 0; k < mask.length; k++) { if (mask[k]) { px[k] = color; on++; } else px[k] = 0; }
      return on;
    };
  }
  const xi = new Int32Array(cw), yi = new Int32Array(ch);
  for (let x = 0; x < cw; x++) xi[x] = Math.min(W - 1, Math.floor(((x + 0.5) * W) / cw));
  for (let y = 0; y < ch; y++) yi[y] = Math.min(H - 1, Math.floor(((y + 0.5) * H) / ch));
  return (out, best, px, color) => {
    const data = out.masks.data, off = best * W * H;
    let on = 0;
    if (cw === W && ch === H) {
      for (let j = 0; j < W * H; j++) { if (data[off + j] > P.threshold) { px[j] = color; on++; } else px[j] = 0; }
      return on;
    }
    for (let y = 0; y < ch; y++) {
      const row = off + yi[y] * W, o = y * cw;
      for (let x = 0; x < cw; x++) { if (data[row + xi[x]] > P.threshold) { px[o + x] = color; on++; } else px[o + x] = 0; }
    }
    return on;
  };
}

function mulberry32(a) {
  return function () {
    a |= 0; a = (a + 0x6D2B79F5) | 0;
    let t = Math.imul(a ^ (a >>> 15), 1 | a);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

// float32 -> IEEE half bits (round to nearest even), as the server's float16 embedding would arrive
const f32 = new Float32Array(1), u32 = new Uint32Array(f32.buffer);
function toHalf(v) {
  f32[0] = v; const x = u32[0];
  const sign = (x >>> 16) & 0x8000, exp = (x >>> 23) & 0xff, mant = x & 0x7fffff;
  if (exp === 0xff) return sign | 0x7c00 | (mant ? 0x200 : 0);
  const e = exp - 127 + 15;
  if (e >= 0x1f) return sign | 0x7c00;
  if (e <= 0) {
    if (e < -10) return sign;
    const m = mant | 0x800000, shift = 14 - e;
    let h = m >> shift; const rem = m & ((1 << shift) - 1), half = 1 << (shift - 1);
    if (rem > half || (rem === half && (h & 1))) h++;
    return sign | h;
  }
  let h = (e << 10) | (mant >> 13); const rem = mant & 0x1fff;
  if (rem > 0x1000 || (rem === 0x1000 && (h & 1))) h++;
  return sign | h;
}

// The mask canvas and one timed click on it: feeds, session.run, best of the 3 multimask tokens,
// mask thresholded into the canvas pixels (low_res: page-side upsampling), putImageData.
function makeCanvasClicker(W, H, clickFeeds, only, bestMulti) {
  const [cw, ch] = canvasSize(W, H);
  const canvas = document.getElementById('mask');
  canvas.width = cw; canvas.height = ch;
  const ctx = canvas.getContext('2d');
  const rgba = new Uint8ClampedArray(4 * cw * ch);
  const px = new Uint32Array(rgba.buffer);
  const color = new Uint32Array(new Uint8ClampedArray([0, 114, 189, 255]).buffer)[0];
  const imgData = new ImageData(rgba, cw, ch);
  // m: { session, embs: [2 embedding tensors], render }; returns the timings and the output
  async function click(m, i, cx, cy) {
    const t0 = performance.now();
    const feeds = only(m.session, clickFeeds(m.embs[i % 2], cx, cy));
    const t1 = performance.now();
    const out = await m.session.run(feeds);
    const t2 = performance.now();
    const best = bestMulti(out.iou_predictions.data);
    const on = m.render(out, best, px, color);
    const t3 = performance.now();
    ctx.putImageData(imgData, 0, 0);
    const t4 = performance.now();
    return { times: { run: t2 - t1, click: t4 - t0, post: t3 - t2, put: t4 - t3 }, out, best, on };
  }
  return { cw, ch, click };
}

async function probeEnv() {
  const env = {
    userAgent: navigator.userAgent,
    crossOriginIsolated: self.crossOriginIsolated === true,
    sharedArrayBuffer: typeof SharedArrayBuffer !== 'undefined',
    hardwareConcurrency: navigator.hardwareConcurrency,
    navigatorGpu: !!navigator.gpu, webgpuAdapter: null, webgpuError: null,
  };
  if (navigator.gpu) {
    try {
      const ad = await navigator.gpu.requestAdapter();
      if (ad) env.webgpuAdapter = { isFallbackAdapter: ad.isFallbackAdapter ?? null, info: ad.info ? { vendor: ad.info.vendor, architecture: ad.info.architecture } : null };
      else env.webgpuError = 'requestAdapter() returned null';
    } catch (e) { env.webgpuError = String(e); }
  } else env.webgpuError = 'navigator.gpu is undefined';
  return env;
}

async function loadSession(ort, url) {
  const t0 = performance.now();
  const resp = await fetch(url);
  if (!resp.ok) throw new Error(`fetch ${url}: HTTP ${resp.status}`);
  const buf = new Uint8Array(await resp.arrayBuffer());
  const t1 = performance.now();
  const opts = { executionProviders: [P.ep], graphOptimizationLevel: 'all' };
  // ORT's profiler: per-node timings, written by the wasm build to the console (collected by drive.mjs)
  if (P.profile) Object.assign(opts, { enableProfiling: true, logSeverityLevel: 0 });
  const session = await ort.InferenceSession.create(buf, opts);
  const t2 = performance.now();
  return { session, bytes: buf.byteLength, fetchMs: t1 - t0, createMs: t2 - t1 };
}

// The per-image feeds of a model: {image_embeddings}, or the outputs of its prep graph on it.
async function imageFeeds(ort, prep, data, dtype) {
  const emb = embeddingTensor(ort, data, dtype);
  if (!prep) return { feeds: { image_embeddings: emb }, prepMs: 0 };
  const t0 = performance.now();
  const feeds = await prep.session.run({ image_embeddings: emb });
  return { feeds, prepMs: performance.now() - t0 };
}

async function imageFeedsAll(ort, prepUrl, datas, dtype) {
  const prep = prepUrl ? await loadSession(ort, prepUrl) : null;
  const embs = [], prepMs = [];
  for (const d of datas) {
    const r = await imageFeeds(ort, prep, d, dtype);
    embs.push(r.feeds); prepMs.push(r.prepMs);
  }
  return { embs, prepMs, prepCold: prep ? prep.fetchMs + prep.createMs : 0, prepBytes: prep ? prep.bytes : 0 };
}

function embeddingTensor(ort, data, dtype) {
  if (dtype === 'float16') {
    const h = new Uint16Array(data.length);
    for (let i = 0; i < data.length; i++) h[i] = toHalf(data[i]);
    return new ort.Tensor('float16', h, [1, 256, 64, 64]);
  }
  return new ort.Tensor('float32', data, [1, 256, 64, 64]);
}

async function main() {
  const env = await probeEnv();
  log('env ' + JSON.stringify(env));
  if (P.mode === 'probe') return { params: P, env };
  const tImport0 = performance.now();
  const ort = await import('/ort/ort.wasm.min.mjs');
  const importMs = performance.now() - tImport0;
  ort.env.wasm.wasmPaths = new URL('/ort/', location.href).href;
  ort.env.wasm.numThreads = P.threads;
  ort.env.logLevel = 'warning';
  const W = P.w, H = P.h;
  const rnd = mulberry32(P.seed);
  const embData = q.get('embs')
    ? await Promise.all(q.get('embs').split(',').map(async (url) => {
      const resp = await fetch(url);
      if (!resp.ok) throw new Error(`fetch ${url}: HTTP ${resp.status}`);
      return new Float32Array(await resp.arrayBuffer());
    }))
    : [0, 1].map(() => { const a = new Float32Array(256 * 64 * 64); for (let i = 0; i < a.length; i++) a[i] = rnd() * 2 - 1; return a; });
  const samScale = P.imageSize / Math.max(W, H);
  const maskInput = new ort.Tensor('float32', new Float32Array(P.lowRes * P.lowRes), [1, 1, P.lowRes, P.lowRes]);
  const hasMask = new ort.Tensor('float32', new Float32Array([0]), [1]);
  const origSize = new ort.Tensor('float32', new Float32Array([H, W]), [2]);
  // one positive click + the padding point (no box), as the page sends a first click
  function clickFeeds(embFeeds, cx, cy) {
    return {
      ...embFeeds,
      point_coords: new ort.Tensor('float32', new Float32Array([cx * samScale, cy * samScale, 0, 0]), [1, 2, 2]),
      point_labels: new ort.Tensor('float32', new Float32Array([1, -1]), [1, 2]),
      mask_input: maskInput, has_mask_input: hasMask, orig_im_size: origSize,
    };
  }
  const only = (session, f) => Object.fromEntries(Object.entries(f).filter(([k]) => session.inputNames.includes(k)));
  const bestMulti = (iou) => { let b = 1; for (let c = 2; c < 4; c++) if (iou[c] > iou[b]) b = c; return b; };

  if (P.mode === 'check') {
    const ours = await loadSession(ort, P.model), ref = await loadSession(ort, P.ref);
    const embOurs = (await imageFeedsAll(ort, P.prep, embData, P.emb)).embs;
    const embRef = (await imageFeedsAll(ort, null, embData, 'float32')).embs;
    const geom = makeGeometry({ w: W, h: H }, P.imageSize, P.lowRes);
    const ious = []; let choiceMismatch = 0, maxLowResErr = 0;
    for (let i = 0; i < P.runs; i++) {
      const cx = rnd() * W, cy = rnd() * H;
      const a = await ours.session.run(only(ours.session, clickFeeds(embOurs[i % 2], cx, cy)));
      const b = await ref.session.run(only(ref.session, clickFeeds(embRef[i % 2], cx, cy)));
      const kRef = bestMulti(b.iou_predictions.data), kOurs = bestMulti(a.iou_predictions.data);
      if (kRef !== kOurs) choiceMismatch++;
      const plane = P.lowRes * P.lowRes;
      const la = a.low_res_masks.data, lb = b.low_res_masks.data;
      for (let j = 0; j < 4 * plane; j++) maxLowResErr = Math.max(maxLowResErr, Math.abs(la[j] - lb[j]));
      const mine = logitsToMask(la, kRef, geom, { w: W, h: H }, P.threshold);
      const full = b.masks.data, off = kRef * W * H;
      let inter = 0, uni = 0;
      for (let j = 0; j < W * H; j++) {
        const x = mine[j] === 1, y = full[off + j] > P.threshold;
        if (x && y) inter++;
        if (x || y) uni++;
      }
      ious.push(uni ? inter / uni : 1);
    }
    return { params: P, env, ious, choiceMismatch, maxLowResErr, oursBytes: ours.bytes, refBytes: ref.bytes };
  }

  if (P.mode === 'pair') return pairMode(ort, env, W, H, rnd, embData, clickFeeds, only, bestMulti);

  const { session, bytes, fetchMs, createMs } = await loadSession(ort, P.model);
  const { cw, ch, click: clickOn } = makeCanvasClicker(W, H, clickFeeds, only, bestMulti);
  const img = await imageFeedsAll(ort, P.prep, embData, P.emb);
  const m = { session, embs: img.embs, render: makeRenderer(P.iface, W, H, cw, ch) };
  let last = null;
  async function click(i) {
    const r = await clickOn(m, i, rnd() * W, rnd() * H);
    last = { dims: (P.iface === 'low_res' ? r.out.low_res_masks : r.out.masks).dims, best: r.best, on: r.on / (cw * ch), canvas: [cw, ch] };
    return r.times;
  }
  const warm = [];
  for (let i = 0; i < P.warmup; i++) warm.push(await click(i));
  const samples = [];
  for (let i = 0; i < P.runs; i++) samples.push(await click(P.warmup + i));
  if (P.profile) session.endProfiling();
  await session.release();
  return {
    params: P, env, ortVersion: ort.env.versions || null, importMs,
    bytes: bytes + img.prepBytes, prepMs: img.prepMs,
    cold: { fetchMs, createMs, coldMs: fetchMs + createMs + img.prepCold, firstRunMs: warm.length ? warm[0].run : null },
    inputNames: session.inputNames, outputNames: session.outputNames, last, samples, canvas: [cw, ch],
  };
}

// pair mode: `model` (iface/emb) and `ref` (ref_iface/ref_emb) in the same page, clicks alternating
// between them (same click positions, order swapped every click), so background load on a shared
// machine hits both alike and their ratio stays meaningful.
async function pairMode(ort, env, W, H, rnd, embData, clickFeeds, only, bestMulti) {
  const specs = [
    { url: P.model, iface: P.iface, emb: P.emb, prep: P.prep },
    { url: P.ref, iface: q.get('ref_iface') || 'official', emb: q.get('ref_emb') || 'float32', prep: q.get('ref_prep') },
  ];
  const { cw, ch, click: clickOn } = makeCanvasClicker(W, H, clickFeeds, only, bestMulti);
  const models = [];
  for (const sp of specs) {
    const s = await loadSession(ort, sp.url);
    const img = await imageFeedsAll(ort, sp.prep, embData, sp.emb);
    models.push({ ...sp, ...s, embs: img.embs, prepMs: img.prepMs,
      render: makeRenderer(sp.iface, W, H, cw, ch), samples: [] });
  }
  const click = async (m, i, cx, cy) => (await clickOn(m, i, cx, cy)).times;
  for (let i = 0; i < P.warmup + P.runs; i++) {
    const cx = rnd() * W, cy = rnd() * H;
    const order = i % 2 ? [1, 0] : [0, 1];
    for (const k of order) {
      const r = await click(models[k], i, cx, cy);
      if (i >= P.warmup) models[k].samples.push(r);
    }
  }
  for (const m of models) await m.session.release();
  return { params: P, env, ortVersion: ort.env.versions || null, canvas: [cw, ch],
    pair: models.map((m) => ({ url: m.url, bytes: m.bytes, prepMs: m.prepMs, samples: m.samples })) };
}

main().then((r) => { window.__bench.result = r; window.__bench.ok = true; window.__bench.done = true; log('done'); })
  .catch((e) => { window.__bench.error = (e && e.stack) ? e.stack : String(e); window.__bench.done = true; log('ERROR ' + window.__bench.error); });
