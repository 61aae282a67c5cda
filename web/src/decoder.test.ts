// Tests of the page's ?backend= choice (the worker honours it: tests/e2e/test_webgpu.py).
import { describe, expect, it } from 'vitest';
import { DecoderError, parseBackend } from './decoder';

describe('parseBackend', () => {
  it('reads webgpu and wasm by name, auto when absent or empty', () => {
    expect(parseBackend('webgpu')).toBe('webgpu');
    expect(parseBackend('wasm')).toBe('wasm');
    expect(parseBackend('auto')).toBe('auto');
    expect(parseBackend(null)).toBe('auto');
    expect(parseBackend('')).toBe('auto');
  });

  it('refuses anything else with a message that lists the choices', () => {
    expect(() => parseBackend('gpu')).toThrow(DecoderError);
    expect(() => parseBackend('WebGPU')).toThrow('Unknown ?backend=WebGPU: use webgpu, wasm or auto.');
  });
});
