// Tests of how the server's per-image tensors reach the decoder graphs: the feed plan (SAM 1's one
// tensor, SAM 2.1's three, with and without a per-image graph) and cutting the body into tensors.
import { describe, expect, it } from 'vitest';
import { PROMPT_INPUTS, bodyBytes, halfToFloat, planFeeds, splitBody } from './image_feeds';
import type { WireTensor } from './protocol';

const PROMPTS = ['point_coords', 'point_labels', 'mask_input', 'has_mask_input'];

/** Tensors laid out one after the other, as the server's metadata describes them. */
function layout(...shapes: Array<[string, number[]]>): WireTensor[] {
  let offset = 0;
  return shapes.map(([name, shape]) => {
    const size = shape.reduce((a, b) => a * b, 1);
    const t = { name, shape, offset, size };
    offset += size;
    return t;
  });
}

describe('planFeeds', () => {
  it('feeds SAM 1 image_embeddings to the per-image graph, or straight to the click graph', () => {
    const prep = { inputNames: ['image_embeddings'], outputNames: ['image_keys', 'dense_pe'] };
    expect(planFeeds(['image_embeddings'], { inputNames: ['image_keys', 'dense_pe', ...PROMPTS] }, prep)).toEqual({
      toPrep: ['image_embeddings'],
      toClick: [],
      clickImageInputs: ['image_keys', 'dense_pe'],
    });
    expect(planFeeds(['image_embeddings'], { inputNames: ['image_embeddings', ...PROMPTS, 'orig_im_size'] }, null)).toEqual({
      toPrep: [],
      toClick: ['image_embeddings'],
      clickImageInputs: ['image_embeddings'],
    });
  });

  it('splits SAM 2.1 tensors between the per-image graph and the click graph by name', () => {
    const names = ['image_embed', 'high_res_feats_0', 'high_res_feats_1'];
    const prep = { inputNames: ['image_embed'], outputNames: ['image_keys'] };
    const plan = planFeeds(names, { inputNames: ['image_keys', 'high_res_feats_0', 'high_res_feats_1', ...PROMPTS] }, prep);
    expect(plan.toPrep).toEqual(['image_embed']);
    expect(plan.toClick).toEqual(['high_res_feats_0', 'high_res_feats_1']);
    expect(planFeeds(names, { inputNames: [...names, ...PROMPTS] }, null).toClick).toEqual(names);
  });

  it('names what does not fit together', () => {
    expect(() => planFeeds(['image_embeddings'], { inputNames: ['image_embed', ...PROMPTS] }, null)).toThrow(/"image_embed" that neither the server nor the per-image graph/);
    expect(() => planFeeds(['image_embed'], { inputNames: PROMPTS }, { inputNames: ['image_embeddings'], outputNames: [] })).toThrow(/per-image graph wants "image_embeddings"/);
    expect(() => planFeeds(['image_embeddings'], { inputNames: ['image_embeddings', 'point_labels'] }, null)).toThrow(/no input "point_coords"/);
    expect(() => planFeeds([], { inputNames: PROMPTS }, null)).toThrow(/no per-image inputs/);
    expect(PROMPT_INPUTS).toContain('orig_im_size');
  });
});

describe('splitBody', () => {
  it('cuts a float16 body into its tensors in order, each its own buffer', () => {
    const tensors = layout(['a', [1, 2, 2]], ['b', [1, 3]], ['c', [2]]);
    const body = Uint16Array.from({ length: 9 }, (_, i) => 100 + i);
    const parts = splitBody(body.buffer, 'float16', tensors);
    expect([...parts.keys()]).toEqual(['a', 'b', 'c']);
    expect(Array.from(parts.get('a')!.data)).toEqual([100, 101, 102, 103]);
    expect(parts.get('a')!.dims).toEqual([1, 2, 2]);
    expect(Array.from(parts.get('b')!.data)).toEqual([104, 105, 106]);
    expect(Array.from(parts.get('c')!.data)).toEqual([107, 108]);
    expect(parts.get('b')!.data.byteOffset).toBe(0);
    expect(parts.get('b')!.data.buffer).not.toBe(body.buffer);
    expect(bodyBytes('float16', tensors)).toBe(18);
    expect(bodyBytes('float32', tensors)).toBe(36);
  });

  it('keeps a one-tensor body as it came (no copy) and reads float32', () => {
    const body = Float32Array.of(1.5, -2, 3.25, 4);
    const parts = splitBody(body.buffer, 'float32', layout(['image_embeddings', [1, 1, 2, 2]]));
    const t = parts.get('image_embeddings')!;
    expect(t.data).toBeInstanceOf(Float32Array);
    expect(t.data.buffer).toBe(body.buffer);
    expect(Array.from(t.data)).toEqual([1.5, -2, 3.25, 4]);
  });

  it('refuses a body of another size, naming the layout', () => {
    const tensors = layout(['image_embed', [1, 2]], ['high_res_feats_0', [1, 3]]);
    expect(() => splitBody(new ArrayBuffer(8), 'float16', tensors)).toThrow('The embedding has 8 bytes, expected 10 for float16 image_embed 1x2 + high_res_feats_0 1x3');
  });
});

describe('halfToFloat', () => {
  it('widens half-precision bits exactly (normal, subnormal, zero, infinities)', () => {
    const bits = Uint16Array.of(0x3c00, 0xc000, 0x3555, 0x0001, 0x8000, 0x7c00, 0xfc00, 0x7bff);
    expect(Array.from(halfToFloat(bits))).toEqual([1, -2, 0.333251953125, 2 ** -24, -0, Infinity, -Infinity, 65504]);
    expect(Number.isNaN(halfToFloat(Uint16Array.of(0x7e00))[0])).toBe(true);
  });
});
