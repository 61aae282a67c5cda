// Coordinate frames, and the only place that converts between them.
//
//   original  : pixels of the image after EXIF orientation, (W, H) = original size. Prompts are
//               stored in this frame so they survive re-layout and come out right in exports.
//   display   : CSS pixels of the stage where the image is drawn, scaled uniformly.
//   model     : the resized `image_size` frame (1024 for SAM) the decoder's point_coords live in; the
//               resized image occupies [0, input.w) x [0, input.h) of it, the rest is padding.
//   low-res   : the `low_res_size` (256) square frame of the decoder's mask logits, which covers the
//               whole padded model frame (so only input/4 of it is image).
//
// The model frame scales the two axes separately (new_w / W, new_h / H) exactly as SAM's
// ResizeLongestSide.apply_coords does, so clicks land where the server's encoder put the pixels.

export interface Size {
  readonly w: number;
  readonly h: number;
}

export interface Point {
  readonly x: number;
  readonly y: number;
}

/** Geometry of one encoded image: everything needed to move between frames. */
export interface Geometry {
  /** Original size after EXIF orientation (what the user sees and exports). */
  readonly original: Size;
  /** Size of the resized image inside the model frame (the embedding's input_size). */
  readonly input: Size;
  /** Side of the square model frame (manifest image_size, 1024 for SAM). */
  readonly imageSize: number;
  /** Side of the square low-res mask frame (manifest low_res_size, 256 for SAM). */
  readonly lowResSize: number;
  /**
   * The image was stretched over the whole model frame (manifest resize 'stretch', SAM 2.1; input =
   * image_size x image_size): masks go from the low-res frame straight to the original size in one
   * bilinear resize, not through the model frame.
   */
  readonly stretch?: boolean;
}

/**
 * Size after resizing the long side to `longSide`, rounding as SAM does: int(x * scale + 0.5),
 * never 0 (a very thin image would otherwise lose a side).
 */
export function preprocessShape(h: number, w: number, longSide: number): Size {
  if (!(h > 0 && w > 0 && longSide > 0)) throw new Error(`invalid size ${w}x${h} / long side ${longSide}`);
  const scale = longSide / Math.max(h, w);
  return {
    w: Math.max(1, Math.floor(w * scale + 0.5)),
    h: Math.max(1, Math.floor(h * scale + 0.5)),
  };
}

/**
 * Geometry for an image of `original` size, computing the input size the way the server does
 * (`resize` is the manifest's: 'longest_side' for SAM 1, 'stretch' for SAM 2.1).
 */
export function makeGeometry(original: Size, imageSize: number, lowResSize: number, input?: Size, resize = 'longest_side'): Geometry {
  const stretch = resize === 'stretch';
  return {
    original,
    input: input ?? (stretch ? { w: imageSize, h: imageSize } : preprocessShape(original.h, original.w, imageSize)),
    imageSize,
    lowResSize,
    ...(stretch ? { stretch } : {}),
  };
}

/** original px -> model (1024) frame. */
export function originalToModel(p: Point, g: Geometry): Point {
  return { x: (p.x * g.input.w) / g.original.w, y: (p.y * g.input.h) / g.original.h };
}

/** model (1024) frame -> original px. */
export function modelToOriginal(p: Point, g: Geometry): Point {
  return { x: (p.x * g.original.w) / g.input.w, y: (p.y * g.original.h) / g.input.h };
}

/** model (1024) frame -> low-res (256) frame. */
export function modelToLowRes(p: Point, g: Geometry): Point {
  const s = g.lowResSize / g.imageSize;
  return { x: p.x * s, y: p.y * s };
}

/** low-res (256) frame -> model (1024) frame. */
export function lowResToModel(p: Point, g: Geometry): Point {
  const s = g.imageSize / g.lowResSize;
  return { x: p.x * s, y: p.y * s };
}

/** original px -> low-res (256) frame. */
export function originalToLowRes(p: Point, g: Geometry): Point {
  return modelToLowRes(originalToModel(p, g), g);
}

/**
 * The part of the low-res frame that holds image (not padding): input_size * low_res / image_size.
 * Fractional in general (e.g. 683 / 4); the mask upsampler samples it continuously.
 */
export function lowResImageExtent(g: Geometry): { w: number; h: number } {
  const s = g.lowResSize / g.imageSize;
  return { w: g.input.w * s, h: g.input.h * s };
}

/** Uniform scale that fits `original` inside `box` (never upscales beyond `maxScale`). */
export function fitScale(original: Size, box: Size, maxScale = 1): number {
  return Math.min(box.w / original.w, box.h / original.h, maxScale);
}

/** display px -> original px, for a stage that shows the image at `scale` (display / original). */
export function displayToOriginal(p: Point, scale: number): Point {
  return { x: p.x / scale, y: p.y / scale };
}

/** original px -> display px. */
export function originalToDisplay(p: Point, scale: number): Point {
  return { x: p.x * scale, y: p.y * scale };
}

/** Clamp a point to the original image [0, W] x [0, H]. */
export function clampToImage(p: Point, original: Size): Point {
  return { x: Math.min(Math.max(p.x, 0), original.w), y: Math.min(Math.max(p.y, 0), original.h) };
}
