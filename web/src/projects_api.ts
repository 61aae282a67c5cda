// Typed client of the projects API (/api/projects, server/routes/projects.py): projects, their
// images, versioned annotation saves, pre-label proposals and exports. Every request carries the server's bearer token
// when the page has one; a 401 asks the person for it once (kept in localStorage) and retries.
// Errors are ApiError with the server's `detail`, as in api.ts.

import { ApiError, errorDetail } from './api';
import type { CocoRle } from './rle';

export type ImageStatus = 'new' | 'in_progress' | 'done' | 'skipped';
export type AnnotationSource = 'manual' | 'everything' | 'text' | 'auto';
export const IMAGE_STATUSES: readonly ImageStatus[] = ['new', 'in_progress', 'done', 'skipped'];
export const EXPORT_FORMATS = ['coco', 'coco-polygons', 'yolo', 'masks'] as const;
export type ExportFormat = (typeof EXPORT_FORMATS)[number];

export interface Project {
  readonly id: number;
  readonly name: string;
  readonly categories: string[];
  readonly image_count: number;
  readonly status_counts: Record<string, number>;
}

export interface ProjectImage {
  readonly id: number;
  readonly file_name: string;
  /** Pixels after EXIF orientation. */
  readonly width: number;
  readonly height: number;
  status: ImageStatus;
  version: number;
  /** Id for /api/embeddings/{id}: in upload answers, null in listings. */
  readonly embedding_id: string | null;
}

export interface UploadRefusal {
  readonly file_name: string;
  readonly status_code: number;
  readonly detail: string;
}

/** Prompts that made a mask, in image px: points [x, y, label], box [x0, y0, x1, y1]. */
export interface SavedPrompts {
  readonly points: Array<[number, number, number]>;
  readonly box: [number, number, number, number] | null;
}

/** One annotation as the page sends it (the server adds bbox, area and timestamps). */
export interface AnnotationIn {
  readonly id?: number;
  readonly category: string;
  readonly segmentation: CocoRle;
  readonly source: AnnotationSource;
  readonly score: number | null;
  readonly prompts: SavedPrompts | null;
}

export interface AnnotationOut extends AnnotationIn {
  readonly id: number;
  readonly bbox: [number, number, number, number];
  readonly area: number;
}

export interface Annotations {
  readonly version: number;
  readonly annotations: AnnotationOut[];
}

/** A pre-label mask stored on the server, waiting to be kept (saved as an annotation) or discarded. */
export interface ServerProposal {
  readonly id: number;
  readonly segmentation: CocoRle;
  readonly bbox: [number, number, number, number];
  readonly area: number;
  readonly source: 'everything' | 'text';
  /** The model's predicted IoU. */
  readonly score: number;
  readonly stability_score: number | null;
  /** The grid point that made it: points [[x, y, 1]] in image px. */
  readonly prompts: SavedPrompts | null;
}

export interface SaveBody {
  readonly version: number;
  readonly annotations: AnnotationIn[];
  readonly status: ImageStatus;
}

const TOKEN_KEY = 'clicksam.token';

function storedToken(): string | null {
  try {
    return localStorage.getItem(TOKEN_KEY);
  } catch {
    return null; // storage disabled: the token lives only as long as the page
  }
}

let token: string | null = storedToken();

async function send(url: string, init: RequestInit): Promise<Response> {
  const headers = new Headers(init.headers);
  if (token) headers.set('Authorization', `Bearer ${token}`);
  try {
    return await fetch(url, { ...init, headers });
  } catch (e) {
    throw new ApiError(`Cannot reach the server (${e instanceof Error ? e.message : String(e)}); is clicksam serve running?`, 0);
  }
}

async function request(url: string, init: RequestInit = {}): Promise<Response> {
  let res = await send(url, init);
  if (res.status === 401) {
    const given = window.prompt('This server needs its access token (CLICKSAM_TOKEN):');
    if (given) {
      token = given.trim();
      try {
        localStorage.setItem(TOKEN_KEY, token);
      } catch {
        // storage disabled: keep it for this page only
      }
      res = await send(url, init);
    }
  }
  if (res.ok) return res;
  let body: unknown = null;
  try {
    body = await res.json();
  } catch {
    body = null; // not JSON: the status line says what happened
  }
  throw new ApiError(errorDetail(body, res.status, res.statusText), res.status);
}

const json = async <T>(res: Promise<Response>): Promise<T> => (await (await res).json()) as T;
const base = (pid: number): string => `api/projects/${pid}`;

export function listProjects(): Promise<{ projects: Project[] }> {
  return json(request('api/projects'));
}

export function getProject(pid: number): Promise<Project> {
  return json(request(base(pid)));
}

export function createProject(name: string, categories: readonly string[]): Promise<Project> {
  return json(request('api/projects', { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify({ name, categories }) }));
}

/** Upload files in one request: the stored images (with embedding ids) and the refused files. */
export function addImages(pid: number, files: readonly File[]): Promise<{ images: ProjectImage[]; errors: UploadRefusal[] }> {
  const form = new FormData();
  for (const f of files) form.append('image', f, f.name);
  return json(request(`${base(pid)}/images`, { method: 'POST', body: form }));
}

/** Upload `files` `batch` at a time (each is encoded before its answer); a failed request refuses its files. */
export async function addImagesInBatches(
  pid: number,
  files: readonly File[],
  batch: number,
  progress: (sent: number) => void,
): Promise<{ images: ProjectImage[]; errors: UploadRefusal[] }> {
  const images: ProjectImage[] = [];
  const errors: UploadRefusal[] = [];
  for (let k = 0; k < files.length; k += batch) {
    const some = files.slice(k, k + batch);
    try {
      const answer = await addImages(pid, some);
      images.push(...answer.images);
      errors.push(...answer.errors);
    } catch (e) {
      errors.push(...some.map((f) => ({ file_name: f.name, status_code: e instanceof ApiError ? e.status : 0, detail: e instanceof Error ? e.message : String(e) })));
    }
    progress(Math.min(k + batch, files.length));
  }
  return { images, errors };
}

export function listImages(pid: number, offset: number, limit: number): Promise<{ images: ProjectImage[]; total: number }> {
  return json(request(`${base(pid)}/images?offset=${offset}&limit=${limit}`));
}

/** The image's bytes as uploaded. */
export async function imageBlob(pid: number, iid: number): Promise<Blob> {
  return (await request(`${base(pid)}/images/${iid}/file`)).blob();
}

export function getAnnotations(pid: number, iid: number): Promise<Annotations> {
  return json(request(`${base(pid)}/images/${iid}/annotations`));
}

/** Replace the image's annotations if `body.version` is current; the new version. 409: stale. */
export async function saveAnnotations(pid: number, iid: number, body: SaveBody): Promise<number> {
  const init = { method: 'PUT', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify(body) };
  return (await json<{ version: number }>(request(`${base(pid)}/images/${iid}/annotations`, init))).version;
}

/** Run segment-everything on the stored image; its masks replace the image's proposals (best first). */
export async function prelabelImage(pid: number, iid: number, options: Readonly<Record<string, number>>): Promise<ServerProposal[]> {
  const init = { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify(options) };
  return (await json<{ proposals: ServerProposal[] }>(request(`${base(pid)}/images/${iid}/prelabel`, init))).proposals;
}

/** The image's proposals nobody has kept or discarded yet, best first. */
export async function getProposals(pid: number, iid: number): Promise<ServerProposal[]> {
  return (await json<{ proposals: ServerProposal[] }>(request(`${base(pid)}/images/${iid}/proposals`))).proposals;
}

/** Remove proposals `ids` (discarded, or kept and saved); ids already gone are ignored. How many went. */
export async function discardProposals(pid: number, iid: number, ids: readonly number[]): Promise<number> {
  const init = { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify({ ids }) };
  return (await json<{ discarded: number }>(request(`${base(pid)}/images/${iid}/proposals/discard`, init))).discarded;
}

export async function exportProject(pid: number, format: ExportFormat): Promise<{ blob: Blob; name: string }> {
  const res = await request(`${base(pid)}/export?format=${format}`);
  const name = /filename="([^"]+)"/.exec(res.headers.get('Content-Disposition') ?? '')?.[1] ?? `project-${pid}-${format}`;
  return { blob: await res.blob(), name };
}
