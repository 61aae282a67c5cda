// Entry point: find the page's elements and start the app. Query options: ?wasm=1 skips WebGPU,
// ?variant=NAME picks a decoder variant from the manifest (default: the manifest's default_variant).

import './styles.css';
import { App, type AppElements } from './app';

function el<T extends HTMLElement>(testid: string, type: new () => T): T {
  const found = document.querySelector(`[data-testid="${testid}"]`);
  if (!(found instanceof type)) throw new Error(`page element ${testid} is missing`);
  return found;
}

const els: AppElements = {
  imageInput: el('image-input', HTMLInputElement),
  stage: el('stage', HTMLElement),
  candidates: el('candidates', HTMLElement),
  objects: el('objects-list', HTMLElement),
  status: el('status', HTMLElement),
  error: el('error', HTMLElement),
  notice: el('notice', HTMLElement),
  help: el('help', HTMLButtonElement),
  helpOverlay: el('help-overlay', HTMLElement),
  buttons: {
    undo: el('undo', HTMLButtonElement),
    redo: el('redo', HTMLButtonElement),
    clear: el('clear', HTMLButtonElement),
    accept: el('accept', HTMLButtonElement),
    modeToggle: el('mode-toggle', HTMLButtonElement),
    exportPng: el('export-png', HTMLButtonElement),
    exportCutout: el('export-cutout', HTMLButtonElement),
    exportObjects: el('export-objects', HTMLButtonElement),
    exportCoco: el('export-coco', HTMLButtonElement),
    everything: el('everything', HTMLButtonElement),
  },
};

const params = new URLSearchParams(location.search);
const app = new App(els);
// Read-only hooks for the end-to-end tests and the latency benchmark.
Object.assign(window, {
  __clicksam: {
    state: () => app.debugState(),
    clientPoint: (x: number, y: number) => app.clientPoint({ x, y }),
  },
});
void app.start({ forceWasm: params.get('wasm') === '1', variant: params.get('variant') });
