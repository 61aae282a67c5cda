// Entry point: finds the page's elements, builds the page, wires input (file chooser, drop, paste,
// buttons, keys) to it, exposes the read-only test hooks and starts. Query options: ?wasm=1 skips
// WebGPU, ?variant=NAME picks a decoder variant from the manifest (default: the manifest's
// default_variant); segment-everything options (points_per_side, ...) are passed to the server.

import './styles.css';
import { bindKeys } from './keys';
import { type ButtonName, Page } from './page';
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

// images in: the file chooser, drag and drop anywhere, paste
const imageInput = el('image-input', HTMLInputElement);
imageInput.addEventListener('change', () => {
  const f = imageInput.files?.[0];
  if (f) page.openImage(f, f.name);
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
  const f = e.dataTransfer?.files[0];
  if (f) page.openImage(f, f.name);
});
document.addEventListener('paste', (e) => {
  const f = (e.clipboardData ? Array.from(e.clipboardData.files) : []).find((x) => x.type.startsWith('image/'));
  if (f) {
    e.preventDefault();
    page.openImage(f, pastedName(f.name, new Date()));
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
  },
});
void page.start({ forceWasm: params.get('wasm') === '1', variant: params.get('variant') });
