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
    expect(embeddingDtype(v)).toBe('float16');
    expect(v.prep).toBeNull();
  });
  it('reads the per-image graph of a variant; the embedding goes to that graph', () => {
    const v = parseManifest(manifest()).variants.get('browser_fast')!;
    expect(v.prep?.file).toBe('decoder_browser_fast_prep.onnx');
    expect(v.prep?.outputs.map((t) => t.name)).toEqual(['image_tokens']);
    expect(embeddingDtype(v)).toBe('float16');
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
    expect(embeddingDtype(browser)).toBe('float16');
    expect(browser.inputs.find((t) => t.name === 'point_coords')?.shape).toEqual([1, 'num_points', 2]);
    expect(m.variants.get('official')!.masksFrame).toBe('original');
  });
  it('matches the embeddings the server sends for the same model', () => {
    expect(embeddingMismatch(m, { model: 'vit_test', shape: [1, 256, 64, 64] })).toBeNull();
    expect(serverMismatch(m, { model: 'vit_test', checkpoint_sha256: null })).toBeNull();
  });
});

describe('mismatches are reported', () => {
  const m = parseManifest(manifest());
  it('between the decoder and an embedding', () => {
    expect(embeddingMismatch(m, { model: 'vit_b', shape: [1, 256, 64, 64] })).toBeNull();
    expect(embeddingMismatch(m, { model: 'vit_h', shape: [1, 256, 64, 64] })).toMatch(/vit_h.*vit_b/);
    expect(embeddingMismatch(m, { model: 'vit_b', shape: [1, 256, 32, 32] })).toMatch(/1x256x32x32/);
  });
  it('between the decoder and the served model or checkpoint', () => {
    expect(serverMismatch(m, { model: 'vit_b', checkpoint_sha256: 'ab'.repeat(32) })).toBeNull();
    expect(serverMismatch(m, { model: 'vit_b' })).toBeNull();
    expect(serverMismatch(m, { model: 'vit_t', checkpoint_sha256: 'ab'.repeat(32) })).toMatch(/vit_t/);
    expect(serverMismatch(m, { model: 'vit_b', checkpoint_sha256: null })).toMatch(/random weights/);
  });
});
