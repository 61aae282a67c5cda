// Tests of the per-image graph's prefetch: the worker's bounded cache, the page's plan of what to
// prepare next, and the quiet-spell rule (the worker's use of them: tests/e2e/test_projects_page.py).
import { describe, expect, it } from 'vitest';
import { PREP_QUIET_MS, PrepCache, PrepPlanner, QuietRule, quietWait } from './prefetch_prep';

/** A cache of 2 entries that records what it releases. */
function cacheOfTwo(): { c: PrepCache<string>; dropped: string[] } {
  const dropped: string[] = [];
  return { c: new PrepCache<string>(2, (v) => dropped.push(v)), dropped };
}

describe('PrepCache', () => {
  it('keeps at most its capacity, dropping the oldest (and releasing it)', () => {
    const { c, dropped } = cacheOfTwo();
    c.put('a', 'A');
    c.put('b', 'B');
    c.put('c', 'C');
    expect(c.keys).toEqual(['b', 'c']);
    expect(dropped).toEqual(['A']);
  });

  it('take removes the entry without releasing it (it becomes the open image)', () => {
    const { c, dropped } = cacheOfTwo();
    c.put('a', 'A');
    expect(c.take('a')).toBe('A');
    expect(c.has('a')).toBe(false);
    expect(c.take('a')).toBeNull();
    expect(dropped).toEqual([]);
  });

  it('put of a known key makes it the newest; keepOnly drops the rest', () => {
    const { c, dropped } = cacheOfTwo();
    c.put('a', 'A');
    c.put('b', 'B');
    c.put('a', 'A');
    c.put('c', 'C');
    expect(c.keys).toEqual(['a', 'c']);
    expect(dropped).toEqual(['B']);
    c.keepOnly(['c', 'z']);
    expect(c.keys).toEqual(['c']);
    expect(dropped).toEqual(['B', 'A']);
  });
});

describe('PrepPlanner', () => {
  it('prepares in the page order, one at a time, each once', () => {
    const p = new PrepPlanner();
    p.want(['next', 'prev']);
    expect(p.next()).toBe('next');
    p.started('next');
    expect(p.next()).toBeNull(); // one in flight
    p.finished('next', false);
    expect(p.next()).toBe('prev');
    p.started('prev');
    p.finished('prev', false);
    expect(p.next()).toBeNull();
    expect(p.keep).toEqual(['next', 'prev']);
  });

  it('asks again for a run the worker skipped, not for one it did', () => {
    const p = new PrepPlanner();
    p.want(['a']);
    p.started('a');
    p.finished('a', true);
    expect(p.next()).toBe('a');
    p.started('a');
    p.finished('a', false);
    expect(p.next()).toBeNull();
  });

  it('an opened embedding is no longer prefetched; a new list replaces the old', () => {
    const p = new PrepPlanner();
    p.want(['b', 'a']);
    p.started('b');
    p.finished('b', false);
    p.opened('b');
    expect(p.keep).toEqual(['a']);
    p.want(['c', 'a']);
    expect(p.next()).toBe('c');
    expect(p.keep).toEqual(['c', 'a']);
    // 'b' was done and dropped: asked for again if it comes back (the worker may have let it go)
    p.want(['b']);
    expect(p.next()).toBe('b');
  });
});

describe('quietWait', () => {
  it('waits for the rest of the quiet spell, never while busy', () => {
    expect(quietWait(1000, 900, false, 300)).toBe(200);
    expect(quietWait(1300, 900, false, 300)).toBe(0);
    expect(quietWait(5000, 900, true, 300)).toBeNull();
    expect(quietWait(100, 100, false)).toBe(PREP_QUIET_MS);
  });
});

describe('QuietRule', () => {
  it('waits longer than the recent pauses between clicks, within bounds', () => {
    const q = new QuietRule(300, 1500, 4);
    expect(q.quietMs).toBe(300);
    q.notePause(100);
    expect(q.quietMs).toBe(300);
    q.notePause(400);
    expect(q.quietMs).toBeCloseTo(440);
    q.notePause(5000);
    expect(q.quietMs).toBe(1500);
    for (let k = 0; k < 4; k++) q.notePause(200); // the long pause left the window
    expect(q.quietMs).toBe(300);
  });
});
