// Exports: binary mask PNG, cut-out PNG with transparency, colour label PNG, COCO JSON with
// compressed RLE. All masks are (H, W) row-major 0/1 bytes at the original image resolution.

import type { Size } from './frames';
import { type Rgba, maskStats } from './mask';
import { type CocoRle, encodeRle } from './rle';

/** File-name stem from the image name: no folders, no extension, only safe characters. */
export function fileStem(imageName: string): string {
  const base = imageName.split(/[\\/]/).pop() ?? '';
  const noExt = base.replace(/\.[A-Za-z0-9]{1,5}$/, '');
  const safe = noExt
    .normalize('NFKD')
    .replace(/[\u0300-\u036f]/g, '') // drop accents split off by NFKD
    .replace(/[^A-Za-z0-9._-]+/g, '_')
    .replace(/^[._-]+|[._-]+$/g, '')
    .slice(0, 80);
  return safe || 'image';
}

export type ExportKind = 'mask' | 'cutout' | 'objects' | 'coco';

export function exportFileName(imageName: string, kind: ExportKind): string {
  const stem = fileStem(imageName);
  return kind === 'coco' ? `${stem}_coco.json` : `${stem}_${kind}.png`;
}

export interface ExportObject {
  readonly mask: Uint8Array;
  readonly score: number | null;
  readonly label: string;
  /** The COCO category's name (a detection's label, a project's category); none: "object". */
  readonly category?: string | null;
}

/** The category every object without one of its own goes in. */
export const DEFAULT_CATEGORY = 'object';

export interface CocoAnnotation {
  id: number;
  image_id: number;
  category_id: number;
  segmentation: CocoRle;
  area: number;
  bbox: [number, number, number, number];
  iscrowd: 0;
  predicted_iou?: number;
}

export interface CocoFile {
  info: { description: string; model: string };
  images: Array<{ id: number; file_name: string; width: number; height: number }>;
  annotations: CocoAnnotation[];
  categories: Array<{ id: number; name: string }>;
}

/**
 * One COCO file for the image with one annotation per object (RLE, column-major as COCO); the
 * categories are the objects' own, numbered from 1 in the order they first appear.
 */
export function buildCoco(imageName: string, size: Size, objects: readonly ExportObject[], model: string): CocoFile {
  const categoryIds = new Map<string, number>();
  const categoryOf = (o: ExportObject): number => {
    const name = o.category || DEFAULT_CATEGORY;
    let id = categoryIds.get(name);
    if (id === undefined) categoryIds.set(name, (id = categoryIds.size + 1));
    return id;
  };
  const annotations = objects.map((o, i): CocoAnnotation => {
    const stats = maskStats(o.mask, size);
    const a: CocoAnnotation = {
      id: i + 1,
      image_id: 1,
      category_id: categoryOf(o),
      segmentation: encodeRle(o.mask, size),
      area: stats.area,
      bbox: stats.bbox,
      iscrowd: 0,
    };
    if (o.score !== null) a.predicted_iou = Math.round(o.score * 1e4) / 1e4;
    return a;
  });
  return {
    info: { description: 'clicksam masks', model },
    images: [{ id: 1, file_name: imageName.split(/[\\/]/).pop() ?? imageName, width: size.w, height: size.h }],
    annotations,
    categories: categoryIds.size ? [...categoryIds].map(([name, id]) => ({ id, name })) : [{ id: 1, name: DEFAULT_CATEGORY }],
  };
}

/** Union of masks (0/1). */
export function unionMasks(masks: readonly Uint8Array[], pixels: number): Uint8Array {
  const out = new Uint8Array(pixels);
  for (const m of masks) for (let k = 0; k < pixels; k++) if (m[k]) out[k] = 1;
  return out;
}

/** Black/white RGBA pixels of a binary mask (white = object), opaque. */
export function maskRgba(mask: Uint8Array): Uint8ClampedArray<ArrayBuffer> {
  const rgba = new Uint8ClampedArray(mask.length * 4);
  const px = new Uint32Array(rgba.buffer);
  for (let k = 0; k < mask.length; k++) px[k] = mask[k] ? 0xffffffff : 0xff000000;
  return rgba;
}

/** Image pixels with alpha = mask (transparent outside the object). Modifies `rgba` in place. */
export function applyAlpha(rgba: Uint8ClampedArray, mask: Uint8Array): Uint8ClampedArray {
  for (let k = 0; k < mask.length; k++) if (!mask[k]) rgba[4 * k + 3] = 0;
  return rgba;
}

/** Colour label image: each object in its colour on a transparent background. */
export function labelRgba(size: Size, layers: ReadonlyArray<{ mask: Uint8Array; color: Rgba }>): Uint8ClampedArray<ArrayBuffer> {
  const rgba = new Uint8ClampedArray(size.w * size.h * 4);
  for (const { mask, color } of layers) {
    for (let k = 0; k < mask.length; k++) {
      if (!mask[k]) continue;
      rgba[4 * k] = color[0];
      rgba[4 * k + 1] = color[1];
      rgba[4 * k + 2] = color[2];
      rgba[4 * k + 3] = 255;
    }
  }
  return rgba;
}

/** Encode RGBA pixels as a PNG blob (browser only). */
export async function rgbaToPng(rgba: Uint8ClampedArray<ArrayBuffer>, size: Size): Promise<Blob> {
  const canvas = new OffscreenCanvas(size.w, size.h);
  const ctx = canvas.getContext('2d');
  if (!ctx) throw new Error('No 2D canvas context for the export');
  ctx.putImageData(new ImageData(rgba, size.w, size.h), 0, 0);
  return canvas.convertToBlob({ type: 'image/png' });
}

/** Save a blob under `name` through a temporary download link. */
export function download(blob: Blob, name: string): void {
  const url = URL.createObjectURL(blob);
  const a = document.createElement('a');
  a.href = url;
  a.download = name;
  a.style.display = 'none';
  document.body.append(a);
  a.click();
  a.remove();
  // Revoke later: the download starts asynchronously from the URL.
  setTimeout(() => URL.revokeObjectURL(url), 60_000);
}
