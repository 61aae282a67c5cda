// Running the decoder's per-image graph ahead for prefetched embeddings, without making a click wait:
// the worker keeps a small cache of that graph's outputs (PrepCache, keyed by the embedding's URL,
// which names the embedding id and its dtype, i.e. the variant's input), and the page asks for a run
// only after a quiet spell with nothing in flight (PrepPlanner + quietWait), one embedding at a time.
// A run cannot be cancelled, so the quiet spell is what keeps clicks from waiting behind one: longer
// than this person's recent pauses between clicks (QuietRule), and nothing queued in the worker.
// Pure: no DOM, no ORT.

/** Embeddings whose per-image outputs the worker keeps besides the open image's (~22 MB each for vit_b). */
export const PREP_CACHE_SIZE = 2;

/** Shortest quiet time (no click, hover or image load, nothing in flight) before a prefetch run. */
export const PREP_QUIET_MS = 300;

/**
 * The quiet time before a background run: PREP_QUIET_MS, or 1.1x the longest of the last 4 pauses
 * between a click's mask and the next click on the same image when that is longer (at most 1.5 s),
 * so a run does not start in the middle of the person's usual rhythm (a run of the per-image graph
 * takes ~100-250 ms on WASM, and a click that comes during one waits for its end).
 */
export class QuietRule {
  private readonly pauses: number[] = [];

  constructor(
    private readonly minMs = PREP_QUIET_MS,
    private readonly maxMs = 1500,
    private readonly window = 4,
  ) {}

  /** A pause of `ms` between one click's answer and the next click. */
  notePause(ms: number): void {
    this.pauses.push(ms);
    if (this.pauses.length > this.window) this.pauses.shift();
  }

  get quietMs(): number {
    return Math.min(this.maxMs, Math.max(this.minMs, 1.1 * Math.max(0, ...this.pauses)));
  }
}

/** A bounded cache, oldest evicted first; `drop` releases what leaves it. */
export class PrepCache<T> {
  private readonly entries = new Map<string, T>();

  constructor(
    private readonly capacity: number,
    private readonly drop: (value: T) => void = () => undefined,
  ) {}

  has(key: string): boolean {
    return this.entries.has(key);
  }

  get keys(): string[] {
    return [...this.entries.keys()];
  }

  /** The value for `key`, removed from the cache (the open image's feeds are not cached twice). */
  take(key: string): T | null {
    const v = this.entries.get(key);
    if (v === undefined) return null;
    this.entries.delete(key);
    return v;
  }

  /** Add `value` as the newest entry; the oldest ones beyond the capacity are dropped. */
  put(key: string, value: T): void {
    const old = this.entries.get(key);
    if (old !== undefined && old !== value) this.drop(old);
    this.entries.delete(key);
    this.entries.set(key, value);
    for (const k of [...this.entries.keys()].slice(0, Math.max(0, this.entries.size - this.capacity))) this.remove(k);
  }

  /** Drop every entry not in `keys` (embeddings the page no longer prefetches). */
  keepOnly(keys: readonly string[]): void {
    for (const k of [...this.entries.keys()]) if (!keys.includes(k)) this.remove(k);
  }

  private remove(key: string): void {
    const v = this.entries.get(key);
    this.entries.delete(key);
    if (v !== undefined) this.drop(v);
  }
}

/**
 * What to ask the worker to prepare next: the prefetched embeddings, in the page's order (next
 * image first), minus those done or in flight. A run the worker skipped (a request came first) is
 * asked again at the next quiet spell; a failed one is not (opening that image reports the error).
 */
export class PrepPlanner {
  private wanted: string[] = [];
  private readonly done = new Set<string>();
  private inFlight: string | null = null;

  /** The embeddings to have ready, best first (replaces the previous list). */
  want(keys: readonly string[]): void {
    this.wanted = [...new Set(keys)];
    for (const k of [...this.done]) if (!this.wanted.includes(k)) this.done.delete(k);
  }

  /** `key` was opened: the worker holds it as the open image, not as a prefetch. */
  opened(key: string): void {
    this.wanted = this.wanted.filter((k) => k !== key);
    this.done.delete(key);
  }

  /** The keys the worker should keep cached. */
  get keep(): readonly string[] {
    return this.wanted;
  }

  /** The next key to prepare, or null (nothing left, or one run is in flight). */
  next(): string | null {
    if (this.inFlight !== null) return null;
    return this.wanted.find((k) => !this.done.has(k)) ?? null;
  }

  started(key: string): void {
    this.inFlight = key;
  }

  /** The run of `key` ended: `skipped` when the worker had a request waiting and did not run it. */
  finished(key: string, skipped: boolean): void {
    if (this.inFlight === key) this.inFlight = null;
    if (!skipped && this.wanted.includes(key)) this.done.add(key);
  }
}

/**
 * Milliseconds still to wait before a background run may start, or null while the page is busy
 * (a request in flight or a hover waiting: the next activity's end schedules again).
 */
export function quietWait(now: number, lastActivity: number, busy: boolean, quietMs: number = PREP_QUIET_MS): number | null {
  if (busy) return null;
  return Math.max(0, lastActivity + quietMs - now);
}
