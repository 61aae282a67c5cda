/// <reference types="vitest/config" />
// Vite config: builds web/dist for `clicksam serve`; dev server proxies the API and decoder to it.
import { copyFileSync, createReadStream, existsSync, mkdirSync, readdirSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { defaultClientConditions, defineConfig, type Plugin } from 'vite';

const here = path.dirname(fileURLToPath(import.meta.url));
const ortDist = path.join(here, 'node_modules', 'onnxruntime-web', 'dist');
// onnxruntime-web loads its wasm binary and the matching .mjs glue at run time from
// `env.wasm.wasmPaths`; we serve them ourselves under /ort/ (no CDN).
const ORT_FILE = /^ort-wasm-simd-threaded(\.asyncify)?\.(wasm|mjs)$/; // plain (WASM) and asyncify (WebGPU) builds

const isolation = {
  'Cross-Origin-Opener-Policy': 'same-origin',
  'Cross-Origin-Embedder-Policy': 'require-corp',
  'Cross-Origin-Resource-Policy': 'same-origin',
};

function ortAssets(): Plugin {
  let outDir = path.join(here, 'dist');
  let building = false;
  return {
    name: 'clicksam-ort-assets',
    configResolved(config) {
      outDir = path.resolve(config.root, config.build.outDir);
      // vitest also runs plugin hooks (with a dummy outDir): copy only for `vite build`
      building = config.command === 'build' && !process.env.VITEST;
    },
    configureServer(server) {
      server.middlewares.use('/ort/', (req, res, next) => {
        const name = (req.url ?? '').split('?')[0]?.replace(/^\//, '') ?? '';
        if (!ORT_FILE.test(name)) return next();
        res.setHeader('Content-Type', name.endsWith('.wasm') ? 'application/wasm' : 'text/javascript');
        for (const [k, v] of Object.entries(isolation)) res.setHeader(k, v);
        createReadStream(path.join(ortDist, name)).pipe(res);
      });
    },
    closeBundle() {
      if (!building) return;
      const dest = path.join(outDir, 'ort');
      mkdirSync(dest, { recursive: true });
      for (const name of readdirSync(ortDist)) {
        if (ORT_FILE.test(name)) copyFileSync(path.join(ortDist, name), path.join(dest, name));
      }
      if (!existsSync(path.join(dest, 'ort-wasm-simd-threaded.wasm'))) {
        throw new Error('onnxruntime-web wasm files were not copied into dist/ort');
      }
    },
  };
}

const backend = 'http://127.0.0.1:8000';

export default defineConfig({
  base: './',
  plugins: [ortAssets()],
  // onnxruntime-web's "extern wasm" builds load the wasm glue (.mjs) and binary from
  // env.wasm.wasmPaths (our /ort/ copy) instead of inlining them into the worker bundle.
  resolve: { conditions: ['onnxruntime-web-use-extern-wasm', ...defaultClientConditions] },
  worker: { format: 'es' },
  optimizeDeps: { exclude: ['onnxruntime-web'] },
  build: { outDir: 'dist', emptyOutDir: true, target: 'es2022', chunkSizeWarningLimit: 1500 },
  server: {
    headers: isolation,
    proxy: { '/api': backend, '/decoder': backend },
  },
  preview: { headers: isolation },
  test: { include: ['src/**/*.test.ts'], environment: 'node' },
});
