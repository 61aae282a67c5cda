// The image stage: draws the image, the mask overlay, captioned boxes (detections) and the prompt
// markers, and turns pointer input (mouse, pen, touch) into prompts in original-image pixels.

import { type Point, type Size, clampToImage, displayToOriginal, fitScale, originalToDisplay } from '../frames';
import type { PromptBox, PromptState } from '../prompts';

export interface StageHandlers {
  /** A click/tap: label 1 foreground, 0 background. `t` is the input event's timeStamp. */
  onPoint(p: Point, label: 0 | 1, t: number): void;
  /** A drag: the box in original px. */
  onBox(box: PromptBox, t: number): void;
  onRemovePoint(index: number, t: number): void;
  onRemoveBox(t: number): void;
  /** Pointer hovering (not pressed) over the image, in original px; null when it leaves. */
  onHover(p: Point | null, t: number): void;
}

/** A box drawn with a caption (a detection: "dog 0.42"); original px. Pointer input goes through it. */
export interface LabelledBox {
  readonly box: PromptBox;
  readonly caption: string;
  readonly testid: string;
}

const SVG = 'http://www.w3.org/2000/svg';
/** Movement (display px) after which a press becomes a box drag rather than a click. */
const DRAG_THRESHOLD = 6;
/** Touch held this long without moving = background point. */
const LONG_PRESS_MS = 500;

interface Press {
  id: number;
  start: Point; // display px
  button: number;
  alt: boolean;
  touch: boolean;
  dragging: boolean;
  longPress: boolean;
  timer: number | null;
  marker: { kind: 'point'; index: number } | { kind: 'box' } | null;
}

export class Stage {
  private readonly layers: HTMLDivElement;
  private readonly imageCanvas: HTMLCanvasElement;
  private readonly overlay: HTMLCanvasElement;
  private readonly svg: SVGSVGElement;
  private original: Size | null = null;
  private bitmap: ImageBitmap | null = null;
  private scale = 1;
  private press: Press | null = null;
  private prompts: PromptState = { points: [], box: null };
  private dragBox: PromptBox | null = null;
  private labelled: readonly LabelledBox[] = [];
  private hoverFrame = 0;
  private lastHover: { p: Point; t: number } | null = null;
  /** Touch: the next taps add background points (the toolbar toggle). */
  backgroundTaps = false;

  constructor(
    private readonly el: HTMLElement,
    private readonly handlers: StageHandlers,
  ) {
    this.layers = document.createElement('div');
    this.layers.className = 'layers';
    this.imageCanvas = document.createElement('canvas');
    this.imageCanvas.className = 'image';
    this.overlay = document.createElement('canvas');
    this.overlay.className = 'overlay';
    this.overlay.dataset.testid = 'mask-canvas';
    this.svg = document.createElementNS(SVG, 'svg');
    this.layers.append(this.imageCanvas, this.overlay, this.svg);
    el.addEventListener('pointerdown', (e) => this.down(e));
    el.addEventListener('pointermove', (e) => this.move(e));
    el.addEventListener('pointerup', (e) => this.up(e));
    el.addEventListener('pointercancel', () => this.cancel());
    el.addEventListener('pointerleave', (e) => {
      if (!this.press) this.handlers.onHover(null, e.timeStamp);
    });
    el.addEventListener('contextmenu', (e) => e.preventDefault());
    new ResizeObserver(() => this.layout()).observe(el);
  }

  get hasImage(): boolean {
    return this.original !== null;
  }

  /** Size of the overlay in device pixels (what masks are rendered at for display). */
  get displaySize(): Size {
    return { w: this.overlay.width, h: this.overlay.height };
  }

  setImage(bitmap: ImageBitmap): void {
    this.bitmap = bitmap;
    this.original = { w: bitmap.width, h: bitmap.height };
    this.el.replaceChildren(this.layers);
    this.el.classList.add('has-image');
    this.prompts = { points: [], box: null };
    this.layout();
  }

  /** Called after a layout change; the owner re-renders the overlay at the new size. */
  onResize: () => void = () => {};

  private layout(): void {
    if (!this.original || !this.bitmap) return;
    const box = { w: Math.max(50, this.el.clientWidth - 8), h: Math.max(50, this.el.clientHeight - 8) };
    this.scale = fitScale(this.original, box, 4);
    const cssW = this.original.w * this.scale;
    const cssH = this.original.h * this.scale;
    const dpr = window.devicePixelRatio || 1;
    const bw = Math.max(1, Math.round(cssW * dpr));
    const bh = Math.max(1, Math.round(cssH * dpr));
    for (const c of [this.imageCanvas, this.overlay]) {
      c.style.width = `${cssW}px`;
      c.style.height = `${cssH}px`;
    }
    this.svg.setAttribute('width', String(cssW));
    this.svg.setAttribute('height', String(cssH));
    this.layers.style.width = `${cssW}px`;
    this.layers.style.height = `${cssH}px`;
    if (this.imageCanvas.width !== bw || this.imageCanvas.height !== bh) {
      this.imageCanvas.width = bw;
      this.imageCanvas.height = bh;
      const ctx = this.imageCanvas.getContext('2d');
      if (ctx) {
        ctx.imageSmoothingQuality = 'high';
        ctx.drawImage(this.bitmap, 0, 0, bw, bh);
      }
      this.overlay.width = bw;
      this.overlay.height = bh;
      this.renderMarkers();
      this.onResize();
    }
  }

  /** Put a display-size RGBA overlay (from overlay.OverlayComposer) on screen. */
  drawOverlay(img: ImageData | null): void {
    const ctx = this.overlay.getContext('2d');
    if (!ctx) return;
    if (!img || img.width !== this.overlay.width || img.height !== this.overlay.height) {
      ctx.clearRect(0, 0, this.overlay.width, this.overlay.height);
      if (!img) return;
    }
    ctx.putImageData(img, 0, 0);
  }

  setPrompts(s: PromptState): void {
    this.prompts = s;
    this.renderMarkers();
  }

  setLabelledBoxes(boxes: readonly LabelledBox[]): void {
    this.labelled = boxes;
    this.renderMarkers();
  }

  private toOriginal(e: PointerEvent): Point | null {
    if (!this.original) return null;
    const r = this.layers.getBoundingClientRect();
    return clampToImage(displayToOriginal({ x: e.clientX - r.left, y: e.clientY - r.top }, this.scale), this.original);
  }

  private displayPoint(e: PointerEvent): Point {
    const r = this.layers.getBoundingClientRect();
    return { x: e.clientX - r.left, y: e.clientY - r.top };
  }

  private inside(e: PointerEvent): boolean {
    const r = this.layers.getBoundingClientRect();
    return e.clientX >= r.left && e.clientX <= r.right && e.clientY >= r.top && e.clientY <= r.bottom;
  }

  private down(e: PointerEvent): void {
    if (!this.original || this.press) return;
    if (e.button !== 0 && e.button !== 2) return;
    const target = e.target instanceof Element ? e.target : null;
    const idx = target?.getAttribute('data-point');
    const marker = idx != null ? { kind: 'point' as const, index: Number(idx) } : target?.classList.contains('box-remove') ? { kind: 'box' as const } : null;
    if (!marker && !this.inside(e)) return;
    e.preventDefault();
    this.el.focus({ preventScroll: true });
    this.el.setPointerCapture(e.pointerId);
    const touch = e.pointerType === 'touch';
    const press: Press = { id: e.pointerId, start: this.displayPoint(e), button: e.button, alt: e.altKey, touch, dragging: false, longPress: false, timer: null, marker };
    if (touch && !marker) {
      press.timer = window.setTimeout(() => {
        press.longPress = true;
        navigator.vibrate?.(20);
      }, LONG_PRESS_MS);
    }
    this.press = press;
    this.handlers.onHover(null, e.timeStamp);
  }

  private move(e: PointerEvent): void {
    const press = this.press;
    if (press && press.id === e.pointerId) {
      if (press.marker) return;
      const d = this.displayPoint(e);
      if (!press.dragging && Math.hypot(d.x - press.start.x, d.y - press.start.y) > DRAG_THRESHOLD) {
        press.dragging = true;
        if (press.timer !== null) clearTimeout(press.timer);
      }
      if (press.dragging && this.original) {
        const a = clampToImage(displayToOriginal(press.start, this.scale), this.original);
        const b = this.toOriginal(e);
        if (b) {
          this.dragBox = { x0: Math.min(a.x, b.x), y0: Math.min(a.y, b.y), x1: Math.max(a.x, b.x), y1: Math.max(a.y, b.y) };
          this.renderMarkers();
        }
      }
      return;
    }
    if (!this.original || e.pointerType === 'touch') return;
    if (!this.inside(e)) {
      this.handlers.onHover(null, e.timeStamp);
      return;
    }
    const p = this.toOriginal(e);
    if (!p) return;
    // One hover per animation frame at most: pointer events can fire far more often.
    this.lastHover = { p, t: e.timeStamp };
    if (!this.hoverFrame) {
      this.hoverFrame = requestAnimationFrame(() => {
        this.hoverFrame = 0;
        if (this.lastHover && !this.press) this.handlers.onHover(this.lastHover.p, this.lastHover.t);
      });
    }
  }

  private up(e: PointerEvent): void {
    const press = this.press;
    if (!press || press.id !== e.pointerId) return;
    this.press = null;
    if (press.timer !== null) clearTimeout(press.timer);
    if (this.el.hasPointerCapture(e.pointerId)) this.el.releasePointerCapture(e.pointerId);
    if (press.marker) {
      if (press.marker.kind === 'point') this.handlers.onRemovePoint(press.marker.index, e.timeStamp);
      else this.handlers.onRemoveBox(e.timeStamp);
      return;
    }
    if (press.dragging) {
      const box = this.dragBox;
      this.dragBox = null;
      this.renderMarkers();
      if (box && (box.x1 - box.x0) * this.scale >= 3 && (box.y1 - box.y0) * this.scale >= 3) this.handlers.onBox(box, e.timeStamp);
      return;
    }
    if (!this.original) return;
    const p = clampToImage(displayToOriginal(press.start, this.scale), this.original);
    const background = press.button === 2 || press.alt || press.longPress || (press.touch && this.backgroundTaps);
    this.handlers.onPoint(p, background ? 0 : 1, e.timeStamp);
  }

  private cancel(): void {
    if (this.press?.timer != null) clearTimeout(this.press.timer);
    this.press = null;
    this.dragBox = null;
    this.renderMarkers();
  }

  private renderMarkers(): void {
    const nodes: SVGElement[] = this.labelled.map((l) => this.captioned(l));
    const box = this.dragBox ?? this.prompts.box;
    if (box) {
      const a = originalToDisplay({ x: box.x0, y: box.y0 }, this.scale);
      const b = originalToDisplay({ x: box.x1, y: box.y1 }, this.scale);
      const rect = document.createElementNS(SVG, 'rect');
      rect.setAttribute('class', this.dragBox ? 'box drag' : 'box');
      rect.setAttribute('x', String(a.x));
      rect.setAttribute('y', String(a.y));
      rect.setAttribute('width', String(b.x - a.x));
      rect.setAttribute('height', String(b.y - a.y));
      nodes.push(rect);
      if (!this.dragBox) {
        const x = document.createElementNS(SVG, 'circle');
        x.setAttribute('class', 'box-remove');
        x.setAttribute('cx', String(b.x));
        x.setAttribute('cy', String(a.y));
        x.setAttribute('r', '7');
        x.dataset.testid = 'box-remove';
        const title = document.createElementNS(SVG, 'title');
        title.textContent = 'Remove the box';
        x.append(title);
        nodes.push(x);
      }
    }
    this.prompts.points.forEach((p, i) => {
      const d = originalToDisplay(p, this.scale);
      const c = document.createElementNS(SVG, 'circle');
      c.setAttribute('class', `marker ${p.label === 1 ? 'fg' : 'bg'}`);
      c.setAttribute('cx', String(d.x));
      c.setAttribute('cy', String(d.y));
      c.setAttribute('r', '6');
      c.setAttribute('data-point', String(i));
      c.dataset.testid = `marker-${i}`;
      const title = document.createElementNS(SVG, 'title');
      title.textContent = `${p.label === 1 ? 'Foreground' : 'Background'} point: click to remove`;
      c.append(title);
      nodes.push(c);
    });
    this.svg.replaceChildren(...nodes);
  }

  private captioned(l: LabelledBox): SVGElement {
    const a = originalToDisplay({ x: l.box.x0, y: l.box.y0 }, this.scale);
    const b = originalToDisplay({ x: l.box.x1, y: l.box.y1 }, this.scale);
    const g = document.createElementNS(SVG, 'g');
    g.setAttribute('class', 'labelled');
    g.dataset.testid = l.testid;
    const rect = document.createElementNS(SVG, 'rect');
    for (const [k, v] of [['x', a.x], ['y', a.y], ['width', b.x - a.x], ['height', b.y - a.y]] as const) rect.setAttribute(k, String(v));
    const text = document.createElementNS(SVG, 'text');
    text.setAttribute('x', String(a.x + 2));
    text.setAttribute('y', String(a.y > 14 ? a.y - 3 : a.y + 12)); // above the box, inside it at the top edge
    text.textContent = l.caption;
    g.append(rect, text);
    return g;
  }

  /** Display px of an original point (for tests and hit checks). */
  toDisplay(p: Point): Point {
    return originalToDisplay(p, this.scale);
  }
}
