// The prompt editor's state machine against a scripted decoder: commits, refinement, history,
// candidates, hover previews and their reuse by a click, stale results and failures.
import { describe, expect, it } from 'vitest';
import type { DecodeInput } from './decoder';
import { type DecoderPort, Editor, type EditorListener, type MaskChange, decodedResult } from './editor';
import { makeGeometry } from './frames';
import type { DecodeReply } from './protocol';

const L = 4;
const geom = makeGeometry({ w: 200, h: 100 }, 16, L); // model frame 16, input 16x8
const tokens = { multiTokens: [1, 2, 3], singleToken: 0 };
const target = { geom, tokens };

/** A reply whose token planes are filled with `fill + token` and whose IoUs are given. */
function reply(iou: number[], fill = 0): DecodeReply {
  const lowRes = new Float32Array(iou.length * L * L);
  for (let k = 0; k < iou.length; k++) lowRes.fill(fill + k, k * L * L, (k + 1) * L * L);
  return { type: 'decoded', id: 0, lowRes, iou: Float32Array.from(iou), tokens: iou.length, runMs: 5, runStart: 0, backend: 'wasm', threads: 2 };
}

interface Deferred<T> {
  readonly promise: Promise<T>;
  resolve(v: T): void;
  reject(e: Error): void;
}

function deferred<T>(): Deferred<T> {
  let resolve!: (v: T) => void;
  let reject!: (e: Error) => void;
  const promise = new Promise<T>((res, rej) => {
    resolve = res;
    reject = rej;
  });
  return { promise, resolve, reject };
}

/** A decoder whose runs wait until the test answers them, and a log of what the editor reported. */
class Rig implements DecoderPort {
  readonly decodes: Array<{ input: DecodeInput; answer: Deferred<DecodeReply> }> = [];
  readonly hovers: Array<{ input: DecodeInput; answer: Deferred<DecodeReply | null> }> = [];
  startedPending = 0;
  readonly events: string[] = [];
  readonly masks: Array<[MaskChange, number]> = [];
  readonly errors: unknown[] = [];
  readonly editor: Editor;

  constructor() {
    const on: EditorListener = {
      prompts: () => this.events.push('prompts'),
      mask: (change, t) => {
        this.events.push(`mask:${change}`);
        this.masks.push([change, t]);
      },
      hover: () => this.events.push('hover'),
      decoded: () => this.events.push('decoded'),
      failed: (e) => this.errors.push(e),
      refused: () => this.events.push('refused'),
    };
    this.editor = new Editor(this, on);
  }

  decode(input: DecodeInput): Promise<DecodeReply> {
    const answer = deferred<DecodeReply>();
    this.decodes.push({ input, answer });
    return answer.promise;
  }

  hover(input: DecodeInput): Promise<DecodeReply | null> {
    const answer = deferred<DecodeReply | null>();
    this.hovers.push({ input, answer });
    return answer.promise;
  }

  startPendingHover(): void {
    this.startedPending++;
  }

  /** Answer decode `i` with `r` and let the editor finish the commit `done`. */
  async answer(i: number, r: DecodeReply, done: Promise<void>): Promise<void> {
    this.decodes[i]!.answer.resolve(r);
    await done;
  }
}

describe('Editor commits', () => {
  it('refuses edits until an image is ready', async () => {
    const rig = new Rig();
    expect(rig.editor.state.kind).toBe('no-image');
    await rig.editor.click({ x: 10, y: 10 }, 1, 1);
    expect(rig.events).toEqual(['refused']);
    expect(rig.decodes).toHaveLength(0);
    expect(rig.editor.canUndo).toBe(false);
  });

  it('decodes a single click and chooses the best candidate, pending until the reply', async () => {
    const rig = new Rig();
    rig.editor.reset(target);
    expect(rig.editor.state.kind).toBe('idle');
    const done = rig.editor.click({ x: 100, y: 50 }, 1, 7);
    expect(rig.editor.state.kind).toBe('pending');
    const sent = rig.decodes[0]!.input;
    expect(Array.from(sent.coords)).toEqual([8, 4, 0, 0]); // the point in the 16 frame, then padding
    expect(Array.from(sent.labels)).toEqual([1, -1]);
    expect(sent.maskInput).toBeNull();
    await rig.answer(0, reply([0.1, 0.5, 0.9, 0.7]), done);
    const s = rig.editor.state;
    expect(s.kind).toBe('mask');
    expect(rig.editor.mask?.ranked).toEqual([2, 3, 1]);
    expect(rig.editor.mask?.token).toBe(2);
    expect(rig.events).toEqual(['prompts', 'decoded', 'mask:shown']);
    expect(rig.masks).toEqual([['shown', 7]]);
  });

  it('refines with the chosen mask on an added point, not after a box or undo', async () => {
    const rig = new Rig();
    rig.editor.reset(target);
    let done = rig.editor.click({ x: 100, y: 50 }, 1, 1);
    await rig.answer(0, reply([0, 0.2, 0.3, 0.9], 10), done); // best token 3: plane of 13s
    done = rig.editor.click({ x: 20, y: 20 }, 0, 2);
    const fed = rig.decodes[1]!.input;
    expect(Array.from(fed.labels)).toEqual([1, 0, -1]);
    expect(fed.maskInput && Array.from(fed.maskInput)).toEqual(new Array<number>(L * L).fill(13));
    await rig.answer(1, reply([0.4, 0.2, 0.3, 0.9], 20), done);
    expect(rig.editor.mask?.token).toBe(0); // more than one click: the single-mask token
    done = rig.editor.box({ x0: 0, y0: 0, x1: 50, y1: 50 }, 3);
    expect(rig.decodes[2]!.input.maskInput).toBeNull();
    await rig.answer(2, reply([0.4, 0.2, 0.3, 0.9]), done);
    await rig.editor.undo(4); // restores the two-point mask without decoding
    expect(rig.decodes).toHaveLength(3);
    done = rig.editor.click({ x: 30, y: 30 }, 1, 5);
    expect(rig.decodes[3]!.input.maskInput).toBeNull();
    await rig.answer(3, reply([0.4, 0.2, 0.3, 0.9]), done);
  });

  it('undoes and redoes to the exact earlier results, and clears to idle', async () => {
    const rig = new Rig();
    rig.editor.reset(target);
    let done = rig.editor.click({ x: 100, y: 50 }, 1, 1);
    await rig.answer(0, reply([0, 0.2, 0.9, 0.3]), done);
    const first = rig.editor.mask;
    rig.editor.pickRank(2, 2);
    expect(first?.token).toBe(1);
    done = rig.editor.click({ x: 10, y: 10 }, 1, 3);
    await rig.answer(1, reply([0.5, 0.2, 0.9, 0.3]), done);
    await rig.editor.undo(4);
    expect(rig.editor.mask).toBe(first);
    expect(rig.editor.mask?.token).toBe(1); // the pick survives undo
    expect(rig.editor.canRedo).toBe(true);
    await rig.editor.redo(5);
    expect(rig.editor.prompts.points).toHaveLength(2);
    await rig.editor.clear(6);
    expect(rig.editor.state).toEqual({ kind: 'idle', hover: null });
    expect(rig.masks.at(-1)).toEqual(['cleared', 6]);
    await rig.editor.clear(7); // already empty: nothing happens
    expect(rig.masks.at(-1)).toEqual(['cleared', 6]);
    expect(rig.decodes).toHaveLength(2);
  });

  it('removes points and the box as edits', async () => {
    const rig = new Rig();
    rig.editor.reset(target);
    let done = rig.editor.box({ x0: 10, y0: 10, x1: 90, y1: 60 }, 1);
    await rig.answer(0, reply([0.5, 0.1, 0.2, 0.3]), done);
    done = rig.editor.click({ x: 50, y: 30 }, 1, 2);
    await rig.answer(1, reply([0.5, 0.1, 0.2, 0.3]), done);
    done = rig.editor.removeBox(3);
    expect(rig.editor.prompts).toEqual({ points: [{ x: 50, y: 30, label: 1 }], box: null });
    await rig.answer(2, reply([0.5, 0.1, 0.2, 0.3]), done);
    expect(rig.editor.mask?.token).toBe(3); // a single click again: the best candidate
    done = rig.editor.removePoint(0, 4);
    await done;
    expect(rig.editor.state.kind).toBe('idle');
  });

  it('shows only the newest commit when replies arrive out of date', async () => {
    const rig = new Rig();
    rig.editor.reset(target);
    const a = rig.editor.click({ x: 100, y: 50 }, 1, 1);
    const b = rig.editor.click({ x: 10, y: 10 }, 0, 2);
    await rig.answer(1, reply([0.5, 0.1, 0.2, 0.3]), b);
    await rig.answer(0, reply([0.5, 0.1, 0.2, 0.3]), a);
    expect(rig.masks).toEqual([['shown', 2]]);
    expect(rig.editor.prompts.points).toHaveLength(2);
  });

  it('reports a failed decode only while it is current, and drops results after a reset', async () => {
    const rig = new Rig();
    rig.editor.reset(target);
    let done = rig.editor.click({ x: 100, y: 50 }, 1, 1);
    rig.decodes[0]!.answer.reject(new Error('boom'));
    await done;
    expect(rig.errors).toHaveLength(1);
    expect(rig.editor.state.kind).toBe('pending');
    done = rig.editor.click({ x: 10, y: 10 }, 1, 2);
    rig.editor.reset(target); // a new image while decoding
    rig.decodes[1]!.answer.reject(new Error('late'));
    await done;
    expect(rig.errors).toHaveLength(1);
    done = rig.editor.click({ x: 10, y: 10 }, 1, 3);
    rig.editor.reset(null);
    await rig.answer(2, reply([0.5, 0.1, 0.2, 0.3]), done);
    expect(rig.editor.state.kind).toBe('no-image');
    expect(rig.masks).toEqual([]);
  });
});

describe('Editor candidates', () => {
  it('picks by rank and cycles with wrap-around in both directions', async () => {
    const rig = new Rig();
    rig.editor.reset(target);
    expect(rig.editor.cycleToken(false, 0)).toBe(false); // no mask: Tab is not ours
    const done = rig.editor.click({ x: 100, y: 50 }, 1, 1);
    await rig.answer(0, reply([0.0, 0.3, 0.9, 0.6]), done); // ranked [2, 3, 1]
    rig.editor.pickRank(1, 2);
    expect(rig.editor.mask?.token).toBe(3);
    rig.editor.pickRank(5, 3); // no such rank
    expect(rig.editor.mask?.token).toBe(3);
    expect(rig.editor.cycleToken(false, 4)).toBe(true);
    expect(rig.editor.mask?.token).toBe(1);
    rig.editor.cycleToken(false, 5);
    expect(rig.editor.mask?.token).toBe(2);
    rig.editor.cycleToken(true, 6);
    expect(rig.editor.mask?.token).toBe(1);
    rig.editor.pickToken(1, 7); // already shown: no event
    expect(rig.masks.filter(([c]) => c === 'token').map(([, t]) => t)).toEqual([2, 4, 5, 6]);
  });

  it('adopts a given mask as the current one and refines it with the next click', async () => {
    const rig = new Rig();
    rig.editor.reset(target);
    const plane = new Float32Array(L * L).fill(8);
    rig.editor.adopt({ x: 40, y: 20 }, plane, 0.8, 9);
    expect(rig.events).toEqual(['prompts', 'mask:adopted']);
    expect(rig.editor.prompts.points).toEqual([{ x: 40, y: 20, label: 1 }]);
    expect(rig.editor.mask?.iou[0]).toBeCloseTo(0.8);
    const done = rig.editor.click({ x: 60, y: 20 }, 1, 10);
    expect(rig.decodes[0]!.input.maskInput && Array.from(rig.decodes[0]!.input.maskInput)).toEqual(Array.from(plane));
    await rig.answer(0, reply([0.5, 0.1, 0.2, 0.3]), done);
  });

  it('ranks only the tokens the decoder has', () => {
    const r = decodedResult(reply([0.2, 0.9]), tokens, true);
    expect(r.ranked).toEqual([1]);
    expect(r.token).toBe(1);
    expect(decodedResult(reply([0.2]), tokens, true).token).toBe(0);
  });
});

describe('Editor hover', () => {
  it('previews where the pointer rests, only without prompts, and drops stale previews', async () => {
    const rig = new Rig();
    await rig.editor.hoverAt({ x: 10, y: 10 }); // no image yet: nothing
    expect(rig.hovers).toHaveLength(0);
    rig.editor.reset(target);
    const a = rig.editor.hoverAt({ x: 10, y: 10 });
    const b = rig.editor.hoverAt({ x: 20, y: 10 });
    rig.hovers[0]!.answer.resolve(reply([0.1, 0.9, 0.2, 0.3])); // superseded by b
    await a;
    expect(rig.editor.hover).toBeNull();
    rig.hovers[1]!.answer.resolve(reply([0.1, 0.2, 0.2, 0.9]));
    await b;
    expect(rig.editor.state).toMatchObject({ kind: 'idle', hover: { token: 3 } });
    await rig.editor.hoverAt(null);
    expect(rig.editor.hover).toBeNull();
    expect(rig.events).toEqual(['hover', 'hover']);
  });

  it('lets a click where the pointer rested reuse that preview instead of decoding again', async () => {
    const rig = new Rig();
    rig.editor.reset(target);
    const h = rig.editor.hoverAt({ x: 100, y: 50 });
    const done = rig.editor.click({ x: 100.3, y: 50 }, 1, 3);
    expect(rig.startedPending).toBe(1);
    rig.hovers[0]!.answer.resolve(reply([0.1, 0.2, 0.9, 0.3]));
    await h;
    await done;
    expect(rig.decodes).toHaveLength(0);
    expect(rig.editor.mask?.token).toBe(2);
    expect(rig.editor.hover).toBeNull(); // prompts appeared: the preview is not shown
  });

  it('decodes the click itself when the preview was dropped or elsewhere', async () => {
    const rig = new Rig();
    rig.editor.reset(target);
    void rig.editor.hoverAt({ x: 100, y: 50 });
    let done = rig.editor.click({ x: 100, y: 50 }, 1, 3);
    rig.hovers[0]!.answer.resolve(null); // a newer hover or the click replaced it
    await Promise.resolve();
    await Promise.resolve();
    expect(rig.decodes).toHaveLength(1);
    await rig.answer(0, reply([0.1, 0.2, 0.9, 0.3]), done);
    await rig.editor.clear(4);
    void rig.editor.hoverAt({ x: 100, y: 50 });
    done = rig.editor.click({ x: 150, y: 50 }, 1, 5); // elsewhere: no reuse
    expect(rig.startedPending).toBe(1);
    expect(rig.decodes).toHaveLength(2);
    await rig.answer(1, reply([0.1, 0.2, 0.9, 0.3]), done);
  });
});
