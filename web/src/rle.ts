// COCO run-length encoding (as pycocotools writes it): runs over the mask in column-major (Fortran)
// order, starting with a run of zeros (possibly empty), and the compressed string form where each
// count (delta-coded against the count two back, from the third on) is written 5 bits per character
// with a continuation bit, offset by 48 ('0').

import type { Size } from './frames';

export interface CocoRle {
  /** [H, W], as COCO writes it. */
  readonly size: [number, number];
  readonly counts: string;
}

/** Run lengths of a row-major (H, W) 0/1 mask, in column-major order, zeros first. */
export function encodeCounts(mask: Uint8Array, size: Size): number[] {
  const { w, h } = size;
  if (mask.length !== w * h) throw new Error(`mask has ${mask.length} pixels, expected ${w}x${h}`);
  const counts: number[] = [];
  let cur = 0;
  let run = 0;
  for (let i = 0; i < w; i++) {
    for (let j = 0; j < h; j++) {
      const v = mask[j * w + i] ? 1 : 0;
      if (v !== cur) {
        counts.push(run);
        run = 0;
        cur = v;
      }
      run++;
    }
  }
  counts.push(run);
  return counts;
}

/** Row-major (H, W) 0/1 mask from column-major run lengths. */
export function decodeCounts(counts: readonly number[], size: Size): Uint8Array {
  const { w, h } = size;
  const mask = new Uint8Array(w * h);
  let pos = 0;
  let v = 0;
  for (const c of counts) {
    if (pos + c > w * h) throw new Error(`RLE counts cover more than ${w}x${h} pixels`);
    if (v) {
      for (let k = pos; k < pos + c; k++) {
        const i = Math.floor(k / h);
        mask[(k - i * h) * w + i] = 1;
      }
    }
    pos += c;
    v ^= 1;
  }
  if (pos !== w * h) throw new Error(`RLE counts cover ${pos} pixels, expected ${w * h}`);
  return mask;
}

/** pycocotools' rleToString: counts -> compressed ASCII string. */
export function countsToString(counts: readonly number[]): string {
  let s = '';
  for (let i = 0; i < counts.length; i++) {
    let x = counts[i]!;
    if (i > 2) x -= counts[i - 2]!;
    let more = true;
    while (more) {
      let c = x & 0x1f;
      x = Math.floor(x / 32); // arithmetic shift, also for negative deltas
      more = c & 0x10 ? x !== -1 : x !== 0;
      if (more) c |= 0x20;
      s += String.fromCharCode(c + 48);
    }
  }
  return s;
}

/** pycocotools' rleFrString: compressed ASCII string -> counts. */
export function stringToCounts(s: string): number[] {
  const counts: number[] = [];
  let p = 0;
  while (p < s.length) {
    let x = 0;
    let k = 0;
    let more = true;
    while (more) {
      if (p >= s.length) throw new Error('truncated RLE string');
      const c = s.charCodeAt(p) - 48;
      if (c < 0 || c > 63) throw new Error(`invalid RLE character ${JSON.stringify(s[p])}`);
      x += (c & 0x1f) * 2 ** (5 * k);
      more = (c & 0x20) !== 0;
      p++;
      k++;
      if (!more && c & 0x10) x -= 2 ** (5 * k); // sign-extend
    }
    if (counts.length > 2) x += counts[counts.length - 2]!;
    counts.push(x);
  }
  return counts;
}

export function encodeRle(mask: Uint8Array, size: Size): CocoRle {
  return { size: [size.h, size.w], counts: countsToString(encodeCounts(mask, size)) };
}

export function decodeRle(rle: CocoRle): Uint8Array {
  return decodeCounts(stringToCounts(rle.counts), { w: rle.size[1], h: rle.size[0] });
}
