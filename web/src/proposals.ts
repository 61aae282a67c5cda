// A project image's pre-label proposals: segment-everything masks the server stores for the image
// until a person keeps or discards them. They are drawn apart from annotations (a faint grey fill and
// a dashed outline) and a click on one hands it to the editor to refine. A kept proposal becomes an
// object (an annotation with source "everything" and its score); the server calls are image_work.ts's.

import type { Point, Size } from './frames';
import { maskEdges, resampleNearest } from './mask';
import type { Layer } from './overlay';
import type { ServerProposal } from './projects_api';
import { decodeRle } from './rle';

export interface Proposal {
  /** The server's id (the list's keys and test ids; never reused). */
  readonly id: number;
  readonly mask: Uint8Array;
  readonly area: number;
  /** The generator's predicted IoU. */
  readonly score: number;
  /** The grid point that produced it, original px. */
  readonly point: Point;
}

const FILL: Layer['color'] = [190, 190, 190, 70];
const DASH: Layer['color'] = [255, 209, 102, 235];
/** Dash length in display px along both axes. */
const DASH_PX = 4;

/** A mask's outline with every other run of DASH_PX pixels left out, so it reads as dashed. */
export function dashedEdges(mask: Uint8Array, size: Size): Uint8Array {
  const e = maskEdges(mask, size);
  for (let k = 0; k < e.length; k++) {
    if (e[k] && Math.floor(((k % size.w) + Math.floor(k / size.w)) / DASH_PX) % 2 === 1) e[k] = 0;
  }
  return e;
}

/** The server's proposals (masks at the image's size) as proposals to draw, best first; empty ones left out. */
export function toProposals(items: readonly ServerProposal[], original: Size): Proposal[] {
  return items
    .map((q) => {
      const [h, w] = q.segmentation.size;
      if (h !== original.h || w !== original.w) throw new Error(`Proposal ${q.id} is ${w}x${h}, the image is ${original.w}x${original.h}: pre-label it again.`);
      const [x, y] = q.prompts?.points[0] ?? [q.bbox[0] + q.bbox[2] / 2, q.bbox[1] + q.bbox[3] / 2];
      return { id: q.id, mask: decodeRle(q.segmentation), area: q.area, score: q.score, point: { x, y } };
    })
    .filter((p) => p.area > 0)
    .sort((a, b) => b.score - a.score);
}

/** The proposals of one image; `P` may carry more (a detection's label and box, detections.ts). */
export class Proposals<P extends Proposal = Proposal> {
  private items: P[] = [];
  private original: Size | null = null;
  /** Each proposal's fill and outline at the overlay size they were last drawn at. */
  private readonly shown = new WeakMap<P, { size: Size; fill: Layer; edge: Layer }>();

  get all(): readonly P[] {
    return this.items;
  }

  /** New proposals for an image of `original` size (an empty list clears them). */
  set(items: P[], original: Size | null): void {
    this.items = items;
    this.original = original;
  }

  /** Remove and return proposal `id`, or null. */
  take(id: number): P | null {
    const p = this.items.find((x) => x.id === id) ?? null;
    if (p) {
      this.items = this.items.filter((x) => x !== p);
    }
    return p;
  }

  /** Remove and return every proposal scoring at least `score`. */
  takeAbove(score: number): P[] {
    const kept = this.items.filter((p) => p.score >= score);
    this.items = this.items.filter((p) => p.score < score);
    return kept;
  }

  /** The smallest proposal covering `p` (original px), or null. */
  at(p: Point): P | null {
    const size = this.original;
    if (!size) return null;
    const x = Math.min(size.w - 1, Math.max(0, Math.floor(p.x)));
    const y = Math.min(size.h - 1, Math.max(0, Math.floor(p.y)));
    let best: P | null = null;
    for (const q of this.items) if (q.mask[y * size.w + x] && (!best || q.area < best.area)) best = q;
    return best;
  }

  /**
   * Fill and dashed outline of every proposal at the overlay's `size` (fills first): each computed
   * once per proposal and size, so proposals added one by one (detections) cost one resample each.
   */
  layers(size: Size): Layer[] {
    const original = this.original;
    if (!original || !this.items.length) return [];
    const fills: Layer[] = [];
    const edges: Layer[] = [];
    for (const p of this.items) {
      let d = this.shown.get(p);
      if (!d || d.size.w !== size.w || d.size.h !== size.h) {
        const m = resampleNearest(p.mask, original, size, (n) => new Uint8Array(n));
        d = { size, fill: { mask: m, color: FILL }, edge: { mask: dashedEdges(m, size), color: DASH } };
        this.shown.set(p, d);
      }
      fills.push(d.fill);
      edges.push(d.edge);
    }
    return [...fills, ...edges];
  }
}
