// The page's mask colours: the current mask, the hover preview, and the cycle of colours for kept
// objects and segment-everything masks.

import type { Rgba } from './mask';

export const CURRENT_COLOR: Rgba = [61, 139, 253, 140];
export const HOVER_COLOR: Rgba = [255, 255, 255, 90];

const PALETTE: ReadonlyArray<readonly [number, number, number]> = [
  [230, 25, 75], [60, 180, 75], [255, 225, 25], [245, 130, 48], [145, 30, 180],
  [70, 240, 240], [240, 50, 230], [210, 245, 60], [0, 128, 128], [170, 110, 40],
];

/** The `index`-th palette colour (cycling) with the given alpha. */
export function paletteColor(index: number, alpha: number): Rgba {
  const c = PALETTE[index % PALETTE.length]!;
  return [c[0], c[1], c[2], alpha];
}
