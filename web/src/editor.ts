// The prompt editor: a state machine with no DOM. It holds the prompts on the current image, their
// undo/redo history (each entry keeps its decoded mask, so undo restores it exactly), the commit of
// an edit (decode it, or reuse the hover preview decoded where the click landed), the choice among
// SAM's candidate masks, and the hover preview. Hover scheduling is decided here and in
// DecoderClient (dwell, back-pressure), nowhere else. The page feeds it input through its methods
// and renders what its listener reports.
//
//   no-image --reset(target)--> idle --edit--> pending --decoded--> mask --clear/undo--> idle
//   idle: a hover preview may be shown; pending: the current entry is being decoded (or failed).

import type { DecodeInput } from './decoder';
import type { Geometry, Point } from './frames';
import { tokenPlane } from './mask';
import { EMPTY, History, LABEL, type PromptBox, type PromptState, addPoint, isEmpty, isSingleClick, promptToFeeds, removePoint, setBox } from './prompts';
import type { DecodeReply } from './protocol';

/** One decoder result: all mask tokens' low-res logits and the chosen token. */
export interface Decoded {
  /** (1, C, L, L) low-res logits over the padded model frame, flattened. */
  readonly lowRes: Float32Array;
  /** (C,) predicted IoU per mask token. */
  readonly iou: Float32Array;
  /** Multimask tokens sorted by predicted IoU, best first. */
  readonly ranked: readonly number[];
  token: number;
}

/** The decoder's mask tokens (manifest variant): the multimask candidates and the single mask. */
export interface Tokens {
  readonly multiTokens: readonly number[];
  readonly singleToken: number;
}

/** The image being edited: its frames and its decoder's tokens. */
export interface EditTarget {
  readonly geom: Geometry;
  readonly tokens: Tokens;
}

/** The decoder as the editor uses it (DecoderClient in the page). */
export interface DecoderPort {
  /** Decode committed prompts: always runs, in order. */
  decode(input: DecodeInput): Promise<DecodeReply>;
  /** Decode a hover preview: null when a newer hover or a click replaced it before it started. */
  hover(input: DecodeInput): Promise<DecodeReply | null>;
  /** Start the waiting hover now (a click at its point will use it). */
  startPendingHover(): void;
}

/** How the current mask changed: the page re-renders accordingly. */
export type MaskChange =
  /** Decoded for the current entry, or restored by undo/redo. */
  | 'shown'
  /** The prompts are empty: no mask. */
  | 'cleared'
  /** A given mask (segment everything) became the current one. */
  | 'adopted'
  /** Another candidate token of the same result was chosen. */
  | 'token';

export interface EditorListener {
  /** The current entry's prompts changed (a new entry, undo/redo): markers and buttons. */
  prompts(): void;
  /** The current mask changed; `t` (input event time) closes that input's click-to-mask measure. */
  mask(change: MaskChange, t: number): void;
  /** The hover preview appeared or went away. */
  hover(): void;
  /** A decoder run finished for a commit (statistics: time, backend). */
  decoded(reply: DecodeReply): void;
  /** A commit's decode failed, reported only while that commit is the current one. */
  failed(error: unknown): void;
  /** An edit came before any image was ready; nothing changed. */
  refused(): void;
}

/** What the editor shows, as a state of the machine. */
export type EditorState =
  | { readonly kind: 'no-image' }
  | { readonly kind: 'idle'; readonly hover: Decoded | null }
  | { readonly kind: 'pending'; readonly prompts: PromptState }
  | { readonly kind: 'mask'; readonly prompts: PromptState; readonly result: Decoded };

/**
 * Rank a reply's multimask tokens by predicted IoU and choose one: the best candidate for a single
 * click (SAM is ambiguous there, the page offers all three), else the single-mask token.
 */
export function decodedResult(r: DecodeReply, tokens: Tokens, singleClick: boolean): Decoded {
  const ranked = tokens.multiTokens.filter((k) => k < r.tokens).sort((a, b) => r.iou[b]! - r.iou[a]!);
  return { lowRes: r.lowRes, iou: r.iou, ranked, token: singleClick && ranked.length ? ranked[0]! : tokens.singleToken };
}

/** A history entry: the prompts and, once decoded, their result. */
interface Entry {
  readonly prompts: PromptState;
  result: Decoded | null;
}

interface CommitOptions {
  /** Push a new history entry (false: undo/redo already moved to it). */
  readonly push: boolean;
  /** Feed the previous mask's low-res logits as mask_input. */
  readonly refine: boolean;
  /** The edit added a point: the next added point refines this mask. */
  readonly point: boolean;
  readonly t: number;
}

export class Editor {
  private target: EditTarget | null = null;
  private readonly history = new History<Entry>({ prompts: EMPTY, result: null });
  private commitSeq = 0;
  /** Feed the current mask's logits on the next added point (reset by undo, box, clear...). */
  private refine = false;
  private preview: Decoded | null = null;
  private hoverSeq = 0;
  /** The last hover decode (started or finished) and its point: a click there reuses it. */
  private hoverAtPoint: { readonly p: Point; readonly reply: Promise<DecodeReply | null> } | null = null;

  constructor(
    private readonly decoder: DecoderPort,
    private readonly on: EditorListener,
  ) {}

  get state(): EditorState {
    if (!this.target) return { kind: 'no-image' };
    const { prompts, result } = this.history.current;
    if (isEmpty(prompts)) return { kind: 'idle', hover: this.preview };
    return result ? { kind: 'mask', prompts, result } : { kind: 'pending', prompts };
  }

  get prompts(): PromptState {
    return this.history.current.prompts;
  }

  /** The current mask (only ever set for non-empty prompts), or null. */
  get mask(): Decoded | null {
    return this.history.current.result;
  }

  /** The hover preview, shown only while there are no prompts. */
  get hover(): Decoded | null {
    return this.preview;
  }

  get canUndo(): boolean {
    return this.history.canUndo;
  }

  get canRedo(): boolean {
    return this.history.canRedo;
  }

  /**
   * Start over on `target` (null while an image loads): no prompts, history or hover preview; a
   * decode or preview still in flight is dropped when it lands. Reports nothing: the caller resets
   * its view.
   */
  reset(target: EditTarget | null): void {
    this.target = target;
    this.commitSeq++;
    this.hoverSeq++;
    this.history.reset({ prompts: EMPTY, result: null });
    this.preview = null;
    this.hoverAtPoint = null;
    this.refine = false;
  }

  /** A click: label 1 foreground, 0 background (original px). */
  click(p: Point, label: 0 | 1, t: number): Promise<void> {
    const next = addPoint(this.prompts, { x: p.x, y: p.y, label: label === 1 ? LABEL.foreground : LABEL.background });
    return this.commit(next, { push: true, refine: this.refine && this.mask !== null, point: true, t });
  }

  /** A dragged box replaces the box and keeps the points. */
  box(box: PromptBox, t: number): Promise<void> {
    return this.commit(setBox(this.prompts, box), { push: true, refine: false, point: false, t });
  }

  removePoint(index: number, t: number): Promise<void> {
    return this.edit(removePoint(this.prompts, index), t);
  }

  removeBox(t: number): Promise<void> {
    return this.edit(setBox(this.prompts, null), t);
  }

  clear(t: number): Promise<void> {
    return this.edit(EMPTY, t);
  }

  async undo(t: number): Promise<void> {
    if (this.history.undo()) await this.commit(this.prompts, { push: false, refine: false, point: false, t });
  }

  async redo(t: number): Promise<void> {
    if (this.history.redo()) await this.commit(this.prompts, { push: false, refine: false, point: false, t });
  }

  /** Show another candidate token of the current result. */
  pickToken(token: number, t: number): void {
    const r = this.mask;
    if (!r || r.token === token) return;
    r.token = token;
    this.on.mask('token', t);
  }

  /** Show the candidate of this rank (0 = best). */
  pickRank(rank: number, t: number): void {
    const token = this.mask?.ranked[rank];
    if (token !== undefined) this.pickToken(token, t);
  }

  /** Step to the next (or previous) candidate, wrapping; false when there is no mask to step in. */
  cycleToken(back: boolean, t: number): boolean {
    const r = this.mask;
    if (!r) return false;
    const at = r.ranked.indexOf(r.token);
    const next = r.ranked[(at + (back ? r.ranked.length - 1 : 1)) % r.ranked.length];
    if (next !== undefined) this.pickToken(next, t);
    return true;
  }

  /**
   * Make a given mask the current one (a segment-everything mask): its grid point becomes the
   * prompt and `lowRes`, (L, L) logits standing in for its pixels, the mask_input of the next click.
   */
  adopt(point: Point, lowRes: Float32Array, iou: number, t: number): void {
    this.history.push({
      prompts: addPoint(EMPTY, { x: point.x, y: point.y, label: LABEL.foreground }),
      result: { lowRes, iou: Float32Array.of(iou), ranked: [], token: 0 },
    });
    this.commitSeq++;
    this.refine = true;
    this.on.prompts();
    this.on.mask('adopted', t);
  }

  /**
   * The pointer rests at `p` (original px; null: it left, or the page shows something else there):
   * preview the mask a foreground click there would give, while there are no prompts. Resolves when
   * the preview is shown or dropped (a newer hover, a click, or prompts appeared meanwhile).
   */
  async hoverAt(p: Point | null): Promise<void> {
    const seq = ++this.hoverSeq;
    const target = this.target;
    if (!p || !target || !isEmpty(this.prompts)) {
      if (this.preview) {
        this.preview = null;
        this.on.hover();
      }
      return;
    }
    const feeds = promptToFeeds(addPoint(EMPTY, { x: p.x, y: p.y, label: LABEL.foreground }), target.geom);
    let r: DecodeReply | null;
    try {
      const reply = this.decoder.hover({ coords: feeds.coords, labels: feeds.labels, maskInput: null });
      this.hoverAtPoint = { p, reply };
      r = await reply;
    } catch {
      return; // a failed preview is not worth an error banner; clicks report their own errors
    }
    if (!r || seq !== this.hoverSeq || !isEmpty(this.prompts)) return;
    this.preview = decodedResult(r, target.tokens, true);
    this.on.hover();
  }

  private edit(next: PromptState, t: number): Promise<void> {
    if (next === this.prompts || (isEmpty(next) && isEmpty(this.prompts))) return Promise.resolve();
    return this.commit(next, { push: true, refine: false, point: false, t });
  }

  /**
   * Make `prompts` current (pushing a history entry or not) and show its mask, decoding if needed.
   * `refine` feeds the previous mask's low-res logits as mask_input; only an added point keeps
   * refinement going (undo/redo, a box, clear and removals start from no mask input).
   */
  private async commit(prompts: PromptState, opts: CommitOptions): Promise<void> {
    const target = this.target;
    if (!target) {
      this.on.refused();
      return;
    }
    const prev = this.mask;
    if (opts.push) this.history.push({ prompts, result: null });
    const entry = this.history.current;
    const seq = ++this.commitSeq;
    this.preview = null;
    this.refine = opts.point;
    this.on.prompts();
    if (isEmpty(prompts)) {
      this.on.mask('cleared', opts.t);
      return;
    }
    if (!entry.result) {
      const maskInput = opts.refine && prev ? tokenPlane(prev.lowRes, prev.token, target.geom.lowResSize) : null;
      try {
        const r = await this.run(prompts, maskInput, target.geom);
        this.on.decoded(r);
        entry.result = decodedResult(r, target.tokens, isSingleClick(prompts));
      } catch (e) {
        if (seq === this.commitSeq) this.on.failed(e);
        return;
      }
    }
    if (seq !== this.commitSeq) return; // a newer edit superseded this one
    this.on.mask('shown', opts.t);
  }

  /** Decode committed prompts; a first foreground click where the pointer rested reuses that hover decode (same feeds). */
  private async run(prompts: PromptState, maskInput: Float32Array | null, geom: Geometry): Promise<DecodeReply> {
    const h = this.hoverAtPoint;
    const first = prompts.points[0];
    if (h && first && !maskInput && isSingleClick(prompts) && first.label === LABEL.foreground && samePoint(h.p, first)) {
      this.decoder.startPendingHover(); // no dwell for a preview the click will use
      const reused = await h.reply.catch(() => null);
      if (reused) return reused;
    }
    const feeds = promptToFeeds(prompts, geom);
    return this.decoder.decode({ coords: feeds.coords, labels: feeds.labels, maskInput });
  }
}

/** Same click position (original px) to within half a pixel. */
function samePoint(a: Point, b: Point): boolean {
  return Math.abs(a.x - b.x) <= 0.5 && Math.abs(a.y - b.y) <= 0.5;
}
