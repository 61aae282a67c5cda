// Tests of the autosave state machine (autosave.ts): debounce, one save at a time, versions passed
// along, conflicts held until overwrite or reset, retries after errors. A scripted "server" keeps a
// version and answers 409 to a stale one, as PUT .../annotations does.

import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { Autosave, type SaveState } from './autosave';

class Conflict extends Error {}
class Refused extends Error {}

/** A server holding one document and its version; `down` makes saves fail without a conflict. */
function server() {
  const s = { version: 0, doc: '', saves: [] as Array<{ base: number; doc: string }>, down: false, refuse: false, gate: null as Promise<void> | null };
  return {
    s,
    async save(base: number, doc: string): Promise<number> {
      s.saves.push({ base, doc });
      if (s.gate) await s.gate;
      if (s.down) throw new Error('Cannot reach the server');
      if (s.refuse) throw new Refused('the project has no category "x"');
      if (base !== s.version) throw new Conflict(`stale version ${base}, the image is at ${s.version}`);
      s.doc = doc;
      return ++s.version;
    },
  };
}

function setup(start = 0) {
  const srv = server();
  srv.s.version = start;
  let doc = 'a';
  const states: SaveState[] = [];
  const details: Array<string | null> = [];
  const auto = new Autosave<string>(start, {
    delayMs: 500,
    retryMs: 2000,
    snapshot: () => doc,
    save: (v, d) => srv.save(v, d),
    latest: () => Promise.resolve(srv.s.version),
    isConflict: (e) => e instanceof Conflict,
    isRetryable: (e) => !(e instanceof Refused),
    state: (st, detail) => {
      states.push(st);
      details.push(detail);
    },
  });
  return { srv, auto, states, details, edit: (d: string) => ((doc = d), auto.changed()) };
}

beforeEach(() => {
  vi.useFakeTimers();
});
afterEach(() => {
  vi.useRealTimers();
});

/** An autosave whose first save (of 'b') failed because the server was `why` ('down' or refusing). */
async function failedSave(why: 'down' | 'refuse', detail: string) {
  const state = setup();
  state.srv.s[why] = true;
  state.edit('b');
  await vi.advanceTimersByTimeAsync(500);
  expect(state.auto.state).toBe('error');
  expect(state.details.at(-1)).toBe(detail);
  return state;
}

describe('Autosave', () => {
  it('waits for a pause in the edits, then saves once with the last state', async () => {
    const { srv, auto, edit } = setup();
    edit('b');
    await vi.advanceTimersByTimeAsync(300);
    edit('c');
    await vi.advanceTimersByTimeAsync(300);
    expect(srv.s.saves).toEqual([]);
    expect(auto.state).toBe('pending');
    await vi.advanceTimersByTimeAsync(250);
    expect(srv.s.saves).toEqual([{ base: 0, doc: 'c' }]);
    expect(auto.state).toBe('saved');
    expect(auto.version).toBe(1);
    expect(auto.unsaved).toBe(false);
  });

  it('bases each save on the version the previous one returned', async () => {
    const { srv, auto, edit } = setup(4);
    edit('b');
    await auto.flush();
    edit('c');
    await auto.flush();
    expect(srv.s.saves.map((x) => x.base)).toEqual([4, 5]);
    expect(auto.version).toBe(6);
  });

  it('never runs two saves at once: an edit during a save is saved after it', async () => {
    const { srv, auto, edit, states } = setup();
    let open!: () => void;
    srv.s.gate = new Promise((r) => (open = r));
    edit('b');
    await vi.advanceTimersByTimeAsync(500);
    expect(auto.state).toBe('saving');
    edit('c');
    await vi.advanceTimersByTimeAsync(600); // the debounce fires while the first save waits
    expect(srv.s.saves).toHaveLength(1);
    srv.s.gate = null;
    open();
    await vi.advanceTimersByTimeAsync(0);
    await auto.flush();
    expect(srv.s.saves).toEqual([
      { base: 0, doc: 'b' },
      { base: 1, doc: 'c' },
    ]);
    expect(srv.s.doc).toBe('c');
    expect(states.at(-1)).toBe('saved');
  });

  it('stops on a stale version, keeps the edits, and overwrite saves them on the current version', async () => {
    const { srv, auto, edit, details } = setup();
    srv.s.version = 3; // someone else saved meanwhile
    edit('mine');
    await auto.flush();
    expect(auto.state).toBe('conflict');
    expect(details.at(-1)).toBe('stale version 0, the image is at 3');
    expect(auto.unsaved).toBe(true);
    edit('mine 2'); // edits go on, nothing is sent while the conflict stands
    await vi.advanceTimersByTimeAsync(5000);
    expect(srv.s.saves).toHaveLength(1);
    expect(auto.state).toBe('conflict');
    await auto.overwrite();
    expect(srv.s.saves.at(-1)).toEqual({ base: 3, doc: 'mine 2' });
    expect(auto.state).toBe('saved');
    expect(auto.version).toBe(4);
  });

  it('reset (a reload from the server) drops the local edits and the conflict', async () => {
    const { srv, auto, edit } = setup();
    srv.s.version = 2;
    edit('mine');
    await auto.flush();
    expect(auto.state).toBe('conflict');
    auto.reset(2);
    expect(auto.state).toBe('saved');
    expect(auto.unsaved).toBe(false);
    await vi.advanceTimersByTimeAsync(5000);
    expect(srv.s.saves).toHaveLength(1);
    edit('after reload');
    await auto.flush();
    expect(srv.s.saves.at(-1)).toEqual({ base: 2, doc: 'after reload' });
  });

  it('retries a failed save after retryMs and says why it failed', async () => {
    const { srv, auto } = await failedSave('down', 'Cannot reach the server');
    srv.s.down = false;
    await vi.advanceTimersByTimeAsync(1999);
    expect(srv.s.saves).toHaveLength(1);
    await vi.advanceTimersByTimeAsync(1);
    expect(srv.s.saves).toHaveLength(2);
    expect(auto.state).toBe('saved');
    expect(srv.s.doc).toBe('b');
  });

  it('does not retry a refused save; the next edit tries again', async () => {
    const { srv, auto, edit } = await failedSave('refuse', 'the project has no category "x"');
    await vi.advanceTimersByTimeAsync(10000);
    expect(srv.s.saves).toHaveLength(1);
    srv.s.refuse = false;
    edit('c');
    await vi.advanceTimersByTimeAsync(500);
    expect(srv.s.doc).toBe('c');
    expect(auto.state).toBe('saved');
  });

  it('flush with nothing to save sends nothing; dispose stops the timer', async () => {
    const { srv, auto, edit } = setup();
    await auto.flush();
    edit('b');
    auto.dispose();
    await vi.advanceTimersByTimeAsync(5000);
    expect(srv.s.saves).toEqual([]);
  });
});
