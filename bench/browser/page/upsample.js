// Page-side mask postprocessing shared by the benchmark page and its node test.
// Page-side postprocessing of a low-res mask, equal to SAM's postprocess_masks followed by a
// threshold: bilinear 256 -> 1024 (align_corners=False), crop to the resized image, bilinear to the
// original size. Both stages are linear per axis, so each output column/row is a fixed combination
// of at most 3 low-res columns/rows: precompute those taps once per image size.
export function axisTaps(out, crop, low, side) {
  const idx = new Int32Array(3 * out), wt = new Float32Array(3 * out);
  const s1 = low / side, s2 = crop / out;
  for (let x = 0; x < out; x++) {
    let p = (x + 0.5) * s2 - 0.5; if (p < 0) p = 0;
    const j0 = Math.floor(p), j1 = Math.min(j0 + 1, crop - 1), f = p - j0;
    const acc = new Map();
    for (const [j, wj] of [[j0, 1 - f], [j1, f]]) {
      let r = (j + 0.5) * s1 - 0.5; if (r < 0) r = 0;
      const a0 = Math.floor(r), a1 = Math.min(a0 + 1, low - 1), g = r - a0;
      acc.set(a0, (acc.get(a0) || 0) + wj * (1 - g));
      acc.set(a1, (acc.get(a1) || 0) + wj * g);
    }
    const taps = [...acc.entries()].sort((u, v) => u[0] - v[0]);
    for (let k = 0; k < 3; k++) {
      idx[3 * x + k] = k < taps.length ? taps[k][0] : taps[0][0];
      wt[3 * x + k] = k < taps.length ? taps[k][1] : 0;
    }
  }
  return { idx, wt };
}

export function makeUpsampler(W, H, imageSize, lowRes) {
  const scale = imageSize / Math.max(W, H);
  const cropW = Math.max(1, Math.floor(W * scale + 0.5)), cropH = Math.max(1, Math.floor(H * scale + 0.5));
  const tx = axisTaps(W, cropW, lowRes, imageSize), ty = axisTaps(H, cropH, lowRes, imageSize);
  let maxRow = 0;
  for (let i = 0; i < ty.idx.length; i++) if (ty.wt[i] !== 0 && ty.idx[i] > maxRow) maxRow = ty.idx[i];
  const rows = new Float32Array((maxRow + 1) * W); // horizontally resampled low-res rows
  // low: Float32Array view of one 256x256 plane; write(y, x0, v) via the callback-free loops below
  return function upsample(low, px, color, thr) {
    const L = lowRes;
    for (let r = 0; r <= maxRow; r++) {
      const src = r * L, dst = r * W;
      for (let x = 0; x < W; x++) {
        const k = 3 * x;
        rows[dst + x] = tx.wt[k] * low[src + tx.idx[k]] + tx.wt[k + 1] * low[src + tx.idx[k + 1]] + tx.wt[k + 2] * low[src + tx.idx[k + 2]];
      }
    }
    let on = 0;
    for (let y = 0; y < H; y++) {
      const k = 3 * y, o = y * W;
      const r0 = ty.idx[k] * W, r1 = ty.idx[k + 1] * W, r2 = ty.idx[k + 2] * W;
      const w0 = ty.wt[k], w1 = ty.wt[k + 1], w2 = ty.wt[k + 2];
      if (w2 === 0) {
        for (let x = 0; x < W; x++) {
          const v = w0 * rows[r0 + x] + w1 * rows[r1 + x];
          if (v > thr) { px[o + x] = color; on++; } else px[o + x] = 0;
        }
      } else {
        for (let x = 0; x < W; x++) {
          const v = w0 * rows[r0 + x] + w1 * rows[r1 + x] + w2 * rows[r2 + x];
          if (v > thr) { px[o + x] = color; on++; } else px[o + x] = 0;
        }
      }
    }
    return on;
  };
}

