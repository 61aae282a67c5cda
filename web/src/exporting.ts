// What each export button writes: the current mask or the visible objects as a PNG mask, a cut-out
// or a colour label image, or every mask as COCO JSON (segment-everything's too while shown; each
// kept object in its category, e.g. the label it was found by), in a file named after the image. The encoders themselves are in exporters.ts.

import {
  type ExportKind,
  type ExportObject,
  applyAlpha,
  buildCoco,
  exportFileName,
  labelRgba,
  maskRgba,
  rgbaToPng,
  unionMasks,
} from './exporters';
import type { Size } from './frames';
import type { Rgba } from './mask';
import { CURRENT_COLOR } from './palette';

/** Everything an export may draw from. */
export interface ExportSources {
  readonly imageName: string;
  readonly bitmap: ImageBitmap;
  /** Original size: every mask below is (H, W) 0/1 at it. */
  readonly size: Size;
  readonly current: { readonly mask: Uint8Array; readonly iou: number } | null;
  readonly objects: ReadonlyArray<{
    readonly mask: Uint8Array;
    readonly iou: number;
    readonly name: string;
    readonly color: Rgba;
    readonly visible: boolean;
    /** Its category ('' or absent: none), the COCO category it is exported in. */
    readonly annotation?: { readonly category: string };
  }>;
  /** Segment-everything's masks while they are shown, else empty. */
  readonly everything: ReadonlyArray<{ readonly mask: Uint8Array; readonly iou: number }>;
  readonly model: string;
}

const NOTHING = 'Nothing to export yet: click an object first.';

/** The file for `kind`; throws an Error that says what to do when there is nothing to export. */
export async function exportFile(kind: ExportKind, src: ExportSources): Promise<{ blob: Blob; name: string }> {
  const { size } = src;
  const visible = src.objects.filter((o) => o.visible);
  let blob: Blob;
  if (kind === 'coco') {
    const list: ExportObject[] = src.objects.map((o) => ({ mask: o.mask, score: o.iou, label: o.name, category: o.annotation?.category || null }));
    if (src.current) list.push({ mask: src.current.mask, score: src.current.iou, label: 'current' });
    for (const m of src.everything) list.push({ mask: m.mask, score: m.iou, label: 'everything' });
    if (!list.length) throw new Error(NOTHING);
    blob = new Blob([JSON.stringify(buildCoco(src.imageName, size, list, src.model))], { type: 'application/json' });
  } else if (kind === 'objects') {
    const layers = visible.map((o) => ({ mask: o.mask, color: o.color }));
    if (src.current) layers.push({ mask: src.current.mask, color: CURRENT_COLOR });
    if (!layers.length) throw new Error(NOTHING);
    blob = await rgbaToPng(labelRgba(size, layers), size);
  } else {
    const mask = src.current?.mask ?? (visible.length ? unionMasks(visible.map((o) => o.mask), size.w * size.h) : null);
    if (!mask) throw new Error(NOTHING);
    blob = kind === 'mask' ? await rgbaToPng(maskRgba(mask), size) : await cutout(src.bitmap, mask, size);
  }
  return { blob, name: exportFileName(src.imageName, kind) };
}

/** The image with alpha 0 outside `mask`, as PNG. */
async function cutout(bitmap: ImageBitmap, mask: Uint8Array, size: Size): Promise<Blob> {
  const canvas = new OffscreenCanvas(size.w, size.h);
  const ctx = canvas.getContext('2d');
  if (!ctx) throw new Error('No 2D canvas for the cut-out');
  ctx.drawImage(bitmap, 0, 0);
  const data = ctx.getImageData(0, 0, size.w, size.h);
  applyAlpha(data.data, mask);
  return rgbaToPng(data.data, size);
}
