// Tests of the detector client (detect_api.ts): GET /api/config's detector part (on, off with the
// server's hint, an older server without it, nonsense refused) and the detect answer's checks.
import { describe, expect, it } from 'vitest';
import { DetectAnswerError, parseDetectResult, parseDetectorConfig } from './detect_api';

describe('detector config', () => {
  it('reads a detector and its abilities', () => {
    const c = parseDetectorConfig({ model: 'vit_t', detector: { model: 'owlv2-base', text: true, exemplars: false }, detector_hint: null });
    expect(c).toEqual({ detector: { model: 'owlv2-base', text: true, exemplars: false }, hint: null });
  });

  it('keeps the server hint when there is no detector, and has its own for an older server', () => {
    expect(parseDetectorConfig({ detector: null, detector_hint: 'start with --text-model' })).toEqual({ detector: null, hint: 'start with --text-model' });
    const old = parseDetectorConfig({ model: 'vit_t' });
    expect(old.detector).toBeNull();
    expect(old.hint).toMatch(/--text-model/);
  });

  it('refuses a detector field it cannot read', () => {
    expect(() => parseDetectorConfig({ detector: { model: 'x', text: 'yes', exemplars: true } })).toThrow(DetectAnswerError);
    expect(() => parseDetectorConfig([])).toThrow('/api/config must be a JSON object');
  });
});

describe('detect answer', () => {
  it('reads detections and sorts them best first', () => {
    const r = parseDetectResult({
      model: 'owlv2-test',
      detections: [
        { label: 'cat', box: [1, 2, 30, 40], score: 0.2 },
        { label: 'dog', box: [5.5, 6, 7, 8.25], score: 0.9 },
      ],
    });
    expect(r.model).toBe('owlv2-test');
    expect(r.detections.map((d) => d.label)).toEqual(['dog', 'cat']);
    expect(r.detections[0]!.box).toEqual([5.5, 6, 7, 8.25]);
  });

  it('says which detection is wrong and why', () => {
    expect(() => parseDetectResult({ detections: [] })).toThrow('{"model": str, "detections": [...]}');
    expect(() => parseDetectResult({ model: 'm', detections: [{ label: 'a', box: [0, 0, 1], score: 1 }] })).toThrow('detection 0 must be');
    expect(() => parseDetectResult({ model: 'm', detections: [{ label: 'a', box: [0, 0, 1, 1], score: null }] })).toThrow('detection 0 must be');
    expect(() => parseDetectResult({ model: 'm', detections: [{ label: 'a', box: [0, 0, 1, 1], score: 1 }, { label: 'b', box: [5, 0, 1, 1], score: 1 }] })).toThrow(
      'detection 1: box [5,0,1,1] has x1 < x0 or y1 < y0',
    );
  });
});
