// Export encoders: file names, COCO JSON, mask / cut-out / union pixels.
import { describe, expect, it } from 'vitest';
import { applyAlpha, buildCoco, exportFileName, fileStem, maskRgba, unionMasks } from './exporters';
import { decodeRle } from './rle';

describe('file names', () => {
  it('derives safe names from the image name', () => {
    expect(fileStem('IMG_2041.JPG')).toBe('IMG_2041');
    expect(fileStem('../../etc/passwd')).toBe('passwd');
    expect(fileStem('C:\\photos\\my cat (1).jpeg')).toBe('my_cat_1');
    expect(fileStem('Ünïcödé.png')).toBe('Unicode');
    expect(fileStem('...')).toBe('image');
    expect(fileStem('')).toBe('image');
    expect(exportFileName('cat.png', 'mask')).toBe('cat_mask.png');
    expect(exportFileName('cat.png', 'cutout')).toBe('cat_cutout.png');
    expect(exportFileName('cat.png', 'coco')).toBe('cat_coco.json');
  });
});

describe('COCO export', () => {
  it('writes RLE that decodes back to each mask, with area and bbox', () => {
    const size = { w: 4, h: 3 };
    const a = Uint8Array.from([0, 1, 1, 0, 0, 1, 1, 0, 0, 0, 0, 0]);
    const b = Uint8Array.from([0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]);
    const coco = buildCoco('dir/cat.png', size, [
      { mask: a, score: 0.91234, label: 'object 1' },
      { mask: b, score: null, label: 'object 2' },
    ], 'vit_test');
    expect(coco.images).toEqual([{ id: 1, file_name: 'cat.png', width: 4, height: 3 }]);
    expect(coco.annotations).toHaveLength(2);
    const [ann0, ann1] = coco.annotations;
    expect(ann0!.segmentation.size).toEqual([3, 4]);
    expect(Array.from(decodeRle(ann0!.segmentation))).toEqual(Array.from(a));
    expect(ann0!.area).toBe(4);
    expect(ann0!.bbox).toEqual([1, 0, 2, 2]);
    expect(ann0!.predicted_iou).toBe(0.9123);
    expect(ann1!.bbox).toEqual([3, 2, 1, 1]);
    expect(ann1!.predicted_iou).toBeUndefined();
  });
});

describe('COCO categories', () => {
  const size = { w: 2, h: 1 };
  const m = Uint8Array.from([1, 0]);
  it('are the objects own (a found label), numbered in order of appearance; none: "object"', () => {
    const coco = buildCoco('a.png', size, [
      { mask: m, score: 0.5, label: 'Object 1', category: 'dog' },
      { mask: m, score: 0.5, label: 'current' },
      { mask: m, score: 0.5, label: 'Object 2', category: 'dog' },
      { mask: m, score: 0.5, label: 'Object 3', category: 'red car' },
    ], 'vit_test');
    expect(coco.categories).toEqual([
      { id: 1, name: 'dog' },
      { id: 2, name: 'object' },
      { id: 3, name: 'red car' },
    ]);
    expect(coco.annotations.map((a) => a.category_id)).toEqual([1, 2, 1, 3]);
  });

  it('is the single "object" category when nothing has one', () => {
    const coco = buildCoco('a.png', size, [{ mask: m, score: null, label: 'Object 1', category: '' }], 'vit_test');
    expect(coco.categories).toEqual([{ id: 1, name: 'object' }]);
    expect(coco.annotations[0]!.category_id).toBe(1);
  });
});

describe('pixels', () => {
  it('unions masks, paints black/white and cuts out with alpha', () => {
    const u = unionMasks([Uint8Array.from([1, 0, 0]), Uint8Array.from([0, 0, 1])], 3);
    expect(Array.from(u)).toEqual([1, 0, 1]);
    expect(Array.from(maskRgba(u))).toEqual([255, 255, 255, 255, 0, 0, 0, 255, 255, 255, 255, 255]);
    const img = new Uint8ClampedArray([10, 20, 30, 255, 40, 50, 60, 255, 70, 80, 90, 255]);
    expect(Array.from(applyAlpha(img, u))).toEqual([10, 20, 30, 255, 40, 50, 60, 0, 70, 80, 90, 255]);
  });
});
