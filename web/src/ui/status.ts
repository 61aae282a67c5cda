// Status line and error banner. Errors stay until dismissed or replaced; the page keeps working.

export class StatusBar {
  constructor(
    private readonly statusEl: HTMLElement,
    private readonly errorEl: HTMLElement,
  ) {}

  status(text: string): void {
    this.statusEl.textContent = text;
  }

  /** Show `label` with the seconds since now, updated every 100 ms until the returned function is called. */
  progress(label: string): () => void {
    const t0 = performance.now();
    const timer = window.setInterval(() => this.status(`${label} ${((performance.now() - t0) / 1000).toFixed(1)} s`), 100);
    return () => clearInterval(timer);
  }

  error(message: string): void {
    const text = document.createElement('span');
    text.textContent = message;
    const close = document.createElement('button');
    close.type = 'button';
    close.textContent = 'Dismiss';
    close.addEventListener('click', () => this.clearError());
    this.errorEl.replaceChildren(text, close);
    this.errorEl.hidden = false;
  }

  clearError(): void {
    this.errorEl.hidden = true;
    this.errorEl.replaceChildren();
  }
}
