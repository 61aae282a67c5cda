// Low-res mask logits -> binary masks at any resolution over the original image, and painting.
//
// The decoder's low-res logits (L x L, L = low_res_size) cover the padded model frame; only the
// input_size * L / image_size corner is image. SAM's postprocessing upsamples to the model frame,
// crops input_size and upsamples again to the original size. We sample that crop directly with one
// bilinear pass (align_corners=False, edge clamped) from each output pixel's centre, which needs no
// intermediate 1024x1024 buffer and lets the same code draw the display-size overlay, thumbnails
// and the full-resolution export mask.

import { type Geometry, type Size, lowResImageExtent } from './frames';

/** Per-axis source indices and weights for bilinear sampling of `n` outputs over `extent` inputs. */
function axisTable(n: number, extent: number, size: number): { i0: Int32Array; i1: Int32Array; w: Float32Array } {
  const i0 = new Int32Array(n);
  const i1 = new Int32Array(n);
  const w = new Float32Array(n);
  const scale = extent / n;
  for (let k = 0; k < n; k++) {
    let src = (k + 0.5) * scale - 0.5;
    if (src < 0) src = 0;
    if (src > size - 1) src = size - 1;
    const f = Math.floor(src);
    i0[k] = f;
    i1[k] = Math.min(f + 1, size - 1);
    w[k] = src - f;
  }
  return { i0, i1, w };
}

/**
 * Threshold one mask token of the low-res logits, sampled on an `out` grid spanning the whole
 * original image (out = original size for exports, display size for the overlay).
 *
 * Args:
 *   logits: (1, C, L, L) low-res mask logits, flattened; the token's plane starts at token * L * L.
 *   token: mask token index (0 single-mask, 1..3 multimask candidates).
 *   g: geometry of the encoded image (original/input sizes, image and low-res frame sizes).
 *   out: output grid size; pixel (i, j) covers original [(i, i+1) * W / out.w) x (...).
 *   threshold: logit threshold (manifest mask_threshold, 0 for SAM).
 * Returns: (out.h, out.w) row-major 0/1 bytes.
 */
export function logitsToMask(logits: Float32Array, token: number, g: Geometry, out: Size, threshold: number): Uint8Array {
  const L = g.lowResSize;
  const off = token * L * L;
  if (logits.length < off + L * L) throw new Error(`logits hold ${logits.length} values, token ${token} needs ${off + L * L}`);
  const ext = lowResImageExtent(g);
  const cols = axisTable(out.w, ext.w, L);
  const rows = axisTable(out.h, ext.h, L);
  // Horizontal pass per low-res row, computed once and reused by every output row that needs it.
  const rowCache: Array<Float32Array | undefined> = new Array<Float32Array | undefined>(L);
  const hrow = (r: number): Float32Array => {
    let row = rowCache[r];
    if (row) return row;
    row = new Float32Array(out.w);
    const base = off + r * L;
    for (let i = 0; i < out.w; i++) {
      const wx = cols.w[i]!;
      row[i] = logits[base + cols.i0[i]!]! * (1 - wx) + logits[base + cols.i1[i]!]! * wx;
    }
    rowCache[r] = row;
    return row;
  };
  const mask = new Uint8Array(out.w * out.h);
  for (let j = 0; j < out.h; j++) {
    const a = hrow(rows.i0[j]!);
    const b = hrow(rows.i1[j]!);
    const wy = rows.w[j]!;
    const o = j * out.w;
    for (let i = 0; i < out.w; i++) {
      mask[o + i] = a[i]! * (1 - wy) + b[i]! * wy > threshold ? 1 : 0;
    }
  }
  return mask;
}

/** Copy one token's (L, L) plane out of the (1, C, L, L) logits, e.g. to feed back as mask_input. */
export function tokenPlane(logits: Float32Array, token: number, lowResSize: number): Float32Array {
  const n = lowResSize * lowResSize;
  return logits.slice(token * n, (token + 1) * n);
}

export interface MaskStats {
  readonly area: number;
  /** [x, y, w, h] in the mask's pixel grid; zeros when empty. */
  readonly bbox: [number, number, number, number];
}

export function maskStats(mask: Uint8Array, size: Size): MaskStats {
  let area = 0;
  let x0 = size.w;
  let y0 = size.h;
  let x1 = -1;
  let y1 = -1;
  for (let j = 0; j < size.h; j++) {
    const o = j * size.w;
    for (let i = 0; i < size.w; i++) {
      if (mask[o + i]) {
        area++;
        if (i < x0) x0 = i;
        if (i > x1) x1 = i;
        if (j < y0) y0 = j;
        if (j > y1) y1 = j;
      }
    }
  }
  if (area === 0) return { area, bbox: [0, 0, 0, 0] };
  return { area, bbox: [x0, y0, x1 - x0 + 1, y1 - y0 + 1] };
}

/** RGBA colour as [r, g, b, a] bytes. */
export type Rgba = readonly [number, number, number, number];

/** Pack RGBA bytes into one little-endian Uint32 pixel value. */
function packRgba(c: Rgba): number {
  return ((c[3] << 24) | (c[2] << 16) | (c[1] << 8) | c[0]) >>> 0;
}

/**
 * Paint masks into an RGBA buffer of `size` (row-major); later layers paint over earlier ones.
 * Returns ImageData ready for putImageData / createImageBitmap.
 */
export function paintLayers(size: Size, layers: ReadonlyArray<{ mask: Uint8Array; color: Rgba }>): ImageData {
  const rgba = new Uint8ClampedArray(size.w * size.h * 4);
  const px = new Uint32Array(rgba.buffer);
  for (const { mask, color } of layers) {
    const c = packRgba(color);
    for (let k = 0; k < mask.length; k++) if (mask[k]) px[k] = c;
  }
  return new ImageData(rgba, size.w, size.h);
}

/** Outline of a mask (pixels on with an off 4-neighbour), for a crisp edge on top of the fill. */
export function maskEdges(mask: Uint8Array, size: Size): Uint8Array {
  const e = new Uint8Array(mask.length);
  const { w, h } = size;
  for (let j = 0; j < h; j++) {
    for (let i = 0; i < w; i++) {
      const k = j * w + i;
      if (!mask[k]) continue;
      if (i === 0 || j === 0 || i === w - 1 || j === h - 1 || !mask[k - 1] || !mask[k + 1] || !mask[k - w] || !mask[k + w]) e[k] = 1;
    }
  }
  return e;
}

/** Fraction of pixels where two equal-size masks differ (0 = identical). */
export function maskDifference(a: Uint8Array, b: Uint8Array): number {
  if (a.length !== b.length) return 1;
  let d = 0;
  for (let k = 0; k < a.length; k++) if (a[k] !== b[k]) d++;
  return a.length ? d / a.length : 0;
}

/**
 * Label map of many masks at one resolution: pixel -> index of the smallest mask covering it, or -1.
 * Masks are (H, W) 0/1 bytes; smaller masks win so nested parts stay reachable by hover and click.
 */
export function labelMap(masks: ReadonlyArray<Uint8Array>, pixels: number): Int32Array {
  const labels = new Int32Array(pixels).fill(-1);
  const order = masks.map((m, i) => ({ i, area: m.reduce((a, b) => a + b, 0) })).sort((a, b) => b.area - a.area);
  for (const { i } of order) {
    const m = masks[i]!;
    for (let k = 0; k < pixels; k++) if (m[k]) labels[k] = i;
  }
  return labels;
}

/** Nearest-neighbour resample of a (src) grid to (dst) size: for label maps and binary masks. */
export function resampleNearest<T extends Int32Array | Uint8Array>(src: T, from: Size, to: Size, make: (n: number) => T): T {
  const out = make(to.w * to.h);
  const xs = new Int32Array(to.w);
  for (let i = 0; i < to.w; i++) xs[i] = Math.min(from.w - 1, Math.floor(((i + 0.5) * from.w) / to.w));
  for (let j = 0; j < to.h; j++) {
    const sy = Math.min(from.h - 1, Math.floor(((j + 0.5) * from.h) / to.h));
    const so = sy * from.w;
    const o = j * to.w;
    for (let i = 0; i < to.w; i++) out[o + i] = src[so + xs[i]!]!;
  }
  return out;
}

/** RGBA of a label map: each label in its colour, `highlight` drawn opaque-ish. */
export function paintLabels(labels: Int32Array, size: Size, colors: readonly Rgba[], highlight: number): ImageData {
  const rgba = new Uint8ClampedArray(size.w * size.h * 4);
  const px = new Uint32Array(rgba.buffer);
  const packed = colors.map((c, i) => packRgba(i === highlight ? [c[0], c[1], c[2], 220] : c));
  for (let k = 0; k < labels.length; k++) {
    const l = labels[k]!;
    if (l >= 0) px[k] = packed[l]!;
  }
  return new ImageData(rgba, size.w, size.h);
}

/** Paint one mask over existing RGBA pixels. */
export function paintOver(img: ImageData, mask: Uint8Array, color: Rgba): void {
  const px = new Uint32Array(img.data.buffer);
  const c = packRgba(color);
  for (let k = 0; k < mask.length; k++) if (mask[k]) px[k] = c;
}

/**
 * Low-res logits standing in for a binary mask (for mask_input): the mask sampled on the low-res
 * grid over the model frame, +magnitude inside and -magnitude outside (and in the padding).
 */
export function maskToLowResLogits(mask: Uint8Array, g: Geometry, magnitude = 8): Float32Array {
  const L = g.lowResSize;
  const out = new Float32Array(L * L).fill(-magnitude);
  const ext = lowResImageExtent(g);
  const { w, h } = g.original;
  for (let j = 0; j < Math.ceil(ext.h) && j < L; j++) {
    const y = Math.min(h - 1, Math.floor(((j + 0.5) / ext.h) * h));
    for (let i = 0; i < Math.ceil(ext.w) && i < L; i++) {
      const x = Math.min(w - 1, Math.floor(((i + 0.5) / ext.w) * w));
      if (mask[y * w + x]) out[j * L + i] = magnitude;
    }
  }
  return out;
}
