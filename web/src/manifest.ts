// The decoder manifest written by `clicksam export` (manifest.json next to the ONNX files), parsed
// and checked at run time: nothing about the model is hard-coded in the page.

export type TensorDtype = 'float32' | 'float16';

export interface TensorSpec {
  readonly name: string;
  readonly dtype: string;
  readonly shape: ReadonlyArray<number | string>;
}

/** The per-image graph of a variant: runs once on image_embeddings; its outputs feed every click. */
export interface PrepGraph {
  readonly file: string;
  readonly inputs: readonly TensorSpec[];
  readonly outputs: readonly TensorSpec[];
}

export interface DecoderVariant {
  readonly name: string;
  readonly file: string;
  readonly bytes: number;
  readonly sha256: string;
  readonly inputs: readonly TensorSpec[];
  readonly outputs: readonly TensorSpec[];
  /** 'low_res': outputs low_res_masks (1, C, 256, 256); 'original': full-size masks too. */
  readonly masksFrame: string;
  /** Token index of the single-mask output and of the multimask candidates. */
  readonly singleToken: number;
  readonly multiTokens: readonly number[];
  readonly prep: PrepGraph | null;
}

export interface DecoderManifest {
  readonly model: string;
  readonly checkpointSha256: string | null;
  readonly imageSize: number;
  readonly lowResSize: number;
  readonly maskThreshold: number;
  /** How an image enters the square input frame: 'longest_side' (SAM 1, padded) or 'stretch' (SAM 2.1). */
  readonly resize: string;
  /** The per-image tensors the server sends, in wire order (name = graph input, wire dtype, shape). */
  readonly imageInputs: readonly TensorSpec[];
  /** Shape of the first per-image tensor (SAM 1: the only one). */
  readonly embeddingShape: readonly number[];
  readonly defaultVariant: string;
  readonly variants: ReadonlyMap<string, DecoderVariant>;
}

export class ManifestError extends Error {
  override name = 'ManifestError';
}

type Json = Record<string, unknown>;

function obj(v: unknown, what: string): Json {
  if (typeof v !== 'object' || v === null || Array.isArray(v)) throw new ManifestError(`${what} must be an object`);
  return v as Json;
}
function num(v: unknown, what: string): number {
  if (typeof v !== 'number' || !Number.isFinite(v)) throw new ManifestError(`${what} must be a number`);
  return v;
}
function str(v: unknown, what: string): string {
  if (typeof v !== 'string') throw new ManifestError(`${what} must be a string`);
  return v;
}
function tensorSpecs(v: unknown, what: string): TensorSpec[] {
  if (!Array.isArray(v)) throw new ManifestError(`${what} must be a list`);
  return v.map((t, i) => {
    const o = obj(t, `${what}[${i}]`);
    const shape = Array.isArray(o.shape) ? (o.shape as Array<number | string>) : [];
    return { name: str(o.name, `${what}[${i}].name`), dtype: typeof o.dtype === 'string' ? o.dtype : 'float32', shape };
  });
}

/** Parse and validate manifest.json; throws ManifestError with what is wrong. */
export function parseManifest(raw: unknown): DecoderManifest {
  const m = obj(raw, 'manifest');
  if (m.format !== 'clicksam-decoder') throw new ManifestError(`not a clicksam decoder manifest (format=${String(m.format)})`);
  if (m.version !== 3) throw new ManifestError(`unsupported manifest version ${String(m.version)} (this page reads version 3): re-export the decoder with \`clicksam export\``);
  const variantsRaw = obj(m.variants, 'variants');
  const variants = new Map<string, DecoderVariant>();
  for (const [name, v] of Object.entries(variantsRaw)) {
    const o = obj(v, `variants.${name}`);
    const tokens = typeof o.mask_tokens === 'object' && o.mask_tokens !== null ? (o.mask_tokens as Json) : {};
    const multi = Array.isArray(tokens.multi) ? tokens.multi.map((t, i) => num(t, `mask_tokens.multi[${i}]`)) : [1, 2, 3];
    let prep: PrepGraph | null = null;
    if (o.prep !== undefined && o.prep !== null) {
      const p = obj(o.prep, `variants.${name}.prep`);
      prep = { file: str(p.file, `variants.${name}.prep.file`), inputs: tensorSpecs(p.inputs, `variants.${name}.prep.inputs`), outputs: tensorSpecs(p.outputs, `variants.${name}.prep.outputs`) };
    }
    variants.set(name, {
      name,
      file: str(o.file, `variants.${name}.file`),
      bytes: typeof o.bytes === 'number' ? o.bytes : 0,
      sha256: typeof o.sha256 === 'string' ? o.sha256 : '',
      inputs: tensorSpecs(o.inputs, `variants.${name}.inputs`),
      outputs: tensorSpecs(o.outputs, `variants.${name}.outputs`),
      masksFrame: typeof o.masks_frame === 'string' ? o.masks_frame : 'low_res',
      singleToken: typeof tokens.single === 'number' ? tokens.single : 0,
      multiTokens: multi,
      prep,
    });
  }
  const defaultVariant = str(m.default_variant, 'default_variant');
  if (!variants.has(defaultVariant)) throw new ManifestError(`default_variant "${defaultVariant}" is not among the variants`);
  const imageInputs = tensorSpecs(m.image_inputs, 'image_inputs');
  if (imageInputs.length === 0) throw new ManifestError('image_inputs must list at least one tensor');
  const shape = imageInputs[0]!.shape.map((d, i) => num(d, `image_inputs[0].shape[${i}]`));
  if (shape.length !== 4) throw new ManifestError('image_inputs[0].shape must have 4 dimensions');
  const sha = m.checkpoint_sha256;
  return {
    model: str(m.model, 'model'),
    checkpointSha256: typeof sha === 'string' ? sha : null,
    imageSize: num(m.image_size, 'image_size'),
    lowResSize: num(m.low_res_size, 'low_res_size'),
    maskThreshold: typeof m.mask_threshold === 'number' ? m.mask_threshold : 0,
    resize: typeof m.resize === 'string' ? m.resize : 'longest_side',
    imageInputs,
    embeddingShape: shape,
    defaultVariant,
    variants,
  };
}

/**
 * The wire dtype to fetch the per-image tensors in for this variant: float16 when a graph takes one of
 * them (the manifest's image_inputs, looked up in the prep graph's inputs, else the click graph's) as
 * float16, else float32. An input declared float32 gets its float16 tensor widened in the worker.
 */
export function embeddingDtype(v: DecoderVariant, imageInputs: readonly TensorSpec[]): TensorDtype {
  const graphInputs = [...(v.prep ? v.prep.inputs : []), ...v.inputs];
  const taken = imageInputs.map((t) => graphInputs.find((g) => g.name === t.name)).filter((g) => g !== undefined);
  return taken.some((g) => g.dtype === 'float16') ? 'float16' : 'float32';
}

/**
 * Why an embedding cannot be decoded by this manifest's decoder, or null when it can: another model,
 * or tensors (names, shapes, order) other than the manifest's image_inputs.
 * The page reports this instead of drawing masks from a mismatched model.
 */
export function embeddingMismatch(
  m: DecoderManifest,
  embedding: { model: string; tensors: ReadonlyArray<{ readonly name: string; readonly shape: readonly number[] }> },
): string | null {
  if (embedding.model !== m.model) {
    return `The image was encoded by model "${embedding.model}" but the decoder is for "${m.model}"; reload the page so both come from the same server model.`;
  }
  const describe = (ts: ReadonlyArray<{ readonly name: string; readonly shape: ReadonlyArray<number | string> }>) => ts.map((t) => `${t.name} ${t.shape.join('x')}`).join(', ');
  const a = describe(embedding.tensors);
  const b = describe(m.imageInputs);
  if (a !== b) return `The embedding holds ${a} but the decoder expects ${b}.`;
  return null;
}

/**
 * Why the decoder cannot serve the server's model (different preset or different weights), or null.
 * The server's checkpoint hash is compared only when the server reports one.
 */
export function serverMismatch(m: DecoderManifest, server: { model: string; checkpoint_sha256?: string | null }): string | null {
  if (m.model !== server.model) {
    return `The decoder is for model "${m.model}" but the server encodes with "${server.model}"; re-export the decoder for the served model.`;
  }
  if (server.checkpoint_sha256 !== undefined && server.checkpoint_sha256 !== m.checkpointSha256) {
    const short = (h: string | null) => (h ? h.slice(0, 12) : 'random weights');
    return `The decoder was exported from ${short(m.checkpointSha256)} but the server runs ${short(server.checkpoint_sha256)}; re-export the decoder for the served checkpoint.`;
  }
  return null;
}
