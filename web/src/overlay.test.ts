// The overlay composer against painting every layer in order over transparent pixels, through a
// sequence of paints that keeps, changes, adds and drops the static layers (its cache must follow).
import { describe, expect, it } from 'vitest';
import type { Size } from './frames';
import type { Rgba } from './mask';
import { type Layer, OverlayComposer } from './overlay';

const SIZE: Size = { w: 7, h: 5 };

function randomMask(seed: number): Uint8Array {
  let s = seed;
  return Uint8Array.from({ length: SIZE.w * SIZE.h }, () => {
    s = (s * 1103515245 + 12345) % 2147483648;
    return s % 3 === 0 ? 1 : 0;
  });
}

/** Reference: every layer in order, later over earlier, on transparent RGBA bytes. */
function reference(layers: readonly Layer[], under: Uint8ClampedArray | null): Uint8ClampedArray {
  const out = under ? Uint8ClampedArray.from(under) : new Uint8ClampedArray(4 * SIZE.w * SIZE.h);
  for (const { mask, color } of layers) for (let k = 0; k < mask.length; k++) if (mask[k]) out.set(color, 4 * k);
  return out;
}

const red: Rgba = [255, 0, 0, 130];
const green: Rgba = [0, 255, 0, 130];
const blue: Rgba = [0, 0, 255, 150];

describe('OverlayComposer', () => {
  it('equals painting all layers in order, paint after paint', () => {
    const c = new OverlayComposer();
    const a: Layer = { mask: randomMask(1), color: red };
    const b: Layer = { mask: randomMask(2), color: green };
    const steps: Array<[Layer[], Layer | null]> = [
      [[], { mask: randomMask(3), color: blue }], // a first click, no kept objects
      [[a], { mask: randomMask(4), color: blue }],
      [[a], { mask: randomMask(5), color: blue }], // same kept layers, new click
      [[a], null],
      [[a, b], { mask: randomMask(6), color: blue }], // one more kept object
      [[a, { mask: b.mask, color: blue }], null], // same mask, other colour
      [[b], { mask: randomMask(7), color: blue }], // one dropped
      [[{ mask: randomMask(8), color: red }], null], // same colour, new mask array
    ];
    for (const [layers, top] of steps) {
      const got = c.compose(SIZE, layers, top, null);
      expect(got && Array.from(got)).toEqual(Array.from(reference(top ? [...layers, top] : layers, null)));
    }
    expect(c.compose(SIZE, [], null, null)).toBeNull();
  });

  it('paints over the segment-everything pixels in place', () => {
    const under = Uint8ClampedArray.from({ length: 4 * SIZE.w * SIZE.h }, (_, i) => (i * 37) % 256);
    const layers: Layer[] = [{ mask: randomMask(9), color: red }];
    const top: Layer = { mask: randomMask(10), color: blue };
    const want = reference([...layers, top], under);
    const got = new OverlayComposer().compose(SIZE, layers, top, under);
    expect(got).toBe(under);
    expect(Array.from(got!)).toEqual(Array.from(want));
  });
});
