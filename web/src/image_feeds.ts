// The per-image inputs of the decoder, read from the manifest and the embedding metadata only (no
// model family in the page): the server sends the tensors of the manifest's `image_inputs` in one
// body (api.ts EmbeddingTensor: name, shape, element offset and size); each one feeds the graph
// input of the same name, in the per-image ("prep") graph when the variant has one and that graph
// takes it, else in the click graph directly. SAM 1 sends one tensor (image_embeddings), SAM 2.1
// three (image_embed, high_res_feats_0, high_res_feats_1). Pure functions, tested in Vitest; the
// worker (decoder.worker.ts) turns the arrays into ORT tensors.

import type { WireTensor } from './protocol';

/** The prompt inputs the worker builds per click; every other click-graph input comes from the image. */
export const PROMPT_INPUTS: readonly string[] = ['point_coords', 'point_labels', 'mask_input', 'has_mask_input', 'orig_im_size'];

/** Which per-image tensor goes where, checked against the graphs' input and output names. */
export interface FeedPlan {
  /** Per-image tensors fed to the prep graph (all of its inputs). */
  readonly toPrep: readonly string[];
  /** Per-image tensors fed straight to the click graph. */
  readonly toClick: readonly string[];
  /** Click-graph inputs that hold the image (from the prep graph or straight from the server). */
  readonly clickImageInputs: readonly string[];
}

/**
 * Plan how the server's tensors (`imageInputs`, in wire order) reach the graphs; throws an Error that
 * names the input when the graphs and the manifest do not fit together.
 */
export function planFeeds(
  imageInputs: readonly string[],
  click: { readonly inputNames: readonly string[] },
  prep: { readonly inputNames: readonly string[]; readonly outputNames: readonly string[] } | null,
): FeedPlan {
  if (imageInputs.length === 0) throw new Error('The manifest lists no per-image inputs (image_inputs)');
  const toPrep = prep ? [...prep.inputNames] : [];
  for (const name of toPrep) {
    if (!imageInputs.includes(name)) throw new Error(`The per-image graph wants "${name}", which the server does not send (image_inputs: ${imageInputs.join(', ')})`);
  }
  const fromPrep = prep ? prep.outputNames : [];
  const clickImageInputs = click.inputNames.filter((n) => !PROMPT_INPUTS.includes(n));
  const toClick: string[] = [];
  for (const name of clickImageInputs) {
    if (fromPrep.includes(name)) continue;
    if (!imageInputs.includes(name)) throw new Error(`The decoder wants an input "${name}" that neither the server nor the per-image graph provides (inputs: ${click.inputNames.join(', ')})`);
    toClick.push(name);
  }
  for (const name of ['point_coords', 'point_labels']) {
    if (!click.inputNames.includes(name)) throw new Error(`The decoder has no input "${name}" (inputs: ${click.inputNames.join(', ')})`);
  }
  return { toPrep, toClick, clickImageInputs };
}

/** One tensor's elements as ORT takes them: float16 as raw half-precision bits (Uint16Array). */
export interface TensorData {
  readonly data: Uint16Array | Float32Array;
  readonly dims: number[];
}

/**
 * Cut the body of GET /api/embeddings/{id} into its tensors by name. A tensor that is the whole body
 * keeps the buffer (no copy); otherwise each gets its own copy, so ORT never sees a view into a
 * larger buffer. Throws when the body's size is not the layout's.
 */
export function splitBody(buf: ArrayBuffer, dtype: 'float32' | 'float16', tensors: readonly WireTensor[]): Map<string, TensorData> {
  const itemBytes = dtype === 'float16' ? 2 : 4;
  const count = tensors.reduce((a, t) => a + t.size, 0);
  if (buf.byteLength !== count * itemBytes) {
    const layout = tensors.map((t) => `${t.name} ${t.shape.join('x')}`).join(' + ');
    throw new Error(`The embedding has ${buf.byteLength} bytes, expected ${count * itemBytes} for ${dtype} ${layout}`);
  }
  const all = dtype === 'float16' ? new Uint16Array(buf) : new Float32Array(buf);
  const out = new Map<string, TensorData>();
  for (const t of tensors) {
    const whole = t.offset === 0 && t.size === all.length;
    out.set(t.name, { data: whole ? all : all.slice(t.offset, t.offset + t.size), dims: [...t.shape] });
  }
  return out;
}

/** Bytes of an embedding body in `dtype`. */
export function bodyBytes(dtype: 'float32' | 'float16', tensors: readonly WireTensor[]): number {
  return tensors.reduce((a, t) => a + t.size, 0) * (dtype === 'float16' ? 2 : 4);
}

/** IEEE half-precision bits -> float32 values (for a graph input declared float32 fed from a float16 body). */
export function halfToFloat(bits: Uint16Array): Float32Array {
  const out = new Float32Array(bits.length);
  for (let i = 0; i < bits.length; i++) {
    const h = bits[i]!;
    const sign = h & 0x8000 ? -1 : 1;
    const exp = (h >> 10) & 0x1f;
    const frac = h & 0x3ff;
    if (exp === 0) out[i] = sign * frac * 2 ** -24; // zero and subnormals
    else if (exp === 31) out[i] = frac ? NaN : sign * Infinity;
    else out[i] = sign * (1 + frac / 1024) * 2 ** (exp - 15);
  }
  return out;
}
