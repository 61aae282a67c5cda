// Prompt state (points and one box, in original px), its undo/redo history, and the conversion to
// the decoder's point_coords / point_labels feeds.

import { type Geometry, type Point, originalToModel } from './frames';

/** SAM point labels as the exported decoder reads them. */
export const LABEL = { background: 0, foreground: 1, boxTopLeft: 2, boxBottomRight: 3, padding: -1 } as const;

export interface PromptPoint {
  /** Original px. */
  readonly x: number;
  readonly y: number;
  readonly label: typeof LABEL.foreground | typeof LABEL.background;
}

export interface PromptBox {
  /** Original px, x0 <= x1 and y0 <= y1. */
  readonly x0: number;
  readonly y0: number;
  readonly x1: number;
  readonly y1: number;
}

export interface PromptState {
  readonly points: readonly PromptPoint[];
  readonly box: PromptBox | null;
}

export const EMPTY: PromptState = { points: [], box: null };

export function isEmpty(s: PromptState): boolean {
  return s.points.length === 0 && s.box === null;
}

/** Normalise two corners into a box with x0 <= x1, y0 <= y1. */
export function boxFromCorners(a: Point, b: Point): PromptBox {
  return { x0: Math.min(a.x, b.x), y0: Math.min(a.y, b.y), x1: Math.max(a.x, b.x), y1: Math.max(a.y, b.y) };
}

export function addPoint(s: PromptState, p: PromptPoint): PromptState {
  return { points: [...s.points, p], box: s.box };
}

/** SAM takes one box: a new box replaces the old one and keeps the points. */
export function setBox(s: PromptState, box: PromptBox | null): PromptState {
  return { points: s.points, box };
}

export function removePoint(s: PromptState, index: number): PromptState {
  return { points: s.points.filter((_, i) => i !== index), box: s.box };
}

/** Decoder feeds for a prompt state: coords in the model frame, labels as SAM expects. */
export interface PointFeeds {
  /** (1, N, 2) xy in the model (1024) frame, flattened. */
  readonly coords: Float32Array;
  /** (1, N) labels, flattened. */
  readonly labels: Float32Array;
  readonly count: number;
}

/**
 * Build point_coords / point_labels: the points, then the box as two corner points labelled 2 and 3.
 * The padding point (0, 0, label -1) is appended only when there is no box, as SAM's prompt encoder
 * does (the exported graph cannot branch on it, so the caller must).
 */
export function promptToFeeds(s: PromptState, g: Geometry): PointFeeds {
  const pts: Array<[number, number, number]> = s.points.map((p) => {
    const m = originalToModel(p, g);
    return [m.x, m.y, p.label];
  });
  if (s.box) {
    const a = originalToModel({ x: s.box.x0, y: s.box.y0 }, g);
    const b = originalToModel({ x: s.box.x1, y: s.box.y1 }, g);
    pts.push([a.x, a.y, LABEL.boxTopLeft], [b.x, b.y, LABEL.boxBottomRight]);
  } else {
    pts.push([0, 0, LABEL.padding]);
  }
  const coords = new Float32Array(pts.length * 2);
  const labels = new Float32Array(pts.length);
  pts.forEach(([x, y, l], i) => {
    coords[2 * i] = x;
    coords[2 * i + 1] = y;
    labels[i] = l;
  });
  return { coords, labels, count: pts.length };
}

/** A single click with nothing else: SAM is ambiguous there, so the page offers the 3 candidates. */
export function isSingleClick(s: PromptState): boolean {
  return s.points.length === 1 && s.box === null;
}

/** Linear undo/redo history of immutable states, keeping at most `limit` undo steps. */
export class History<T> {
  private past: T[] = [];
  private future: T[] = [];
  constructor(
    private present: T,
    // each page entry holds its decoded low-res logits (~1 MB): bound the memory
    private readonly limit = 100,
  ) {}

  get current(): T {
    return this.present;
  }
  get canUndo(): boolean {
    return this.past.length > 0;
  }
  get canRedo(): boolean {
    return this.future.length > 0;
  }
  /** Record a new state; clears the redo branch. */
  push(next: T): void {
    this.past.push(this.present);
    if (this.past.length > this.limit) this.past.shift();
    this.present = next;
    this.future = [];
  }
  undo(): T | null {
    return this.step(this.past, this.future);
  }
  redo(): T | null {
    return this.step(this.future, this.past);
  }
  /** Forget everything and start from `state` (e.g. a new image). */
  reset(state: T): void {
    this.past = [];
    this.future = [];
    this.present = state;
  }
  /** Move to the top state of `from`, leaving the present on `to`; null when `from` is empty. */
  private step(from: T[], to: T[]): T | null {
    const next = from.pop();
    if (next === undefined) return null;
    to.push(this.present);
    this.present = next;
    return next;
  }
}
