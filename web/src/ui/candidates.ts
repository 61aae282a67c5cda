// Thumbnails of SAM's three candidate masks with their predicted IoU, best first.

import type { Size } from '../frames';
import { paintLayers } from '../mask';

export interface CandidateView {
  readonly token: number;
  readonly iou: number;
  /** Thumbnail-size 0/1 mask. */
  readonly mask: Uint8Array;
}

export class Candidates {
  constructor(
    private readonly el: HTMLElement,
    private readonly onPick: (token: number) => void,
  ) {}

  clear(): void {
    this.el.replaceChildren();
  }

  render(items: readonly CandidateView[], thumb: Size, image: ImageBitmap, selectedToken: number): void {
    const nodes = items.map((c, rank) => {
      const b = document.createElement('button');
      b.type = 'button';
      b.className = `candidate${c.token === selectedToken ? ' selected' : ''}`;
      b.dataset.testid = `candidate-${rank}`;
      b.dataset.token = String(c.token);
      b.setAttribute('aria-pressed', String(c.token === selectedToken));
      b.title = `Candidate ${rank + 1} (key ${rank + 1})`;
      const canvas = document.createElement('canvas');
      canvas.width = thumb.w;
      canvas.height = thumb.h;
      const ctx = canvas.getContext('2d');
      if (ctx) {
        ctx.drawImage(image, 0, 0, thumb.w, thumb.h);
        const over = document.createElement('canvas');
        over.width = thumb.w;
        over.height = thumb.h;
        over.getContext('2d')?.putImageData(paintLayers(thumb, [{ mask: c.mask, color: [61, 139, 253, 170] }]), 0, 0);
        ctx.drawImage(over, 0, 0);
      }
      const label = document.createElement('span');
      label.textContent = `${rank + 1} · IoU ${c.iou.toFixed(2)}`;
      b.append(canvas, label);
      b.addEventListener('click', () => this.onPick(c.token));
      return b;
    });
    this.el.replaceChildren(...nodes);
  }
}
