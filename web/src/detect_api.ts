// Typed client for the open-vocabulary detector (issue 19): whether the server has one
// (GET /api/config's "detector" and "detector_hint") and POST /api/embeddings/{id}/detect, which
// answers boxes in ORIGINAL image pixels, best first. Answers are checked on arrival, so a server
// that says something else fails with a message instead of drawing nonsense. Errors are ApiError
// with the server's detail, like every other call (api.ts).

import { ApiError, errorDetail } from './api';

/** What the server's detector can do (GET /api/config "detector"). */
export interface DetectorInfo {
  readonly model: string;
  readonly text: boolean;
  readonly exemplars: boolean;
}

/** The detector, or null with the server's reason and how to turn it on. */
export interface DetectorConfig {
  readonly detector: DetectorInfo | null;
  readonly hint: string | null;
}

/** A box [x0, y0, x1, y1] in original image pixels, x0 <= x1, y0 <= y1. */
export type Box = readonly [number, number, number, number];

export interface Detection {
  /** The text query that found it (or the server's name for an exemplar query). */
  readonly label: string;
  readonly box: Box;
  readonly score: number;
}

export interface DetectResult {
  readonly model: string;
  /** Best first. */
  readonly detections: readonly Detection[];
}

export interface DetectRequest {
  readonly text?: readonly string[];
  readonly exemplars?: readonly Box[];
  readonly threshold?: number;
  readonly max_detections?: number;
}

/** The server answered something that is not what this page reads. */
export class DetectAnswerError extends Error {
  override name = 'DetectAnswerError';
}

const NO_HINT = 'This server has no text detector: start it with `clicksam serve --text-model owlv2-base` (after `pip install clicksam[text]` and `clicksam weights download owlv2-base`).';

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** The detector part of GET /api/config; an older server without the field has no detector. */
export function parseDetectorConfig(raw: unknown): DetectorConfig {
  if (!isObject(raw)) throw new DetectAnswerError('/api/config must be a JSON object');
  const d = raw.detector;
  const hint = typeof raw.detector_hint === 'string' && raw.detector_hint ? raw.detector_hint : null;
  if (d === null || d === undefined) return { detector: null, hint: hint ?? NO_HINT };
  if (!isObject(d) || typeof d.model !== 'string' || typeof d.text !== 'boolean' || typeof d.exemplars !== 'boolean') {
    throw new DetectAnswerError(`/api/config "detector" must be {model, text, exemplars} or null, got ${JSON.stringify(d)}`);
  }
  return { detector: { model: d.model, text: d.text, exemplars: d.exemplars }, hint: null };
}

/** Check a detect answer: finite boxes with x0 <= x1, y0 <= y1, scores, labels; kept best first. */
export function parseDetectResult(raw: unknown): DetectResult {
  if (!isObject(raw) || typeof raw.model !== 'string' || !Array.isArray(raw.detections)) {
    throw new DetectAnswerError('the detect answer must be {"model": str, "detections": [...]}');
  }
  const detections = raw.detections.map((d: unknown, i): Detection => {
    const box = isObject(d) ? d.box : undefined;
    const ok =
      isObject(d) &&
      typeof d.label === 'string' &&
      typeof d.score === 'number' &&
      Number.isFinite(d.score) &&
      Array.isArray(box) &&
      box.length === 4 &&
      box.every((v) => typeof v === 'number' && Number.isFinite(v));
    if (!ok) throw new DetectAnswerError(`detection ${i} must be {label: str, box: [x0, y0, x1, y1], score: number}, got ${JSON.stringify(d)}`);
    const [x0, y0, x1, y1] = box as [number, number, number, number];
    if (x1 < x0 || y1 < y0) throw new DetectAnswerError(`detection ${i}: box ${JSON.stringify(box)} has x1 < x0 or y1 < y0`);
    return { label: d.label as string, box: [x0, y0, x1, y1], score: d.score as number };
  });
  return { model: raw.model, detections: [...detections].sort((a, b) => b.score - a.score) };
}

async function call(url: string, init?: RequestInit): Promise<unknown> {
  let res: Response;
  try {
    res = await fetch(url, init);
  } catch (e) {
    throw new ApiError(`Cannot reach the server (${e instanceof Error ? e.message : String(e)}); is clicksam serve running?`, 0);
  }
  let body: unknown = null;
  try {
    body = await res.json();
  } catch {
    body = null; // not JSON (a proxy's page): the status line says what happened
  }
  if (!res.ok) throw new ApiError(errorDetail(body, res.status, res.statusText), res.status);
  return body;
}

export async function getDetectorConfig(): Promise<DetectorConfig> {
  return parseDetectorConfig(await call('api/config'));
}

/** Run the detector on an encoded image (its embedding id): boxes in original pixels, best first. */
export async function postDetect(embeddingId: string, req: DetectRequest, signal?: AbortSignal): Promise<DetectResult> {
  const init: RequestInit = { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify(req) };
  if (signal) init.signal = signal;
  return parseDetectResult(await call(`api/embeddings/${encodeURIComponent(embeddingId)}/detect`, init));
}
