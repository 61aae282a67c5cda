// Help overlay: the "?" button or key opens it, Esc / click outside / Close closes it.

export class Help {
  constructor(
    private readonly button: HTMLButtonElement,
    private readonly overlay: HTMLElement,
  ) {
    button.addEventListener('click', () => this.toggle());
    overlay.addEventListener('click', (e) => {
      if (e.target === overlay) this.close();
    });
    overlay.querySelector('[data-testid="help-close"]')?.addEventListener('click', () => this.close());
  }

  get open(): boolean {
    return !this.overlay.hidden;
  }

  toggle(): void {
    if (this.open) this.close();
    else {
      this.overlay.hidden = false;
      this.button.setAttribute('aria-expanded', 'true');
    }
  }

  close(): void {
    this.overlay.hidden = true;
    this.button.setAttribute('aria-expanded', 'false');
  }
}
