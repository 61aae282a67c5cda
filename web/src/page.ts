// The page: the UI widgets on their elements, connected to the modules that decide (session,
// editor, segment everything, objects, exports). Input goes to the module it concerns; when a
// module reports a change, the page re-renders buttons, status line, candidates and overlay.

import { ApiError } from './api';
import { debugState } from './debug';
import { Editor, type MaskChange } from './editor';
import { Everything } from './everything';
import { type ExportKind, download } from './exporters';
import { exportFile } from './exporting';
import { type Point, type Size, preprocessShape } from './frames';
import type { KeyCommand } from './keys';
import { logitsToMask, maskToLowResLogits } from './mask';
import { ObjectStore } from './objects';
import { type Layer, OverlayComposer, PaintScheduler } from './overlay';
import type { PageElements, PageExtension } from './page_parts';
import { CURRENT_COLOR, HOVER_COLOR } from './palette';
import { EMPTY, type PromptState, isEmpty } from './prompts';
import { type LoadedImage, Session, type StartOptions, need } from './session';
import { Candidates } from './ui/candidates';
import { Help } from './ui/help';
import { ObjectsList } from './ui/objects';
import { type LabelledBox, Stage } from './ui/stage';
import { StatusBar } from './ui/status';

const THUMB_LONG_SIDE = 120;

export class Page {
  private readonly bar: StatusBar;
  private readonly stage: Stage;
  private readonly candidates: Candidates;
  private readonly objectsList: ObjectsList;
  private readonly help: Help;
  readonly session: Session;
  private readonly editor: Editor;
  private readonly everything: Everything;
  readonly objects = new ObjectStore();
  private readonly exts: PageExtension[] = [];
  private readonly painter = new PaintScheduler(() => this.paint());
  private readonly composer = new OverlayComposer();
  private lastExport: { name: string; bytes: number } | null = null;

  constructor(
    private readonly els: PageElements,
    query: URLSearchParams,
  ) {
    const bar = new StatusBar(els.status, els.error);
    this.bar = bar;
    this.session = new Session({
      notice: (text) => {
        els.notice.textContent = text;
        els.notice.hidden = false;
      },
      status: (text) => bar.status(text),
      progress: (label) => bar.progress(label),
      error: (e) => this.showError(e),
      clearError: () => bar.clearError(),
      imageShown: (bitmap) => this.imageShown(bitmap),
      imageReady: (img) => this.imageReady(img),
      settled: () => this.updateButtons(),
    });
    this.editor = new Editor(this.session.decoder, {
      prompts: () => {
        this.stage.setPrompts(this.editor.prompts);
        this.updateButtons();
      },
      mask: (change, t) => this.maskChanged(change, t),
      hover: () => this.painter.schedule(),
      decoded: (r) => this.session.noteDecode(r),
      failed: (e) => this.showError(e),
      refused: () => bar.status(this.session.loading ? 'Still encoding the image…' : 'Open an image first.'),
    });
    this.everything = new Everything(query, {
      progress: (label) => bar.progress(label),
      found: (message) => this.updateStatus(message),
      error: (e) => this.showError(e),
      changed: () => {
        this.updateButtons();
        this.painter.schedule();
      },
    });
    this.stage = new Stage(els.stage, {
      onPoint: (p, label, t) => this.point(p, label, t),
      onBox: (box, t) => void this.editor.box(box, t),
      onRemovePoint: (i, t) => void this.editor.removePoint(i, t),
      onRemoveBox: (t) => void this.editor.removeBox(t),
      onHover: (p) => this.hoverAt(p),
    });
    this.stage.onResize = () => this.painter.schedule();
    this.candidates = new Candidates(els.candidates, (token) => this.editor.pickToken(token, performance.now()));
    this.objectsList = new ObjectsList(els.objects, {
      onToggle: (id) => {
        if (this.objects.toggle(id)) this.objectsChanged();
      },
      onDelete: (id) => {
        this.objects.remove(id);
        this.objectsChanged();
      },
    });
    this.help = new Help(els.help, els.helpOverlay);
  }

  // ---------------------------------------------------------------- actions

  /** Plug in a mode (asked in the order given: the first extension's pick wins). */
  extend(ext: PageExtension): void {
    this.exts.push(ext);
  }

  /** An extension's layers changed: redraw the overlay, with `boxes` (original px) captioned on top. */
  repaint(boxes?: readonly LabelledBox[]): void {
    if (boxes) this.stage.setLabelledBoxes(boxes);
    this.painter.schedule();
  }

  /** The prompts and the current mask ((H, W) 0/1 at the original size, or null), or null with no image. */
  selection(): { prompts: PromptState; mask: Uint8Array | null; size: Size } | null {
    const img = this.session.image;
    const r = this.editor.mask;
    if (!img) return null;
    return { prompts: this.editor.prompts, mask: r && logitsToMask(r.lowRes, r.token, img.geom, img.geom.original, this.threshold()), size: img.geom.original };
  }

  /** The objects or the extension's layers changed outside the page: list, buttons, overlay. */
  refreshObjects(): void {
    this.objectsChanged();
  }

  async start(opts: StartOptions): Promise<void> {
    try {
      await this.session.start(opts);
      this.updateStatus(this.session.image ? undefined : 'Ready: open, drop or paste an image.');
    } catch (e) {
      this.showError(e);
      this.bar.status('The page could not start: see the message above.');
    }
    this.updateButtons();
  }

  openImage(file: Blob, name: string): void {
    void this.session.loadImage(file, name);
  }

  undo(t: number): void {
    void this.editor.undo(t);
  }

  redo(t: number): void {
    void this.editor.redo(t);
  }

  clear(t: number): void {
    void this.editor.clear(t);
  }

  /** Keep the current mask as an object and start a new one. */
  accept(): void {
    const img = this.session.image;
    const r = this.editor.mask;
    if (!img || !r) return;
    const o = this.objects.add(r, img.geom, this.threshold(), this.editor.prompts);
    for (const x of this.exts) x.kept(o);
    this.editor.reset(this.session.target);
    this.resetView();
    this.objectsChanged();
  }

  /** Touch: the next taps add background (or foreground) points. */
  toggleTapMode(): void {
    const b = this.els.buttons.modeToggle;
    this.stage.backgroundTaps = !this.stage.backgroundTaps;
    b.setAttribute('aria-pressed', String(this.stage.backgroundTaps));
    b.textContent = this.stage.backgroundTaps ? 'Tap: background' : 'Tap: foreground';
  }

  toggleEverything(): void {
    void this.everything.toggle();
  }

  async export(kind: ExportKind): Promise<void> {
    const img = this.session.image;
    if (!img) return;
    try {
      const r = this.editor.mask;
      const current = r ? { mask: logitsToMask(r.lowRes, r.token, img.geom, img.geom.original, this.threshold()), iou: r.iou[r.token] ?? 0 } : null;
      const { blob, name } = await exportFile(kind, {
        imageName: img.name,
        bitmap: img.bitmap,
        size: img.geom.original,
        current,
        objects: this.objects.all,
        everything: this.everything.shownMasks,
        model: this.session.manifest?.model ?? '',
      });
      download(blob, name);
      this.lastExport = { name, bytes: blob.size };
    } catch (e) {
      this.showError(e);
    }
  }

  /** Perform a keyboard command; false when it does not apply now (the key keeps its default). */
  command(c: KeyCommand, t: number): boolean {
    switch (c.kind) {
      case 'help':
        this.help.toggle();
        return true;
      case 'escape':
        if (this.help.open) this.help.close();
        else this.clear(t);
        return true;
      case 'undo':
        this.undo(t);
        return true;
      case 'redo':
        this.redo(t);
        return true;
      case 'accept':
        this.accept();
        return true;
      case 'rank':
        this.editor.pickRank(c.rank, t);
        return true;
      case 'cycle':
        return this.editor.cycleToken(c.back, t);
    }
  }

  // ---------------------------------------------------------------- test hooks

  /** Read-only snapshot for tests and benchmarks (window.__clicksam.state()). */
  debugState(): Record<string, unknown> {
    return debugState({ session: this.session, editor: this.editor, objects: this.objects, everything: this.everything, lastExport: this.lastExport });
  }

  /** Original-px point -> client (viewport) px, so tests can click a known image location. */
  clientPoint(p: Point): Point | null {
    const canvas = this.els.stage.querySelector('canvas.image');
    if (!canvas) return null;
    const rect = canvas.getBoundingClientRect();
    const d = this.stage.toDisplay(p);
    return { x: rect.left + d.x, y: rect.top + d.y };
  }

  // ---------------------------------------------------------------- routing

  /** A click: on a segment-everything mask (no prompts yet) it picks that mask, else it is a prompt. */
  private point(p: Point, label: 0 | 1, t: number): void {
    if (this.everything.shown && isEmpty(this.editor.prompts) && label === 1) {
      const m = this.everything.pick(this.everything.at(p));
      const img = this.session.image;
      if (m && img) {
        this.editor.adopt(m.point, maskToLowResLogits(m.mask, img.geom), m.iou, t);
        return;
      }
    }
    let picked: ReturnType<PageExtension['pick']> = null;
    if (isEmpty(this.editor.prompts) && label === 1) for (const x of this.exts) if ((picked = x.pick(p))) break;
    const img = this.session.image;
    if (picked && img) {
      if (picked.box) void this.editor.box(picked.box, t); // a detection: refined as box + points
      else this.editor.adopt(picked.point, maskToLowResLogits(picked.mask, img.geom), picked.iou, t);
      this.painter.schedule();
      return;
    }
    void this.editor.click(p, label, t);
  }

  private hoverAt(p: Point | null): void {
    if (this.everything.shown && isEmpty(this.editor.prompts)) {
      void this.editor.hoverAt(null); // no preview over the automatic masks
      this.everything.hoverAt(p);
    } else {
      void this.editor.hoverAt(p);
    }
  }

  private imageShown(bitmap: ImageBitmap): void {
    this.editor.reset(null);
    this.resetView();
    this.objects.clear();
    this.everything.reset(null);
    this.objectsList.render([]);
    for (const x of this.exts) x.imageChanged?.();
    this.stage.setImage(bitmap);
    this.updateButtons();
  }

  private imageReady(img: LoadedImage): void {
    this.editor.reset(this.session.target);
    this.everything.reset(img);
    this.updateStatus(`Ready: ${img.meta.cached ? 'cached embedding' : `encoded in ${Math.round(img.meta.encode_ms)} ms`}. Click the object.`);
  }

  private maskChanged(change: MaskChange, t: number): void {
    if (change === 'shown') this.updateStatus();
    this.updateButtons();
    this.painter.schedule(t);
    // A decoded mask's candidate thumbnails (a few ms of main thread) once the frame with the mask
    // is out: this frame callback runs after the paint's, its task after the frame is presented.
    if (change === 'shown') requestAnimationFrame(() => setTimeout(() => this.renderCandidates(), 0));
    else this.renderCandidates();
  }

  private objectsChanged(): void {
    this.objectsList.render(this.objects.views());
    for (const x of this.exts) x.objectsChanged();
    this.updateButtons();
    this.painter.schedule();
  }

  // ---------------------------------------------------------------- rendering

  private resetView(): void {
    this.stage.setPrompts(EMPTY);
    this.candidates.clear();
    this.painter.schedule();
  }

  private paint(): void {
    const img = this.session.image;
    if (!img) {
      this.stage.drawOverlay(null);
      return;
    }
    const size = this.stage.displaySize;
    const thr = this.threshold();
    const layers: Layer[] = this.objects.layers(size, img.geom, thr);
    for (const x of this.exts) layers.push(...x.layers(size));
    const r = this.editor.mask;
    const h = this.editor.hover;
    const top = r
      ? { mask: logitsToMask(r.lowRes, r.token, img.geom, size, thr), color: CURRENT_COLOR }
      : h
        ? { mask: logitsToMask(h.lowRes, h.token, img.geom, size, thr), color: HOVER_COLOR }
        : null;
    const px = this.composer.compose(size, layers, top, this.everything.paint(size)?.data ?? null);
    this.stage.drawOverlay(px && new ImageData(px, size.w, size.h));
  }

  private renderCandidates(): void {
    const img = this.session.image;
    const r = this.editor.mask;
    if (!img || !r) {
      this.candidates.clear();
      return;
    }
    const thumb = preprocessShape(img.geom.original.h, img.geom.original.w, THUMB_LONG_SIDE);
    const thr = this.threshold();
    this.candidates.render(
      r.ranked.map((token) => ({ token, iou: r.iou[token]!, mask: logitsToMask(r.lowRes, token, img.geom, thumb, thr) })),
      thumb,
      img.bitmap,
      r.token,
    );
  }

  private updateStatus(prefix?: string): void {
    const s = this.session;
    const img = s.image;
    const parts: string[] = [];
    if (prefix) parts.push(prefix);
    if (s.manifest) parts.push(s.manifest.model);
    if (s.backend) parts.push(s.backend);
    if (img) parts.push(`${img.geom.original.w}×${img.geom.original.h}`);
    if (s.lastDecodeMs !== null) parts.push(`decode ${s.lastDecodeMs.toFixed(0)} ms`);
    this.bar.status(parts.join(' · '));
  }

  private updateButtons(): void {
    const b = this.els.buttons;
    const ready = this.session.image !== null;
    const hasMask = ready && this.editor.mask !== null;
    b.undo.disabled = !ready || !this.editor.canUndo;
    b.redo.disabled = !ready || !this.editor.canRedo;
    b.clear.disabled = !ready || isEmpty(this.editor.prompts);
    b.accept.disabled = !hasMask;
    const anything = hasMask || this.objects.visible.length > 0;
    b.exportPng.disabled = !anything;
    b.exportCutout.disabled = !anything;
    b.exportObjects.disabled = !anything;
    b.exportCoco.disabled = !(hasMask || this.objects.all.length > 0 || this.everything.shownMasks.length > 0);
    b.everything.disabled = !ready || this.everything.busy;
    b.everything.setAttribute('aria-pressed', String(this.everything.shown));
  }

  private threshold(): number {
    return need(this.session.manifest, 'The decoder manifest is not loaded').maskThreshold;
  }

  private showError(e: unknown): void {
    this.bar.error(e instanceof ApiError || e instanceof Error ? e.message : String(e));
  }
}
