// Prompt state -> decoder feeds (padding point, box corners, frames) and the undo/redo history.
import { describe, expect, it } from 'vitest';
import { makeGeometry } from './frames';
import { EMPTY, History, LABEL, addPoint, boxFromCorners, isSingleClick, promptToFeeds, removePoint, setBox } from './prompts';

const g = makeGeometry({ w: 2048, h: 1024 }, 1024, 256); // scale 0.5, input 1024x512

describe('promptToFeeds', () => {
  it('appends the padding point only without a box', () => {
    const s = addPoint(EMPTY, { x: 100, y: 50, label: LABEL.foreground });
    const f = promptToFeeds(s, g);
    expect(f.count).toBe(2);
    expect(Array.from(f.coords)).toEqual([50, 25, 0, 0]);
    expect(Array.from(f.labels)).toEqual([1, -1]);
  });
  it('writes box corners as labels 2 and 3, with no padding point', () => {
    const s = setBox(EMPTY, boxFromCorners({ x: 400, y: 300 }, { x: 200, y: 100 }));
    const f = promptToFeeds(s, g);
    expect(f.count).toBe(2);
    expect(Array.from(f.coords)).toEqual([100, 50, 200, 150]);
    expect(Array.from(f.labels)).toEqual([2, 3]);
  });
  it('puts points before the box and keeps background labels', () => {
    let s = addPoint(EMPTY, { x: 10, y: 20, label: LABEL.foreground });
    s = addPoint(s, { x: 30, y: 40, label: LABEL.background });
    s = setBox(s, { x0: 0, y0: 0, x1: 2048, y1: 1024 });
    const f = promptToFeeds(s, g);
    expect(Array.from(f.labels)).toEqual([1, 0, 2, 3]);
    expect(Array.from(f.coords)).toEqual([5, 10, 15, 20, 0, 0, 1024, 512]);
  });
  it('gives just the padding point for an empty state', () => {
    const f = promptToFeeds(EMPTY, g);
    expect(Array.from(f.labels)).toEqual([-1]);
  });
  it('knows a single click', () => {
    const one = addPoint(EMPTY, { x: 1, y: 1, label: 1 });
    expect(isSingleClick(one)).toBe(true);
    expect(isSingleClick(addPoint(one, { x: 2, y: 2, label: 0 }))).toBe(false);
    expect(isSingleClick(setBox(one, { x0: 0, y0: 0, x1: 1, y1: 1 }))).toBe(false);
    expect(isSingleClick(removePoint(addPoint(one, { x: 2, y: 2, label: 0 }), 1))).toBe(true);
  });
});

describe('History', () => {
  it('undoes and redoes, and a new push clears redo', () => {
    const h = new History(EMPTY);
    const a = addPoint(EMPTY, { x: 1, y: 1, label: 1 });
    const b = addPoint(a, { x: 2, y: 2, label: 0 });
    h.push(a);
    h.push(b);
    expect(h.current).toBe(b);
    expect(h.undo()).toBe(a);
    expect(h.undo()).toBe(EMPTY);
    expect(h.undo()).toBeNull();
    expect(h.canUndo).toBe(false);
    expect(h.redo()).toBe(a);
    expect(h.canRedo).toBe(true);
    const c = setBox(a, { x0: 0, y0: 0, x1: 5, y1: 5 });
    h.push(c);
    expect(h.canRedo).toBe(false);
    expect(h.redo()).toBeNull();
    expect(h.current).toBe(c);
    h.reset(EMPTY);
    expect(h.canUndo).toBe(false);
    expect(h.current).toBe(EMPTY);
  });
});

describe('History limit', () => {
  it('forgets the oldest undo steps past the limit', () => {
    const h = new History(0, 3);
    for (let i = 1; i <= 5; i++) h.push(i);
    expect(h.undo()).toBe(4);
    expect(h.undo()).toBe(3);
    expect(h.undo()).toBe(2);
    expect(h.undo()).toBeNull();
    expect(h.current).toBe(2);
  });
});
