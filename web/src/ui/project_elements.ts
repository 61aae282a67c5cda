// The page elements a project drives (index.html; main.ts finds them): the projects list, the
// gallery pane, and the project tools above the objects list.

import type { HomeElements } from '../projects_home';

export interface ProjectElements extends HomeElements {
  /** The one-image work area (stage and side panel), hidden on the projects list. */
  readonly workArea: readonly HTMLElement[];
  readonly galleryPane: HTMLElement;
  readonly gallery: HTMLElement;
  readonly galleryToggle: HTMLButtonElement;
  readonly title: HTMLElement;
  readonly addImages: HTMLInputElement;
  readonly addFolder: HTMLInputElement;
  readonly tools: HTMLElement;
  readonly prev: HTMLButtonElement;
  readonly next: HTMLButtonElement;
  readonly position: HTMLElement;
  readonly saveState: HTMLElement;
  readonly conflict: HTMLElement;
  readonly conflictReload: HTMLButtonElement;
  readonly conflictOverwrite: HTMLButtonElement;
  readonly category: HTMLSelectElement;
  readonly status: HTMLSelectElement;
  readonly prelabel: HTMLButtonElement;
  readonly refine: HTMLButtonElement;
  readonly proposalsBox: HTMLElement;
  readonly proposalCount: HTMLElement;
  readonly keepThreshold: HTMLInputElement;
  readonly keepAbove: HTMLButtonElement;
  readonly discardAll: HTMLButtonElement;
  readonly proposalList: HTMLElement;
  readonly exportFormat: HTMLSelectElement;
  readonly exportButton: HTMLButtonElement;
  readonly statusLine: HTMLElement;
  readonly error: HTMLElement;
}
