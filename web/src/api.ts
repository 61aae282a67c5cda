// Typed client for the clicksam HTTP API (see the server's routes). Errors become ApiError with the
// server's `detail` message, so the UI can show it as is. The embedding metadata is checked on arrival
// (parseEmbeddingMeta), against a fixture that the Python side writes (testdata/embedding_python.json).

export interface ServerConfig {
  readonly model: string;
  readonly demo_model: boolean;
  readonly notice: string | null;
  readonly decoder_manifest: string;
  readonly embedding_dtype: string;
  readonly max_upload_bytes: number;
  readonly max_pixels: number;
  /** sha256 of the served checkpoint (null for seeded random weights); older servers omit it. */
  readonly checkpoint_sha256?: string | null;
}

/**
 * Where one tensor lies in the embedding's body: the `size` elements from element `offset` on
 * (multiply by 2 for float16 bytes, by 4 for float32). clicksam.formats.EmbeddingTensor on the server.
 */
export interface EmbeddingTensor {
  /** The decoder input it feeds (the manifest's image_inputs name). */
  readonly name: string;
  readonly shape: readonly number[];
  readonly offset: number;
  readonly size: number;
}

/** Metadata of one image embedding: clicksam.formats.EmbeddingResponse on the server. */
export interface EmbeddingMeta {
  readonly id: string;
  readonly model: string;
  /** [H, W] after EXIF orientation. */
  readonly original_size: [number, number];
  /** [h, w] of the resized image inside the model frame. */
  readonly input_size: [number, number];
  /** Shape of the first tensor (the whole body for SAM 1). */
  readonly shape: number[];
  /** Every tensor of the body, in body order (one for SAM 1, three for SAM 2.1). */
  readonly tensors: readonly EmbeddingTensor[];
  readonly dtype: string;
  readonly url: string;
  readonly cached: boolean;
  readonly encode_ms: number;
}

export interface EverythingMask {
  readonly segmentation: { size: [number, number]; counts: string };
  readonly area: number;
  readonly bbox: [number, number, number, number];
  readonly predicted_iou: number;
  readonly stability_score: number;
  readonly point_coords: Array<[number, number]>;
  readonly crop_box: [number, number, number, number];
}

export interface EverythingResult {
  readonly id: string;
  readonly original_size: [number, number];
  readonly masks: EverythingMask[];
}

/** The server answered something that is not the embedding metadata this page reads. */
export class EmbeddingMetaError extends Error {
  override name = 'EmbeddingMetaError';
}

function field(o: Record<string, unknown>, key: string, kind: 'string' | 'number' | 'boolean'): unknown {
  const v = o[key];
  if (typeof v !== kind || (kind === 'number' && !Number.isFinite(v))) {
    throw new EmbeddingMetaError(`embedding metadata: "${key}" must be a ${kind}, got ${JSON.stringify(v)}`);
  }
  return v;
}

function ints(o: Record<string, unknown>, key: string, length?: number): number[] {
  const v = o[key];
  if (!Array.isArray(v) || !v.every((d) => Number.isInteger(d)) || (length !== undefined && v.length !== length)) {
    throw new EmbeddingMetaError(`embedding metadata: "${key}" must be a list of ${length ?? 'some'} integers, got ${JSON.stringify(v)}`);
  }
  return v as number[];
}

/** The body layout: each tensor right after the one before, from element 0, size = product of shape. */
function tensorsOf(o: Record<string, unknown>): EmbeddingTensor[] {
  const v = o.tensors;
  if (!Array.isArray(v) || v.length === 0) throw new EmbeddingMetaError(`embedding metadata: "tensors" must be a non-empty list, got ${JSON.stringify(v)}`);
  let next = 0;
  return v.map((t: unknown, i) => {
    if (typeof t !== 'object' || t === null || Array.isArray(t)) throw new EmbeddingMetaError(`embedding metadata: tensors[${i}] must be an object`);
    const r = t as Record<string, unknown>;
    const shape = ints(r, 'shape');
    const tensor = { name: field(r, 'name', 'string') as string, shape, offset: field(r, 'offset', 'number') as number, size: field(r, 'size', 'number') as number };
    const size = shape.reduce((a, b) => a * b, 1);
    if (tensor.offset !== next || tensor.size !== size) {
      throw new EmbeddingMetaError(`embedding metadata: tensor "${tensor.name}" must start at element ${next} with ${size} elements, got offset ${tensor.offset} and size ${tensor.size}`);
    }
    next += size;
    return tensor;
  });
}

/** Check what POST /api/embeddings (or GET .../meta) answered; throws EmbeddingMetaError saying what is wrong. */
export function parseEmbeddingMeta(raw: unknown): EmbeddingMeta {
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) throw new EmbeddingMetaError('embedding metadata must be a JSON object');
  const o = raw as Record<string, unknown>;
  const [h, w] = ints(o, 'original_size', 2) as [number, number];
  const [ih, iw] = ints(o, 'input_size', 2) as [number, number];
  return {
    id: field(o, 'id', 'string') as string,
    model: field(o, 'model', 'string') as string,
    original_size: [h, w],
    input_size: [ih, iw],
    shape: ints(o, 'shape'),
    tensors: tensorsOf(o),
    dtype: field(o, 'dtype', 'string') as string,
    url: field(o, 'url', 'string') as string,
    cached: field(o, 'cached', 'boolean') as boolean,
    encode_ms: field(o, 'encode_ms', 'number') as number,
  };
}

export class ApiError extends Error {
  override name = 'ApiError';
  constructor(
    message: string,
    readonly status: number,
  ) {
    super(message);
  }
}

/** Turn a FastAPI error body ({"detail": str | [{msg}...]}) into one readable line. */
export function errorDetail(body: unknown, status: number, statusText: string): string {
  if (typeof body === 'object' && body !== null && 'detail' in body) {
    const d = body.detail;
    if (typeof d === 'string') return d;
    if (Array.isArray(d)) {
      return d
        .map((e) => (typeof e === 'object' && e !== null && 'msg' in e ? String((e as { msg: unknown }).msg) : String(e)))
        .join('; ');
    }
  }
  return `The server answered ${status} ${statusText}`.trim();
}

async function check(res: Response): Promise<Response> {
  if (res.ok) return res;
  let body: unknown = null;
  try {
    body = await res.json();
  } catch {
    body = null; // not JSON (e.g. a proxy's HTML page): fall back to the status line
  }
  throw new ApiError(errorDetail(body, res.status, res.statusText), res.status);
}

async function request(url: string, init?: RequestInit): Promise<Response> {
  let res: Response;
  try {
    res = await fetch(url, init);
  } catch (e) {
    throw new ApiError(`Cannot reach the server (${e instanceof Error ? e.message : String(e)}); is clicksam serve running?`, 0);
  }
  return check(res);
}

export async function getConfig(): Promise<ServerConfig> {
  return (await (await request('api/config')).json()) as ServerConfig;
}

export async function getManifestJson(url: string): Promise<unknown> {
  return (await request(url.replace(/^\//, ''))).json();
}

/** Upload an image for encoding; the server answers once the embedding is ready. */
export async function postEmbedding(image: Blob, filename: string, signal?: AbortSignal): Promise<EmbeddingMeta> {
  const form = new FormData();
  form.append('image', image, filename);
  const init: RequestInit = { method: 'POST', body: form };
  if (signal) init.signal = signal;
  return parseEmbeddingMeta(await (await request('api/embeddings', init)).json());
}

export async function getEmbeddingMeta(id: string): Promise<EmbeddingMeta> {
  return parseEmbeddingMeta(await (await request(`api/embeddings/${encodeURIComponent(id)}/meta`)).json());
}

/** Options of POST /api/everything the page forwards (from its own URL query, for experts and tests). */
export const EVERYTHING_OPTIONS = ['points_per_side', 'pred_iou_thresh', 'stability_score_thresh', 'box_nms_thresh', 'crop_n_layers', 'min_mask_region_area'] as const;

export async function postEverything(image: Blob, filename: string, options: ReadonlyMap<string, string> = new Map()): Promise<EverythingResult> {
  const form = new FormData();
  form.append('image', image, filename);
  for (const [k, v] of options) form.append(k, v);
  return (await (await request('api/everything', { method: 'POST', body: form })).json()) as EverythingResult;
}

/** URL of the raw embedding bytes in the wanted dtype, relative to the page. */
export function embeddingUrl(meta: EmbeddingMeta, dtype: string): string {
  return `${meta.url.replace(/^\//, '')}?dtype=${dtype}`;
}
