// Tests of detections as proposals (detections.ts): the query text, the exemplar box, and the
// in-browser decode of each detected box as a SAM box prompt (feeds in the model frame, the
// single-mask token, masks at the original size, stale runs stopped, empty masks left out).
import { describe, expect, it } from 'vitest';
import type { DecodeInput } from './decoder';
import type { Detection } from './detect_api';
import { type DetectionProposal, boxCaption, categoryFor, decodeDetections, exemplarBox, parseQuery, sameBox, samBoxDecoder } from './detections';
import { makeGeometry } from './frames';
import { EMPTY, LABEL, addPoint, setBox } from './prompts';
import type { DecodeReply } from './protocol';

const L = 4;
const geom = makeGeometry({ w: 200, h: 100 }, 16, L); // model frame 16 (x 0.08 px/px), input 16x8
const target = { geom, tokens: { multiTokens: [1, 2, 3], singleToken: 0 } };

/** A decoder whose single-mask token (0) is foreground in the low-res cells the box covers. */
class BoxDecoderRig {
  readonly inputs: DecodeInput[] = [];
  async decode(input: DecodeInput): Promise<DecodeReply> {
    this.inputs.push(input);
    const lowRes = new Float32Array(4 * L * L).fill(-10);
    // the box corners in the model frame -> low-res cells (L / imageSize per model px)
    const [x0, y0, x1, y1] = [input.coords[0]!, input.coords[1]!, input.coords[2]!, input.coords[3]!].map((v) => (v * L) / 16);
    for (let y = Math.floor(y0!); y < Math.ceil(y1!); y++) for (let x = Math.floor(x0!); x < Math.ceil(x1!); x++) lowRes[y * L + x] = 10;
    await Promise.resolve();
    return { type: 'decoded', id: 0, lowRes, iou: Float32Array.of(0.5, 0.9, 0.8, 0.7), tokens: 4, runMs: 1, runStart: 0, backend: 'wasm', threads: 1 };
  }
}

describe('query text', () => {
  it('splits on commas, trims, and drops blanks and repeats (case-insensitive)', () => {
    expect(parseQuery(' dog,  red   car ,, Dog,cat ')).toEqual(['dog', 'red car', 'cat']);
    expect(parseQuery(' , ')).toEqual([]);
  });

  it('captions a box with its label and score', () => {
    expect(boxCaption({ label: 'dog', score: 0.4217 })).toBe('dog 0.42');
  });
});

describe('category of a kept detection', () => {
  it('is the label on the one-image page, the project category of that name, else the picked one', () => {
    expect(categoryFor('red car', null, '')).toBe('red car');
    expect(categoryFor('Dog', ['cat', 'dog'], 'cat')).toBe('dog');
    expect(categoryFor('exemplar', ['cat', 'dog'], 'cat')).toBe('cat');
  });
});

describe('exemplar box', () => {
  const size = { w: 6, h: 4 };
  it('is the drawn box when there is one', () => {
    const prompts = setBox(EMPTY, { x0: 1, y0: 2, x1: 3.5, y1: 4 });
    expect(exemplarBox(prompts, new Uint8Array(24).fill(1), size)).toEqual([1, 2, 3.5, 4]);
  });

  it("else the current mask's bounding box in pixel edges, else none", () => {
    const mask = new Uint8Array(24);
    mask[1 * 6 + 2] = 1;
    mask[2 * 6 + 4] = 1;
    const prompts = addPoint(EMPTY, { x: 2, y: 1, label: LABEL.foreground });
    expect(exemplarBox(prompts, mask, size)).toEqual([2, 1, 5, 3]);
    expect(exemplarBox(prompts, new Uint8Array(24), size)).toBeNull();
    expect(exemplarBox(EMPTY, null, size)).toBeNull();
  });
});

describe('decoding detections in the browser', () => {
  const dets: Detection[] = [
    { label: 'dog', box: [0, 0, 100, 50], score: 0.9 },
    { label: 'cat', box: [100, 50, 200, 100], score: 0.5 },
  ];

  it('decodes each box as a SAM box prompt into a mask at the original size', async () => {
    const rig = new BoxDecoderRig();
    const got: DetectionProposal[] = [];
    const n = await decodeDetections(dets, samBoxDecoder(rig, target, 0), (p) => got.push(p), { firstId: 7, alive: () => true });
    expect(n).toBe(2);
    // the feeds: the two corners labelled 2 and 3 in the model frame, no padding point, no mask input
    expect(Array.from(rig.inputs[0]!.coords)).toEqual([0, 0, 8, 4]);
    expect(Array.from(rig.inputs[0]!.labels)).toEqual([LABEL.boxTopLeft, LABEL.boxBottomRight]);
    expect(rig.inputs[0]!.maskInput).toBeNull();
    expect(got.map((p) => [p.id, p.label, p.score])).toEqual([
      [7, 'dog', 0.9],
      [8, 'cat', 0.5],
    ]);
    const dog = got[0]!;
    expect(dog.box).toEqual({ x0: 0, y0: 0, x1: 100, y1: 50 });
    expect(dog.point).toEqual({ x: 50, y: 25 });
    expect(dog.mask.length).toBe(200 * 100);
    // the single-mask token: the top-left quarter of the image (logits 10 there, -10 elsewhere)
    expect(dog.mask[10 * 200 + 10]).toBe(1);
    expect(dog.mask[80 * 200 + 150]).toBe(0);
    expect(dog.area).toBeGreaterThan(0.2 * 200 * 100);
    expect(dog.area).toBeLessThan(0.3 * 200 * 100);
    expect(got[1]!.mask[80 * 200 + 150]).toBe(1);
  });

  it('stops when the run is stale and leaves out empty masks', async () => {
    const rig = new BoxDecoderRig();
    let alive = true;
    const got: DetectionProposal[] = [];
    const decode = samBoxDecoder(rig, target, 0);
    await decodeDetections(dets, decode, (p) => {
      got.push(p);
      alive = false; // a new query came while the first was decoded
    }, { firstId: 1, alive: () => alive });
    expect(got.map((p) => p.label)).toEqual(['dog']);
    expect(rig.inputs).toHaveLength(1);
    const empty = await decodeDetections(dets, () => Promise.resolve({ mask: new Uint8Array(200 * 100), iou: 0.1 }), () => expect.fail('no proposal for an empty mask'), { firstId: 1, alive: () => true });
    expect(empty).toBe(0);
  });

  it('matches boxes to within half a pixel', () => {
    expect(sameBox({ x0: 1, y0: 2, x1: 3, y1: 4 }, { x0: 1.4, y0: 2, x1: 3, y1: 3.6 })).toBe(true);
    expect(sameBox({ x0: 1, y0: 2, x1: 3, y1: 4 }, { x0: 1.6, y0: 2, x1: 3, y1: 4 })).toBe(false);
  });
});
