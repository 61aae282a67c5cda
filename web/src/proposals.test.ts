// Tests of the pre-label proposals (proposals.ts): the server's proposals become masks best first,
// keep-all-above takes exactly those at or above the score, a click finds the smallest proposal under
// it, the layers are drawn once per proposal and size, and the outline drawn for them is dashed.

import { describe, expect, it } from 'vitest';
import type { ServerProposal } from './projects_api';
import { Proposals, dashedEdges, toProposals } from './proposals';
import { encodeRle } from './rle';

const size = { w: 8, h: 6 };

function rect(x0: number, y0: number, x1: number, y1: number): Uint8Array {
  const m = new Uint8Array(size.w * size.h);
  for (let y = y0; y < y1; y++) for (let x = x0; x < x1; x++) m[y * size.w + x] = 1;
  return m;
}

function answer(masks: Array<{ mask: Uint8Array; iou: number; point: [number, number] }>): ServerProposal[] {
  return masks.map((m, i) => ({
    id: 10 + i,
    segmentation: encodeRle(m.mask, size),
    area: m.mask.reduce((a, b) => a + b, 0),
    bbox: [0, 0, 0, 0],
    source: 'everything',
    score: m.iou,
    stability_score: 1,
    prompts: { points: [[...m.point, 1]], box: null },
  }));
}

describe('proposals', () => {
  const big = rect(0, 0, 8, 6);
  const small = rect(2, 2, 4, 4);
  const res = answer([
    { mask: small, iou: 0.7, point: [3, 3] },
    { mask: big, iou: 0.95, point: [6, 1] },
    { mask: new Uint8Array(48), iou: 0.99, point: [0, 0] }, // empty: left out
  ]);

  it('come best first with their server ids, masks, scores and grid points', () => {
    const ps = toProposals(res, size);
    expect(ps.map((p) => p.id)).toEqual([11, 10]);
    expect(ps.map((p) => p.score)).toEqual([0.95, 0.7]);
    expect(ps.map((p) => p.area)).toEqual([48, 4]);
    expect(ps[1]!.point).toEqual({ x: 3, y: 3 });
    expect(Array.from(ps[1]!.mask)).toEqual(Array.from(small));
  });

  it('refuses masks of another size than the image (a stale pre-label)', () => {
    expect(() => toProposals(res, { w: 8, h: 5 })).toThrow('Proposal 10 is 8x6, the image is 8x5: pre-label it again.');
  });

  it('keep-all-above takes those at or above the score and leaves the rest', () => {
    const list = new Proposals();
    list.set(toProposals(res, size), size);
    expect(list.takeAbove(0.95).map((p) => p.score)).toEqual([0.95]);
    expect(list.all.map((p) => p.score)).toEqual([0.7]);
    expect(list.takeAbove(0.99)).toEqual([]);
  });

  it('a click finds the smallest proposal under it; take removes it', () => {
    const list = new Proposals();
    list.set(toProposals(res, size), size);
    const inner = list.at({ x: 3.2, y: 2.5 });
    expect(inner?.area).toBe(4);
    expect(list.at({ x: 7, y: 5 })?.area).toBe(48);
    expect(list.take(inner!.id)).toBe(inner);
    expect(list.at({ x: 3.2, y: 2.5 })?.area).toBe(48);
    expect(list.take(inner!.id)).toBeNull();
  });

  it('draws fills then outlines at the overlay size, each resampled once per proposal and size', () => {
    const list = new Proposals();
    const [a, b] = toProposals(res, size);
    list.set([a!], size);
    const first = list.layers({ w: 16, h: 12 });
    expect(first).toHaveLength(2);
    expect(first[0]!.mask.length).toBe(16 * 12);
    list.set([a!, b!], size); // one more (a detection decoded): the first keeps its layers
    const second = list.layers({ w: 16, h: 12 });
    expect(second.map((l) => l.mask.length)).toEqual([192, 192, 192, 192]);
    expect(second[0]).toBe(first[0]); // fill of a
    expect(second[2]).toBe(first[1]); // outline of a, after both fills
    expect(list.layers({ w: 8, h: 6 })[0]).not.toBe(first[0]); // another size: drawn again
  });

  it('draws a dashed outline: part of the edge, nothing inside', () => {
    const s = { w: 40, h: 40 };
    const m = new Uint8Array(s.w * s.h);
    for (let y = 5; y < 35; y++) for (let x = 5; x < 35; x++) m[y * s.w + x] = 1;
    const e = dashedEdges(m, s);
    const on = e.reduce((a, b) => a + b, 0);
    expect(on).toBeGreaterThan(40);
    expect(on).toBeLessThan(4 * 29); // gaps: less than the full outline
    expect(e[20 * s.w + 20]).toBe(0);
    for (let k = 0; k < e.length; k++) if (e[k]) expect(m[k]).toBe(1);
  });
});
