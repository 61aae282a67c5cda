// Keyboard shortcuts: which command a key press means (a pure function, tested) and the listener
// that hands commands to the page. What a command does is the page's business.

export type KeyCommand =
  | { readonly kind: 'help' }
  /** Close the help if open, else clear the prompts. */
  | { readonly kind: 'escape' }
  | { readonly kind: 'undo' }
  | { readonly kind: 'redo' }
  | { readonly kind: 'accept' }
  /** Show candidate `rank` (0 = best): keys 1, 2, 3. */
  | { readonly kind: 'rank'; readonly rank: number }
  /** Tab / Shift+Tab: the next / previous candidate. */
  | { readonly kind: 'cycle'; readonly back: boolean };

export interface KeyPress {
  readonly key: string;
  readonly ctrlKey: boolean;
  readonly metaKey: boolean;
  readonly shiftKey: boolean;
  /** What has the focus: a text field keeps its keys, a button keeps Enter and Tab. */
  readonly focus: 'text' | 'button' | 'other';
}

export function keyCommand(k: KeyPress): KeyCommand | null {
  if (k.focus === 'text') return null;
  const mod = k.ctrlKey || k.metaKey;
  const key = k.key;
  if (key === '?') return { kind: 'help' };
  if (key === 'Escape') return { kind: 'escape' };
  if (mod && (key === 'z' || key === 'Z')) return { kind: k.shiftKey ? 'redo' : 'undo' };
  if (mod && (key === 'y' || key === 'Y')) return { kind: 'redo' };
  if (key === 'Enter' && k.focus !== 'button') return { kind: 'accept' };
  if (!mod && (key === '1' || key === '2' || key === '3')) return { kind: 'rank', rank: Number(key) - 1 };
  if (key === 'Tab' && !mod && k.focus !== 'button') return { kind: 'cycle', back: k.shiftKey };
  return null;
}

/**
 * Listen for shortcuts on `target`. `run` performs a command and returns false when it did not
 * apply (then the key keeps its default, e.g. Tab moves the focus).
 */
export function bindKeys(target: Document, run: (c: KeyCommand, t: number) => boolean): void {
  target.addEventListener('keydown', (e) => {
    const el = e.target;
    const focus = el instanceof HTMLInputElement || el instanceof HTMLTextAreaElement ? 'text' : el instanceof HTMLButtonElement ? 'button' : 'other';
    const cmd = keyCommand({ key: e.key, ctrlKey: e.ctrlKey, metaKey: e.metaKey, shiftKey: e.shiftKey, focus });
    if (cmd && run(cmd, e.timeStamp)) e.preventDefault();
  });
}
