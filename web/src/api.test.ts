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
