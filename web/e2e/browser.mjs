// Shared helpers for the browser end-to-end tests and the latency benchmark: launch the Debian
// Chromium with playwright-core (no Playwright browser download) and drive the clicksam page.
import { chromium } from 'playwright-core';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';

export const CHROMIUM_ARGS = [
  '--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking',
  '--disable-component-update', '--disable-sync', '--no-first-run',
];

/** Fresh-profile Chromium; returns {ctx, page, close}. `args` replaces CHROMIUM_ARGS (e.g. to add WebGPU flags). */
export async function launch({ executablePath = process.env.CHROMIUM || '/usr/bin/chromium', viewport = { width: 1280, height: 860 }, log = null, touch = false, args = CHROMIUM_ARGS } = {}) {
  const profile = mkdtempSync(path.join(tmpdir(), 'clicksam-e2e-'));
  // Playwright refuses --user-data-dir in args; launchPersistentContext(dir) passes it.
  const ctx = await chromium.launchPersistentContext(profile, {
    executablePath, headless: true, args, viewport, acceptDownloads: true,
    ...(touch ? { hasTouch: true, isMobile: true, deviceScaleFactor: 2 } : {}),
  });
  const page = ctx.pages()[0] ?? (await ctx.newPage());
  if (log) {
    page.on('console', (m) => log(`[console.${m.type()}] ${m.text()}`));
    page.on('pageerror', (e) => log(`[pageerror] ${e}`));
  }
  const close = async () => {
    await ctx.close().catch(() => {});
    rmSync(profile, { recursive: true, force: true });
  };
  return { ctx, page, close };
}

export const state = (page) => page.evaluate(() => window.__clicksam.state());

/** Wait until predicate(state) holds; throws with the last state on timeout. */
export async function waitState(page, predicate, what, timeoutMs = 60000) {
  const t0 = Date.now();
  let s;
  for (;;) {
    s = await state(page);
    if (predicate(s)) return s;
    const err = await page.locator('[data-testid="error"]').evaluate((el) => (el.hidden ? null : el.textContent));
    if (Date.now() - t0 > timeoutMs) throw new Error(`timed out waiting for ${what}; error banner: ${err}; state: ${JSON.stringify(s)}`);
    await page.waitForTimeout(50);
  }
}

/** Viewport coordinates of an original-image pixel. */
export async function clientPoint(page, x, y) {
  const p = await page.evaluate(([a, b]) => window.__clicksam.clientPoint(a, b), [x, y]);
  if (!p) throw new Error('no image on the stage');
  return p;
}

export async function errorText(page) {
  return page.locator('[data-testid="error"]').evaluate((el) => (el.hidden ? null : el.textContent));
}

/** `--name value` pairs into an object (over `defaults`); throws naming the first missing `required`. */
export function parseArgs(argv, required = [], defaults = {}) {
  const o = { ...defaults };
  for (let i = 0; i < argv.length; i += 2) o[argv[i].replace(/^--/, '')] = argv[i + 1];
  for (const k of required) if (!o[k]) throw new Error(`missing --${k}`);
  return o;
}

/**
 * Runs a driver's `body` and writes what it returns as JSON to `out` (stdout when empty); a failure
 * writes `{error, logs}` there instead and is rethrown. The browser is closed either way.
 */
export async function writeOutcome(out, logs, close, body) {
  try {
    const result = await body();
    if (out) writeFileSync(out, JSON.stringify(result, null, 1));
    else console.log(JSON.stringify(result));
  } catch (e) {
    if (out) writeFileSync(out, JSON.stringify({ error: String(e?.stack ?? e), logs: logs.slice(-30) }, null, 1));
    throw e;
  } finally {
    await close();
  }
}
