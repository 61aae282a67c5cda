// "Find…" on the page (issue 19): a text field (Enter runs it) and "More like this" (the drawn box,
// else the current mask's box, as an exemplar) ask the server's open-vocabulary detector for boxes;
// each box is decoded in the browser as a SAM box prompt into a proposal (detections.ts) drawn with
// its label and score. The person keeps one (its label becomes the object's category, so COCO
// exports it), discards it, or clicks it to refine it with clicks (box + points) and keeps it with
// Enter. On a server without a detector the field is hidden and the server's hint says why.
// It plugs into the page as a PageExtension, beside a project's.

import { ApiError } from './api';
import type { DecodeInput } from './decoder';
import { type DetectRequest, type Detection, type DetectorInfo, getDetectorConfig, postDetect } from './detect_api';
import { type DetectionProposal, MAX_QUERIES, boxCaption, decodeDetections, exemplarBox, fromBox, parseQuery, sameBox, samBoxDecoder, toBox } from './detections';
import type { Point, Size } from './frames';
import type { AnnotationInfo, SavedObject } from './objects';
import type { Layer } from './overlay';
import type { Page } from './page';
import type { PageExtension } from './page_parts';
import { Proposals } from './proposals';
import { ProposalsList } from './ui/proposals_list';
import type { LabelledBox } from './ui/stage';
import { StatusBar } from './ui/status';

export interface FindElements {
  readonly form: HTMLFormElement;
  readonly input: HTMLInputElement;
  readonly more: HTMLButtonElement;
  /** Why there is no Find here (shown instead of the form). */
  readonly hint: HTMLElement;
  readonly box: HTMLElement;
  readonly count: HTMLElement;
  readonly list: HTMLElement;
  readonly keepThreshold: HTMLInputElement;
  readonly keepAbove: HTMLButtonElement;
  readonly discardAll: HTMLButtonElement;
  readonly status: HTMLElement;
  readonly error: HTMLElement;
}

/** Page query options forwarded to the detector (for experts and tests). */
const QUERY_OPTIONS = { detect_threshold: 'threshold', max_detections: 'max_detections' } as const;

export class Find implements PageExtension {
  private detector: DetectorInfo | null = null;
  private hint: string | null = null;
  private readonly proposals = new Proposals<DetectionProposal>();
  /** Detections still being decoded (their boxes are drawn already). */
  private pending: Detection[] = [];
  /** Detections handed to the editor: a kept object with the same box prompt takes the label. */
  private adopted: DetectionProposal[] = [];
  private seq = 0;
  private nextId = 1;
  private ran = false;
  private busy = false;
  private lastQuery: DetectRequest | null = null;
  private readonly bar: StatusBar;
  private readonly list: ProposalsList;

  constructor(
    private readonly page: Page,
    private readonly els: FindElements,
    private readonly query: URLSearchParams,
    /** The category an object found as `label` gets (a project maps it to one of its own). */
    private readonly categoryFor: (label: string) => string = (label) => label,
  ) {
    this.bar = new StatusBar(els.status, els.error);
    this.list = new ProposalsList(els.box, els.count, els.list, { keep: (id) => this.keep([this.proposals.take(id)]), discard: (id) => this.discard(id) }, 'detection');
    els.form.hidden = true;
    els.form.addEventListener('submit', (e) => {
      e.preventDefault();
      void this.find(els.input.value);
    });
    els.more.addEventListener('click', () => void this.moreLikeThis());
    els.keepAbove.addEventListener('click', () => this.keep(this.proposals.takeAbove(Number(els.keepThreshold.value) || 0)));
    els.discardAll.addEventListener('click', () => this.discard(null));
  }

  /** Ask the server whether it has a detector: show the field, or hide it and say why. */
  async start(): Promise<void> {
    try {
      const c = await getDetectorConfig();
      this.detector = c.detector;
      this.hint = c.hint;
    } catch (e) {
      this.detector = null;
      this.hint = `Find is off: ${e instanceof Error ? e.message : String(e)}`;
    }
    const d = this.detector;
    this.els.form.hidden = d === null;
    this.els.input.disabled = !d?.text;
    this.els.more.hidden = !d?.exemplars;
    this.els.hint.hidden = d !== null;
    this.els.hint.textContent = this.hint ?? '';
    if (d) this.els.input.placeholder = d.text ? 'Find… (e.g. dog, red car)' : 'Find: this detector takes exemplars only';
  }

  /** Find every object matching the comma-separated queries of `text`. */
  async find(text: string): Promise<void> {
    const queries = parseQuery(text);
    if (!queries.length) return this.bar.status('Type what to find (several: comma-separated), then Enter.');
    if (queries.length > MAX_QUERIES) return this.bar.error(`At most ${MAX_QUERIES} queries at once; you typed ${queries.length}.`);
    await this.run({ text: queries });
  }

  /** Find objects like the drawn box, or like the current mask. */
  async moreLikeThis(): Promise<void> {
    const s = this.page.selection();
    const box = s && exemplarBox(s.prompts, s.mask, s.size);
    if (!box) return this.bar.status('Draw a box around an example (or click one), then “More like this”.');
    await this.run({ exemplars: [box] });
  }

  private async run(req: DetectRequest): Promise<void> {
    const img = this.page.session.image;
    const target = this.page.session.target;
    const manifest = this.page.session.manifest;
    if (!img || !target || !manifest) return this.bar.status('Open an image first, then Find.');
    this.clear(); // the previous query's detections go (and its decoding stops)
    const seq = ++this.seq;
    const full: DetectRequest = { ...req, ...this.options() };
    this.lastQuery = full;
    this.ran = true;
    this.busy = true;
    this.bar.clearError();
    let stop = this.bar.progress('Finding…');
    try {
      const res = await postDetect(img.meta.id, full);
      if (seq !== this.seq) return;
      this.pending = [...res.detections];
      this.render();
      stop();
      stop = this.bar.progress(`${res.detections.length} found by ${res.model}; decoding their masks…`);
      const alive = (): boolean => seq === this.seq;
      const session = this.page.session;
      const counted = {
        decode: async (i: DecodeInput) => {
          const r = await session.decoder.decode(i);
          session.noteDecode(r); // the status line's decode time and the test hooks' count
          return r;
        },
      };
      const decode = samBoxDecoder(counted, target, manifest.maskThreshold);
      const n = await decodeDetections(res.detections, decode, (p) => this.found(p), { firstId: this.nextId, alive });
      this.nextId += res.detections.length;
      if (!alive()) return;
      this.pending = [];
      this.render();
      const found = res.detections.length;
      const empty = found > n ? ` (${found - n} of the ${found} boxes gave SAM an empty mask: left out)` : '';
      this.bar.status(n ? `${n} found by ${res.model}${empty}: keep, discard, or click one to refine it.` : `Nothing found by ${res.model}${empty}; try other words or a lower threshold.`);
    } catch (e) {
      if (seq === this.seq) {
        this.pending = [];
        this.render();
        this.bar.error(e instanceof ApiError || e instanceof Error ? e.message : String(e));
      }
    } finally {
      stop();
      if (seq === this.seq) this.busy = false;
    }
  }

  /** ?detect_threshold= and ?max_detections= of the page's address, when given. */
  private options(): Partial<Record<'threshold' | 'max_detections', number>> {
    const out: Partial<Record<'threshold' | 'max_detections', number>> = {};
    for (const [param, key] of Object.entries(QUERY_OPTIONS)) {
      const v = this.query.get(param);
      if (v !== null && v !== '') out[key] = Number(v);
    }
    return out;
  }

  private found(p: DetectionProposal): void {
    this.pending = this.pending.filter((d) => !sameBox(fromBox(d.box), p.box) || d.label !== p.label);
    this.proposals.set([...this.proposals.all, p], this.page.session.image?.geom.original ?? null);
    this.render();
  }

  /** Keep proposals as objects: label -> category, source "text", the detector's score, the box as prompt. */
  private keep(taken: ReadonlyArray<DetectionProposal | null>): void {
    const size = this.page.session.image?.geom.original;
    if (!size) return;
    let n = 0;
    for (const p of taken) {
      if (!p) continue;
      this.page.objects.addMask(p.mask, size, this.info(p));
      n++;
    }
    this.render();
    if (n) this.page.refreshObjects();
  }

  private info(p: DetectionProposal): AnnotationInfo {
    return { category: this.categoryFor(p.label), source: 'text', score: Math.round(p.score * 1e4) / 1e4, prompts: { points: [], box: toBox(p.box) } };
  }

  private discard(id: number | null): void {
    if (id === null) this.proposals.set([], this.proposals.all.length ? (this.page.session.image?.geom.original ?? null) : null);
    else this.proposals.take(id);
    this.render();
  }

  /** Forget this image's detections (and stop decoding them). */
  private clear(): void {
    this.seq++;
    this.pending = [];
    this.adopted = [];
    this.proposals.set([], null);
    this.busy = false;
    this.render();
  }

  private render(): void {
    this.list.render(this.proposals.all, this.ran);
    const boxes: LabelledBox[] = [
      ...this.proposals.all.map((p) => ({ box: p.box, caption: boxCaption(p), testid: `detection-box-${p.id}` })),
      ...this.pending.map((d, i) => ({ box: fromBox(d.box), caption: boxCaption(d), testid: `detection-pending-${i}` })),
    ];
    this.page.repaint(boxes);
  }

  // ---------------------------------------------------------------- PageExtension

  layers(size: Size): Layer[] {
    return this.proposals.layers(size);
  }

  pick(p: Point): { point: Point; mask: Uint8Array; iou: number; box: DetectionProposal['box'] } | null {
    const q = this.proposals.at(p);
    if (!q) return null;
    this.proposals.take(q.id);
    this.adopted.push(q);
    this.render();
    return { point: q.point, mask: q.mask, iou: q.score, box: q.box };
  }

  kept(o: SavedObject): void {
    const box = o.annotation.prompts?.box;
    const from = box ? this.adopted.find((q) => sameBox(q.box, fromBox(box))) : undefined;
    if (!from) return;
    this.adopted = this.adopted.filter((q) => q !== from);
    const info = this.info(from);
    o.annotation.category = info.category;
    o.annotation.source = 'text';
    o.annotation.score = info.score;
  }

  objectsChanged(): void {}

  imageChanged(): void {
    this.ran = false;
    this.lastQuery = null;
    this.clear();
  }

  /** A pixel (original px) where a click picks `q` (the smallest proposal there), or null. */
  private pickPoint(q: DetectionProposal): Point | null {
    const w = this.page.session.image?.geom.original.w ?? 0;
    for (let k = 0; k < q.mask.length; k += 7) {
      const p = { x: (k % w) + 0.5, y: Math.floor(k / w) + 0.5 };
      if (q.mask[k] && this.proposals.at(p) === q) return p;
    }
    return null;
  }

  /** Test hook: what Find shows. */
  debug(): Record<string, unknown> {
    return {
      enabled: this.detector !== null,
      detector: this.detector,
      hint: this.hint,
      busy: this.busy,
      query: this.lastQuery,
      pending: this.pending.length,
      embeddingId: this.page.session.image?.meta.id ?? null,
      detections: this.proposals.all.map((p) => ({ id: p.id, label: p.label, score: p.score, box: toBox(p.box), area: p.area, point: p.point, pick: this.pickPoint(p) })),
      adopted: this.adopted.map((p) => ({ id: p.id, label: p.label })),
    };
  }
}
