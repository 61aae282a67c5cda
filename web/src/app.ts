// The page controller: image loading, prompts and their history, decoding, candidates, objects and
// exports. UI modules draw and report input; this module decides.

import { ApiError, EVERYTHING_OPTIONS, type EmbeddingMeta, type ServerConfig, embeddingUrl, getConfig, getManifestJson, postEmbedding, postEverything } from './api';
import { DecoderClient } from './decoder';
import type { DecodeReply } from './protocol';
import { type Geometry, type Point, type Size, makeGeometry, preprocessShape } from './frames';
import { type DecoderManifest, type DecoderVariant, embeddingDtype, embeddingMismatch, parseManifest, serverMismatch } from './manifest';
import { type Rgba, labelMap, logitsToMask, maskStats, maskToLowResLogits, paintLabels, paintLayers, paintOver, resampleNearest, tokenPlane } from './mask';
import { decodeRle } from './rle';
import { EMPTY, History, LABEL, type PromptBox, type PromptState, addPoint, isEmpty, isSingleClick, promptToFeeds, removePoint, setBox } from './prompts';
import {
  type ExportKind,
  type ExportObject,
  applyAlpha,
  buildCoco,
  download,
  exportFileName,
  labelRgba,
  maskRgba,
  rgbaToPng,
  unionMasks,
} from './exporters';
import { Candidates } from './ui/candidates';
import { Help } from './ui/help';
import { ObjectsList } from './ui/objects';
import { Stage } from './ui/stage';
import { StatusBar } from './ui/status';

/** Name of the page's click-to-mask latency entries (performance.getEntriesByName). */
export const CLICK_MEASURE = 'clicksam:click-to-mask';
/** Name of the overlay painting entries (main thread). */
export const PAINT_MEASURE = 'clicksam:paint';

const CURRENT_COLOR: Rgba = [61, 139, 253, 140];
const HOVER_COLOR: Rgba = [255, 255, 255, 90];
const PALETTE: ReadonlyArray<readonly [number, number, number]> = [
  [230, 25, 75], [60, 180, 75], [255, 225, 25], [245, 130, 48], [145, 30, 180],
  [70, 240, 240], [240, 50, 230], [210, 245, 60], [0, 128, 128], [170, 110, 40],
];
const THUMB_LONG_SIDE = 120;

/** One decoder result: all mask tokens' low-res logits and the chosen token. */
interface Decoded {
  readonly lowRes: Float32Array;
  readonly iou: Float32Array;
  /** Multimask tokens sorted by predicted IoU, best first. */
  readonly ranked: readonly number[];
  token: number;
}

/** A history entry: the prompts and, once decoded, their result (so undo restores it exactly). */
interface Snapshot {
  readonly prompts: PromptState;
  result: Decoded | null;
}

interface LoadedImage {
  readonly name: string;
  /** What was sent to the server (the file, or its downscaled copy). */
  readonly upload: { readonly blob: Blob; readonly name: string };
  readonly bitmap: ImageBitmap;
  readonly meta: EmbeddingMeta;
  readonly geom: Geometry;
}

interface EverythingMask {
  /** (H, W) 0/1 at the original resolution. */
  readonly mask: Uint8Array;
  readonly area: number;
  readonly iou: number;
  /** The grid point that produced it, original px. */
  readonly point: Point;
  readonly color: Rgba;
}

interface Everything {
  readonly masks: EverythingMask[];
  /** Original-size label map (index of the smallest mask per pixel, -1 none). */
  readonly labels: Int32Array;
  display: { size: Size; labels: Int32Array } | null;
  hover: number;
}

interface SavedObject {
  readonly id: number;
  readonly name: string;
  readonly color: Rgba;
  visible: boolean;
  /** (L, L) low-res logits of the chosen token. */
  readonly logits: Float32Array;
  /** (H, W) 0/1 mask at the original resolution. */
  readonly mask: Uint8Array;
  readonly area: number;
  readonly iou: number;
  displayCache: { size: Size; mask: Uint8Array } | null;
}

export interface AppElements {
  readonly imageInput: HTMLInputElement;
  readonly stage: HTMLElement;
  readonly candidates: HTMLElement;
  readonly objects: HTMLElement;
  readonly status: HTMLElement;
  readonly error: HTMLElement;
  readonly notice: HTMLElement;
  readonly help: HTMLButtonElement;
  readonly helpOverlay: HTMLElement;
  readonly buttons: Readonly<Record<'undo' | 'redo' | 'clear' | 'accept' | 'modeToggle' | 'exportPng' | 'exportCutout' | 'exportObjects' | 'exportCoco' | 'everything', HTMLButtonElement>>;
}

export class App {
  private readonly decoder = new DecoderClient();
  private readonly stage: Stage;
  private readonly candidates: Candidates;
  private readonly objectsList: ObjectsList;
  private readonly bar: StatusBar;
  private readonly help: Help;
  private config: ServerConfig | null = null;
  private manifest: DecoderManifest | null = null;
  private variant: DecoderVariant | null = null;
  private backend = '';
  private decoderReady = false;
  private image: LoadedImage | null = null;
  private embeddingReady = false;
  private loadSeq = 0;
  private readonly history = new History<Snapshot>({ prompts: EMPTY, result: null });
  private commitSeq = 0;
  /** Feed the current mask's logits on the next added point (reset by undo, box, clear...). */
  private refine = false;
  private hover: Decoded | null = null;
  private hoverSeq = 0;
  /** The last hover decode (started or finished) and its point: a click there reuses it. */
  private hoverAtPoint: { p: Point; reply: Promise<DecodeReply | null> } | null = null;
  private objects: SavedObject[] = [];
  private nextObjectId = 1;
  private pendingMeasures: number[] = [];
  private paintFrame = 0;
  private lastDecodeMs: number | null = null;
  private decodeCount = 0;
  private imagesLoaded = 0;
  private lastExport: { name: string; bytes: number } | null = null;
  /** Segment-everything result for the current image, and whether it is shown. */
  private everything: Everything | null = null;
  private everythingShown = false;
  private everythingBusy = false;

  constructor(private readonly els: AppElements) {
    this.bar = new StatusBar(els.status, els.error);
    this.stage = new Stage(els.stage, {
      onPoint: (p, label, t) => this.addPoint(p, label, t),
      onBox: (box, t) => this.setBox(box, t),
      onRemovePoint: (i, t) => this.edit(removePoint(this.prompts, i), t),
      onRemoveBox: (t) => this.edit(setBox(this.prompts, null), t),
      onHover: (p) => void this.hoverAt(p),
    });
    this.stage.onResize = () => this.schedulePaint();
    this.candidates = new Candidates(els.candidates, (token) => this.pickToken(token, performance.now()));
    this.objectsList = new ObjectsList(els.objects, {
      onToggle: (id) => this.toggleObject(id),
      onDelete: (id) => this.deleteObject(id),
    });
    this.help = new Help(els.help, els.helpOverlay);
    this.wire();
  }

  private get prompts(): PromptState {
    return this.history.current.prompts;
  }

  // ---------------------------------------------------------------- start-up

  async start(opts: { forceWasm: boolean; variant: string | null }): Promise<void> {
    try {
      this.config = await getConfig();
      if (this.config.notice) {
        this.els.notice.textContent = this.config.notice;
        this.els.notice.hidden = false;
      }
      this.manifest = parseManifest(await getManifestJson(this.config.decoder_manifest));
      const mismatch = serverMismatch(this.manifest, this.config);
      if (mismatch) throw new Error(mismatch);
      const name = opts.variant ?? this.manifest.defaultVariant;
      const variant = this.manifest.variants.get(name);
      if (!variant) throw new Error(`The decoder has no variant "${name}"`);
      this.variant = variant;
      const manifestUrl = new URL(this.config.decoder_manifest, document.baseURI);
      this.bar.status(`Loading the ${this.manifest.model} decoder…`);
      const ready = await this.decoder.init({
        modelUrl: new URL(variant.file, manifestUrl).href,
        prepUrl: variant.prep ? new URL(variant.prep.file, manifestUrl).href : null,
        ortBase: new URL('ort/', document.baseURI).href,
        embeddingDtype: embeddingDtype(variant),
        lowResSize: this.manifest.lowResSize,
        forceWasm: opts.forceWasm,
      });
      this.backend = ready.backend === 'webgpu' ? 'WebGPU' : `WASM ×${ready.threads}`;
      this.decoderReady = true;
      this.updateStatus(this.image ? undefined : 'Ready: open, drop or paste an image.');
    } catch (e) {
      this.showError(e);
      this.bar.status('The page could not start: see the message above.');
    }
    this.updateButtons();
  }

  // ---------------------------------------------------------------- image in

  private wire(): void {
    this.els.imageInput.addEventListener('change', () => {
      const f = this.els.imageInput.files?.[0];
      if (f) void this.loadImage(f, f.name);
      this.els.imageInput.value = ''; // choosing the same file again still fires change
    });
    const stage = this.els.stage;
    document.addEventListener('dragover', (e) => {
      e.preventDefault();
      stage.classList.add('drop');
    });
    document.addEventListener('dragleave', () => stage.classList.remove('drop'));
    document.addEventListener('drop', (e) => {
      e.preventDefault();
      stage.classList.remove('drop');
      const f = e.dataTransfer?.files[0];
      if (f) void this.loadImage(f, f.name);
    });
    document.addEventListener('paste', (e) => {
      const items = e.clipboardData ? Array.from(e.clipboardData.files) : [];
      const f = items.find((x) => x.type.startsWith('image/'));
      if (f) {
        e.preventDefault();
        void this.loadImage(f, f.name && f.name !== 'image.png' ? f.name : `pasted-${new Date().toISOString().slice(0, 19)}.png`);
      }
    });
    document.addEventListener('keydown', (e) => this.key(e));
    const b = this.els.buttons;
    b.undo.addEventListener('click', () => this.undo(performance.now()));
    b.redo.addEventListener('click', () => this.redo(performance.now()));
    b.clear.addEventListener('click', () => this.edit(EMPTY, performance.now()));
    b.accept.addEventListener('click', () => this.accept());
    b.modeToggle.addEventListener('click', () => {
      this.stage.backgroundTaps = !this.stage.backgroundTaps;
      b.modeToggle.setAttribute('aria-pressed', String(this.stage.backgroundTaps));
      b.modeToggle.textContent = this.stage.backgroundTaps ? 'Tap: background' : 'Tap: foreground';
    });
    b.exportPng.addEventListener('click', () => void this.export('mask'));
    b.exportCutout.addEventListener('click', () => void this.export('cutout'));
    b.exportObjects.addEventListener('click', () => void this.export('objects'));
    b.exportCoco.addEventListener('click', () => void this.export('coco'));
    b.everything.addEventListener('click', () => void this.toggleEverything());
  }

  /**
   * Show the image, upload it for encoding and load its embedding into the decoder. The browser
   * decodes it with EXIF orientation applied, as the server does, so clicks line up. Big photos are
   * downscaled before upload (the encoder only sees image_size anyway); masks still come out at the
   * original size because the geometry maps the original frame to the server's input size.
   */
  async loadImage(file: Blob, name: string): Promise<void> {
    const seq = ++this.loadSeq;
    this.bar.clearError();
    let bitmap: ImageBitmap;
    try {
      bitmap = await createImageBitmap(file, { imageOrientation: 'from-image' });
    } catch {
      this.showError(new Error(`“${name}” is not an image this browser can read (PNG, JPEG, WebP, GIF, BMP…). Choose another file.`));
      return;
    }
    if (seq !== this.loadSeq) return;
    this.embeddingReady = false;
    this.image = null;
    this.resetPrompts();
    this.objects = [];
    this.everything = null;
    this.everythingShown = false;
    this.renderObjects();
    this.stage.setImage(bitmap);
    this.updateButtons();
    const t0 = performance.now();
    const timer = window.setInterval(() => this.bar.status(`Encoding “${name}” on the server… ${((performance.now() - t0) / 1000).toFixed(1)} s`), 100);
    try {
      const { blob, uploadName } = await this.uploadable(file, name, bitmap);
      const meta = await postEmbedding(blob, uploadName);
      if (seq !== this.loadSeq) return;
      const manifest = this.need(this.manifest, 'The decoder manifest is not loaded');
      const mismatch = embeddingMismatch(manifest, meta);
      if (mismatch) throw new Error(mismatch);
      const geom = makeGeometry({ w: bitmap.width, h: bitmap.height }, manifest.imageSize, manifest.lowResSize, {
        w: meta.input_size[1],
        h: meta.input_size[0],
      });
      const variant = this.need(this.variant, 'No decoder variant');
      const dtype = embeddingDtype(variant);
      this.bar.status(`Loading the embedding of “${name}”…`);
      await this.decoder.setEmbedding({
        url: new URL(embeddingUrl(meta, dtype), document.baseURI).href,
        dtype,
        shape: meta.shape,
        originalSize: [bitmap.height, bitmap.width],
      });
      if (seq !== this.loadSeq) return;
      this.image = { name, upload: { blob, name: uploadName }, bitmap, meta, geom };
      this.embeddingReady = true;
      this.imagesLoaded++;
      this.updateStatus(`Ready: ${meta.cached ? 'cached embedding' : `encoded in ${Math.round(meta.encode_ms)} ms`}. Click the object.`);
    } catch (e) {
      if (seq === this.loadSeq) {
        this.showError(e);
        this.bar.status('The image could not be encoded; open another one.');
      }
    } finally {
      clearInterval(timer);
      this.updateButtons();
    }
  }

  /** The blob to upload: the file itself, or a downscaled re-encode for very large photos. */
  private async uploadable(file: Blob, name: string, bitmap: ImageBitmap): Promise<{ blob: Blob; uploadName: string }> {
    const cfg = this.need(this.config, 'The server config is not loaded');
    const manifest = this.need(this.manifest, 'The decoder manifest is not loaded');
    const long = Math.max(bitmap.width, bitmap.height);
    const tooBig = file.size > cfg.max_upload_bytes || bitmap.width * bitmap.height > cfg.max_pixels;
    if (!tooBig && long <= 2 * manifest.imageSize) return { blob: file, uploadName: name };
    // Straight to the encoder's input size: the server's resize then is the identity, and the
    // orientation is baked into the pixels (no EXIF left to disagree about).
    const s = preprocessShape(bitmap.height, bitmap.width, manifest.imageSize);
    const canvas = new OffscreenCanvas(s.w, s.h);
    const ctx = canvas.getContext('2d');
    if (!ctx) throw new Error('No 2D canvas to downscale the image');
    ctx.imageSmoothingEnabled = true;
    ctx.imageSmoothingQuality = 'high';
    ctx.drawImage(bitmap, 0, 0, s.w, s.h);
    const png = file.type === 'image/png';
    const blob = await canvas.convertToBlob(png ? { type: 'image/png' } : { type: 'image/jpeg', quality: 0.95 });
    return { blob, uploadName: name.replace(/\.[^.]*$/, '') + (png ? '.png' : '.jpg') };
  }

  // ---------------------------------------------------------------- prompts

  private addPoint(p: Point, label: 0 | 1, t: number): void {
    if (this.everythingShown && this.everything && isEmpty(this.prompts) && label === 1) {
      const idx = this.everythingAt(p);
      if (idx >= 0) {
        this.pickEverything(idx, t);
        return;
      }
    }
    const next = addPoint(this.prompts, { x: p.x, y: p.y, label: label === 1 ? LABEL.foreground : LABEL.background });
    void this.commit(next, { push: true, refine: this.refine && this.history.current.result !== null, point: true, t });
  }

  private setBox(box: PromptBox, t: number): void {
    void this.commit(setBox(this.prompts, box), { push: true, refine: false, point: false, t });
  }

  private edit(next: PromptState, t: number): void {
    if (next === this.prompts || (isEmpty(next) && isEmpty(this.prompts))) return;
    void this.commit(next, { push: true, refine: false, point: false, t });
  }

  private undo(t: number): void {
    if (!this.history.undo()) return;
    void this.commit(this.prompts, { push: false, refine: false, point: false, t });
  }

  private redo(t: number): void {
    if (!this.history.redo()) return;
    void this.commit(this.prompts, { push: false, refine: false, point: false, t });
  }

  private resetPrompts(): void {
    this.commitSeq++;
    this.history.reset({ prompts: EMPTY, result: null });
    this.hover = null;
    this.hoverAtPoint = null;
    this.refine = false;
    this.stage.setPrompts(EMPTY);
    this.candidates.clear();
    this.schedulePaint();
  }

  /**
   * Make `prompts` current (pushing a history entry or not) and show its mask, decoding if needed.
   * `refine` feeds the previous mask's low-res logits as mask_input; only an added point keeps
   * refinement going (undo/redo, a box, clear and removals start from no mask input).
   */
  private async commit(prompts: PromptState, opts: { push: boolean; refine: boolean; point: boolean; t: number }): Promise<void> {
    if (!this.image || !this.embeddingReady) {
      this.bar.status(this.image ? 'Still encoding the image…' : 'Open an image first.');
      return;
    }
    const prev = this.history.current.result;
    if (opts.push) this.history.push({ prompts, result: null });
    const snap = this.history.current;
    const seq = ++this.commitSeq;
    this.hover = null;
    this.stage.setPrompts(prompts);
    this.refine = opts.point;
    this.updateButtons();
    if (isEmpty(prompts)) {
      this.candidates.clear();
      this.schedulePaint(opts.t);
      return;
    }
    if (!snap.result) {
      const geom = this.image.geom;
      const feeds = promptToFeeds(prompts, geom);
      const L = geom.lowResSize;
      const maskInput = opts.refine && prev ? tokenPlane(prev.lowRes, prev.token, L) : null;
      try {
        // A first foreground click where the pointer rested reuses that hover decode (same feeds).
        const h = this.hoverAtPoint;
        const reusable = h && !maskInput && isSingleClick(prompts) && prompts.points[0]!.label === LABEL.foreground && samePoint(h.p, prompts.points[0]!);
        if (reusable) this.decoder.startPendingHover(); // no dwell for a preview the click will use
        const reuse = reusable ? await h.reply.catch(() => null) : null;
        const r = reuse ?? (await this.decoder.decode({ coords: feeds.coords, labels: feeds.labels, maskInput }));
        this.lastDecodeMs = r.runMs;
        this.backend = r.backend === 'webgpu' ? 'WebGPU' : `WASM ×${r.threads}`;
        this.decodeCount++;
        const variant = this.need(this.variant, 'No decoder variant');
        const ranked = [...variant.multiTokens].filter((k) => k < r.tokens).sort((a, b) => r.iou[b]! - r.iou[a]!);
        snap.result = {
          lowRes: r.lowRes,
          iou: r.iou,
          ranked,
          token: isSingleClick(prompts) && ranked.length ? ranked[0]! : variant.singleToken,
        };
      } catch (e) {
        if (seq === this.commitSeq) this.showError(e);
        return;
      }
    }
    if (seq !== this.commitSeq) return; // a newer edit superseded this one
    this.renderCandidates();
    this.updateStatus();
    this.updateButtons();
    this.schedulePaint(opts.t);
  }

  private pickToken(token: number, t: number): void {
    const r = this.history.current.result;
    if (!r || r.token === token) return;
    r.token = token;
    this.renderCandidates();
    this.schedulePaint(t);
  }

  private pickRank(rank: number, t: number): void {
    const r = this.history.current.result;
    const token = r?.ranked[rank];
    if (token !== undefined) this.pickToken(token, t);
  }

  private async hoverAt(p: Point | null): Promise<void> {
    const seq = ++this.hoverSeq;
    if (this.everythingShown && this.everything && isEmpty(this.prompts)) {
      const idx = p ? this.everythingAt(p) : -1;
      if (idx !== this.everything.hover) {
        this.everything.hover = idx;
        this.schedulePaint();
      }
      return;
    }
    if (!p || !this.image || !this.embeddingReady || !isEmpty(this.prompts)) {
      if (this.hover) {
        this.hover = null;
        this.schedulePaint();
      }
      return;
    }
    const feeds = promptToFeeds(addPoint(EMPTY, { x: p.x, y: p.y, label: LABEL.foreground }), this.image.geom);
    let r;
    try {
      const reply = this.decoder.hover({ coords: feeds.coords, labels: feeds.labels, maskInput: null });
      this.hoverAtPoint = { p, reply };
      r = await reply;
    } catch {
      return; // a failed preview is not worth an error banner; clicks report their own errors
    }
    // Dropped (a newer hover replaced it), stale, or prompts appeared meanwhile: do not show it.
    if (!r || seq !== this.hoverSeq || !isEmpty(this.prompts)) return;
    const variant = this.need(this.variant, 'No decoder variant');
    const ranked = [...variant.multiTokens].filter((k) => k < r.tokens).sort((a, b) => r.iou[b]! - r.iou[a]!);
    this.hover = { lowRes: r.lowRes, iou: r.iou, ranked, token: ranked[0] ?? variant.singleToken };
    this.schedulePaint();
  }

  // ---------------------------------------------------------------- drawing

  /** Repaint on the next frame; `t` (input event time) closes a click-to-mask measure once painted. */
  private schedulePaint(t?: number): void {
    if (t !== undefined) this.pendingMeasures.push(t);
    if (this.paintFrame) return;
    this.paintFrame = requestAnimationFrame(() => {
      this.paintFrame = 0;
      const start = performance.now();
      this.paint();
      const end = performance.now();
      // main-thread cost of upsampling + painting the overlay, readable like the click measure
      performance.measure(PAINT_MEASURE, { start, end });
      for (const start of this.pendingMeasures) performance.measure(CLICK_MEASURE, { start, end });
      this.pendingMeasures = [];
    });
  }

  private paint(): void {
    const img = this.image;
    if (!img) {
      this.stage.drawOverlay(null);
      return;
    }
    const size = this.stage.displaySize;
    const thr = this.need(this.manifest, 'no manifest').maskThreshold;
    const layers: Array<{ mask: Uint8Array; color: Rgba }> = [];
    for (const o of this.objects) {
      if (!o.visible) continue;
      if (!o.displayCache || o.displayCache.size.w !== size.w || o.displayCache.size.h !== size.h) {
        o.displayCache = { size, mask: logitsToMask(o.logits, 0, img.geom, size, thr) };
      }
      layers.push({ mask: o.displayCache.mask, color: o.color });
    }
    const r = this.history.current.result;
    if (r && !isEmpty(this.prompts)) layers.push({ mask: logitsToMask(r.lowRes, r.token, img.geom, size, thr), color: CURRENT_COLOR });
    else if (this.hover) layers.push({ mask: logitsToMask(this.hover.lowRes, this.hover.token, img.geom, size, thr), color: HOVER_COLOR });
    const ev = this.everythingShown ? this.everything : null;
    if (ev) {
      if (!ev.display || ev.display.size.w !== size.w || ev.display.size.h !== size.h) {
        ev.display = { size, labels: resampleNearest(ev.labels, img.geom.original, size, (n) => new Int32Array(n)) };
      }
      const base = paintLabels(ev.display.labels, size, ev.masks.map((m) => m.color), ev.hover);
      for (const l of layers) paintOver(base, l.mask, l.color);
      this.stage.drawOverlay(base);
      return;
    }
    this.stage.drawOverlay(layers.length ? paintLayers(size, layers) : null);
  }

  private renderCandidates(): void {
    const img = this.image;
    const r = this.history.current.result;
    if (!img || !r || isEmpty(this.prompts)) {
      this.candidates.clear();
      return;
    }
    const thumb = preprocessShape(img.geom.original.h, img.geom.original.w, THUMB_LONG_SIDE);
    const thr = this.need(this.manifest, 'no manifest').maskThreshold;
    this.candidates.render(
      r.ranked.map((token) => ({ token, iou: r.iou[token]!, mask: logitsToMask(r.lowRes, token, img.geom, thumb, thr) })),
      thumb,
      img.bitmap,
      r.token,
    );
  }

  private updateStatus(prefix?: string): void {
    const img = this.image;
    const parts: string[] = [];
    if (prefix) parts.push(prefix);
    if (this.manifest) parts.push(this.manifest.model);
    if (this.backend) parts.push(this.backend);
    if (img) parts.push(`${img.geom.original.w}×${img.geom.original.h}`);
    if (this.lastDecodeMs !== null) parts.push(`decode ${this.lastDecodeMs.toFixed(0)} ms`);
    this.bar.status(parts.join(' · '));
  }

  private updateButtons(): void {
    const b = this.els.buttons;
    const ready = this.image !== null && this.embeddingReady;
    const hasMask = ready && this.history.current.result !== null && !isEmpty(this.prompts);
    b.undo.disabled = !ready || !this.history.canUndo;
    b.redo.disabled = !ready || !this.history.canRedo;
    b.clear.disabled = !ready || isEmpty(this.prompts);
    b.accept.disabled = !hasMask;
    const anything = hasMask || this.objects.some((o) => o.visible);
    b.exportPng.disabled = !anything;
    b.exportCutout.disabled = !anything;
    b.exportObjects.disabled = !anything;
    b.exportCoco.disabled = !(hasMask || this.objects.length > 0);
    b.everything.disabled = !ready || this.everythingBusy;
    b.everything.setAttribute('aria-pressed', String(this.everythingShown));
    b.exportCoco.disabled = b.exportCoco.disabled && !(this.everythingShown && this.everything && this.everything.masks.length > 0);
  }

  // ---------------------------------------------------------------- everything

  /** Show (fetching once per image) or hide SAM's automatic masks for the whole image. */
  private async toggleEverything(): Promise<void> {
    const img = this.image;
    if (!img || this.everythingBusy) return;
    if (this.everythingShown) {
      this.everythingShown = false;
      this.updateButtons();
      this.schedulePaint();
      return;
    }
    if (!this.everything) {
      this.everythingBusy = true;
      this.updateButtons();
      const t0 = performance.now();
      const timer = window.setInterval(() => this.bar.status(`Segmenting everything on the server… ${((performance.now() - t0) / 1000).toFixed(1)} s`), 100);
      try {
        const query = new URLSearchParams(location.search);
        const options = new Map(EVERYTHING_OPTIONS.flatMap((k) => (query.has(k) ? [[k, query.get(k) ?? '']] : [])));
        const res = await postEverything(img.upload.blob, img.upload.name, options);
        if (img !== this.image) return;
        this.everything = this.buildEverything(res.masks.map((m) => ({ rle: m.segmentation, iou: m.predicted_iou, point: m.point_coords[0] ?? [0, 0] })), res.original_size, img);
        const n = this.everything.masks.length;
        const secs = ((performance.now() - t0) / 1000).toFixed(1);
        this.updateStatus(n ? `${n} mask${n === 1 ? '' : 's'} in ${secs} s: hover to see one, click to select it.` : `No confident masks found (${secs} s).`);
      } catch (e) {
        this.showError(e);
        return;
      } finally {
        clearInterval(timer);
        this.everythingBusy = false;
        this.updateButtons();
      }
    }
    this.everythingShown = true;
    this.updateButtons();
    this.schedulePaint();
  }

  /**
   * Decode the server's RLE masks (in the frame of the uploaded image, which may be a downscaled
   * copy) to the original resolution, with colours and the label map used for hover and click.
   */
  private buildEverything(
    records: ReadonlyArray<{ rle: { size: [number, number]; counts: string }; iou: number; point: [number, number] }>,
    serverSize: [number, number],
    img: LoadedImage,
  ): Everything {
    const orig = img.geom.original;
    const from = { w: serverSize[1], h: serverSize[0] };
    const same = from.w === orig.w && from.h === orig.h;
    const masks = records.map((r, i): EverythingMask => {
      const m = decodeRle(r.rle);
      const mask = same ? m : resampleNearest(m, from, orig, (n) => new Uint8Array(n));
      const c = PALETTE[i % PALETTE.length]!;
      return {
        mask,
        area: mask.reduce((a, b) => a + b, 0),
        iou: r.iou,
        point: { x: (r.point[0] * orig.w) / from.w, y: (r.point[1] * orig.h) / from.h },
        color: [c[0], c[1], c[2], 120],
      };
    });
    return { masks, labels: labelMap(masks.map((m) => m.mask), orig.w * orig.h), display: null, hover: -1 };
  }

  /** A pixel centre (original px) covered by some automatic mask's label, for tests; null if none. */
  private pointInsideEverything(): Point | null {
    const ev = this.everything;
    const img = this.image;
    if (!ev || !img) return null;
    const covered: number[] = [];
    ev.labels.forEach((l, k) => {
      if (l >= 0) covered.push(k);
    });
    const k = covered[Math.floor(covered.length / 2)];
    if (k === undefined) return null;
    const w = img.geom.original.w;
    return { x: (k % w) + 0.5, y: Math.floor(k / w) + 0.5 };
  }

  private everythingAt(p: Point): number {
    const ev = this.everything;
    const img = this.image;
    if (!ev || !img) return -1;
    const { w, h } = img.geom.original;
    const x = Math.min(w - 1, Math.max(0, Math.floor(p.x)));
    const y = Math.min(h - 1, Math.max(0, Math.floor(p.y)));
    return ev.labels[y * w + x] ?? -1;
  }

  /**
   * Make an automatic mask the current one: its grid point becomes the prompt and its pixels, as
   * low-res logits, the mask_input of the next click, so it can be refined with points.
   */
  private pickEverything(index: number, t: number): void {
    const img = this.image;
    const ev = this.everything;
    const m = ev?.masks[index];
    if (!img || !ev || !m) return;
    const plane = maskToLowResLogits(m.mask, img.geom);
    this.history.push({
      prompts: addPoint(EMPTY, { x: m.point.x, y: m.point.y, label: LABEL.foreground }),
      result: { lowRes: plane, iou: Float32Array.of(m.iou), ranked: [], token: 0 },
    });
    this.commitSeq++;
    this.refine = true;
    this.everythingShown = false;
    ev.hover = -1;
    this.stage.setPrompts(this.prompts);
    this.candidates.clear();
    this.updateButtons();
    this.schedulePaint(t);
  }

  // ---------------------------------------------------------------- objects

  private accept(): void {
    const img = this.image;
    const r = this.history.current.result;
    if (!img || !r || isEmpty(this.prompts)) return;
    const thr = this.need(this.manifest, 'no manifest').maskThreshold;
    const logits = tokenPlane(r.lowRes, r.token, img.geom.lowResSize);
    const mask = logitsToMask(logits, 0, img.geom, img.geom.original, thr);
    const id = this.nextObjectId++;
    const c = PALETTE[(id - 1) % PALETTE.length]!;
    this.objects.push({
      id,
      name: `Object ${id}`,
      color: [c[0], c[1], c[2], 130],
      visible: true,
      logits,
      mask,
      area: maskStats(mask, img.geom.original).area,
      iou: r.iou[r.token] ?? 0,
      displayCache: null,
    });
    this.resetPrompts();
    this.renderObjects();
    this.updateButtons();
  }

  private toggleObject(id: number): void {
    const o = this.objects.find((x) => x.id === id);
    if (!o) return;
    o.visible = !o.visible;
    this.renderObjects();
    this.updateButtons();
    this.schedulePaint();
  }

  private deleteObject(id: number): void {
    this.objects = this.objects.filter((x) => x.id !== id);
    this.renderObjects();
    this.updateButtons();
    this.schedulePaint();
  }

  private renderObjects(): void {
    this.objectsList.render(this.objects.map((o) => ({ id: o.id, name: o.name, color: o.color, visible: o.visible, area: o.area })));
  }

  // ---------------------------------------------------------------- export

  /** The current mask at the original resolution, or null. */
  private currentMask(): { mask: Uint8Array; iou: number } | null {
    const img = this.image;
    const r = this.history.current.result;
    if (!img || !r || isEmpty(this.prompts)) return null;
    const thr = this.need(this.manifest, 'no manifest').maskThreshold;
    return { mask: logitsToMask(r.lowRes, r.token, img.geom, img.geom.original, thr), iou: r.iou[r.token] ?? 0 };
  }

  private async export(kind: ExportKind): Promise<void> {
    const img = this.image;
    if (!img) return;
    try {
      const size = img.geom.original;
      const pixels = size.w * size.h;
      const current = this.currentMask();
      const visible = this.objects.filter((o) => o.visible);
      let blob: Blob;
      if (kind === 'coco') {
        const list: ExportObject[] = this.objects.map((o) => ({ mask: o.mask, score: o.iou, label: o.name }));
        if (current) list.push({ mask: current.mask, score: current.iou, label: 'current' });
        if (this.everythingShown && this.everything) {
          for (const m of this.everything.masks) list.push({ mask: m.mask, score: m.iou, label: 'everything' });
        }
        if (!list.length) throw new Error('Nothing to export yet: click an object first.');
        const coco = buildCoco(img.name, size, list, this.manifest?.model ?? '');
        blob = new Blob([JSON.stringify(coco)], { type: 'application/json' });
      } else if (kind === 'objects') {
        const layers = visible.map((o) => ({ mask: o.mask, color: o.color }));
        if (current) layers.push({ mask: current.mask, color: CURRENT_COLOR });
        if (!layers.length) throw new Error('Nothing to export yet: click an object first.');
        blob = await rgbaToPng(labelRgba(size, layers), size);
      } else {
        const mask = current?.mask ?? (visible.length ? unionMasks(visible.map((o) => o.mask), pixels) : null);
        if (!mask) throw new Error('Nothing to export yet: click an object first.');
        if (kind === 'mask') blob = await rgbaToPng(maskRgba(mask), size);
        else {
          const canvas = new OffscreenCanvas(size.w, size.h);
          const ctx = canvas.getContext('2d');
          if (!ctx) throw new Error('No 2D canvas for the cut-out');
          ctx.drawImage(img.bitmap, 0, 0);
          const data = ctx.getImageData(0, 0, size.w, size.h);
          applyAlpha(data.data, mask);
          blob = await rgbaToPng(data.data, size);
        }
      }
      const name = exportFileName(img.name, kind);
      download(blob, name);
      this.lastExport = { name, bytes: blob.size };
    } catch (e) {
      this.showError(e);
    }
  }

  // ---------------------------------------------------------------- keys, errors, test hooks

  private key(e: KeyboardEvent): void {
    const t = e.target;
    if (t instanceof HTMLInputElement || t instanceof HTMLTextAreaElement) return;
    const mod = e.ctrlKey || e.metaKey;
    if (e.key === '?') {
      this.help.toggle();
    } else if (e.key === 'Escape') {
      if (this.help.open) this.help.close();
      else this.edit(EMPTY, e.timeStamp);
    } else if (mod && (e.key === 'z' || e.key === 'Z')) {
      if (e.shiftKey) this.redo(e.timeStamp);
      else this.undo(e.timeStamp);
    } else if (mod && (e.key === 'y' || e.key === 'Y')) {
      this.redo(e.timeStamp);
    } else if (e.key === 'Enter' && !(t instanceof HTMLButtonElement)) {
      this.accept();
    } else if (!mod && (e.key === '1' || e.key === '2' || e.key === '3')) {
      this.pickRank(Number(e.key) - 1, e.timeStamp);
    } else if (e.key === 'Tab' && !mod && this.history.current.result && !isEmpty(this.prompts) && !(t instanceof HTMLButtonElement)) {
      const r = this.history.current.result;
      const at = r.ranked.indexOf(r.token);
      const next = r.ranked[(at + (e.shiftKey ? r.ranked.length - 1 : 1)) % r.ranked.length];
      if (next !== undefined) this.pickToken(next, e.timeStamp);
    } else {
      return;
    }
    e.preventDefault();
  }

  private showError(e: unknown): void {
    const msg = e instanceof ApiError || e instanceof Error ? e.message : String(e);
    this.bar.error(msg);
  }

  private need<T>(v: T | null, what: string): T {
    if (v === null) throw new Error(what);
    return v;
  }

  /** Read-only snapshot for tests and benchmarks (window.__clicksam.state()). */
  debugState(): Record<string, unknown> {
    const img = this.image;
    const r = this.history.current.result;
    let maskArea = 0;
    let maskHash = 0;
    if (img && r && !isEmpty(this.prompts)) {
      const thr = this.manifest?.maskThreshold ?? 0;
      const mask = logitsToMask(r.lowRes, r.token, img.geom, img.geom.original, thr);
      maskArea = maskStats(mask, img.geom.original).area;
      maskHash = fnv1a(mask);
    }
    return {
      decoderReady: this.decoderReady,
      backend: this.backend,
      imageReady: img !== null && this.embeddingReady,
      original: img?.geom.original ?? null,
      input: img?.geom.input ?? null,
      prompts: this.prompts,
      token: r && !isEmpty(this.prompts) ? r.token : null,
      ranked: r?.ranked ?? [],
      iou: r ? Array.from(r.iou) : [],
      maskArea,
      maskHash,
      hover: this.hover !== null,
      objects: this.objects.map((o) => ({ id: o.id, area: o.area, visible: o.visible })),
      decodeCount: this.decodeCount,
      imagesLoaded: this.imagesLoaded,
      lastDecodeMs: this.lastDecodeMs,
      lastExport: this.lastExport,
      everything: this.everything
        ? { shown: this.everythingShown, masks: this.everything.masks.length, hover: this.everything.hover, inside: this.pointInsideEverything() }
        : null,
      canUndo: this.history.canUndo,
      canRedo: this.history.canRedo,
    };
  }

  /** Original-px point -> client (viewport) px, so tests can click a known image location. */
  clientPoint(p: Point): Point | null {
    const canvas = this.els.stage.querySelector('canvas.image');
    if (!canvas) return null;
    const rect = canvas.getBoundingClientRect();
    const d = this.stage.toDisplay(p);
    return { x: rect.left + d.x, y: rect.top + d.y };
  }
}

/** FNV-1a hash of mask bytes: lets tests tell masks apart without shipping them. */
function fnv1a(bytes: Uint8Array): number {
  let h = 0x811c9dc5;
  for (let k = 0; k < bytes.length; k++) h = Math.imul(h ^ bytes[k]!, 0x01000193);
  return h >>> 0;
}

/** Same click position (original px) to within half a pixel. */
function samePoint(a: Point, b: Point): boolean {
  return Math.abs(a.x - b.x) <= 0.5 && Math.abs(a.y - b.y) <= 0.5;
}
