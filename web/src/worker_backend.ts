/// <reference lib="webworker" />
// Where the decoder worker runs its graphs: onnxruntime-web on WebGPU or on WASM (SIMD + threads),
// chosen from what the browser offers and what the page asks for (?backend=). Used by decoder.worker.ts.

import type * as OrtWasm from 'onnxruntime-web/wasm';
import type { Backend, BackendChoice } from './protocol';

export type Ort = typeof OrtWasm;

interface GpuAdapterLike {
  readonly features: { has(name: string): boolean };
}

/** The browser's WebGPU adapter, or why there is none. */
async function webgpuAdapter(): Promise<{ adapter: GpuAdapterLike } | { adapter: null; reason: string }> {
  const gpu = (navigator as Navigator & { gpu?: { requestAdapter(): Promise<GpuAdapterLike | null> } }).gpu;
  // navigator.gpu exists in headless Chromium with the GPU disabled, but has no adapter
  if (!gpu) return { adapter: null, reason: 'this browser has no navigator.gpu' };
  try {
    const adapter = await gpu.requestAdapter();
    return adapter ? { adapter } : { adapter: null, reason: 'navigator.gpu.requestAdapter() found no adapter' };
  } catch (e) {
    return { adapter: null, reason: `navigator.gpu.requestAdapter() failed: ${e instanceof Error ? e.message : String(e)}` };
  }
}

/**
 * The backend to run on, and whether its shaders can take float16. 'auto' takes WebGPU when there is
 * an adapter and, for a float16 model, it supports shader-f16 (else WASM); a forced 'webgpu' takes
 * any adapter and fails with the reason when there is none, so a test or a person who asked for
 * WebGPU never gets WASM silently.
 */
export async function chooseBackend(choice: BackendChoice, needsF16: boolean): Promise<{ backend: Backend; f16: boolean }> {
  if (choice === 'wasm') return { backend: 'wasm', f16: false };
  const found = await webgpuAdapter();
  const f16 = found.adapter?.features.has('shader-f16') ?? false;
  if (choice === 'webgpu') {
    if (!found.adapter) throw new Error(`WebGPU was asked for (?backend=webgpu), but ${found.reason}. Open the page without ?backend=webgpu to decode on the CPU (WASM).`);
    return { backend: 'webgpu', f16 };
  }
  return { backend: found.adapter && (!needsF16 || f16) ? 'webgpu' : 'wasm', f16 };
}

export async function createSession(ort: Ort, model: Uint8Array, gpu: boolean): Promise<OrtWasm.InferenceSession> {
  return ort.InferenceSession.create(model, {
    executionProviders: gpu ? ['webgpu', 'wasm'] : ['wasm'],
    graphOptimizationLevel: 'all',
  });
}

export async function loadOrt(gpu: boolean, ortBase: string): Promise<Ort> {
  // The WebGPU build also carries the WASM EP; the plain WASM build is smaller and faster to start.
  const ort: Ort = gpu ? await import('onnxruntime-web/webgpu') : await import('onnxruntime-web/wasm');
  ort.env.wasm.wasmPaths = ortBase;
  // Threads need SharedArrayBuffer, which needs cross-origin isolation (COOP/COEP from the server).
  ort.env.wasm.numThreads = wasmThreads();
  ort.env.wasm.simd = true;
  ort.env.logLevel = 'warning';
  return ort;
}

export function wasmThreads(): number {
  return self.crossOriginIsolated ? Math.max(1, Math.min(4, navigator.hardwareConcurrency || 1)) : 1;
}
