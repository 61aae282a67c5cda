// Playwright driver for the clicksam decoder benchmark: one fresh headless Debian Chromium
// (fresh profile: no HTTP/code cache) per job, page results collected as JSON.
// Usage: node drive.mjs JOBS.json OUT.json   (JOBS: {"base": "http://127.0.0.1:PORT/", "jobs": [{"id", "query"}]})
// Chromium: $CHROMIUM or /usr/bin/chromium. Prints one progress line per job on stderr.
import { chromium } from 'playwright-core';
import { mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { cpus, tmpdir } from 'node:os';
import path from 'node:path';

const ARGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking',
  '--disable-component-update', '--disable-sync', '--no-first-run', '--disable-quic'];

// CPU accounting from /proc: machine-wide busy ticks and the ticks of this process tree
// (node + chromium), so a run disturbed by other processes on the shared box can be flagged.
function machineTicks() {
  const f = readFileSync('/proc/stat', 'utf8').split('\n')[0].trim().split(/\s+/).slice(1).map(Number);
  const idle = f[3] + (f[4] || 0);
  return { busy: f.reduce((a, b) => a + b, 0) - idle, total: f.reduce((a, b) => a + b, 0) };
}
function treeTicks() {
  const procs = new Map();
  for (const d of readdirSync('/proc')) {
    if (!/^\d+$/.test(d)) continue;
    try {
      const st = readFileSync(`/proc/${d}/stat`, 'utf8');
      const rest = st.slice(st.lastIndexOf(')') + 2).split(' ');
      procs.set(+d, { ppid: +rest[1], ticks: +rest[11] + +rest[12] + +rest[13] + +rest[14] });
    } catch { /* exited */ }
  }
  const kids = new Map();
  for (const [pid, p] of procs) { if (!kids.has(p.ppid)) kids.set(p.ppid, []); kids.get(p.ppid).push(pid); }
  let ticks = 0; const stack = [process.pid]; const seen = new Set();
  while (stack.length) {
    const pid = stack.pop(); if (seen.has(pid)) continue; seen.add(pid);
    ticks += procs.get(pid)?.ticks || 0;
    for (const k of kids.get(pid) || []) stack.push(k);
  }
  return ticks;
}

async function busyFraction(ms) {
  const a = machineTicks(); await new Promise((r) => setTimeout(r, ms)); const b = machineTicks();
  return (b.busy - a.busy) / Math.max(1, b.total - a.total);
}
// wait (bounded) until the shared machine is mostly idle, so runs start on a quiet box
async function waitIdle(maxS, threshold) {
  const t0 = Date.now(); let busy = await busyFraction(1000);
  while (busy > threshold && (Date.now() - t0) / 1000 < maxS) busy = await busyFraction(1000);
  return busy;
}

async function runJob(base, job, timeoutS) {
  const profile = mkdtempSync(path.join(tmpdir(), 'clicksam-bench-'));
  let ctx;
  const m0 = machineTicks(), o0 = treeTicks();
  try {
    ctx = await chromium.launchPersistentContext(profile, {
      executablePath: process.env.CHROMIUM || '/usr/bin/chromium', headless: true, args: ARGS,
      viewport: { width: 1024, height: 768 },
    });
    const page = ctx.pages()[0] || await ctx.newPage();
    page.on('pageerror', (e) => process.stderr.write(`[pageerror] ${e}\n`));
    const consoleLines = [];
    if (job.console) page.on('console', (m) => consoleLines.push(m.text()));
    await page.goto(`${base}index.html?${job.query}`);
    await page.waitForFunction(() => window.__bench && window.__bench.done, null, { timeout: timeoutS * 1000, polling: 200 });
    const b = await page.evaluate(() => window.__bench);
    const m1 = machineTicks(), o1 = treeTicks();
    const total = Math.max(1, m1.total - m0.total);
    // share of all cores used by processes outside this tree while the job ran
    const other = Math.max(0, (m1.busy - m0.busy) - (o1 - o0)) / total;
    return { id: job.id, ok: b.ok, error: b.error, result: b.result, console: consoleLines, browserVersion: ctx.browser()?.version() ?? null, otherCpu: other };
  } finally {
    if (ctx) await ctx.close().catch(() => {});
    rmSync(profile, { recursive: true, force: true });
  }
}

async function main() {
  const [jobsFile, outFile] = process.argv.slice(2);
  if (!jobsFile || !outFile) { console.error('usage: node drive.mjs JOBS.json OUT.json'); process.exit(2); }
  const spec = JSON.parse(readFileSync(jobsFile, 'utf8'));
  const results = [];
  for (const job of spec.jobs) {
    await waitIdle(spec.waitIdle ?? 60, 0.15);
    const r = await runJob(spec.base, job, spec.timeout || 600);
    process.stderr.write(`[drive] ${job.id}: ${r.ok ? 'ok' : 'FAILED ' + r.error} other_cpu=${(100 * r.otherCpu).toFixed(0)}% of ${cpus().length} cores\n`);
    results.push(r);
  }
  writeFileSync(outFile, JSON.stringify(results));
}

main().catch((e) => { console.error(e && e.stack ? e.stack : e); process.exit(1); });
