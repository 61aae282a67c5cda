// COCO RLE encode/decode, checked against masks the Python side encoded (testdata/rle_python.json).
import { describe, expect, it } from 'vitest';
import pythonCases from './testdata/rle_python.json';
import { countsToString, decodeCounts, decodeRle, encodeCounts, encodeRle, stringToCounts } from './rle';

function seeded(seed: number): () => number {
  let a = seed;
  return () => {
    a = (a + 0x6d2b79f5) | 0;
    let t = Math.imul(a ^ (a >>> 15), 1 | a);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

describe('COCO RLE counts', () => {
  it('runs in column-major order starting with zeros', () => {
    // H=2, W=3, row-major: [[1,1,0],[0,1,1]] -> column-major 1,0, 1,1, 0,1
    const mask = Uint8Array.from([1, 1, 0, 0, 1, 1]);
    expect(encodeCounts(mask, { w: 3, h: 2 })).toEqual([0, 1, 1, 2, 1, 1]);
    expect(Array.from(decodeCounts([0, 1, 1, 2, 1, 1], { w: 3, h: 2 }))).toEqual(Array.from(mask));
  });
  it('encodes an all-zero and an all-one mask', () => {
    expect(encodeCounts(new Uint8Array(6), { w: 3, h: 2 })).toEqual([6]);
    expect(encodeCounts(new Uint8Array(6).fill(1), { w: 3, h: 2 })).toEqual([0, 6]);
  });
  it('rejects counts that do not cover the mask', () => {
    expect(() => decodeCounts([2, 3], { w: 3, h: 2 })).toThrow();
    expect(() => decodeCounts([2, 9], { w: 3, h: 2 })).toThrow();
  });
});

describe('compressed string form (pycocotools rleToString / rleFrString)', () => {
  // Hand-computed with pycocotools' algorithm: 5 bits per char + continuation bit 0x20, offset 48,
  // counts from the third on delta-coded against the count two back.
  const known: Array<[number[], string]> = [
    [[4, 1, 4], '414'], // 3x3 with the centre pixel on
    [[0, 5, 3, 2], '053M'], // 2 - 5 = -3 -> 29 with the sign bit -> 'M'
    [[100], 'T3'], // 100 = 4 + 3*32 -> (4|0x20)+48 'T', 3+48 '3'
    [[0, 16], '0`0'], // 16 has bit 0x10 set: 16|0x20 -> '`', then '0' keeps it positive
    [[5, 5, 5, 5], '5550'], // only the 4th is delta-coded: 5 - 5 = 0
  ];
  it.each(known)('encodes %j as %s', (counts, s) => {
    expect(countsToString(counts)).toBe(s);
    expect(stringToCounts(s)).toEqual(counts);
  });
  it('round-trips random masks through the string form', () => {
    const rnd = seeded(7);
    for (let t = 0; t < 30; t++) {
      const w = 1 + Math.floor(rnd() * 40);
      const h = 1 + Math.floor(rnd() * 40);
      const density = rnd();
      const mask = new Uint8Array(w * h);
      // blobs of runs, so counts of all sizes (also > 31 and negative deltas) appear
      let v = rnd() < density ? 1 : 0;
      for (let k = 0; k < mask.length; k++) {
        if (rnd() < 0.15) v = rnd() < density ? 1 : 0;
        mask[k] = v;
      }
      const rle = encodeRle(mask, { w, h });
      expect(rle.size).toEqual([h, w]);
      expect(Array.from(decodeRle(rle))).toEqual(Array.from(mask));
    }
  });
  it('handles counts beyond 2^30', () => {
    const counts = [2 ** 31 - 5, 3, 1, 2 ** 30];
    expect(stringToCounts(countsToString(counts))).toEqual(counts);
  });
  it('rejects bad strings', () => {
    expect(() => stringToCounts('T')).toThrow(/truncated/);
    expect(() => stringToCounts(' ')).toThrow(/invalid/);
  });
});

describe('cross-check with the Python RLE of clicksam.model.amg', () => {
  it.each(pythonCases.cases.map((c, i) => [i, c] as const))('case %i', (_i, c) => {
    const [h, w] = c.size as [number, number];
    const mask = Uint8Array.from(c.rows.join(''), (ch) => (ch === '1' ? 1 : 0));
    expect(encodeRle(mask, { w, h })).toEqual({ size: [h, w], counts: c.counts });
    expect(Array.from(decodeRle({ size: [h, w], counts: c.counts }))).toEqual(Array.from(mask));
  });
});
