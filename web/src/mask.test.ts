// Mask postprocessing against a plain-loop reference of SAM's postprocess_masks, and the mask helpers
// (stats, edges, label maps, resampling, mask -> low-res logits).
import { describe, expect, it } from 'vitest';
import { makeGeometry } from './frames';
import { labelMap, logitsToMask, maskDifference, maskEdges, maskStats, maskToLowResLogits, resampleNearest, tokenPlane } from './mask';

/** Source samples of output `i` for a bilinear resize of `n` samples by `scale` (align_corners=False): [i0, i1, weight of i1]. */
function sourceTaps(i: number, scale: number, n: number): [number, number, number] {
  const p = Math.max(0, (i + 0.5) * scale - 0.5);
  const i0 = Math.min(Math.floor(p), n - 1);
  return [i0, Math.min(i0 + 1, n - 1), p - i0];
}

/** Reference: SAM's postprocess_masks in plain loops (upsample to 1024, crop input, upsample to original). */
function bilinear(src: Float32Array, sw: number, sh: number, dw: number, dh: number): Float32Array {
  const out = new Float32Array(dw * dh);
  for (let j = 0; j < dh; j++) {
    const [y0, y1, wy] = sourceTaps(j, sh / dh, sh);
    for (let i = 0; i < dw; i++) {
      const [x0, x1, wx] = sourceTaps(i, sw / dw, sw);
      const a = src[y0 * sw + x0]! * (1 - wx) + src[y0 * sw + x1]! * wx;
      const b = src[y1 * sw + x0]! * (1 - wx) + src[y1 * sw + x1]! * wx;
      out[j * dw + i] = a * (1 - wy) + b * wy;
    }
  }
  return out;
}

describe('logitsToMask', () => {
  // small frames keep the reference cheap: image_size 64, low-res 16
  const g = makeGeometry({ w: 90, h: 60 }, 64, 16); // input 64x43
  const L = 16;
  const logits = new Float32Array(2 * L * L);
  // token 1: a smooth blob centred in the image part of the low-res frame
  for (let y = 0; y < L; y++)
    for (let x = 0; x < L; x++) logits[L * L + y * L + x] = 3 - Math.hypot(x - 8, y - 5.4) * 0.9;

  it('equals the two-step upsample-crop-upsample (SAM postprocess_masks) at any output size', () => {
    const plane = tokenPlane(logits, 1, L);
    const up = bilinear(plane, L, L, 64, 64);
    const crop = new Float32Array(64 * 43);
    for (let y = 0; y < 43; y++) for (let x = 0; x < 64; x++) crop[y * 64 + x] = up[y * 64 + x]!;
    const ref = bilinear(crop, 64, 43, 90, 60);
    const refMask = Uint8Array.from(ref, (v) => (v > 0 ? 1 : 0));
    const ours = logitsToMask(logits, 1, g, g.original, 0);
    expect(maskStats(refMask, g.original).area).toBeGreaterThan(100);
    expect(maskDifference(ours, refMask)).toBe(0);
    // other output grids (display sizes, exports) and a fragmented field with a boundary in every
    // cell, where the per-pixel path does all the work
    const noisy = new Float32Array(2 * L * L);
    let seed = 3;
    for (let i = 0; i < noisy.length; i++) noisy[i] = ((seed = (seed * 16807) % 2147483647) / 2147483647) * 2 - 1;
    for (const field of [logits, noisy]) {
      const planeK = tokenPlane(field, 1, L);
      const upK = bilinear(planeK, L, L, 64, 64);
      const cropK = new Float32Array(64 * 43);
      for (let y = 0; y < 43; y++) for (let x = 0; x < 64; x++) cropK[y * 64 + x] = upK[y * 64 + x]!;
      for (const size of [{ w: 90, h: 60 }, { w: 45, h: 30 }, { w: 317, h: 211 }, { w: 7, h: 5 }]) {
        const want = Uint8Array.from(bilinear(cropK, 64, 43, size.w, size.h), (v) => (v > 0 ? 1 : 0));
        expect(maskDifference(logitsToMask(field, 1, g, size, 0), want)).toBeLessThan(1e-3);
      }
    }
  });
  it('puts the blob where the logits are, at any output size', () => {
    const big = logitsToMask(logits, 1, g, { w: 900, h: 600 }, 0);
    const s = maskStats(big, { w: 900, h: 600 });
    // peak at low-res sample (8, 5.4), whose centre is at (8.5, 5.9) in the continuous low-res
    // frame -> model (34, 23.6) -> original (34 * 90 / 64, 23.6 * 60 / 43) -> x10
    const cx = s.bbox[0] + s.bbox[2] / 2;
    const cy = s.bbox[1] + s.bbox[3] / 2;
    expect(Math.abs(cx - (34 * 90 * 10) / 64)).toBeLessThan(4);
    expect(Math.abs(cy - (23.6 * 60 * 10) / 43)).toBeLessThan(4);
  });
  it('selects the token plane and thresholds', () => {
    expect(maskStats(logitsToMask(logits, 0, g, g.original, 0), g.original).area).toBe(0);
    expect(maskStats(logitsToMask(logits, 0, g, g.original, -1), g.original).area).toBe(90 * 60);
    expect(() => logitsToMask(logits, 2, g, g.original, 0)).toThrow();
  });
  it('finds edges and bounding boxes', () => {
    const m = new Uint8Array(25);
    for (let y = 1; y < 4; y++) for (let x = 1; x < 4; x++) m[y * 5 + x] = 1;
    expect(maskStats(m, { w: 5, h: 5 })).toEqual({ area: 9, bbox: [1, 1, 3, 3] });
    const e = maskEdges(m, { w: 5, h: 5 });
    expect(e[12]).toBe(0);
    expect(e[6]).toBe(1);
    expect(e.reduce((a, b) => a + b, 0)).toBe(8);
  });
  it('goes straight from the low-res frame to the original size for a stretched (SAM 2.1) image', () => {
    const stretched = makeGeometry({ w: 90, h: 60 }, 64, 16, undefined, 'stretch');
    expect(stretched.input).toEqual({ w: 64, h: 64 });
    expect(stretched.stretch).toBe(true);
    for (const size of [{ w: 90, h: 60 }, { w: 317, h: 211 }, { w: 7, h: 5 }]) {
      const want = Uint8Array.from(bilinear(tokenPlane(logits, 1, L), L, L, size.w, size.h), (v) => (v > 0 ? 1 : 0));
      const ours = logitsToMask(logits, 1, stretched, size, 0);
      expect(maskDifference(ours, want)).toBe(0);
      // the padded (SAM 1) composition of the same logits is another mask
      expect(maskDifference(logitsToMask(logits, 1, g, size, 0), want)).toBeGreaterThan(0);
    }
  });
});

describe('label maps and resampling', () => {
  it('lets the smaller mask win and resamples by nearest neighbour', () => {
    const big = Uint8Array.from([1, 1, 1, 1]);
    const small = Uint8Array.from([0, 1, 0, 0]);
    expect(Array.from(labelMap([big, small], 4))).toEqual([0, 1, 0, 0]);
    expect(Array.from(labelMap([Uint8Array.from([0, 0, 1, 0])], 4))).toEqual([-1, -1, 0, -1]);
    const up = resampleNearest(Uint8Array.from([1, 0, 0, 1]), { w: 2, h: 2 }, { w: 4, h: 4 }, (n) => new Uint8Array(n));
    expect(Array.from(up)).toEqual([1, 1, 0, 0, 1, 1, 0, 0, 0, 0, 1, 1, 0, 0, 1, 1]);
  });
  it('turns a binary mask into low-res logits that threshold back to it', () => {
    const g = makeGeometry({ w: 128, h: 64 }, 64, 16); // input 64x32 -> low-res image part 16x8
    const mask = new Uint8Array(128 * 64);
    for (let y = 16; y < 48; y++) for (let x = 32; x < 96; x++) mask[y * 128 + x] = 1;
    const logits = maskToLowResLogits(mask, g);
    const back = logitsToMask(logits, 0, g, g.original, 0);
    expect(maskDifference(back, mask)).toBeLessThan(0.03);
    expect(logits[15 * 16 + 15]).toBeLessThan(0); // padding stays background
  });
});
