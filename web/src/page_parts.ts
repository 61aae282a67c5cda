// What the page is made of and what may plug into it: its elements and buttons (found by main.ts),
// and the extensions a mode on top of the one-image page (a project, the detector's Find) give it.

import type { Point, Size } from './frames';
import type { SavedObject } from './objects';
import type { Layer } from './overlay';
import type { PromptBox } from './prompts';

export type ButtonName = 'undo' | 'redo' | 'clear' | 'accept' | 'modeToggle' | 'exportPng' | 'exportCutout' | 'exportObjects' | 'exportCoco' | 'everything';

export interface PageElements {
  readonly stage: HTMLElement;
  readonly candidates: HTMLElement;
  readonly objects: HTMLElement;
  readonly status: HTMLElement;
  readonly error: HTMLElement;
  readonly notice: HTMLElement;
  readonly help: HTMLButtonElement;
  readonly helpOverlay: HTMLElement;
  readonly buttons: Readonly<Record<ButtonName, HTMLButtonElement>>;
}

/** What a mode on top of the one-image page (a project) adds: overlay layers, click targets, object events. */
export interface PageExtension {
  /** Layers drawn under the current mask (a project's proposals). */
  layers(size: Size): Layer[];
  /**
   * A foreground click with no prompts: a mask to hand to the editor instead (a proposal), or null.
   * With a `box` (a detection, original px) the editor takes the box as its prompt instead, so that
   * clicks refine it as box + points.
   */
  pick(p: Point): { readonly point: Point; readonly mask: Uint8Array; readonly iou: number; readonly box?: PromptBox } | null;
  /** The person kept `o` (Enter / Keep object). */
  kept(o: SavedObject): void;
  /** The kept objects changed (kept, shown or hidden, deleted, or `refreshObjects`). */
  objectsChanged(): void;
  /** A new image replaced the one on screen. */
  imageChanged?(): void;
}
