// The objects the user kept on the current image: each one's mask (low-res logits for the overlay,
// full-resolution pixels for exports), colour, name and visibility, with the display-size masks
// cached per overlay size.

import type { Decoded } from './editor';
import type { Geometry, Size } from './frames';
import { type Rgba, logitsToMask, maskStats, tokenPlane } from './mask';
import { paletteColor } from './palette';
import type { ObjectView } from './ui/objects';

export interface SavedObject {
  readonly id: number;
  readonly name: string;
  readonly color: Rgba;
  visible: boolean;
  /** (L, L) low-res logits of the chosen token. */
  readonly logits: Float32Array;
  /** (H, W) 0/1 mask at the original resolution. */
  readonly mask: Uint8Array;
  readonly area: number;
  readonly iou: number;
  displayCache: { size: Size; mask: Uint8Array } | null;
}

export class ObjectStore {
  private items: SavedObject[] = [];
  private nextId = 1;

  get all(): readonly SavedObject[] {
    return this.items;
  }

  get visible(): SavedObject[] {
    return this.items.filter((o) => o.visible);
  }

  /** A new image: forget the objects (ids keep counting, so names stay unique in a session). */
  clear(): void {
    this.items = [];
  }

  /** Keep the chosen token of `r` as a new object. */
  add(r: Decoded, geom: Geometry, threshold: number): SavedObject {
    const logits = tokenPlane(r.lowRes, r.token, geom.lowResSize);
    const mask = logitsToMask(logits, 0, geom, geom.original, threshold);
    const id = this.nextId++;
    const o: SavedObject = {
      id,
      name: `Object ${id}`,
      color: paletteColor(id - 1, 130),
      visible: true,
      logits,
      mask,
      area: maskStats(mask, geom.original).area,
      iou: r.iou[r.token] ?? 0,
      displayCache: null,
    };
    this.items.push(o);
    return o;
  }

  /** Show or hide an object; false when there is no such object. */
  toggle(id: number): boolean {
    const o = this.items.find((x) => x.id === id);
    if (!o) return false;
    o.visible = !o.visible;
    return true;
  }

  remove(id: number): void {
    this.items = this.items.filter((x) => x.id !== id);
  }

  /** The visible objects' masks at the overlay's `size`, computed once per size. */
  layers(size: Size, geom: Geometry, threshold: number): Array<{ mask: Uint8Array; color: Rgba }> {
    return this.visible.map((o) => {
      if (!o.displayCache || o.displayCache.size.w !== size.w || o.displayCache.size.h !== size.h) {
        o.displayCache = { size, mask: logitsToMask(o.logits, 0, geom, size, threshold) };
      }
      return { mask: o.displayCache.mask, color: o.color };
    });
  }

  views(): ObjectView[] {
    return this.items.map((o) => ({ id: o.id, name: o.name, color: o.color, visible: o.visible, area: o.area }));
  }
}
