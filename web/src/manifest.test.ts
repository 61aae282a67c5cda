// The decoder-manifest parser against a manifest the Python exporter really wrote, and the mismatch checks.
import { describe, expect, it } from 'vitest';
import { ManifestError, embeddingDtype, embeddingMismatch, parseManifest, serverMismatch } from './manifest';
import pythonManifest from './testdata/manifest_python.json';

function manifest(over: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    format: 'clicksam-decoder',
    version: 3,
    model: 'vit_b',
    checkpoint_sha256: 'ab'.repeat(32),
    image_size: 1024,
    low_res_size: 256,
    mask_threshold: 0,
    opset: 17,
    resize: 'longest_side',
    image_inputs: [{ name: 'image_embeddings', dtype: 'float16', shape: [1, 256, 64, 64] }],
    default_variant: 'browser',
    variants: {
      browser: {
        file: 'decoder_browser.onnx',
        inputs: [
          { name: 'image_embeddings', dtype: 'float16', shape: [1, 256, 64, 64] },
          { name: 'point_coords', dtype: 'float32', shape: [1, 'num_points', 2] },
        ],
        outputs: [{ name: 'low_res_masks', shape: [1, 4, 256, 256] }],
        masks_frame: 'low_res',
        mask_tokens: { single: 0, multi: [1, 2, 3] },
      },
      browser_fast: {
        file: 'decoder_browser_fast.onnx',
        inputs: [{ name: 'image_tokens', dtype: 'float32', shape: [1, 4096, 256] }],
        outputs: [{ name: 'low_res_masks', shape: [1, 4, 256, 256] }],
        masks_frame: 'low_res',
        prep: {
          file: 'decoder_browser_fast_prep.onnx',
          inputs: [{ name: 'image_embeddings', dtype: 'float16', shape: [1, 256, 64, 64] }],
          outputs: [{ name: 'image_tokens', dtype: 'float32', shape: [1, 4096, 256] }],
        },
      },
    },
    ...over,
  };
}

describe('parseManifest', () => {
  it('reads sizes, tokens and the embedding dtype', () => {
    const m = parseManifest(manifest());
    expect(m.imageSize).toBe(1024);
    expect(m.lowResSize).toBe(256);
    const v = m.variants.get('browser')!;
    expect(v.multiTokens).toEqual([1, 2, 3]);
    expect(v.singleToken).toBe(0);
    expect(embeddingDtype(v, m.imageInputs)).toBe('float16');
    expect(v.prep).toBeNull();
  });
  it('reads the per-image graph of a variant; the embedding goes to that graph', () => {
    const m = parseManifest(manifest());
    const v = m.variants.get('browser_fast')!;
    expect(v.prep?.file).toBe('decoder_browser_fast_prep.onnx');
    expect(v.prep?.outputs.map((t) => t.name)).toEqual(['image_tokens']);
    expect(embeddingDtype(v, m.imageInputs)).toBe('float16');
    const bad = manifest();
    (bad.variants as Record<string, Record<string, unknown>>).browser!.prep = { inputs: [] };
    expect(() => parseManifest(bad)).toThrow(/prep.file/);
  });
  it('rejects what it cannot use, saying why', () => {
    expect(() => parseManifest(manifest({ format: 'other' }))).toThrow(ManifestError);
    expect(() => parseManifest(manifest({ version: 1 }))).toThrow(/version 1.*re-export/);
    expect(() => parseManifest(manifest({ default_variant: 'gpu' }))).toThrow(/default_variant/);
    expect(() => parseManifest(manifest({ image_inputs: [{ name: 'image_embeddings', shape: [256, 64, 64] }] }))).toThrow(/4 dimensions/);
    expect(() => parseManifest(manifest({ image_inputs: [] }))).toThrow(/at least one/);
    expect(() => parseManifest(null)).toThrow(/object/);
  });
});

// manifest_python.json is the manifest of a real `vit_test` export (tests/export/test_manifest.py keeps it
// equal to what the exporter writes now), so this parser and the Python side cannot drift apart.
describe('the manifest the Python exporter writes', () => {
  const m = parseManifest(pythonManifest);
  it('is read with every variant and the per-image graph', () => {
    expect(m.model).toBe('vit_test');
    expect(m.checkpointSha256).toBeNull();
    expect([m.imageSize, m.lowResSize, m.maskThreshold]).toEqual([1024, 256, 0]);
    expect(m.embeddingShape).toEqual([1, 256, 64, 64]);
    expect(m.imageInputs.map((t) => t.name)).toEqual(['image_embeddings']);
    expect(m.resize).toBe('longest_side');
    expect(m.defaultVariant).toBe('browser');
    expect([...m.variants.keys()]).toEqual(Object.keys(pythonManifest.variants));
    const browser = m.variants.get('browser')!;
    expect(browser.masksFrame).toBe('low_res');
    expect([browser.singleToken, ...browser.multiTokens]).toEqual([0, 1, 2, 3]);
    expect(browser.prep?.file).toBe(pythonManifest.variants.browser.prep.file);
    expect(browser.prep?.outputs.map((t) => t.name)).toEqual(browser.inputs.slice(0, browser.prep!.outputs.length).map((t) => t.name));
    expect(embeddingDtype(browser, m.imageInputs)).toBe('float16');
    expect(browser.inputs.find((t) => t.name === 'point_coords')?.shape).toEqual([1, 'num_points', 2]);
    expect(m.variants.get('official')!.masksFrame).toBe('original');
  });
  it('matches the embeddings the server sends for the same model', () => {
    expect(embeddingMismatch(m, { model: 'vit_test', tensors: [{ name: 'image_embeddings', shape: [1, 256, 64, 64] }] })).toBeNull();
    expect(serverMismatch(m, { model: 'vit_test', checkpoint_sha256: null })).toBeNull();
  });
});

// SAM 2.1's per-image inputs: three tensors, the 64x64 one through a per-image graph, the high-res ones
// straight to the click graph (the page knows them only by the manifest's names)
const SAM2_INPUTS = [
  { name: 'image_embed', dtype: 'float16', shape: [1, 256, 64, 64] },
  { name: 'high_res_feats_0', dtype: 'float16', shape: [1, 32, 256, 256] },
  { name: 'high_res_feats_1', dtype: 'float16', shape: [1, 64, 128, 128] },
];

describe('a manifest with several per-image inputs', () => {
  const sam2Variant = (dtype: string) => ({
    file: 'decoder_browser.onnx',
    inputs: [{ name: 'image_keys', dtype: 'float32', shape: [1, 4096, 256] }, ...SAM2_INPUTS.slice(1).map((t) => ({ ...t, dtype }))],
    outputs: [{ name: 'low_res_masks', shape: [1, 4, 256, 256] }],
    masks_frame: 'low_res',
    prep: { file: 'prep.onnx', inputs: [{ ...SAM2_INPUTS[0]!, dtype }], outputs: [{ name: 'image_keys', dtype: 'float32', shape: [1, 4096, 256] }] },
  });
  const m = parseManifest(manifest({ model: 'sam2.1_hiera_t', resize: 'stretch', image_inputs: SAM2_INPUTS, variants: { browser: sam2Variant('float16'), wide: sam2Variant('float32') } }));
  it('fetches float16 when a graph takes a per-image input as float16, else float32', () => {
    expect(m.resize).toBe('stretch');
    expect(embeddingDtype(m.variants.get('browser')!, m.imageInputs)).toBe('float16');
    expect(embeddingDtype(m.variants.get('wide')!, m.imageInputs)).toBe('float32');
  });
  it('takes an embedding with the same tensors in the same order, and names the difference otherwise', () => {
    const tensors = SAM2_INPUTS.map((t) => ({ name: t.name, shape: t.shape }));
    expect(embeddingMismatch(m, { model: 'sam2.1_hiera_t', tensors })).toBeNull();
    expect(embeddingMismatch(m, { model: 'sam2.1_hiera_t', tensors: tensors.slice(0, 1) })).toBe(
      'The embedding holds image_embed 1x256x64x64 but the decoder expects image_embed 1x256x64x64, high_res_feats_0 1x32x256x256, high_res_feats_1 1x64x128x128.',
    );
    expect(embeddingMismatch(m, { model: 'sam2.1_hiera_t', tensors: [tensors[0]!, tensors[2]!, tensors[1]!] })).toMatch(/holds image_embed 1x256x64x64, high_res_feats_1/);
    expect(embeddingMismatch(m, { model: 'vit_b', tensors: [{ name: 'image_embeddings', shape: [1, 256, 64, 64] }] })).toMatch(/"vit_b" but the decoder is for "sam2.1_hiera_t"/);
  });
});

describe('mismatches are reported', () => {
  const m = parseManifest(manifest());
  it('between the decoder and an embedding', () => {
    expect(embeddingMismatch(m, { model: 'vit_b', tensors: [{ name: 'image_embeddings', shape: [1, 256, 64, 64] }] })).toBeNull();
    expect(embeddingMismatch(m, { model: 'vit_h', tensors: [{ name: 'image_embeddings', shape: [1, 256, 64, 64] }] })).toMatch(/vit_h.*vit_b/);
    expect(embeddingMismatch(m, { model: 'vit_b', tensors: [{ name: 'image_embeddings', shape: [1, 256, 32, 32] }] })).toMatch(/holds image_embeddings 1x256x32x32 but the decoder expects image_embeddings 1x256x64x64/);
  });
  it('between the decoder and the served model or checkpoint', () => {
    expect(serverMismatch(m, { model: 'vit_b', checkpoint_sha256: 'ab'.repeat(32) })).toBeNull();
    expect(serverMismatch(m, { model: 'vit_b' })).toBeNull();
    expect(serverMismatch(m, { model: 'vit_t', checkpoint_sha256: 'ab'.repeat(32) })).toMatch(/vit_t/);
    expect(serverMismatch(m, { model: 'vit_b', checkpoint_sha256: null })).toMatch(/random weights/);
  });
});
