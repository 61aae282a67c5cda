/// <reference lib="webworker" />
// Web Worker that owns the onnxruntime-web session of the exported SAM prompt encoder + mask
// decoder. WebGPU when the browser offers an adapter, else WASM with SIMD and threads. It keeps the
// current image's feeds as ready tensors so a click costs one session.run: the embedding, or for a
// variant with a per-image graph ("prep" in the manifest) that graph's outputs, computed once when
// the embedding arrives.

import type * as OrtWasm from 'onnxruntime-web/wasm';
import type { DecodeRequest, EmbeddingRequest, FromWorker, InitRequest, ToWorker } from './protocol';

type Ort = typeof OrtWasm;
type Tensor = OrtWasm.Tensor;

declare const self: DedicatedWorkerGlobalScope;

interface State {
  ort: Ort;
  session: OrtWasm.InferenceSession;
  /** The per-image graph, or null when the click graph takes image_embeddings itself. */
  prep: OrtWasm.InferenceSession | null;
  backend: 'webgpu' | 'wasm';
  /** The model bytes, kept to rebuild the sessions on WASM if WebGPU fails at run time. */
  model: Uint8Array;
  prepModel: Uint8Array | null;
  ortBase: string;
  lowResSize: number;
  /** The current image's inputs of the click graph (the embedding or the prep graph's outputs). */
  imageFeeds: Record<string, Tensor> | null;
  origSize: Tensor | null;
}

let state: State | null = null;

function reply(msg: FromWorker, transfer: Transferable[] = []): void {
  self.postMessage(msg, transfer);
}

interface GpuAdapterLike {
  readonly features: { has(name: string): boolean };
}

/**
 * Whether WebGPU can run this decoder: an adapter exists (navigator.gpu exists in headless Chromium
 * with the GPU disabled, but has no adapter) and, for a float16 model, it supports shader-f16.
 */
async function webgpuAvailable(needsF16: boolean): Promise<boolean> {
  const gpu = (navigator as Navigator & { gpu?: { requestAdapter(): Promise<GpuAdapterLike | null> } }).gpu;
  if (!gpu) return false;
  try {
    const adapter = await gpu.requestAdapter();
    return adapter !== null && (!needsF16 || adapter.features.has('shader-f16'));
  } catch {
    return false;
  }
}

async function createSession(ort: Ort, model: Uint8Array, gpu: boolean): Promise<OrtWasm.InferenceSession> {
  return ort.InferenceSession.create(model, {
    executionProviders: gpu ? ['webgpu', 'wasm'] : ['wasm'],
    graphOptimizationLevel: 'all',
  });
}

async function loadOrt(gpu: boolean, ortBase: string): Promise<Ort> {
  // The WebGPU build also carries the WASM EP; the plain WASM build is smaller and faster to start.
  const ort: Ort = gpu ? await import('onnxruntime-web/webgpu') : await import('onnxruntime-web/wasm');
  ort.env.wasm.wasmPaths = ortBase;
  // Threads need SharedArrayBuffer, which needs cross-origin isolation (COOP/COEP from the server).
  ort.env.wasm.numThreads = wasmThreads();
  ort.env.wasm.simd = true;
  ort.env.logLevel = 'warning';
  return ort;
}

function wasmThreads(): number {
  return self.crossOriginIsolated ? Math.max(1, Math.min(4, navigator.hardwareConcurrency || 1)) : 1;
}

async function init(req: InitRequest): Promise<void> {
  const t0 = performance.now();
  const useGpu = !req.forceWasm && (await webgpuAvailable(req.embeddingDtype === 'float16'));
  const ort = await loadOrt(useGpu, req.ortBase);
  const threads = wasmThreads();
  const bytes = await fetchModel(req.modelUrl, 'decoder');
  const prepBytes = req.prepUrl ? await fetchModel(req.prepUrl, 'per-image decoder graph') : null;
  const session = await createSession(ort, bytes, useGpu);
  const prep = prepBytes ? await createSession(ort, prepBytes, useGpu) : null;
  const imageInputs = prep ? prep.outputNames : ['image_embeddings'];
  for (const name of [...imageInputs, 'point_coords', 'point_labels']) {
    if (!session.inputNames.includes(name)) throw new Error(`The decoder has no input "${name}" (inputs: ${session.inputNames.join(', ')})`);
  }
  if (prep && !prep.inputNames.includes('image_embeddings')) throw new Error(`The per-image graph has no input "image_embeddings" (inputs: ${prep.inputNames.join(', ')})`);
  for (const name of ['low_res_masks', 'iou_predictions']) {
    if (!session.outputNames.includes(name)) throw new Error(`The decoder has no output "${name}" (outputs: ${session.outputNames.join(', ')})`);
  }
  if (state) {
    await state.session.release();
    await state.prep?.release();
  }
  state = { ort, session, prep, backend: useGpu ? 'webgpu' : 'wasm', model: bytes, prepModel: prepBytes, ortBase: req.ortBase, lowResSize: req.lowResSize, imageFeeds: null, origSize: null };
  reply({
    type: 'ready',
    id: req.id,
    backend: useGpu ? 'webgpu' : 'wasm',
    threads,
    inputNames: session.inputNames,
    outputNames: session.outputNames,
    loadMs: performance.now() - t0,
  });
}

async function fetchModel(url: string, what: string): Promise<Uint8Array> {
  const res = await fetch(url);
  if (!res.ok) throw new Error(`Could not load the ${what} ${url}: HTTP ${res.status}`);
  return new Uint8Array(await res.arrayBuffer());
}

async function setEmbedding(req: EmbeddingRequest): Promise<void> {
  const s = need();
  const t0 = performance.now();
  s.imageFeeds = null; // never decode a new image's clicks against the old embedding
  const res = await fetch(req.url);
  if (!res.ok) throw new Error(`Could not fetch the image embedding: HTTP ${res.status}`);
  const buf = await res.arrayBuffer();
  const count = req.shape.reduce((a, b) => a * b, 1);
  const itemBytes = req.dtype === 'float16' ? 2 : 4;
  if (buf.byteLength !== count * itemBytes) {
    throw new Error(`The embedding has ${buf.byteLength} bytes, expected ${count * itemBytes} for ${req.dtype} ${req.shape.join('x')}`);
  }
  const dims = [...req.shape];
  // float16 travels as raw half-precision bits: ORT-web takes them as a Uint16Array.
  const embedding = req.dtype === 'float16' ? new s.ort.Tensor('float16', new Uint16Array(buf), dims) : new s.ort.Tensor('float32', new Float32Array(buf), dims);
  const fetchMs = performance.now() - t0;
  let feeds: Record<string, Tensor> = { image_embeddings: embedding };
  if (s.prep) feeds = await runPrep(s, embedding);
  s.imageFeeds = feeds;
  s.origSize = new s.ort.Tensor('float32', Float32Array.from(req.originalSize), [2]);
  reply({ type: 'embedding-ready', id: req.id, bytes: buf.byteLength, fetchMs, prepMs: performance.now() - t0 - fetchMs });
}

/** The per-image graph's outputs on this embedding, as CPU tensors (inputs of every click). */
async function runPrep(s: State, embedding: Tensor): Promise<Record<string, Tensor>> {
  const prep = s.prep;
  if (!prep) throw new Error('This decoder has no per-image graph');
  let out;
  try {
    out = await prep.run({ image_embeddings: embedding });
  } catch (e) {
    if (s.backend !== 'webgpu') throw e;
    await fallBackToWasm(s, e);
    return runPrep(s, embedding);
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
  let t0 = performance.now();
  let out;
  try {
    out = await s.session.run(wanted, ['low_res_masks', 'iou_predictions']);
  } catch (e) {
    if (s.backend !== 'webgpu') throw e;
    await fallBackToWasm(s, e);
    // Tensors are plain data: the WASM build takes them as they are.
    t0 = performance.now();
    out = await s.session.run(wanted, ['low_res_masks', 'iou_predictions']);
  }
  const runMs = performance.now() - t0;
  const low = out.low_res_masks;
  const iou = out.iou_predictions;
  if (!low || !iou) throw new Error('The decoder returned no low_res_masks / iou_predictions');
  const lowData = (await low.getData()) as Float32Array;
  const iouData = (await iou.getData()) as Float32Array;
  const tokens = Number(low.dims[1] ?? 1);
  // Copy out of ORT's buffers so both can be transferred and the tensors released.
  const lowCopy = new Float32Array(lowData);
  const iouCopy = new Float32Array(iouData);
  low.dispose();
  iou.dispose();
  reply({ type: 'decoded', id: req.id, lowRes: lowCopy, iou: iouCopy, tokens, runMs, runStart: performance.timeOrigin + t0, backend: s.backend, threads: wasmThreads() }, [lowCopy.buffer, iouCopy.buffer]);
}

function need(): State {
  if (!state) throw new Error('The decoder is not initialised');
  return state;
}

// Requests run one at a time in arrival order; the page keeps at most one hover in flight, so
// hover previews never pile up here.
let chain: Promise<void> = Promise.resolve();

self.onmessage = (ev: MessageEvent<ToWorker>) => {
  const req = ev.data;
  chain = chain.then(async () => {
    try {
      if (req.type === 'init') await init(req);
      else if (req.type === 'embedding') await setEmbedding(req);
      else await decode(req);
    } catch (e) {
      reply({ type: 'error', id: req.id, message: e instanceof Error ? e.message : String(e) });
    }
  });
};
