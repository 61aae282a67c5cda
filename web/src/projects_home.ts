// The projects list (#/projects): every project with its image count and progress, and the form
// that creates one (a name and its categories, comma-separated).

import { type Project, createProject, listProjects } from './projects_api';
import { routeHash } from './routes';

export interface HomeElements {
  readonly home: HTMLElement;
  readonly list: HTMLElement;
  readonly form: HTMLFormElement;
  readonly name: HTMLInputElement;
  readonly categories: HTMLInputElement;
}

/** Category names from the form's text: comma- or newline-separated, trimmed, no duplicates. */
export function parseCategories(text: string): string[] {
  const names = text
    .split(/[,\n]/)
    .map((s) => s.trim())
    .filter((s) => s.length > 0);
  return [...new Set(names)];
}

export class ProjectsHome {
  constructor(
    private readonly els: HomeElements,
    private readonly fail: (e: unknown) => void,
  ) {
    els.form.addEventListener('submit', (e) => {
      e.preventDefault();
      void this.create();
    });
  }

  show(visible: boolean): void {
    this.els.home.hidden = !visible;
    if (visible) void this.refresh();
  }

  async refresh(): Promise<void> {
    let projects: Project[];
    try {
      projects = (await listProjects()).projects;
    } catch (e) {
      this.fail(e);
      return;
    }
    const items = projects.map((p) => {
      const li = document.createElement('li');
      const a = document.createElement('a');
      a.href = routeHash({ kind: 'project', pid: p.id, iid: null });
      a.dataset.testid = `project-${p.id}`;
      a.textContent = p.name;
      const done = p.status_counts.done ?? 0;
      const info = document.createElement('span');
      info.className = 'muted';
      info.textContent = ` ${p.image_count} image${p.image_count === 1 ? '' : 's'} · ${done} done · ${p.categories.join(', ')}`;
      li.append(a, info);
      return li;
    });
    if (!items.length) {
      const li = document.createElement('li');
      li.className = 'muted';
      li.textContent = 'No projects yet: create one below.';
      items.push(li);
    }
    this.els.list.replaceChildren(...items);
  }

  private async create(): Promise<void> {
    const name = this.els.name.value.trim();
    const categories = parseCategories(this.els.categories.value);
    try {
      const p = await createProject(name, categories.length ? categories : ['object']);
      this.els.name.value = '';
      this.els.categories.value = '';
      location.hash = routeHash({ kind: 'project', pid: p.id, iid: null });
    } catch (e) {
      this.fail(e);
    }
  }
}
