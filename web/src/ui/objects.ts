// The list of kept objects: colour swatch, name, show/hide, delete.

export interface ObjectView {
  readonly id: number;
  readonly name: string;
  readonly color: readonly [number, number, number, number];
  readonly visible: boolean;
  readonly area: number;
}

export class ObjectsList {
  constructor(
    private readonly el: HTMLElement,
    private readonly handlers: { onToggle(id: number): void; onDelete(id: number): void },
  ) {}

  render(objects: readonly ObjectView[]): void {
    const items = objects.map((o) => {
      const li = document.createElement('li');
      li.dataset.testid = `object-${o.id}`;
      const sw = document.createElement('span');
      sw.className = 'swatch';
      sw.style.background = `rgb(${o.color[0]}, ${o.color[1]}, ${o.color[2]})`;
      const name = document.createElement('span');
      name.className = 'name';
      name.textContent = `${o.name} (${o.area.toLocaleString()} px)`;
      const toggle = document.createElement('button');
      toggle.type = 'button';
      toggle.textContent = o.visible ? 'Hide' : 'Show';
      toggle.setAttribute('aria-pressed', String(!o.visible));
      toggle.addEventListener('click', () => this.handlers.onToggle(o.id));
      const del = document.createElement('button');
      del.type = 'button';
      del.textContent = '×';
      del.title = 'Delete';
      del.setAttribute('aria-label', `Delete ${o.name}`);
      del.addEventListener('click', () => this.handlers.onDelete(o.id));
      li.append(sw, name, toggle, del);
      return li;
    });
    this.el.replaceChildren(...items);
  }
}
