// The project's gallery: one thumbnail per image with its file name and status, the open one
// marked. Thumbnails are asked for when they scroll into view (`thumb` fetches the bytes with the
// page's token, so plain <img src> cannot). On a narrow screen the gallery collapses behind a button.

import type { ImageStatus } from './projects_api';

export interface GalleryItem {
  readonly id: number;
  readonly fileName: string;
  readonly status: ImageStatus;
}

/** The image step a key asks for outside text fields: +1 for → or n, -1 for ← or p, else 0. */
export function stepForKey(k: { readonly key: string; readonly ctrlKey: boolean; readonly metaKey: boolean; readonly altKey: boolean }, inField: boolean): number {
  if (inField || k.ctrlKey || k.metaKey || k.altKey) return 0;
  return k.key === 'ArrowRight' || k.key === 'n' ? 1 : k.key === 'ArrowLeft' || k.key === 'p' ? -1 : 0;
}

export const STATUS_LABEL: Record<ImageStatus, string> = { new: 'new', in_progress: 'in progress', done: 'done', skipped: 'skipped' };

export class Gallery {
  private readonly urls = new Map<number, string>();
  private readonly observer: IntersectionObserver;
  private readonly cells = new Map<number, HTMLElement>();

  constructor(
    private readonly list: HTMLElement,
    toggle: HTMLButtonElement,
    private readonly on: { open(id: number): void; thumb(id: number): Promise<Blob> },
  ) {
    this.observer = new IntersectionObserver((entries) => {
      for (const e of entries) {
        if (!e.isIntersecting || !(e.target instanceof HTMLElement)) continue;
        this.observer.unobserve(e.target);
        void this.load(Number(e.target.dataset.imageId));
      }
    });
    const narrow = window.matchMedia('(max-width: 720px)').matches;
    this.setCollapsed(toggle, narrow);
    toggle.addEventListener('click', () => this.setCollapsed(toggle, !this.list.classList.contains('collapsed')));
  }

  /** Show `items` with `current` marked (cells and fetched thumbnails are reused). */
  render(items: readonly GalleryItem[], current: number | null): void {
    const cells = items.map((it, index) => {
      let li = this.cells.get(it.id);
      if (!li) {
        li = document.createElement('li');
        li.dataset.imageId = String(it.id);
        li.dataset.testid = `gallery-${it.id}`;
        const button = document.createElement('button');
        button.type = 'button';
        const img = document.createElement('img');
        img.alt = '';
        const name = document.createElement('span');
        name.className = 'file';
        const status = document.createElement('span');
        status.className = 'status-tag';
        button.append(img, name, status);
        button.addEventListener('click', () => this.on.open(it.id));
        li.append(button);
        this.cells.set(it.id, li);
        this.observer.observe(li);
      }
      const [img, name, status] = Array.from(li.querySelectorAll('img, span'));
      const url = this.urls.get(it.id);
      if (url && img instanceof HTMLImageElement && img.src !== url) img.src = url;
      if (name) name.textContent = `${index + 1}. ${it.fileName}`;
      if (status instanceof HTMLElement) showStatus(status, it.status);
      li.classList.toggle('current', it.id === current);
      li.querySelector('button')?.setAttribute('aria-current', String(it.id === current));
      return li;
    });
    this.list.replaceChildren(...cells);
    const here = current === null ? undefined : this.cells.get(current);
    here?.scrollIntoView?.({ block: 'nearest', inline: 'nearest' });
  }

  /** One image's status changed (a save): only its tile changes. */
  setStatus(id: number, status: ImageStatus): void {
    const tag = this.cells.get(id)?.querySelector('.status-tag');
    if (tag instanceof HTMLElement) showStatus(tag, status);
  }

  /** Forget every cell and thumbnail (another project). */
  clear(): void {
    this.observer.disconnect();
    for (const url of this.urls.values()) URL.revokeObjectURL(url);
    this.urls.clear();
    this.cells.clear();
    this.list.replaceChildren();
  }

  private async load(id: number): Promise<void> {
    if (this.urls.has(id)) return;
    let blob: Blob;
    try {
      blob = await this.on.thumb(id);
    } catch {
      this.cells.get(id)?.classList.add('no-thumb'); // the tile keeps its name and status; the image view reports errors
      return;
    }
    const url = URL.createObjectURL(blob);
    this.urls.set(id, url);
    const img = this.cells.get(id)?.querySelector('img');
    if (img) img.src = url;
  }

  private setCollapsed(toggle: HTMLButtonElement, collapsed: boolean): void {
    this.list.classList.toggle('collapsed', collapsed);
    toggle.setAttribute('aria-expanded', String(!collapsed));
    toggle.textContent = collapsed ? 'Show images' : 'Hide images';
  }
}

function showStatus(tag: HTMLElement, status: ImageStatus): void {
  tag.textContent = STATUS_LABEL[status];
  tag.className = `status-tag ${status}`;
}
