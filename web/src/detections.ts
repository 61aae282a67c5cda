// Detections as mask proposals (issue 19): the detector's boxes (original px) are decoded IN THE
// BROWSER, each as a SAM box prompt through the page's decoder worker, into proposals the person
// keeps, discards or refines with clicks (proposals.ts draws and hit-tests them like pre-label
// proposals). Also: the query text as the server's list of queries, the exemplar box of "More like
// this" (the drawn box, else the current mask's bounding box), how the boxes are captioned, and the
// category a kept detection goes in.

import type { Box, Detection } from './detect_api';
import type { DecoderPort, EditTarget } from './editor';
import { decodedResult } from './editor';
import type { Size } from './frames';
import { logitsToMask, maskStats } from './mask';
import type { Proposal } from './proposals';
import { EMPTY, type PromptBox, type PromptState, promptToFeeds, setBox } from './prompts';

/** The server's limits on one query's text (longer ones are refused with a 422 anyway). */
export const MAX_QUERIES = 16;

/** A decoded detection: a proposal with the label and box it came from. */
export interface DetectionProposal extends Proposal {
  readonly label: string;
  /** Original px. */
  readonly box: PromptBox;
}

/** "dog, red car,, dog" -> ["dog", "red car"]: comma-separated, trimmed, blank and repeated ones dropped. */
export function parseQuery(text: string): string[] {
  const seen = new Set<string>();
  const out: string[] = [];
  for (const part of text.split(',')) {
    const q = part.trim().replace(/\s+/g, ' ');
    if (!q || seen.has(q.toLowerCase())) continue;
    seen.add(q.toLowerCase());
    out.push(q);
  }
  return out;
}

export function toBox(b: PromptBox): [number, number, number, number] {
  return [b.x0, b.y0, b.x1, b.y1];
}

export function fromBox(b: Box): PromptBox {
  return { x0: b[0], y0: b[1], x1: b[2], y1: b[3] };
}

/**
 * The exemplar of "More like this": the box drawn in the prompts if any, else the bounding box of
 * `mask` ((H, W) 0/1 at the original `size`; pixel edges, so one pixel is a 1x1 box), else null.
 */
export function exemplarBox(prompts: PromptState, mask: Uint8Array | null, size: Size): Box | null {
  if (prompts.box) return toBox(prompts.box);
  if (!mask) return null;
  const { area, bbox } = maskStats(mask, size);
  if (area === 0) return null;
  const [x, y, w, h] = bbox;
  return [x, y, x + w, y + h];
}

/** Text drawn on a detection's box: "dog 0.42". */
export function boxCaption(d: { readonly label: string; readonly score: number }): string {
  return `${d.label} ${d.score.toFixed(2)}`;
}

/** One box prompt decoded at the original size: its (H, W) 0/1 mask and the predicted IoU. */
export type BoxDecoder = (box: PromptBox) => Promise<{ readonly mask: Uint8Array; readonly iou: number }>;

/**
 * Decode box prompts with SAM's single-mask output (a box is not ambiguous; the editor picks the same
 * token for a box), thresholded at the original size, through `decoder` (the page's worker).
 */
export function samBoxDecoder(decoder: Pick<DecoderPort, 'decode'>, target: EditTarget, threshold: number): BoxDecoder {
  return async (box) => {
    const prompts = setBox(EMPTY, box);
    const feeds = promptToFeeds(prompts, target.geom);
    const r = await decoder.decode({ coords: feeds.coords, labels: feeds.labels, maskInput: null });
    const d = decodedResult(r, target.tokens, false);
    return { mask: logitsToMask(d.lowRes, d.token, target.geom, target.geom.original, threshold), iou: d.iou[d.token] ?? 0 };
  };
}

/**
 * Decode `detections` one after another (a click in between is not queued behind all of them),
 * handing each proposal to `found` as soon as it is decoded. Stops early when `alive()` turns false
 * (a new query or a new image). Ids count from `firstId`. Empty masks are left out.
 *
 * Returns: how many were decoded into non-empty masks.
 */
export async function decodeDetections(
  detections: readonly Detection[],
  decode: BoxDecoder,
  found: (p: DetectionProposal) => void,
  opts: { readonly firstId: number; readonly alive: () => boolean },
): Promise<number> {
  let n = 0;
  let id = opts.firstId;
  for (const d of detections) {
    if (!opts.alive()) break;
    const box = fromBox(d.box);
    const { mask } = await decode(box);
    if (!opts.alive()) break;
    const area = mask.reduce((a, v) => a + (v ? 1 : 0), 0);
    const ownId = id++;
    if (area === 0) continue;
    found({ id: ownId, mask, area, score: d.score, point: { x: (box.x0 + box.x1) / 2, y: (box.y0 + box.y1) / 2 }, label: d.label, box });
    n++;
  }
  return n;
}

/**
 * The category an object found as `label` is kept in: the label itself on the one-image page
 * (`categories` null); in a project the project's category of that name (case-insensitive), else
 * `current` (the picker's), since a project only stores its own categories.
 */
export function categoryFor(label: string, categories: readonly string[] | null, current: string): string {
  if (categories === null) return label;
  return categories.find((c) => c.toLowerCase() === label.toLowerCase()) ?? current;
}

/** Same box to within half a pixel on every side (a kept object's box prompt vs a detection's). */
export function sameBox(a: PromptBox, b: PromptBox): boolean {
  return Math.abs(a.x0 - b.x0) <= 0.5 && Math.abs(a.y0 - b.y0) <= 0.5 && Math.abs(a.x1 - b.x1) <= 0.5 && Math.abs(a.y1 - b.y1) <= 0.5;
}
