// Messages between the page and the decoder worker: discriminated unions with request ids. Large
// arrays travel as transferred ArrayBuffers (listed next to postMessage), never as copies.

/** Where the decoder runs. */
export type Backend = 'webgpu' | 'wasm';
/** What the page asks for (?backend=...): a backend by name, or 'auto'. */
export type BackendChoice = Backend | 'auto';

/** One tensor of an embedding's body: the `size` elements from element `offset` on (api.ts EmbeddingTensor). */
export interface WireTensor {
  /** The graph input it feeds (the manifest's image_inputs). */
  readonly name: string;
  readonly shape: readonly number[];
  readonly offset: number;
  readonly size: number;
}

export interface InitRequest {
  readonly type: 'init';
  readonly id: number;
  /** Absolute URL of the decoder .onnx file. */
  readonly modelUrl: string;
  /** Absolute URL of its per-image graph (run once per embedding), or null when it has none. */
  readonly prepUrl: string | null;
  /** Absolute URL of the folder holding onnxruntime-web's .wasm/.mjs files. */
  readonly ortBase: string;
  /** The wire dtype of the per-image tensors, from the manifest (the graphs' inputs of those names). */
  readonly embeddingDtype: 'float32' | 'float16';
  /** Names of the per-image tensors the server sends (the manifest's image_inputs), in wire order. */
  readonly imageInputs: readonly string[];
  /** Side of the low-res mask frame (manifest low_res_size). */
  readonly lowResSize: number;
  /** 'auto' picks WebGPU when it can run the model, else WASM; a named backend is used or fails. */
  readonly backend: BackendChoice;
}

export interface EmbeddingRequest {
  readonly type: 'embedding';
  readonly id: number;
  /** Absolute URL of the raw little-endian embedding bytes in `dtype`. */
  readonly url: string;
  readonly dtype: 'float32' | 'float16';
  /** The body's layout (the embedding metadata's tensors). */
  readonly tensors: readonly WireTensor[];
  /** [H, W] of the original image (only fed to decoders that take orig_im_size). */
  readonly originalSize: readonly [number, number];
}

/**
 * Run the per-image graph on a prefetched embedding ahead of its opening and keep the outputs (the
 * page sends it only after a quiet spell; the worker skips it when a request is already waiting).
 */
export interface PrepRequest {
  readonly type: 'prep';
  readonly id: number;
  /** The embedding as in EmbeddingRequest: its URL is the cache key. */
  readonly url: string;
  readonly dtype: 'float32' | 'float16';
  readonly tensors: readonly WireTensor[];
  /** URLs of the embeddings the page still prefetches: other cached outputs are dropped. */
  readonly keep: readonly string[];
}

export interface DecodeRequest {
  readonly type: 'decode';
  readonly id: number;
  /** (1, N, 2) xy in the model frame. Transferred. */
  readonly coords: Float32Array;
  /** (1, N) labels. Transferred. */
  readonly labels: Float32Array;
  /** (1, 1, L, L) previous low-res logits, or null for none. Transferred. */
  readonly maskInput: Float32Array | null;
  /** Hover previews may be dropped by the page when newer ones arrive. */
  readonly hover: boolean;
}

export type ToWorker = InitRequest | EmbeddingRequest | PrepRequest | DecodeRequest;

export interface ReadyReply {
  readonly type: 'ready';
  readonly id: number;
  readonly backend: Backend;
  readonly threads: number;
  readonly inputNames: readonly string[];
  readonly outputNames: readonly string[];
  readonly loadMs: number;
}

export interface EmbeddingReply {
  readonly type: 'embedding-ready';
  readonly id: number;
  readonly bytes: number;
  readonly fetchMs: number;
  /** Time of the per-image graph (0 without one, or when its outputs were prepared ahead). */
  readonly prepMs: number;
  /** The per-image graph's outputs were prepared ahead (a PrepRequest): no fetch, no run. */
  readonly prepared: boolean;
}

export interface PrepReply {
  readonly type: 'prepped';
  readonly id: number;
  /** Not run: a request was waiting (the page asks again at the next quiet spell). */
  readonly skipped: boolean;
  /** Fetch + per-image graph time (0 when skipped or already cached). */
  readonly ms: number;
}

export interface DecodeReply {
  readonly type: 'decoded';
  readonly id: number;
  /** (1, C, L, L) low-res mask logits over the padded model frame. Transferred. */
  readonly lowRes: Float32Array;
  /** (1, C) predicted IoU per mask token. */
  readonly iou: Float32Array;
  readonly tokens: number;
  /** Time of session.run alone. */
  readonly runMs: number;
  /** When session.run started, ms since the Unix epoch (performance.timeOrigin + now in the worker). */
  readonly runStart: number;
  /** Backend that ran it (WebGPU falls back to WASM for good if a run fails). */
  readonly backend: Backend;
  readonly threads: number;
}

/** Sent when the worker's warm-up ends (id 0: it answers no request). */
export interface WarmedReply {
  readonly type: 'warmed';
  readonly id: 0;
  /** Click-graph runs done (fewer when a request arrived first). */
  readonly runs: number;
  /** Why it stopped early, or null. */
  readonly error: string | null;
  readonly ms: number;
  /** When it started, ms since the Unix epoch. */
  readonly start: number;
}

export interface ErrorReply {
  readonly type: 'error';
  readonly id: number;
  readonly message: string;
}

export type FromWorker = ReadyReply | EmbeddingReply | PrepReply | DecodeReply | WarmedReply | ErrorReply;
