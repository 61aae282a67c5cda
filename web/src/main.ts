// Entry point: finds the page's elements, builds the page, wires input (file chooser, drop, paste,
// buttons, keys) to it, exposes the read-only test hooks and starts. Query options:
// ?backend=webgpu|wasm forces a decoder backend (default auto), ?variant=NAME picks a decoder
// variant from the manifest (default: the manifest's default_variant); segment-everything options
// (points_per_side, ...) are passed to the server.
// The address's hash opens projects (#/projects, #/projects/3/images/17; see project_view.ts):
// then files go to the project instead of the one-image page.

import './styles.css';
import { categoryFor } from './detections';
import { Find } from './find';
import { bindKeys } from './keys';
import { Page } from './page';
import type { ButtonName } from './page_parts';
import { ProjectView } from './project_view';
import { pastedName } from './session';

function el<T extends HTMLElement>(testid: string, type: new () => T): T {
  const found = document.querySelector(`[data-testid="${testid}"]`);
  if (!(found instanceof type)) throw new Error(`page element ${testid} is missing`);
  return found;
}

const button = (testid: string): HTMLButtonElement => el(testid, HTMLButtonElement);
const buttons: Record<ButtonName, HTMLButtonElement> = {
  undo: button('undo'),
  redo: button('redo'),
  clear: button('clear'),
  accept: button('accept'),
  modeToggle: button('mode-toggle'),
  exportPng: button('export-png'),
  exportCutout: button('export-cutout'),
  exportObjects: button('export-objects'),
  exportCoco: button('export-coco'),
  everything: button('everything'),
};
const stage = el('stage', HTMLElement);
const params = new URLSearchParams(location.search);
const page = new Page(
  {
    stage,
    candidates: el('candidates', HTMLElement),
    objects: el('objects-list', HTMLElement),
    status: el('status', HTMLElement),
    error: el('error', HTMLElement),
    notice: el('notice', HTMLElement),
    help: button('help'),
    helpOverlay: el('help-overlay', HTMLElement),
    buttons,
  },
  params,
);

const input = (testid: string): HTMLInputElement => el(testid, HTMLInputElement);
const projects = new ProjectView(
  page,
  {
    home: el('projects-home', HTMLElement),
    list: el('project-list', HTMLElement),
    form: el('project-create', HTMLFormElement),
    name: input('project-name'),
    categories: input('project-categories'),
    workArea: [stage.closest('.stage-wrap'), document.querySelector('aside.side')].filter((x): x is HTMLElement => x instanceof HTMLElement),
    galleryPane: el('gallery-pane', HTMLElement),
    gallery: el('gallery', HTMLElement),
    galleryToggle: button('gallery-toggle'),
    title: el('project-title', HTMLElement),
    addImages: input('add-images'),
    addFolder: input('add-folder'),
    tools: el('project-tools', HTMLElement),
    prev: button('prev-image'),
    next: button('next-image'),
    position: el('image-position', HTMLElement),
    saveState: el('save-state', HTMLElement),
    conflict: el('conflict', HTMLElement),
    conflictReload: button('conflict-reload'),
    conflictOverwrite: button('conflict-overwrite'),
    category: el('category', HTMLSelectElement),
    status: el('image-status', HTMLSelectElement),
    prelabel: button('prelabel'),
    refine: button('refine'),
    proposalsBox: el('proposals', HTMLElement),
    proposalCount: el('proposal-count', HTMLElement),
    keepThreshold: input('keep-threshold'),
    keepAbove: button('keep-above'),
    discardAll: button('discard-proposals'),
    proposalList: el('proposal-list', HTMLElement),
    exportFormat: el('export-format', HTMLSelectElement),
    exportButton: button('project-export'),
    statusLine: el('status', HTMLElement),
    error: el('error', HTMLElement),
  },
  params,
);
page.extend(projects);

// Find (the server's open-vocabulary detector): in a project a label becomes one of its categories
const find = new Find(
  page,
  {
    form: el('find-form', HTMLFormElement),
    input: input('find-input'),
    more: button('more-like-this'),
    hint: el('find-hint', HTMLElement),
    box: el('detections', HTMLElement),
    count: el('detection-count', HTMLElement),
    list: el('detection-list', HTMLElement),
    keepThreshold: input('detection-keep-threshold'),
    keepAbove: button('detection-keep-above'),
    discardAll: button('detection-discard-all'),
    status: el('status', HTMLElement),
    error: el('error', HTMLElement),
  },
  params,
  (label) => categoryFor(label, projects.active ? projects.categories : null, page.objects.category),
);
page.extend(find);

/** Files the person gave the page: a project takes them all, the one-image page opens the first. */
function filesIn(files: File[], name: (f: File) => string = (f) => f.name): void {
  if (projects.active) void projects.addFiles(files);
  else if (files[0]) page.openImage(files[0], name(files[0]));
}

// images in: the file chooser, drag and drop anywhere, paste
const imageInput = input('image-input');
imageInput.addEventListener('change', () => {
  filesIn(Array.from(imageInput.files ?? []));
  imageInput.value = ''; // choosing the same file again still fires change
});
document.addEventListener('dragover', (e) => {
  e.preventDefault();
  stage.classList.add('drop');
});
document.addEventListener('dragleave', () => stage.classList.remove('drop'));
document.addEventListener('drop', (e) => {
  e.preventDefault();
  stage.classList.remove('drop');
  filesIn(Array.from(e.dataTransfer?.files ?? []));
});
document.addEventListener('paste', (e) => {
  const f = (e.clipboardData ? Array.from(e.clipboardData.files) : []).find((x) => x.type.startsWith('image/'));
  if (f) {
    e.preventDefault();
    filesIn([f], (x) => pastedName(x.name, new Date()));
  }
});

// buttons and keys
const now = (): number => performance.now();
buttons.undo.addEventListener('click', () => page.undo(now()));
buttons.redo.addEventListener('click', () => page.redo(now()));
buttons.clear.addEventListener('click', () => page.clear(now()));
buttons.accept.addEventListener('click', () => page.accept());
buttons.modeToggle.addEventListener('click', () => page.toggleTapMode());
buttons.exportPng.addEventListener('click', () => void page.export('mask'));
buttons.exportCutout.addEventListener('click', () => void page.export('cutout'));
buttons.exportObjects.addEventListener('click', () => void page.export('objects'));
buttons.exportCoco.addEventListener('click', () => void page.export('coco'));
buttons.everything.addEventListener('click', () => page.toggleEverything());
bindKeys(document, (command, t) => page.command(command, t));

// Read-only hooks for the end-to-end tests and the latency benchmark.
Object.assign(window, {
  __clicksam: {
    state: () => page.debugState(),
    clientPoint: (x: number, y: number) => page.clientPoint({ x, y }),
    project: () => projects.debug(),
    find: () => find.debug(),
  },
});
window.addEventListener('hashchange', () => void projects.follow());
void page.start({ backend: params.get('backend'), variant: params.get('variant') }).then(() => Promise.all([projects.follow(), find.start()]));
