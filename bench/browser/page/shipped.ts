// What the benchmark page runs of the shipped page code in web/src: the low-res mask -> canvas
// postprocessing (mask.ts) and the frames it needs. run.py bundles this into page/shipped.js
// (rolldown from web/node_modules) before serving the page, so the bench times the page's code.
export { logitsToMask } from '../../../web/src/mask';
export { makeGeometry } from '../../../web/src/frames';
