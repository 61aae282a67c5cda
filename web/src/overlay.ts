// When the mask overlay is painted, and how its layers stack: at most one paint per animation frame,
// each closing the click-to-mask measures of the inputs it answers (performance entries that tests
// and benchmarks read), plus the main-thread cost of the paint itself; the kept objects' pixels are
// composed once and reused while they stay the same, so a click repaints only its own mask on top.

import type { Size } from './frames';
import { type Rgba, paintOver } from './mask';

/** Name of the page's click-to-mask latency entries (performance.getEntriesByName). */
export const CLICK_MEASURE = 'clicksam:click-to-mask';
/** Name of the overlay painting entries (main thread). */
export const PAINT_MEASURE = 'clicksam:paint';

export type Layer = { readonly mask: Uint8Array; readonly color: Rgba };

function sameLayers(a: readonly Layer[], b: readonly Layer[]): boolean {
  return a.length === b.length && a.every((l, i) => l.mask === b[i]!.mask && l.color.every((v, j) => v === b[i]!.color[j]));
}

/**
 * Builds the overlay's RGBA pixels: the static layers (kept objects, in order), then the one layer
 * that changes on every click or hover on top. The static layers' pixels are kept between paints
 * (layers are the same while their mask arrays are), so a click costs one copy and one mask instead
 * of re-painting every kept object. Pixels equal painting all layers in order over transparent.
 */
export class OverlayComposer {
  private base: { layers: readonly Layer[]; w: number; h: number; px: Uint32Array } | null = null;
  private out = new Uint8ClampedArray(0);

  /**
   * Row-major RGBA bytes of `size` (a buffer reused by the next call: draw it before composing
   * again), or null when there is nothing to draw. `under` (segment-everything's label map, already
   * in RGBA) replaces the transparent background and is painted over in place.
   */
  compose(size: Size, layers: readonly Layer[], top: Layer | null, under: Uint8ClampedArray<ArrayBuffer> | null): Uint8ClampedArray<ArrayBuffer> | null {
    if (under) {
      const px = new Uint32Array(under.buffer, under.byteOffset, size.w * size.h);
      for (const l of top ? [...layers, top] : layers) paintOver(px, l.mask, l.color);
      return under;
    }
    if (!layers.length && !top) return null;
    const n = size.w * size.h;
    if (this.out.length !== 4 * n) this.out = new Uint8ClampedArray(4 * n);
    const px = new Uint32Array(this.out.buffer);
    if (!layers.length) px.fill(0);
    else {
      let b = this.base;
      if (!b || b.w !== size.w || b.h !== size.h || !sameLayers(b.layers, layers)) {
        b = { layers: [...layers], w: size.w, h: size.h, px: new Uint32Array(n) };
        for (const l of layers) paintOver(b.px, l.mask, l.color);
        this.base = b;
      }
      px.set(b.px);
    }
    if (top) paintOver(px, top.mask, top.color);
    return this.out;
  }
}

/** Paints on the next animation frame, once however many inputs asked for it. */
export class PaintScheduler {
  private pendingMeasures: number[] = [];
  private frame = 0;

  constructor(private readonly paint: () => void) {}

  /** Repaint on the next frame; `t` (input event time) closes a click-to-mask measure once painted. */
  schedule(t?: number): void {
    if (t !== undefined) this.pendingMeasures.push(t);
    if (this.frame) return;
    this.frame = requestAnimationFrame(() => {
      this.frame = 0;
      const start = performance.now();
      this.paint();
      const end = performance.now();
      performance.measure(PAINT_MEASURE, { start, end });
      for (const s of this.pendingMeasures) performance.measure(CLICK_MEASURE, { start: s, end });
      this.pendingMeasures = [];
    });
  }
}
