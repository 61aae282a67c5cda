// The page's read-only state for the end-to-end tests and the latency benchmark
// (window.__clicksam.state()): plain JSON, with masks summarised by area and hash.

import type { Editor } from './editor';
import type { Everything } from './everything';
import { logitsToMask, maskStats } from './mask';
import type { ObjectStore } from './objects';
import type { Session } from './session';

export interface DebugSources {
  readonly session: Session;
  readonly editor: Editor;
  readonly objects: ObjectStore;
  readonly everything: Everything;
  readonly lastExport: { readonly name: string; readonly bytes: number } | null;
}

export function debugState({ session, editor, objects, everything, lastExport }: DebugSources): Record<string, unknown> {
  const img = session.image;
  const r = editor.mask;
  let maskArea = 0;
  let maskHash = 0;
  if (img && r) {
    const mask = logitsToMask(r.lowRes, r.token, img.geom, img.geom.original, session.manifest?.maskThreshold ?? 0);
    maskArea = maskStats(mask, img.geom.original).area;
    maskHash = fnv1a(mask);
  }
  return {
    decoderReady: session.decoderReady,
    backend: session.backend,
    imageReady: img !== null,
    original: img?.geom.original ?? null,
    input: img?.geom.input ?? null,
    prompts: editor.prompts,
    token: r ? r.token : null,
    ranked: r?.ranked ?? [],
    iou: r ? Array.from(r.iou) : [],
    maskArea,
    maskHash,
    hover: editor.hover !== null,
    objects: objects.all.map((o) => ({ id: o.id, area: o.area, visible: o.visible })),
    decodeCount: session.decodeCount,
    imagesLoaded: session.imagesLoaded,
    lastDecodeMs: session.lastDecodeMs,
    lastExport,
    everything: everything.debug(),
    canUndo: editor.canUndo,
    canRedo: editor.canRedo,
  };
}

/** FNV-1a hash of mask bytes: lets tests tell masks apart without shipping them. */
function fnv1a(bytes: Uint8Array): number {
  let h = 0x811c9dc5;
  for (let k = 0; k < bytes.length; k++) h = Math.imul(h ^ bytes[k]!, 0x01000193);
  return h >>> 0;
}
