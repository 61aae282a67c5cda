// Low-res mask logits -> binary masks at any resolution over the original image, and painting.
//
// The decoder's low-res logits (L x L, L = low_res_size) cover the padded model frame; only the
// input_size * L / image_size corner is image. SAM's postprocess_masks upsamples bilinearly to the
// model frame, crops input_size and upsamples bilinearly again to the original size. Both steps are
// linear per axis, so each output column (row) is a fixed combination of at most 3 low-res columns
// (rows): the exact composition is computed from per-axis tap tables, separably, with no
// intermediate model-frame buffer. The same code draws the display-size overlay, thumbnails and the
// full-resolution export mask (a smaller grid samples SAM's postprocessing to that size). SAM 2.1
// (geometry `stretch`) covers the whole image with the low-res frame and upsamples it in one step.

import { type Geometry, type Size, lowResImageExtent } from './frames';

/** For each of `out` outputs along one axis: up to 3 low-res indices and weights (zeros pad). */
interface AxisTaps {
  readonly idx: Int32Array;
  readonly wt: Float64Array;
  /** Smallest / largest low-res index with a non-zero weight, per output. */
  readonly lo: Int32Array;
  readonly hi: Int32Array;
  /** Runs of outputs [x0, x1) that share one low-res window [c0, c1], in order. */
  readonly segments: { readonly x0: Int32Array; readonly x1: Int32Array; readonly c0: Int32Array; readonly c1: Int32Array };
}

/** Taps by (out, crop, low, side): the page draws at the same few sizes again and again. */
const tapsCache = new Map<string, AxisTaps>();
const TAPS_CACHE_SIZE = 16;

function cachedAxisTaps(out: number, crop: number, low: number, side: number): AxisTaps {
  const key = `${out},${crop},${low},${side}`;
  let t = tapsCache.get(key);
  if (!t) {
    t = axisTaps(out, crop, low, side);
    const oldest = tapsCache.keys().next();
    if (tapsCache.size >= TAPS_CACHE_SIZE && !oldest.done) tapsCache.delete(oldest.value);
    tapsCache.set(key, t);
  }
  return t;
}

/**
 * Taps of SAM's two bilinear resizes (align_corners=False, edge clamped) along one axis:
 * `low` samples -> `side` (the model frame) -> the first `crop` of them -> `out` samples.
 */
function axisTaps(out: number, crop: number, low: number, side: number): AxisTaps {
  const idx = new Int32Array(3 * out);
  const wt = new Float64Array(3 * out);
  const lo = new Int32Array(out);
  const hi = new Int32Array(out);
  const s1 = low / side;
  const s2 = crop / out;
  for (let x = 0; x < out; x++) {
    const p = Math.max(0, (x + 0.5) * s2 - 0.5);
    const j0 = Math.floor(p);
    const j1 = Math.min(j0 + 1, crop - 1);
    const f = p - j0;
    const acc = new Map<number, number>();
    for (const [j, wj] of [[j0, 1 - f], [j1, f]] as const) {
      const r = Math.max(0, (j + 0.5) * s1 - 0.5);
      const a0 = Math.floor(r);
      const a1 = Math.min(a0 + 1, low - 1);
      const g = r - a0;
      acc.set(a0, (acc.get(a0) ?? 0) + wj * (1 - g));
      acc.set(a1, (acc.get(a1) ?? 0) + wj * g);
    }
    const taps = [...acc.entries()].sort((u, v) => u[0] - v[0]);
    let a = Infinity;
    let b = -Infinity;
    for (let k = 0; k < 3; k++) {
      const t = taps[k];
      idx[3 * x + k] = t ? t[0] : taps[0]![0];
      wt[3 * x + k] = t ? t[1] : 0;
      if (t && t[1] !== 0) {
        a = Math.min(a, t[0]);
        b = Math.max(b, t[0]);
      }
    }
    lo[x] = a === Infinity ? taps[0]![0] : a;
    hi[x] = b === -Infinity ? taps[0]![0] : b;
  }
  const starts: number[] = [];
  for (let x = 0; x < out; x++) if (x === 0 || lo[x] !== lo[x - 1] || hi[x] !== hi[x - 1]) starts.push(x);
  const segments = {
    x0: Int32Array.from(starts),
    x1: Int32Array.from(starts, (_, k) => starts[k + 1] ?? out),
    c0: Int32Array.from(starts, (x) => lo[x]!),
    c1: Int32Array.from(starts, (x) => hi[x]!),
  };
  return { idx, wt, lo, hi, segments };
}

/**
 * Threshold one mask token of the low-res logits, sampled on an `out` grid spanning the whole
 * original image (out = original size for exports, display size for the overlay): equal to SAM's
 * postprocess_masks to that size followed by `> threshold`.
 *
 * Every output value is a convex combination of the low-res values in its tap window, so where the
 * whole window is above (or not above) the threshold the pixels are decided without arithmetic:
 * runs of such columns are filled at once, and only windows that straddle the threshold are
 * computed per pixel (a row with many of them in one tight pass).
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
  const W = out.w;
  const H = out.h;
  // stretched (SAM 2.1): one resize L -> out, i.e. the two-step taps with the model frame = the low-res one
  const tx = g.stretch ? cachedAxisTaps(W, L, L, L) : cachedAxisTaps(W, g.input.w, L, g.imageSize);
  const ty = g.stretch ? cachedAxisTaps(H, L, L, L) : cachedAxisTaps(H, g.input.h, L, g.imageSize);
  const { x0: segX0, x1: segX1, c0: segC0, c1: segC1 } = tx.segments;
  // horizontally resampled low-res rows, computed when a row first needs one
  const rows: Array<Float64Array | undefined> = new Array<Float64Array | undefined>(L);
  const hrow = (r: number): Float64Array => {
    let row = rows[r];
    if (row) return row;
    row = new Float64Array(W);
    const src = off + r * L;
    for (let x = 0; x < W; x++) {
      const k = 3 * x;
      row[x] = tx.wt[k]! * logits[src + tx.idx[k]!]! + tx.wt[k + 1]! * logits[src + tx.idx[k + 1]!]! + tx.wt[k + 2]! * logits[src + tx.idx[k + 2]!]!;
    }
    rows[r] = row;
    return row;
  };
  const colState = new Int8Array(L); // per low-res column over the current row window: 1 all on, -1 all off, 0 mixed
  const mask = new Uint8Array(W * H);
  let prevLo = -1;
  let prevHi = -1;
  let mixed = 0;
  for (let y = 0; y < H; y++) {
    const rlo = ty.lo[y]!;
    const rhi = ty.hi[y]!;
    if (rlo !== prevLo || rhi !== prevHi) {
      mixed = 0;
      for (let c = 0; c < L; c++) {
        let allOn = true;
        let allOff = true;
        for (let r = rlo; r <= rhi; r++) {
          if (logits[off + r * L + c]! > threshold) allOff = false;
          else allOn = false;
        }
        colState[c] = allOn ? 1 : allOff ? -1 : 0;
        if (!allOn && !allOff) mixed++;
      }
      prevLo = rlo;
      prevHi = rhi;
    }
    const k = 3 * y;
    const w0 = ty.wt[k]!;
    const w1 = ty.wt[k + 1]!;
    const w2 = ty.wt[k + 2]!;
    const o = y * W;
    const dense = 8 * mixed > L; // a fragmented row: one tight pass beats the per-segment checks
    let r0: Float64Array | null = null;
    let r1: Float64Array | null = null;
    let r2: Float64Array | null = null;
    let run = -1; // start of the all-on segments not filled yet: one fill per run
    for (let s = 0; s < segX0.length; s++) {
      const x0 = segX0[s]!;
      const x1 = segX1[s]!;
      let st = dense ? 0 : colState[segC0[s]!]!;
      for (let c = segC0[s]! + 1; c <= segC1[s]! && st !== 0; c++) if (colState[c] !== st) st = 0;
      if (st === 1) {
        if (run < 0) run = x0;
        continue;
      }
      if (run >= 0) mask.fill(1, o + run, o + x0);
      run = -1;
      if (st === 0) {
        if (!r0 || !r1 || !r2) {
          r0 = hrow(ty.idx[k]!);
          r1 = hrow(ty.idx[k + 1]!);
          r2 = hrow(ty.idx[k + 2]!);
        }
        for (let x = x0; x < x1; x++) mask[o + x] = w0 * r0[x]! + w1 * r1[x]! + w2 * r2[x]! > threshold ? 1 : 0;
      }
    }
    if (run >= 0) mask.fill(1, o + run, o + W);
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
  for (const { mask, color } of layers) paintOver(px, mask, color);
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

/** Paint one mask over existing RGBA pixels (one little-endian Uint32 per pixel, row-major). */
export function paintOver(px: Uint32Array, mask: Uint8Array, color: Rgba): void {
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
