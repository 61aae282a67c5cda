// The list of proposals (pre-label masks, or detections with their label: score, size, keep, discard)
// and the autosave badge of a project image.

import type { SaveState } from '../autosave';
import type { Proposal } from '../proposals';

/** At most this many rows (the overlay shows all of them; "keep all above" takes all). */
const MAX_ROWS = 60;

export class ProposalsList {
  constructor(
    private readonly box: HTMLElement,
    private readonly count: HTMLElement,
    private readonly list: HTMLElement,
    private readonly on: { keep(id: number): void; discard(id: number): void },
    /** Test ids: `${prefix}-ID`, `${prefix}-keep-ID`, `${prefix}-discard-ID`. */
    private readonly prefix = 'proposal',
  ) {}

  render(items: ReadonlyArray<Proposal & { readonly label?: string }>, ran: boolean): void {
    this.box.hidden = !ran;
    this.count.textContent = items.length ? `${items.length} proposal${items.length === 1 ? '' : 's'} (dashed): keep, discard, or click one to refine it.` : 'No proposals left.';
    const rows = items.slice(0, MAX_ROWS).map((p) => {
      const li = document.createElement('li');
      li.dataset.testid = `${this.prefix}-${p.id}`;
      const text = document.createElement('span');
      text.className = 'name';
      text.textContent = `${p.label ? `${p.label} · ` : ''}score ${p.score.toFixed(2)} · ${p.area.toLocaleString()} px`;
      const keep = button('Keep', `${this.prefix}-keep-${p.id}`, () => this.on.keep(p.id));
      const discard = button('×', `${this.prefix}-discard-${p.id}`, () => this.on.discard(p.id));
      discard.title = 'Discard';
      li.append(text, keep, discard);
      return li;
    });
    this.list.replaceChildren(...rows);
  }
}

const SAVE_TEXT: Record<SaveState, string> = {
  saved: 'All changes saved',
  pending: 'Unsaved changes…',
  saving: 'Saving…',
  conflict: 'Conflict: this image was saved elsewhere',
  error: 'Not saved',
};

/** The save badge: its text, and `data-state` for the styles and tests. */
export function renderSaveState(el: HTMLElement, state: SaveState, detail: string | null): void {
  el.dataset.state = state;
  el.textContent = detail && state === 'error' ? `${SAVE_TEXT[state]}: ${detail}` : SAVE_TEXT[state];
}

export function button(text: string, testid: string, click: () => void): HTMLButtonElement {
  const b = document.createElement('button');
  b.type = 'button';
  b.textContent = text;
  b.dataset.testid = testid;
  b.addEventListener('click', click);
  return b;
}
