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

// Span of low-res indices [lo, hi] with a non-zero weight, per output index.
function tapSpan(t, n) {
  const lo = new Int32Array(n), hi = new Int32Array(n);
  for (let x = 0; x < n; x++) {
    let a = Infinity, b = -Infinity;
    for (let k = 3 * x; k < 3 * x + 3; k++) if (t.wt[k] !== 0) { a = Math.min(a, t.idx[k]); b = Math.max(b, t.idx[k]); }
    if (a === Infinity) { a = t.idx[3 * x]; b = a; }
    lo[x] = a; hi[x] = b;
  }
  return { lo, hi };
}

// Upsample + threshold one low-res plane into a W x H pixel buffer.
// Every output value is a convex combination (non-negative weights summing to 1) of the low-res
// values in its tap window, so where the whole window is above (or not above) the threshold the
// pixels are decided without arithmetic: output columns with the same window form segments that
// are filled at once; only segments whose window straddles the threshold are computed per pixel.
// (W, H) is the output grid; (origW, origH), the original image size, defaults to it. A smaller
// output grid (the display size) samples the same upsampled mask as SAM's full-size one, at fewer points.
export function makeUpsampler(W, H, imageSize, lowRes, origW = W, origH = H) {
  const scale = imageSize / Math.max(origW, origH);
  const cropW = Math.max(1, Math.floor(origW * scale + 0.5)), cropH = Math.max(1, Math.floor(origH * scale + 0.5));
  const tx = axisTaps(W, cropW, lowRes, imageSize), ty = axisTaps(H, cropH, lowRes, imageSize);
  const sx = tapSpan(tx, W), sy = tapSpan(ty, H);
  // column segments [x0, x1) with one window [c0, c1]
  const seg = [];
  for (let x = 0; x < W; x++) {
    if (x === 0 || sx.lo[x] !== sx.lo[x - 1] || sx.hi[x] !== sx.hi[x - 1]) seg.push([x, x + 1, sx.lo[x], sx.hi[x]]);
    else seg[seg.length - 1][1] = x + 1;
  }
  const segX0 = Int32Array.from(seg, (s) => s[0]), segX1 = Int32Array.from(seg, (s) => s[1]);
  const segC0 = Int32Array.from(seg, (s) => s[2]), segC1 = Int32Array.from(seg, (s) => s[3]);
  let maxRow = 0;
  for (let i = 0; i < ty.idx.length; i++) maxRow = Math.max(maxRow, ty.idx[i]); // zero-weight taps too
  const rows = new Float32Array((maxRow + 1) * W); // horizontally resampled low-res rows (lazy)
  const rowDone = new Uint8Array(maxRow + 1);
  const colState = new Int8Array(lowRes); // per low-res column over the current row window: 1 all on, -1 all off, 0 mixed
  const L = lowRes;

  return function upsample(low, px, color, thr) {
    rowDone.fill(0);
    const hrow = (r) => {
      if (rowDone[r]) return;
      rowDone[r] = 1;
      const src = r * L, dst = r * W;
      for (let x = 0; x < W; x++) {
        const k = 3 * x;
        rows[dst + x] = tx.wt[k] * low[src + tx.idx[k]] + tx.wt[k + 1] * low[src + tx.idx[k + 1]] + tx.wt[k + 2] * low[src + tx.idx[k + 2]];
      }
    };
    let on = 0, prevLo = -1, prevHi = -1, mixed = 0;
    for (let y = 0; y < H; y++) {
      const rlo = sy.lo[y], rhi = sy.hi[y], o = y * W;
      if (rlo !== prevLo || rhi !== prevHi) {
        mixed = 0;
        for (let c = 0; c < L; c++) {
          let allOn = true, allOff = true;
          for (let r = rlo; r <= rhi; r++) { if (low[r * L + c] > thr) allOff = false; else allOn = false; }
          colState[c] = allOn ? 1 : allOff ? -1 : 0;
          if (!allOn && !allOff) mixed++;
        }
        prevLo = rlo; prevHi = rhi;
      }
      const k = 3 * y;
      const w0 = ty.wt[k], w1 = ty.wt[k + 1], w2 = ty.wt[k + 2];
      const i0 = ty.idx[k], i1 = ty.idx[k + 1], i2 = ty.idx[k + 2];
      if (8 * mixed > L) {
        // a fragmented row (many boundaries): one tight pass over all pixels beats the segment logic
        hrow(i0); hrow(i1); hrow(i2);
        const r0 = i0 * W, r1 = i1 * W, r2 = i2 * W;
        for (let x = 0; x < W; x++) {
          if (w0 * rows[r0 + x] + w1 * rows[r1 + x] + w2 * rows[r2 + x] > thr) { px[o + x] = color; on++; } else px[o + x] = 0;
        }
        continue;
      }
      // runs of decided segments are filled with one call (fill() per segment costs more than it saves)
      let runStart = 0, runState = 0;
      const flush = (end) => {
        if (runState === 1) { px.fill(color, o + runStart, o + end); on += end - runStart; }
        else if (runState === -1) px.fill(0, o + runStart, o + end);
      };
      for (let s = 0; s < segX0.length; s++) {
        let st = colState[segC0[s]];
        for (let c = segC0[s] + 1; c <= segC1[s] && st !== 0; c++) if (colState[c] !== st) st = 0;
        const x0 = segX0[s], x1 = segX1[s];
        if (st !== 0) {
          if (st !== runState) { flush(x0); runStart = x0; runState = st; }
          continue;
        }
        flush(x0); runState = 0;
        hrow(i0); hrow(i1); hrow(i2);
        const r0 = i0 * W, r1 = i1 * W, r2 = i2 * W;
        for (let x = x0; x < x1; x++) {
          const v = w0 * rows[r0 + x] + w1 * rows[r1 + x] + w2 * rows[r2 + x];
          if (v > thr) { px[o + x] = color; on++; } else px[o + x] = 0;
        }
      }
      flush(W);
    }
    return on;
  };
}
