// The embedding-metadata parser against what the Python server really answers, and the API error helper.
import { describe, expect, it } from 'vitest';
import { EmbeddingMetaError, errorDetail, parseEmbeddingMeta } from './api';
import pythonMeta from './testdata/embedding_python.json';

// embedding_python.json is what the server answered to a real upload (tests/server/test_wire_fixtures.py
// keeps it equal to what Python writes now), so this parser and the server cannot drift apart.
describe('parseEmbeddingMeta', () => {
  it('reads the metadata the Python server writes', () => {
    const meta = parseEmbeddingMeta(pythonMeta);
    expect(meta.model).toBe('vit_test');
    expect(meta.original_size).toEqual([30, 40]);
    expect(meta.input_size).toEqual([768, 1024]);
    expect(meta.shape).toEqual([1, 256, 64, 64]);
    expect(meta.dtype).toBe('float16');
    expect(meta.url).toBe(`/api/embeddings/${meta.id}`);
    expect(meta.cached).toBe(false);
    expect(meta.encode_ms).toBe(12.5);
  });
  it('reads the body layout: one tensor for SAM 1, several laid out one after the other', () => {
    expect(parseEmbeddingMeta(pythonMeta).tensors).toEqual([{ name: 'image_embeddings', shape: [1, 256, 64, 64], offset: 0, size: 256 * 64 * 64 }]);
    const sam2 = [
      { name: 'image_embed', shape: [1, 256, 64, 64], offset: 0, size: 1048576 },
      { name: 'high_res_feats_0', shape: [1, 32, 256, 256], offset: 1048576, size: 2097152 },
      { name: 'high_res_feats_1', shape: [1, 64, 128, 128], offset: 3145728, size: 1048576 },
    ];
    expect(parseEmbeddingMeta({ ...pythonMeta, tensors: sam2 }).tensors.map((t) => t.name)).toEqual(['image_embed', 'high_res_feats_0', 'high_res_feats_1']);
    const gap = sam2.map((t, i) => (i === 2 ? { ...t, offset: t.offset + 1 } : t));
    expect(() => parseEmbeddingMeta({ ...pythonMeta, tensors: gap })).toThrow('tensor "high_res_feats_1" must start at element 3145728 with 1048576 elements, got offset 3145729 and size 1048576');
    const short = sam2.map((t, i) => (i === 0 ? { ...t, size: 5 } : t));
    expect(() => parseEmbeddingMeta({ ...pythonMeta, tensors: short })).toThrow(/"image_embed" must start at element 0 with 1048576 elements/);
    expect(() => parseEmbeddingMeta({ ...pythonMeta, tensors: [] })).toThrow(/"tensors" must be a non-empty list/);
    expect(() => parseEmbeddingMeta({ ...pythonMeta, tensors: undefined })).toThrow(/"tensors"/);
  });
  it('rejects what it cannot use, saying which field', () => {
    expect(() => parseEmbeddingMeta(null)).toThrow(EmbeddingMetaError);
    expect(() => parseEmbeddingMeta({ ...pythonMeta, original_size: [30] })).toThrow(/original_size/);
    expect(() => parseEmbeddingMeta({ ...pythonMeta, shape: ['1'] })).toThrow(/shape/);
    expect(() => parseEmbeddingMeta({ ...pythonMeta, id: undefined })).toThrow(/"id"/);
    expect(() => parseEmbeddingMeta({ ...pythonMeta, cached: 'no' })).toThrow(/cached/);
  });
});

describe('errorDetail', () => {
  it('reads string and list details, else the status line', () => {
    expect(errorDetail({ detail: 'no image' }, 422, 'Unprocessable')).toBe('no image');
    expect(errorDetail({ detail: [{ msg: 'a' }, { msg: 'b' }] }, 422, '')).toBe('a; b');
    expect(errorDetail('<html>', 502, 'Bad Gateway')).toBe('The server answered 502 Bad Gateway');
  });
});
