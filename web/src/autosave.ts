// Autosave of one image's annotations, as a state machine with no DOM (tested in autosave.test.ts):
// edits are saved after a quiet period (debounce), one save at a time, each based on the version
// the last one returned. A stale version (409) stops saving in the 'conflict' state, with the local
// edits kept, until the person chooses: overwrite (save ours over the server's version) or reload
// (the caller reads the server's and calls reset). A failed save retries later when that may help
// (network, 5xx); a refused one (422) waits for the next edit.
//
//   saved --changed--> pending --quiet--> saving --ok--> saved (or pending if edited meanwhile)
//                                          saving --409--> conflict --overwrite--> saving
//                                          saving --error--> error --retry / changed--> saving

export type SaveState = 'saved' | 'pending' | 'saving' | 'conflict' | 'error';

export interface AutosaveOptions<T> {
  /** Quiet time after the last edit before saving. */
  readonly delayMs: number;
  /** Wait before retrying a failed (non-conflict) save. */
  readonly retryMs: number;
  /** What to save, read when the save starts. */
  snapshot(): T;
  /** Save `snapshot` based on `version`; resolves with the new version, throws on failure. */
  save(version: number, snapshot: T): Promise<number>;
  /** The server's current version (for an overwrite after a conflict). */
  latest(): Promise<number>;
  /** Whether a save's error means "stale version". */
  isConflict(error: unknown): boolean;
  /** Whether trying the same save again may work (a network error, 5xx); else it waits for the next edit. */
  isRetryable(error: unknown): boolean;
  /** The state changed; `detail` says why a save failed. */
  state(state: SaveState, detail: string | null): void;
}

export class Autosave<T> {
  private versionValue: number;
  private stateValue: SaveState = 'saved';
  private dirty = false;
  private timer: ReturnType<typeof setTimeout> | null = null;
  private running: Promise<void> | null = null;

  constructor(
    version: number,
    private readonly opts: AutosaveOptions<T>,
  ) {
    this.versionValue = version;
  }

  /** The version the next save is based on (the last read or saved). */
  get version(): number {
    return this.versionValue;
  }

  get state(): SaveState {
    return this.stateValue;
  }

  /** Edits not yet saved (pending, saving again, or held by a conflict or error). */
  get unsaved(): boolean {
    return this.dirty || this.running !== null;
  }

  /** A local edit: save once the edits pause. In a conflict the edit is kept and waits for the choice. */
  changed(): void {
    this.dirty = true;
    if (this.stateValue === 'conflict') return;
    if (!this.running) this.set('pending', null);
    this.schedule(this.opts.delayMs);
  }

  /** Save now what is pending; resolves when saved, or when a save ended in a conflict or error. */
  flush(): Promise<void> {
    this.clearTimer();
    if (this.running) return this.running.then(() => this.flush());
    if (!this.dirty || this.stateValue === 'conflict') return Promise.resolve();
    const run = this.saveOnce().finally(() => {
      this.running = null;
    });
    this.running = run;
    return run;
  }

  /** After a conflict: save the local edits over whatever the server has now. */
  async overwrite(): Promise<void> {
    if (this.stateValue !== 'conflict') return;
    try {
      this.versionValue = await this.opts.latest();
    } catch (e) {
      this.opts.state(this.stateValue, message(e));
      return;
    }
    this.dirty = true;
    this.set('pending', null);
    await this.flush();
  }

  /** Start over from `version` (a reload, or another image): nothing pending, no timer. */
  reset(version: number): void {
    this.clearTimer();
    this.versionValue = version;
    this.dirty = false;
    this.set('saved', null);
  }

  /** Stop for good (the image is left): no timer fires after this. */
  dispose(): void {
    this.clearTimer();
  }

  private async saveOnce(): Promise<void> {
    this.dirty = false;
    const snapshot = this.opts.snapshot();
    const base = this.versionValue;
    this.set('saving', null);
    try {
      this.versionValue = await this.opts.save(base, snapshot);
    } catch (e) {
      this.dirty = true;
      if (this.opts.isConflict(e)) {
        this.set('conflict', message(e));
      } else {
        this.set('error', message(e));
        if (this.opts.isRetryable(e)) this.schedule(this.opts.retryMs);
      }
      return;
    }
    this.set(this.dirty ? 'pending' : 'saved', null);
  }

  private schedule(ms: number): void {
    this.clearTimer();
    this.timer = setTimeout(() => {
      this.timer = null;
      void this.flush();
    }, ms);
  }

  private clearTimer(): void {
    if (this.timer !== null) clearTimeout(this.timer);
    this.timer = null;
  }

  private set(state: SaveState, detail: string | null): void {
    this.stateValue = state;
    this.opts.state(state, detail);
  }
}

function message(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}
