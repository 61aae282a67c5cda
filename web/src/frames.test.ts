// Coordinate frames (original, 1024 model input, 256 low-res, display): conversions and round trips.
import { describe, expect, it } from 'vitest';
import {
  displayToOriginal,
  lowResImageExtent,
  lowResToModel,
  makeGeometry,
  modelToLowRes,
  modelToOriginal,
  originalToDisplay,
  originalToLowRes,
  originalToModel,
  preprocessShape,
} from './frames';

describe('preprocessShape', () => {
  it('rounds like SAM: int(x * scale + 0.5)', () => {
    expect(preprocessShape(768, 1024, 1024)).toEqual({ w: 1024, h: 768 });
    expect(preprocessShape(1500, 2250, 1024)).toEqual({ w: 1024, h: 683 }); // 682.67 -> 683
    expect(preprocessShape(3000, 4000, 1024)).toEqual({ w: 1024, h: 768 });
    expect(preprocessShape(4032, 3024, 1024)).toEqual({ w: 768, h: 1024 });
    expect(preprocessShape(333, 500, 1024)).toEqual({ w: 1024, h: 682 }); // 681.98 -> 682
  });
  it('never gives a zero side', () => {
    expect(preprocessShape(1, 5000, 1024)).toEqual({ w: 1024, h: 1 });
  });
  it('rejects empty sizes', () => {
    expect(() => preprocessShape(0, 10, 1024)).toThrow();
  });
});

describe('frame conversions', () => {
  const g = makeGeometry({ w: 2250, h: 1500 }, 1024, 256);
  it('maps corners of the image to the input extent of the model frame', () => {
    expect(originalToModel({ x: 2250, y: 1500 }, g)).toEqual({ x: 1024, y: 683 });
    expect(originalToModel({ x: 0, y: 0 }, g)).toEqual({ x: 0, y: 0 });
  });
  it('scales axes separately like ResizeLongestSide.apply_coords', () => {
    const p = originalToModel({ x: 1125, y: 750 }, g);
    expect(p.x).toBeCloseTo(512, 10);
    expect(p.y).toBeCloseTo(341.5, 10);
  });
  it('round-trips original <-> model <-> low-res <-> display', () => {
    for (const p of [
      { x: 0, y: 0 },
      { x: 17.25, y: 1499.5 },
      { x: 2249, y: 3 },
      { x: 1000.1, y: 777.7 },
    ]) {
      const m = originalToModel(p, g);
      const back = modelToOriginal(m, g);
      expect(back.x).toBeCloseTo(p.x, 9);
      expect(back.y).toBeCloseTo(p.y, 9);
      const lr = modelToLowRes(m, g);
      const m2 = lowResToModel(lr, g);
      expect(m2.x).toBeCloseTo(m.x, 9);
      expect(m2.y).toBeCloseTo(m.y, 9);
      expect(originalToLowRes(p, g).x).toBeCloseTo(lr.x, 9);
      const d = originalToDisplay(p, 0.37);
      const o = displayToOriginal(d, 0.37);
      expect(o.x).toBeCloseTo(p.x, 9);
      expect(o.y).toBeCloseTo(p.y, 9);
    }
  });
  it('gives the image part of the low-res frame as input / 4', () => {
    expect(lowResImageExtent(g)).toEqual({ w: 256, h: 683 / 4 });
  });
  it('accepts the server input size for a browser-downscaled upload', () => {
    // original 8000x6000 uploaded at 2000x1500: the server reports input 1024x768
    const g2 = makeGeometry({ w: 8000, h: 6000 }, 1024, 256, { w: 1024, h: 768 });
    expect(originalToModel({ x: 8000, y: 6000 }, g2)).toEqual({ x: 1024, y: 768 });
  });
});
