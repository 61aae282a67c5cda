// Tests of the page's address parsing (routes.ts): every route round-trips, the rest is one-image mode;
// and of the keys that step through a project's images (gallery.ts).

import { describe, expect, it } from 'vitest';
import { stepForKey } from './gallery';
import { type Route, parseRoute, routeHash } from './routes';

describe('parseRoute', () => {
  it('reads the projects list, a project and one of its images', () => {
    expect(parseRoute('#/projects')).toEqual({ kind: 'projects' });
    expect(parseRoute('#/projects/3')).toEqual({ kind: 'project', pid: 3, iid: null });
    expect(parseRoute('#/projects/3/images/17')).toEqual({ kind: 'project', pid: 3, iid: 17 });
  });

  it('is the one-image page for no hash or anything it does not know', () => {
    for (const h of ['', '#', '#/projects/0', '#/projects/x', '#/projects/3/images/', '#/projects/3/images/-1', '#/projects/01']) {
      expect(parseRoute(h)).toEqual({ kind: 'one-image' });
    }
  });

  it('round-trips through routeHash', () => {
    const routes: Route[] = [{ kind: 'one-image' }, { kind: 'projects' }, { kind: 'project', pid: 5, iid: null }, { kind: 'project', pid: 5, iid: 9 }];
    for (const r of routes) expect(parseRoute(routeHash(r))).toEqual(r);
  });
});

describe('stepForKey', () => {
  const key = (k: string, mods: Partial<{ ctrlKey: boolean; metaKey: boolean; altKey: boolean }> = {}) => ({ key: k, ctrlKey: false, metaKey: false, altKey: false, ...mods });
  it('steps with the arrows and n / p, not in text fields or with modifiers', () => {
    expect([key('ArrowRight'), key('n'), key('ArrowLeft'), key('p'), key('x')].map((k) => stepForKey(k, false))).toEqual([1, 1, -1, -1, 0]);
    expect(stepForKey(key('n'), true)).toBe(0);
    expect(stepForKey(key('ArrowRight', { altKey: true }), false)).toBe(0);
    expect(stepForKey(key('p', { ctrlKey: true }), false)).toBe(0);
  });
});
