// Segment everything: SAM's automatic masks for the whole image, fetched from the server once per
// image, decoded to the original resolution and shown as a label map. Hovering highlights a mask;
// the page turns a click on one into the editor's current mask (refined by further clicks).

import { EVERYTHING_OPTIONS, postEverything } from './api';
import type { Point, Size } from './frames';
import { type Rgba, labelMap, paintLabels, resampleNearest } from './mask';
import { paletteColor } from './palette';
import { type CocoRle, decodeRle } from './rle';
import type { LoadedImage } from './session';

export interface EverythingMask {
  /** (H, W) 0/1 at the original resolution. */
  readonly mask: Uint8Array;
  readonly area: number;
  readonly iou: number;
  /** The grid point that produced it, original px. */
  readonly point: Point;
  readonly color: Rgba;
}

/** One automatic mask as the server sends it, in the frame of the uploaded image. */
export interface EverythingRecord {
  readonly rle: CocoRle;
  readonly iou: number;
  /** [x, y] in the uploaded image's px. */
  readonly point: readonly [number, number];
}

interface Result {
  readonly masks: EverythingMask[];
  /** Original-size label map (index of the smallest mask per pixel, -1 none). */
  readonly labels: Int32Array;
  display: { size: Size; labels: Int32Array } | null;
  hover: number;
}

export interface EverythingListener {
  /** A progress line that counts seconds until the returned function is called. */
  progress(label: string): () => void;
  /** The masks arrived: a summary for the status line. */
  found(message: string): void;
  error(e: unknown): void;
  /** Shown, hidden, busy or the highlighted mask changed: buttons and overlay. */
  changed(): void;
}

/**
 * Decode the server's RLE masks (in the frame of the uploaded image, `serverSize` [H, W], which may
 * be a downscaled copy) to the `original` resolution, with colours.
 */
export function decodeEverything(records: readonly EverythingRecord[], serverSize: readonly [number, number], original: Size): EverythingMask[] {
  const from = { w: serverSize[1], h: serverSize[0] };
  const same = from.w === original.w && from.h === original.h;
  return records.map((r, i) => {
    const m = decodeRle(r.rle);
    const mask = same ? m : resampleNearest(m, from, original, (n) => new Uint8Array(n));
    return {
      mask,
      area: mask.reduce((a, b) => a + b, 0),
      iou: r.iou,
      point: { x: (r.point[0] * original.w) / from.w, y: (r.point[1] * original.h) / from.h },
      color: paletteColor(i, 120),
    };
  });
}

export class Everything {
  private image: LoadedImage | null = null;
  private result: Result | null = null;
  private shownValue = false;
  private busyValue = false;

  constructor(
    /** The page's query: EVERYTHING_OPTIONS found there are passed to the server. */
    private readonly query: URLSearchParams,
    private readonly on: EverythingListener,
  ) {}

  /** The masks are on screen (hover and clicks go to them while there are no prompts). */
  get shown(): boolean {
    return this.shownValue;
  }

  get busy(): boolean {
    return this.busyValue;
  }

  /** The masks while shown (for exports), else none. */
  get shownMasks(): readonly EverythingMask[] {
    return this.shownValue && this.result ? this.result.masks : [];
  }

  /** A new image (null while it loads): forget the old masks. */
  reset(image: LoadedImage | null): void {
    this.image = image;
    this.result = null;
    this.shownValue = false;
  }

  /** Show (fetching once per image) or hide the automatic masks. */
  async toggle(): Promise<void> {
    const img = this.image;
    if (!img || this.busyValue) return;
    if (this.shownValue) {
      this.shownValue = false;
      this.on.changed();
      return;
    }
    if (!this.result) {
      this.busyValue = true;
      this.on.changed();
      const t0 = performance.now();
      const stop = this.on.progress('Segmenting everything on the server…');
      try {
        const options = new Map(EVERYTHING_OPTIONS.flatMap((k) => (this.query.has(k) ? [[k, this.query.get(k) ?? '']] : [])));
        const res = await postEverything(img.upload.blob, img.upload.name, options);
        if (img !== this.image) return;
        const records = res.masks.map((m) => ({ rle: m.segmentation, iou: m.predicted_iou, point: m.point_coords[0] ?? ([0, 0] as const) }));
        const masks = decodeEverything(records, res.original_size, img.geom.original);
        const orig = img.geom.original;
        this.result = { masks, labels: labelMap(masks.map((m) => m.mask), orig.w * orig.h), display: null, hover: -1 };
        const n = masks.length;
        const secs = ((performance.now() - t0) / 1000).toFixed(1);
        this.on.found(n ? `${n} mask${n === 1 ? '' : 's'} in ${secs} s: hover to see one, click to select it.` : `No confident masks found (${secs} s).`);
      } catch (e) {
        this.on.error(e);
        return;
      } finally {
        stop();
        this.busyValue = false;
        this.on.changed();
      }
    }
    this.shownValue = true;
    this.on.changed();
  }

  /** Index of the mask at `p` (original px) while shown, or -1. */
  at(p: Point | null): number {
    const labels = this.result?.labels;
    const img = this.image;
    if (!p || !labels || !img || !this.shownValue) return -1;
    const { w, h } = img.geom.original;
    const x = Math.min(w - 1, Math.max(0, Math.floor(p.x)));
    const y = Math.min(h - 1, Math.max(0, Math.floor(p.y)));
    return labels[y * w + x] ?? -1;
  }

  /** Highlight the mask under the pointer (-1: none). */
  hoverAt(p: Point | null): void {
    const idx = this.at(p);
    if (this.result && idx !== this.result.hover) {
      this.result.hover = idx;
      this.on.changed();
    }
  }

  /** Hand mask `index` over to the editor: hidden from now on. Returns it, or null. */
  pick(index: number): EverythingMask | null {
    const m = this.result?.masks[index];
    if (!this.result || !m) return null;
    this.shownValue = false;
    this.result.hover = -1;
    return m;
  }

  /** The label map painted at the overlay's `size` (label map resampled once per size), or null when hidden. */
  paint(size: Size): ImageData | null {
    const ev = this.result;
    if (!ev || !this.shownValue || !this.image) return null;
    if (!ev.display || ev.display.size.w !== size.w || ev.display.size.h !== size.h) {
      ev.display = { size, labels: resampleNearest(ev.labels, this.image.geom.original, size, (n) => new Int32Array(n)) };
    }
    return paintLabels(ev.display.labels, size, ev.masks.map((m) => m.color), ev.hover);
  }

  /** Test hook: {shown, masks, hover, inside: a pixel centre covered by some mask}, or null before any fetch. */
  debug(): { shown: boolean; masks: number; hover: number; inside: Point | null } | null {
    const ev = this.result;
    if (!ev) return null;
    return { shown: this.shownValue, masks: ev.masks.length, hover: ev.hover, inside: this.pointInside() };
  }

  private pointInside(): Point | null {
    const ev = this.result;
    const img = this.image;
    if (!ev || !img) return null;
    const covered: number[] = [];
    ev.labels.forEach((l, k) => {
      if (l >= 0) covered.push(k);
    });
    const k = covered[Math.floor(covered.length / 2)];
    if (k === undefined) return null;
    const w = img.geom.original.w;
    return { x: (k % w) + 0.5, y: Math.floor(k / w) + 0.5 };
  }
}
