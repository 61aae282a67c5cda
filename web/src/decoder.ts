// Page-side client of the decoder worker: request ids, promises, and hover back-pressure (at most one
// hover decode in flight; a newer hover replaces the waiting one, stale ones are dropped; a hover
// starts only once the pointer has rested HOVER_DWELL_MS, so a sweep across the image does not keep
// the worker busy and a click right after a move does not queue behind a preview it never wanted),
// and the per-image graph run ahead for prefetched embeddings, asked for one at a time and only after
// a quiet spell with nothing in flight (prefetch_prep.ts), so no click queues behind one.

import { PrepPlanner, QuietRule, quietWait } from './prefetch_prep';
import type { BackendChoice, DecodeReply, EmbeddingReply, FromWorker, InitRequest, PrepReply, ReadyReply, ToWorker, WireTensor } from './protocol';

type Pending = { resolve: (m: FromWorker) => void; reject: (e: Error) => void };

export interface DecodeInput {
  readonly coords: Float32Array;
  readonly labels: Float32Array;
  readonly maskInput: Float32Array | null;
}

/** An embedding as the worker fetches it: its URL (the cache key: embedding id and dtype), dtype and layout. */
export interface EmbeddingTarget {
  readonly url: string;
  readonly dtype: 'float32' | 'float16';
  readonly tensors: readonly WireTensor[];
}

export class DecoderError extends Error {
  override name = 'DecoderError';
}

/** The page's ?backend= query value (null: not given) as a backend choice; throws on an unknown one. */
export function parseBackend(value: string | null): BackendChoice {
  if (value === null || value === '' || value === 'auto') return 'auto';
  if (value === 'webgpu' || value === 'wasm') return value;
  throw new DecoderError(`Unknown ?backend=${value}: use webgpu, wasm or auto.`);
}

type Omitted<T> = T extends unknown ? Omit<T, 'id'> : never;

/**
 * Name of the decoder-run entries (performance.getEntriesByName): the worker's session.run of each
 * decode, on the page's clock, with detail {hover}; beside the page's 'clicksam:click-to-mask'.
 */
export const DECODE_MEASURE = 'clicksam:decode';

/** The worker's warm-up after start-up (detail {runs, error}: click-graph runs done before a request came). */
export const WARMUP_MEASURE = 'clicksam:warm-up';

/** How long the pointer must rest before a hover preview is decoded. */
export const HOVER_DWELL_MS = 40;

export class DecoderClient {
  private readonly worker: Worker;
  private nextId = 1;
  private readonly pending = new Map<number, Pending>();
  private hoverBusy = false;
  private hoverWaiting: { input: DecodeInput; resolve: (r: DecodeReply | null) => void } | null = null;
  private hoverTimer: ReturnType<typeof setTimeout> | null = null;
  /** Requests in flight other than background preps. */
  private busy = 0;
  private lastActivity = 0;
  private readonly plan = new PrepPlanner();
  private readonly prepTargets = new Map<string, EmbeddingTarget>();
  private prepTimer: ReturnType<typeof setTimeout> | null = null;
  private readonly quiet = new QuietRule();
  /** When the last committed decode answered (on this image), or null. */
  private lastDecodeEnd: number | null = null;

  constructor() {
    this.worker = new Worker(new URL('./decoder.worker.ts', import.meta.url), { type: 'module' });
    this.worker.onmessage = (ev: MessageEvent<FromWorker>) => {
      if (ev.data.type === 'warmed') {
        performance.measure(WARMUP_MEASURE, { start: ev.data.start - performance.timeOrigin, duration: ev.data.ms, detail: { runs: ev.data.runs, error: ev.data.error } });
        return;
      }
      const p = this.pending.get(ev.data.id);
      if (!p) return;
      this.pending.delete(ev.data.id);
      if (ev.data.type === 'error') p.reject(new DecoderError(ev.data.message));
      else p.resolve(ev.data);
    };
    this.worker.onerror = (ev: ErrorEvent) => {
      const err = new DecoderError(`The decoder worker failed: ${ev.message}`);
      for (const p of this.pending.values()) p.reject(err);
      this.pending.clear();
    };
  }

  private send(msg: Omitted<ToWorker>, transfer: Transferable[] = []): Promise<FromWorker> {
    const id = this.nextId++;
    const background = msg.type === 'prep';
    if (!background) {
      this.busy++;
      this.touch();
    }
    const sent = new Promise<FromWorker>((resolve, reject) => {
      this.pending.set(id, { resolve, reject });
      const message = { ...msg, id } as ToWorker;
      this.worker.postMessage(message, transfer);
    });
    if (!background) {
      const end = (): void => {
        this.busy--;
        this.touch();
      };
      sent.then(end, end);
    }
    return sent;
  }

  /**
   * Have the worker run the per-image graph ahead for these prefetched embeddings (best first; this
   * replaces the previous list), each once the page has been quiet for PREP_QUIET_MS.
   */
  prefetch(targets: readonly EmbeddingTarget[]): void {
    this.prepTargets.clear();
    for (const t of targets) this.prepTargets.set(t.url, t);
    this.plan.want(targets.map((t) => t.url));
    this.schedulePrep();
  }

  /** A click, a hover, a load or an answer: the background run waits for a new quiet spell. */
  private touch(): void {
    this.lastActivity = performance.now();
    this.schedulePrep();
  }

  private schedulePrep(): void {
    if (this.prepTimer !== null) clearTimeout(this.prepTimer);
    this.prepTimer = null;
    if (this.plan.next() === null) return;
    const wait = quietWait(performance.now(), this.lastActivity, this.busy > 0 || this.hoverWaiting !== null, this.quiet.quietMs);
    if (wait !== null) this.prepTimer = setTimeout(() => this.startPrep(), wait);
  }

  private startPrep(): void {
    this.prepTimer = null;
    const key = this.plan.next();
    const target = key === null ? undefined : this.prepTargets.get(key);
    const wait = quietWait(performance.now(), this.lastActivity, this.busy > 0 || this.hoverWaiting !== null, this.quiet.quietMs);
    if (!target || wait !== 0) return this.schedulePrep();
    this.plan.started(target.url);
    const done = (skipped: boolean): void => {
      this.plan.finished(target.url, skipped);
      this.schedulePrep();
    };
    this.send({ type: 'prep', url: target.url, dtype: target.dtype, tensors: target.tensors, keep: this.plan.keep }).then(
      (r) => done((r as PrepReply).skipped),
      () => done(false), // opening that image reports the error
    );
  }

  async init(opts: Omit<InitRequest, 'type' | 'id'>): Promise<ReadyReply> {
    return (await this.send({ type: 'init', ...opts })) as ReadyReply;
  }

  async setEmbedding(opts: EmbeddingTarget & { originalSize: readonly [number, number] }): Promise<EmbeddingReply> {
    this.plan.opened(opts.url);
    this.lastDecodeEnd = null; // pauses are measured between clicks on one image
    return (await this.send({ type: 'embedding', ...opts })) as EmbeddingReply;
  }

  /** Decode a committed prompt (click, box, undo...): always runs, in order. */
  async decode(input: DecodeInput): Promise<DecodeReply> {
    if (this.lastDecodeEnd !== null && this.busy === 0) this.quiet.notePause(performance.now() - this.lastDecodeEnd);
    // A click supersedes any hover preview that has not started yet.
    this.clearHoverTimer();
    if (this.hoverWaiting) {
      this.hoverWaiting.resolve(null);
      this.hoverWaiting = null;
    }
    const r = await this.run(input, false);
    this.lastDecodeEnd = performance.now();
    return r;
  }

  /**
   * Decode a hover preview. Resolves null when a newer hover (or a click) replaced it before it
   * started, so previews never queue up behind each other.
   */
  hover(input: DecodeInput): Promise<DecodeReply | null> {
    this.touch();
    if (this.hoverWaiting) this.hoverWaiting.resolve(null);
    const reply = new Promise<DecodeReply | null>((resolve) => {
      this.hoverWaiting = { input, resolve };
    });
    this.clearHoverTimer();
    this.hoverTimer = setTimeout(() => {
      this.hoverTimer = null;
      if (!this.hoverBusy) this.startWaitingHover();
    }, HOVER_DWELL_MS);
    return reply;
  }

  /** Start the waiting hover now (a click at its point will reuse it), unless one is running. */
  startPendingHover(): void {
    this.clearHoverTimer();
    if (!this.hoverBusy) this.startWaitingHover();
  }

  private clearHoverTimer(): void {
    if (this.hoverTimer !== null) clearTimeout(this.hoverTimer);
    this.hoverTimer = null;
  }

  private startWaitingHover(): void {
    const next = this.hoverWaiting;
    this.hoverWaiting = null;
    if (next) this.startHover(next.input).then(next.resolve, () => next.resolve(null));
  }

  private async startHover(input: DecodeInput): Promise<DecodeReply | null> {
    this.hoverBusy = true;
    try {
      return await this.run(input, true);
    } finally {
      this.hoverBusy = false;
      // a newer hover that arrived meanwhile starts now if the pointer has rested long enough
      if (this.hoverTimer === null) this.startWaitingHover();
    }
  }

  private async run(input: DecodeInput, hover: boolean): Promise<DecodeReply> {
    const transfer: Transferable[] = [input.coords.buffer, input.labels.buffer];
    if (input.maskInput) transfer.push(input.maskInput.buffer);
    const r = (await this.send({ type: 'decode', coords: input.coords, labels: input.labels, maskInput: input.maskInput, hover }, transfer)) as DecodeReply;
    // the worker's clock has its own origin: both are converted through the epoch
    performance.measure(DECODE_MEASURE, { start: r.runStart - performance.timeOrigin, duration: r.runMs, detail: { hover } });
    return r;
  }

  terminate(): void {
    this.worker.terminate();
  }
}
