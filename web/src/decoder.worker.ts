/// <reference lib="webworker" />
// Web Worker that owns the onnxruntime-web session of the exported SAM prompt encoder + mask
// decoder. WebGPU when the browser offers an adapter with shader-f16 (or when the page forces it),
// else WASM with SIMD and threads (worker_backend.ts). It keeps the current image's feeds as ready
// tensors so a click costs one session.run: the server's per-image tensors (the manifest's
// image_inputs, cut from one body: image_feeds.ts), and for a variant with a per-image graph ("prep"
// in the manifest) that graph's outputs, computed once when the embedding arrives. Right after start-up, while the person picks an image, it runs both graphs a
// few times on zero inputs (warmUp), so the first clicks on the first image run as fast as later ones.
// For a prefetched embedding the page may ask, once it has been quiet, for the per-image graph's
// outputs ahead of time (prep): kept in a small cache and used when that embedding is opened.

import type * as OrtWasm from 'onnxruntime-web/wasm';
import { type FeedPlan, bodyBytes, halfToFloat, planFeeds, splitBody } from './image_feeds';
import { PREP_CACHE_SIZE, PrepCache } from './prefetch_prep';
import type { Backend, DecodeRequest, EmbeddingRequest, FromWorker, InitRequest, PrepRequest, ToWorker, WireTensor } from './protocol';
import { type Ort, chooseBackend, createSession, loadOrt, wasmThreads } from './worker_backend';

type Tensor = OrtWasm.Tensor;

declare const self: DedicatedWorkerGlobalScope;

interface State {
  ort: Ort;
  session: OrtWasm.InferenceSession;
  /** The per-image graph, or null when the click graph takes the server's per-image tensors itself. */
  prep: OrtWasm.InferenceSession | null;
  backend: Backend;
  /** The backend was asked for by name: a WebGPU failure is reported, not hidden by a switch to WASM. */
  forced: boolean;
  /** The model bytes, kept to rebuild the sessions on WASM if WebGPU fails at run time. */
  model: Uint8Array;
  prepModel: Uint8Array | null;
  ortBase: string;
  lowResSize: number;
  /** Which of the server's per-image tensors feed which graph (image_feeds.ts). */
  plan: FeedPlan;
  /** The current image's inputs of the click graph (the embedding or the prep graph's outputs). */
  imageFeeds: Record<string, Tensor> | null;
  /** The open embedding's URL (its cache key when it leaves), or null. */
  imageKey: string | null;
  origSize: Tensor | null;
  /** Per-image graph outputs prepared ahead (or kept from the image opened before), by embedding URL. */
  prepared: PrepCache<Record<string, Tensor>>;
  /** The page has asked for outputs ahead (the projects page): an image left is kept too. */
  prefetching: boolean;
}

let state: State | null = null;

function reply(msg: FromWorker, transfer: Transferable[] = []): void {
  self.postMessage(msg, transfer);
}

async function init(req: InitRequest): Promise<void> {
  const t0 = performance.now();
  const { backend, f16 } = await chooseBackend(req.backend, req.embeddingDtype === 'float16');
  const useGpu = backend === 'webgpu';
  const ort = await loadOrt(useGpu, req.ortBase);
  const threads = wasmThreads();
  const bytes = await fetchModel(req.modelUrl, 'decoder');
  const prepBytes = req.prepUrl ? await fetchModel(req.prepUrl, 'per-image decoder graph') : null;
  const session = await createSession(ort, bytes, useGpu);
  // The per-image graph casts the float16 embedding on its input, which a WebGPU device without
  // shader-f16 cannot compile: it then runs on WASM (once per image), the click graph on WebGPU.
  const prepOnGpu = useGpu && (f16 || req.embeddingDtype !== 'float16');
  if (useGpu && prepBytes && !prepOnGpu) console.info('WebGPU without shader-f16: the per-image graph (float16 input) runs on WASM, the click graph on WebGPU');
  const prep = prepBytes ? await createSession(ort, prepBytes, prepOnGpu) : null;
  const plan = planFeeds(req.imageInputs, session, prep);
  for (const name of ['low_res_masks', 'iou_predictions']) {
    if (!session.outputNames.includes(name)) throw new Error(`The decoder has no output "${name}" (outputs: ${session.outputNames.join(', ')})`);
  }
  if (state) {
    await state.session.release();
    await state.prep?.release();
  }
  state = { ort, session, prep, backend, forced: req.backend !== 'auto', model: bytes, prepModel: prepBytes, ortBase: req.ortBase, lowResSize: req.lowResSize, plan, imageFeeds: null, imageKey: null, origSize: null, prepared: newCache(), prefetching: false };
  reply({
    type: 'ready',
    id: req.id,
    backend,
    threads,
    inputNames: session.inputNames,
    outputNames: session.outputNames,
    loadMs: performance.now() - t0,
  });
  enqueue(() => warmUp(state));
}

/**
 * Decoder runs on zero inputs right after start-up, while the person picks an image: onnxruntime-web's
 * kernels are WebAssembly, which V8 first compiles with its baseline compiler and recompiles
 * optimised only once they are hot, so without this the first ~5 clicks of a session took 1.3-2x as
 * long as later ones (the number of prompt points, which changes on every early click, made no
 * difference: bench/README.md). On WebGPU one run compiles the shaders. The per-image graph once,
 * then the click graph with 2-4 points, with and without a mask input. Stops for good as soon as a
 * request arrives (which waits for at most the run in progress): once an image is there, a click may
 * come at any moment, and a warm-up run in its way costs more than it saves (measured). The page
 * records it as `clicksam:warm-up`.
 */
async function warmUp(s: State | null): Promise<void> {
  if (!s) return;
  const t0 = performance.now();
  let runs = 0;
  let error: string | null = null;
  const idle = async (): Promise<boolean> => {
    await new Promise((r) => setTimeout(r, 0)); // let waiting messages in first
    return waiting === 0 && state === s;
  };
  try {
    if (!(await idle())) return;
    const prepIn: Record<string, Tensor> = {};
    for (const name of s.plan.toPrep) prepIn[name] = zeros(s.ort, s.prep?.inputMetadata ?? [], name, 0);
    const image = s.prep ? await runPrep(s, prepIn) : {};
    for (let k = 0; k < WARMUP_RUNS[s.backend] && (await idle()); k++) {
      const feeds: Record<string, Tensor> = { ...image };
      for (const meta of s.session.inputMetadata) {
        if (meta.name === 'has_mask_input') feeds[meta.name] = new s.ort.Tensor('float32', Float32Array.of(k % 2), [1]);
        else if (meta.name === 'orig_im_size') feeds[meta.name] = new s.ort.Tensor('float32', Float32Array.of(s.lowResSize, s.lowResSize), [2]);
        else feeds[meta.name] ??= zeros(s.ort, s.session.inputMetadata, meta.name, 2 + (k % 3));
      }
      const out = await runClick(s, feeds);
      for (const t of Object.values(out)) t.dispose();
      runs++;
    }
  } catch (e) {
    // a real request meets the same failure and reports it; the warm-up only notes it
    error = e instanceof Error ? e.message : String(e);
    console.warn(`decoder warm-up stopped: ${error}`);
  } finally {
    if (runs > 0 || error !== null) reply({ type: 'warmed', id: 0, runs, error, ms: performance.now() - t0, start: performance.timeOrigin + t0 });
  }
}

/** Click-graph runs of the warm-up: WASM needs ~6 for V8 to optimise ORT's kernels (bench/README.md). */
const WARMUP_RUNS: Readonly<Record<Backend, number>> = { wasm: 6, webgpu: 1 };

/** A float32 (or float16) zero tensor for input `name`, its symbolic dimensions (prompt points) set to `n`. */
function zeros(ort: Ort, inputs: readonly OrtWasm.InferenceSession.ValueMetadata[], name: string, n: number): Tensor {
  const meta = inputs.find((m) => m.name === name);
  if (!meta?.isTensor) throw new Error(`The decoder has no tensor input "${name}"`);
  const dims = meta.shape.map((d) => (typeof d === 'number' ? d : n));
  const count = dims.reduce((a, b) => a * b, 1);
  return meta.type === 'float16' ? new ort.Tensor('float16', new Uint16Array(count), dims) : new ort.Tensor('float32', new Float32Array(count), dims);
}

async function fetchModel(url: string, what: string): Promise<Uint8Array> {
  const res = await fetch(url);
  if (!res.ok) throw new Error(`Could not load the ${what} ${url}: HTTP ${res.status}`);
  return new Uint8Array(await res.arrayBuffer());
}

function newCache(): PrepCache<Record<string, Tensor>> {
  return new PrepCache(PREP_CACHE_SIZE, (feeds) => {
    for (const t of Object.values(feeds)) t.dispose();
  });
}

async function setEmbedding(req: EmbeddingRequest): Promise<void> {
  const s = need();
  const t0 = performance.now();
  // on a page that prefetches, the image left keeps its outputs (it prefetches the previous image
  // too); with no per-image graph the feeds are the embedding itself, cheap to fetch again
  if (s.prep && s.prefetching && s.imageFeeds && s.imageKey && s.imageKey !== req.url) s.prepared.put(s.imageKey, s.imageFeeds);
  s.imageFeeds = null; // never decode a new image's clicks against the old embedding
  s.imageKey = null;
  const ready = s.prep ? s.prepared.take(req.url) : null;
  let fetchMs = 0;
  let feeds = ready;
  if (!feeds) {
    const tensors = await fetchEmbedding(s, req);
    fetchMs = performance.now() - t0;
    feeds = await imageFeeds(s, tensors);
  }
  s.imageFeeds = feeds;
  s.imageKey = req.url;
  s.origSize = new s.ort.Tensor('float32', Float32Array.from(req.originalSize), [2]);
  reply({ type: 'embedding-ready', id: req.id, bytes: bodyBytes(req.dtype, req.tensors), fetchMs, prepMs: ready ? 0 : performance.now() - t0 - fetchMs, prepared: ready !== null });
}

/**
 * Prepare a prefetched embedding's per-image outputs, unless a request arrived meanwhile (a click
 * must not wait behind this run, which cannot be stopped once started) or they are there already.
 */
async function prepAhead(req: PrepRequest): Promise<void> {
  const s = need();
  s.prefetching = true;
  s.prepared.keepOnly(req.keep);
  await new Promise((r) => setTimeout(r, 0)); // let waiting messages in first
  const skipped = waiting > 0 || !s.prep;
  const t0 = performance.now();
  if (!skipped && s.prep && req.url !== s.imageKey && !s.prepared.has(req.url)) {
    const feeds = await imageFeeds(s, await fetchEmbedding(s, req));
    if (state === s) s.prepared.put(req.url, feeds);
  }
  reply({ type: 'prepped', id: req.id, skipped, ms: performance.now() - t0 });
}

/** The embedding's bytes (an HTTP cache hit after the page's prefetch) as tensors by name, size checked. */
async function fetchEmbedding(s: State, req: { url: string; dtype: 'float32' | 'float16'; tensors: readonly WireTensor[] }): Promise<Record<string, Tensor>> {
  const res = await fetch(req.url);
  if (!res.ok) throw new Error(`Could not fetch the image embedding: HTTP ${res.status}`);
  const declared = [...(s.prep?.inputMetadata ?? []), ...s.session.inputMetadata];
  const out: Record<string, Tensor> = {};
  for (const [name, t] of splitBody(await res.arrayBuffer(), req.dtype, req.tensors)) {
    const meta = declared.find((m) => m.name === name);
    // float16 travels as raw half-precision bits: ORT-web takes them as a Uint16Array; an input
    // declared float32 (another graph of the same variant takes float16) gets them widened
    const data = t.data instanceof Uint16Array && meta?.isTensor && meta.type === 'float32' ? halfToFloat(t.data) : t.data;
    out[name] = data instanceof Uint16Array ? new s.ort.Tensor('float16', data, t.dims) : new s.ort.Tensor('float32', data, t.dims);
  }
  return out;
}

/** The click graph's image inputs: the per-image graph's outputs and the tensors it takes as they came. */
async function imageFeeds(s: State, tensors: Record<string, Tensor>): Promise<Record<string, Tensor>> {
  const feeds: Record<string, Tensor> = s.prep ? await runPrep(s, tensors) : {};
  for (const name of s.plan.toClick) {
    const t = tensors[name];
    if (!t) throw new Error(`The embedding has no tensor "${name}"`);
    feeds[name] = t;
  }
  return feeds;
}

/** The per-image graph's outputs on these tensors (by name), as CPU tensors (inputs of every click). */
async function runPrep(s: State, tensors: Record<string, Tensor>): Promise<Record<string, Tensor>> {
  const prep = s.prep;
  if (!prep) throw new Error('This decoder has no per-image graph');
  const inputs: Record<string, Tensor> = {};
  for (const name of s.plan.toPrep) {
    const t = tensors[name];
    if (!t) throw new Error(`The embedding has no tensor "${name}" for the per-image graph`);
    inputs[name] = t;
  }
  let out;
  try {
    out = await prep.run(inputs);
  } catch (e) {
    if (s.backend !== 'webgpu' || s.forced) throw e;
    await fallBackToWasm(s, e);
    return runPrep(s, tensors);
  }
  const feeds: Record<string, Tensor> = {};
  for (const name of prep.outputNames) {
    const t = out[name];
    if (!t) throw new Error(`The per-image graph returned no "${name}"`);
    feeds[name] = t;
  }
  return feeds;
}

/**
 * Some WebGPU adapters accept a graph but fail at run time (e.g. a missing shader feature): switch
 * to WASM for good rather than leave the page without masks.
 */
async function fallBackToWasm(s: State, e: unknown): Promise<void> {
  console.warn(`WebGPU decode failed, switching to WASM: ${e instanceof Error ? e.message : String(e)}`);
  const wasmOrt = await loadOrt(false, s.ortBase);
  const session = await createSession(wasmOrt, s.model, false);
  const prep = s.prepModel ? await createSession(wasmOrt, s.prepModel, false) : null;
  await s.session.release();
  await s.prep?.release();
  Object.assign(s, { ort: wasmOrt, session, prep, backend: 'wasm' });
}

async function decode(req: DecodeRequest): Promise<void> {
  const s = need();
  if (!s.imageFeeds) throw new Error('No image embedding loaded yet');
  const n = req.labels.length;
  const L = s.lowResSize;
  const has = req.maskInput !== null;
  const feeds: Record<string, Tensor> = {
    ...s.imageFeeds,
    point_coords: new s.ort.Tensor('float32', req.coords, [1, n, 2]),
    point_labels: new s.ort.Tensor('float32', req.labels, [1, n]),
    mask_input: new s.ort.Tensor('float32', req.maskInput ?? new Float32Array(L * L), [1, 1, L, L]),
    has_mask_input: new s.ort.Tensor('float32', new Float32Array([has ? 1 : 0]), [1]),
  };
  if (s.origSize) feeds.orig_im_size = s.origSize;
  // Feed only what this variant declares (the official variant also takes orig_im_size).
  const wanted: Record<string, Tensor> = {};
  for (const name of s.session.inputNames) {
    const t = feeds[name];
    if (!t) throw new Error(`The decoder wants an input "${name}" this page does not know`);
    wanted[name] = t;
  }
  const timing = { start: 0 };
  const out = await runClick(s, wanted, timing);
  const runMs = performance.now() - timing.start;
  const low = out.low_res_masks;
  const iou = out.iou_predictions;
  if (!low || !iou) throw new Error('The decoder returned no low_res_masks / iou_predictions');
  const lowData = owned((await low.getData()) as Float32Array);
  const iouData = owned((await iou.getData()) as Float32Array);
  const tokens = Number(low.dims[1] ?? 1);
  low.dispose();
  iou.dispose();
  reply({ type: 'decoded', id: req.id, lowRes: lowData, iou: iouData, tokens, runMs, runStart: performance.timeOrigin + timing.start, backend: s.backend, threads: wasmThreads() }, [lowData.buffer, iouData.buffer]);
}

/**
 * One run of the click graph; on WebGPU a failure switches to WASM for good and runs again there.
 * `timing.start` is set to when the run that produced the result started.
 */
async function runClick(s: State, feeds: Record<string, Tensor>, timing = { start: 0 }): Promise<OrtWasm.InferenceSession.ReturnType> {
  timing.start = performance.now();
  try {
    return await s.session.run(feeds, ['low_res_masks', 'iou_predictions']);
  } catch (e) {
    if (s.backend !== 'webgpu' || s.forced) throw e;
    await fallBackToWasm(s, e);
    // Tensors are plain data: the WASM build takes them as they are.
    timing.start = performance.now();
    return await s.session.run(feeds, ['low_res_masks', 'iou_predictions']);
  }
}

/**
 * `a` itself when it is the whole of its own ArrayBuffer (ORT hands CPU outputs over as fresh
 * arrays, and WebGPU downloads into fresh ones), so it can be transferred without a copy; else a copy.
 */
function owned(a: Float32Array): Float32Array<ArrayBuffer> {
  return a.buffer instanceof ArrayBuffer && a.byteOffset === 0 && a.byteLength === a.buffer.byteLength ? (a as Float32Array<ArrayBuffer>) : new Float32Array(a);
}

function need(): State {
  if (!state) throw new Error('The decoder is not initialised');
  return state;
}

// Requests run one at a time in arrival order; the page keeps at most one hover in flight, so
// hover previews never pile up here. `waiting` counts requests not started yet (the warm-up yields to them).
let chain: Promise<void> = Promise.resolve();
let waiting = 0;

function enqueue(task: () => Promise<void>): void {
  chain = chain.then(task);
}

self.onmessage = (ev: MessageEvent<ToWorker>) => {
  const req = ev.data;
  waiting++;
  enqueue(async () => {
    waiting--;
    try {
      if (req.type === 'init') await init(req);
      else if (req.type === 'embedding') await setEmbedding(req);
      else if (req.type === 'prep') await prepAhead(req);
      else await decode(req);
    } catch (e) {
      reply({ type: 'error', id: req.id, message: e instanceof Error ? e.message : String(e) });
    }
  });
};
