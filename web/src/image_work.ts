// The work on one project image: its saved annotations put on the page as objects, the autosave of
// the objects (as COCO RLE at the image's resolution, with category, source, score and prompts),
// the image's status, and the pre-label proposals (stored on the server until kept or discarded:
// a kept one is discarded there once the save that holds its annotation succeeded, so a reload or
// another browser never loses it). The project view makes one per opened image.

import { ApiError, EVERYTHING_OPTIONS } from './api';
import { Autosave, type SaveState } from './autosave';
import type { Point, Size } from './frames';
import type { AnnotationInfo, ObjectStore, SavedObject } from './objects';
import { type Proposal, Proposals, toProposals } from './proposals';
import { type AnnotationIn, type Annotations, type ImageStatus, type ProjectImage, type ServerProposal, discardProposals, getAnnotations, getProposals, prelabelImage, saveAnnotations } from './projects_api';
import { type CocoRle, decodeRle, encodeRle } from './rle';

/** Quiet time after the last edit before a save. */
export const SAVE_DELAY_MS = 600;
const RETRY_MS = 3000;

export interface ImageWorkListener {
  /** Save state changed (the badge; `detail` says why a save failed). */
  saveState(state: SaveState, detail: string | null): void;
  /** The objects changed from here (loaded, reloaded, a proposal kept): re-render without saving. */
  objectsReplaced(): void;
  /** The proposals changed: overlay and list. */
  proposalsChanged(): void;
  /** A call to the server for the proposals failed (the next reload shows what the server has). */
  failed(e: unknown): void;
}

/** The annotation id a loaded object had (sent back so it keeps its id and created_at). */
const savedIds = new WeakMap<SavedObject, number>();
/** Each object's RLE, encoded once (masks never change once kept). */
const rles = new WeakMap<SavedObject, CocoRle>();

export class ImageWork {
  readonly proposals = new Proposals();
  readonly autosave: Autosave<{ annotations: AnnotationIn[]; status: ImageStatus }>;
  private statusValue: ImageStatus;
  private disposed = false;
  /** Proposals handed to the editor on this image. */
  private readonly adopted: Proposal[] = [];
  private refining = false;
  /** Ids of proposals kept as objects: discarded on the server after the next successful save. */
  private keptProposals: number[] = [];
  /** The kept object being refined (hidden until its refined mask is kept). */
  private replacing: SavedObject | null = null;

  constructor(
    readonly pid: number,
    readonly image: ProjectImage,
    private readonly objects: ObjectStore,
    private readonly on: ImageWorkListener,
  ) {
    this.statusValue = image.status;
    this.autosave = new Autosave(image.version, {
      delayMs: SAVE_DELAY_MS,
      retryMs: RETRY_MS,
      snapshot: () => ({ annotations: this.objects.all.map((o) => this.annotation(o)), status: this.statusToSave() }),
      save: async (version, snap) => {
        const kept = this.keptProposals; // all in `snap`: the snapshot was taken just now
        this.keptProposals = [];
        let v: number;
        try {
          v = await saveAnnotations(pid, image.id, { version, ...snap });
        } catch (e) {
          this.keptProposals.unshift(...kept);
          throw e;
        }
        this.image.version = v;
        this.image.status = snap.status;
        this.statusValue = snap.status;
        if (kept.length) this.discardOnServer(kept);
        return v;
      },
      latest: async () => {
        // an overwrite sends ids only of annotations the server still has (someone may have deleted some)
        const now = await getAnnotations(pid, image.id);
        const ids = new Set(now.annotations.map((a) => a.id));
        for (const o of this.objects.all) if (!ids.has(savedIds.get(o) ?? 0)) savedIds.delete(o);
        return now.version;
      },
      isConflict: (e) => e instanceof ApiError && e.status === 409,
      isRetryable: (e) => !(e instanceof ApiError) || e.status === 0 || e.status >= 500,
      state: (state, detail) => {
        if (!this.disposed) this.on.saveState(state, detail);
      },
    });
  }

  get size(): Size {
    return { w: this.image.width, h: this.image.height };
  }

  get status(): ImageStatus {
    return this.statusValue;
  }

  /** The person set the image's status: saved with the annotations. */
  setStatus(status: ImageStatus): void {
    this.statusValue = status;
    this.autosave.changed();
  }

  /** Put saved annotations on the page as the image's objects, and save from their version on. */
  apply(saved: Annotations): void {
    this.objects.clear();
    for (const a of saved.annotations) {
      const o = this.objects.addMask(decodeRle(a.segmentation), this.size, { category: a.category, source: a.source, score: a.score, prompts: a.prompts });
      savedIds.set(o, a.id);
      rles.set(o, a.segmentation);
    }
    this.autosave.reset(saved.version);
    this.image.version = saved.version;
    this.on.objectsReplaced();
  }

  /** After a conflict: drop the local edits and show what the server has (proposals kept here come back). */
  async reload(): Promise<void> {
    const [saved, proposals] = await Promise.all([getAnnotations(this.pid, this.image.id), getProposals(this.pid, this.image.id)]);
    this.keptProposals = [];
    this.apply(saved);
    this.showProposals(proposals);
  }

  /**
   * Run segment-everything on the server for the stored image; its masks replace the image's
   * proposals (best first). The page's query may set the generator's options (EVERYTHING_OPTIONS).
   */
  async prelabel(query: URLSearchParams): Promise<number> {
    const options = Object.fromEntries(EVERYTHING_OPTIONS.flatMap((k) => (query.has(k) ? [[k, Number(query.get(k))]] : [])));
    const found = await prelabelImage(this.pid, this.image.id, options);
    if (this.disposed) return 0;
    this.showProposals(found);
    return this.proposals.all.length;
  }

  /** Show the server's proposals for the image. */
  showProposals(items: readonly ServerProposal[]): void {
    this.proposals.set(toProposals(items, this.size), this.size);
    this.on.proposalsChanged();
  }

  /** Keep proposal `id` (or every one scoring at least `above`) as objects of `category`. */
  keep(which: { id: number } | { above: number }, category: string): number {
    const taken = 'id' in which ? [this.proposals.take(which.id)].filter((p): p is Proposal => p !== null) : this.proposals.takeAbove(which.above);
    for (const p of taken) this.objects.addMask(p.mask, this.size, proposalInfo(p, category));
    this.keptProposals.push(...taken.map((p) => p.id));
    this.on.proposalsChanged();
    if (taken.length) {
      this.on.objectsReplaced();
      this.autosave.changed();
    }
    return taken.length;
  }

  /** Discard proposal `id`, or all of them (here and on the server). */
  discard(id: number | null): void {
    const ids = id === null ? this.proposals.all.map((p) => p.id) : [id];
    if (id === null) this.proposals.set([], this.size);
    else this.proposals.take(id);
    this.on.proposalsChanged();
    if (ids.length) this.discardOnServer(ids);
  }

  /** The next click on a kept object reopens it in the editor (see `pick`). */
  refineNext(on: boolean): boolean {
    this.refining = on;
    return on;
  }

  get refineArmed(): boolean {
    return this.refining;
  }

  /**
   * A click (no prompts yet) handed to the editor as a mask to refine: after `refineNext`, the
   * smallest visible kept object under `p` (hidden, and replaced when the refined one is kept);
   * else a proposal. Null: an ordinary click.
   */
  pick(p: Point): { point: Point; mask: Uint8Array; score: number } | null {
    if (this.refining) {
      this.refining = false;
      const o = this.objectAt(p);
      if (!o) return null;
      o.visible = false;
      this.replacing = o;
      this.on.objectsReplaced();
      return { point: p, mask: o.mask, score: o.iou };
    }
    const q = this.proposals.at(p);
    if (q) {
      this.proposals.take(q.id); // stays on the server until its refined mask is kept and saved
      this.adopted.push(q);
      this.on.proposalsChanged();
    }
    return q;
  }

  /**
   * An object kept from the editor: a refined object replaces the one it came from (same id,
   * category and source); a refined proposal keeps the proposal's source and score.
   */
  kept(o: SavedObject): void {
    const old = this.replacing;
    this.replacing = null;
    if (old && this.objects.all.includes(old)) {
      this.objects.remove(old.id);
      o.annotation.category = old.annotation.category;
      o.annotation.source = old.annotation.source;
      const id = savedIds.get(old);
      if (id !== undefined) savedIds.set(o, id);
      return;
    }
    const first = o.annotation.prompts?.points[0];
    const from = first && this.adopted.find((q) => Math.abs(q.point.x - first[0]) < 0.5 && Math.abs(q.point.y - first[1]) < 0.5);
    if (from) {
      o.annotation.source = 'everything';
      o.annotation.score = Math.round(from.score * 1e4) / 1e4;
      this.keptProposals.push(from.id);
    }
  }

  private discardOnServer(ids: readonly number[]): void {
    discardProposals(this.pid, this.image.id, ids).catch((e: unknown) => {
      if (!this.disposed) this.on.failed(e);
    });
  }

  dispose(): void {
    this.disposed = true;
    this.autosave.dispose();
  }

  /** Test hook: a pixel of `o`'s mask (the middle one in row-major order), or null for an empty mask. */
  pointInside(o: SavedObject): Point | null {
    const on: number[] = [];
    o.mask.forEach((v, k) => v && on.push(k));
    const k = on[Math.floor(on.length / 2)];
    return k === undefined ? null : { x: k % this.size.w, y: Math.floor(k / this.size.w) };
  }

  private objectAt(p: Point): SavedObject | null {
    const { w, h } = this.size;
    const k = Math.min(h - 1, Math.max(0, Math.floor(p.y))) * w + Math.min(w - 1, Math.max(0, Math.floor(p.x)));
    let best: SavedObject | null = null;
    for (const o of this.objects.all) if (o.visible && o.mask[k] && (!best || o.area < best.area)) best = o;
    return best;
  }

  private annotation(o: SavedObject): AnnotationIn {
    let rle = rles.get(o);
    if (!rle) {
      rle = encodeRle(o.mask, this.size);
      rles.set(o, rle);
    }
    const id = savedIds.get(o);
    const a = o.annotation;
    return { ...(id === undefined ? {} : { id }), category: a.category, segmentation: rle, source: a.source, score: a.score, prompts: a.prompts };
  }

  /** A new image with something on it is in progress (unless the person chose a status). */
  private statusToSave(): ImageStatus {
    return this.statusValue === 'new' && this.objects.all.length > 0 ? 'in_progress' : this.statusValue;
  }
}

function proposalInfo(p: Proposal, category: string): AnnotationInfo {
  return { category, source: 'everything', score: Math.round(p.score * 1e4) / 1e4, prompts: { points: [[p.point.x, p.point.y, 1]], box: null } };
}
