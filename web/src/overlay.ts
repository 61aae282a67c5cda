// When the mask overlay is painted, and how its layers stack: at most one paint per animation frame,
// each closing the click-to-mask measures of the inputs it answers (performance entries that tests
// and benchmarks read), plus the main-thread cost of the paint itself.

import type { Size } from './frames';
import { type Rgba, paintLayers, paintOver } from './mask';

/** Name of the page's click-to-mask latency entries (performance.getEntriesByName). */
export const CLICK_MEASURE = 'clicksam:click-to-mask';
/** Name of the overlay painting entries (main thread). */
export const PAINT_MEASURE = 'clicksam:paint';

export type Layer = { readonly mask: Uint8Array; readonly color: Rgba };

/**
 * The overlay image: `layers` in order over `base` (segment-everything's label map) when there is
 * one; null when there is nothing to draw.
 */
export function composeOverlay(size: Size, layers: readonly Layer[], base: ImageData | null): ImageData | null {
  if (base) {
    for (const l of layers) paintOver(base, l.mask, l.color);
    return base;
  }
  return layers.length ? paintLayers(size, layers) : null;
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
