// The objects the user kept on the current image: each one's mask (low-res logits for the overlay
// when the decoder made it, full-resolution pixels for exports and saves), colour, name and
// visibility, with the display-size masks cached per overlay size. In a project each object is also
// an annotation: its category, source, score and the prompts that made it.

import type { Decoded } from './editor';
import type { Geometry, Size } from './frames';
import { type Rgba, logitsToMask, maskStats, resampleNearest, tokenPlane } from './mask';
import { paletteColor } from './palette';
import type { AnnotationSource, SavedPrompts } from './projects_api';
import type { PromptState } from './prompts';
import type { ObjectView } from './ui/objects';

/** What a kept object is as an annotation (the one-image page ignores it). */
export interface AnnotationInfo {
  category: string;
  /** A refined proposal keeps the proposal's source and score. */
  source: AnnotationSource;
  score: number | null;
  readonly prompts: SavedPrompts | null;
}

export interface SavedObject {
  readonly id: number;
  readonly name: string;
  readonly color: Rgba;
  visible: boolean;
  /** (L, L) low-res logits of the chosen token; null for a mask that came as pixels (a saved one). */
  readonly logits: Float32Array | null;
  /** (H, W) 0/1 mask at the original resolution. */
  readonly mask: Uint8Array;
  readonly area: number;
  readonly iou: number;
  displayCache: { size: Size; mask: Uint8Array } | null;
  readonly annotation: AnnotationInfo;
}

/** Prompts in original px as an annotation stores them. */
export function savedPrompts(p: PromptState): SavedPrompts | null {
  if (!p.points.length && !p.box) return null;
  return { points: p.points.map((q) => [q.x, q.y, q.label]), box: p.box ? [p.box.x0, p.box.y0, p.box.x1, p.box.y1] : null };
}

export class ObjectStore {
  private items: SavedObject[] = [];
  private nextId = 1;
  /** The category of the objects kept from now on (a project's picker sets it). */
  category = '';

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

  /** Keep the chosen token of `r`, decoded from `prompts`, as a new object of the current category. */
  add(r: Decoded, geom: Geometry, threshold: number, prompts: PromptState): SavedObject {
    const logits = tokenPlane(r.lowRes, r.token, geom.lowResSize);
    const mask = logitsToMask(logits, 0, geom, geom.original, threshold);
    const iou = r.iou[r.token] ?? 0;
    return this.push(logits, mask, geom.original, iou, { category: this.category, source: 'manual', score: iou, prompts: savedPrompts(prompts) });
  }

  /** Keep an (H, W) 0/1 mask at the image's `size` (a saved annotation, a kept proposal). */
  addMask(mask: Uint8Array, size: Size, annotation: AnnotationInfo): SavedObject {
    return this.push(null, mask, size, annotation.score ?? 0, annotation);
  }

  private push(logits: Float32Array | null, mask: Uint8Array, size: Size, iou: number, annotation: AnnotationInfo): SavedObject {
    const id = this.nextId++;
    const o: SavedObject = {
      id,
      name: `Object ${id}`,
      color: paletteColor(id - 1, 130),
      visible: true,
      logits,
      mask,
      area: maskStats(mask, size).area,
      iou,
      displayCache: null,
      annotation,
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
        const mask = o.logits ? logitsToMask(o.logits, 0, geom, size, threshold) : resampleNearest(o.mask, geom.original, size, (n) => new Uint8Array(n));
        o.displayCache = { size, mask };
      }
      return { mask: o.displayCache.mask, color: o.color };
    });
  }

  views(): ObjectView[] {
    return this.items.map((o) => ({ id: o.id, name: o.annotation.category ? `${o.annotation.category} ${o.id}` : o.name, color: o.color, visible: o.visible, area: o.area }));
  }
}
