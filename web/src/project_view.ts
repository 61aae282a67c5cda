// Projects on the page: routes the address (#/projects, #/projects/3/images/17) to the projects list
// or to a project's image, and runs a project: the gallery, adding images (files or a folder),
// next / previous with the neighbours prefetched, the category picker, the image's status, autosave
// with its conflict choice, pre-label proposals and the project's export. It plugs into the page as
// a PageExtension (proposals on the overlay, clicks on proposals, kept objects). With no project in
// the address the page is the one-image page, untouched.

import type { SaveState } from './autosave';
import { download } from './exporters';
import type { Point, Size } from './frames';
import { Gallery, STATUS_LABEL, stepForKey } from './gallery';
import { ImageWork } from './image_work';
import { embeddingDtype } from './manifest';
import type { SavedObject } from './objects';
import type { Layer } from './overlay';
import type { Page } from './page';
import type { PageExtension } from './page_parts';
import { type ExportFormat, IMAGE_STATUSES, type ImageStatus, type Annotations, type Project, type ProjectImage, type ServerProposal, addImagesInBatches, exportProject, getAnnotations, getProject, getProposals, listImages } from './projects_api';
import { type PreparedImage, ProjectImages } from './project_images';
import { ProjectsHome } from './projects_home';
import { type Route, parseRoute, routeHash } from './routes';
import { need } from './session';
import type { ProjectElements } from './ui/project_elements';
import { ProposalsList, renderSaveState } from './ui/proposals_list';
import { StatusBar } from './ui/status';

/** Files per upload request (each is encoded on the server before the answer). */
const UPLOAD_BATCH = 4;
const IMAGE_FILE = /\.(png|jpe?g|webp|gif|bmp|tiff?|avif)$/i;

export class ProjectView implements PageExtension {
  private route: Route = { kind: 'one-image' };
  private project: Project | null = null;
  private images: ProjectImage[] = [];
  private loader: ProjectImages | null = null;
  private work: ImageWork | null = null;
  private openSeq = 0;
  private quiet = false;
  private prelabelled = false;
  private lastExport: { name: string; bytes: number } | null = null;
  private readonly bar: StatusBar;
  private readonly home: ProjectsHome;
  private readonly galleryView: Gallery;
  private readonly proposalsList: ProposalsList;

  constructor(
    private readonly page: Page,
    private readonly els: ProjectElements,
    private readonly query: URLSearchParams,
  ) {
    this.bar = new StatusBar(els.statusLine, els.error);
    this.home = new ProjectsHome(els, (e) => this.fail(e));
    this.galleryView = new Gallery(els.gallery, els.galleryToggle, {
      open: (id) => this.go(id),
      thumb: (id) => need(this.loader, 'Open a project first').blob(id),
    });
    this.proposalsList = new ProposalsList(els.proposalsBox, els.proposalCount, els.proposalList, {
      keep: (id) => this.work?.keep({ id }, this.page.objects.category),
      discard: (id) => this.work?.discard(id),
    });
    els.status.replaceChildren(...IMAGE_STATUSES.map((s) => new Option(STATUS_LABEL[s], s)));
    els.prev.addEventListener('click', () => this.step(-1));
    els.next.addEventListener('click', () => this.step(1));
    els.category.addEventListener('change', () => (this.page.objects.category = els.category.value));
    els.status.addEventListener('change', () => this.work?.setStatus(els.status.value as ImageStatus));
    els.conflictReload.addEventListener('click', () => void this.work?.reload().catch((e: unknown) => this.fail(e)));
    els.conflictOverwrite.addEventListener('click', () => void this.work?.autosave.overwrite());
    els.prelabel.addEventListener('click', () => void this.prelabel());
    els.refine.addEventListener('click', () => els.refine.setAttribute('aria-pressed', String(this.work?.refineNext(!this.work.refineArmed) ?? false)));
    els.keepAbove.addEventListener('click', () => this.work?.keep({ above: Number(els.keepThreshold.value) || 0 }, this.page.objects.category));
    els.discardAll.addEventListener('click', () => this.work?.discard(null));
    els.exportButton.addEventListener('click', () => void this.exportAll());
    for (const input of [els.addImages, els.addFolder]) {
      input.addEventListener('change', () => {
        void this.addFiles(Array.from(input.files ?? []));
        input.value = '';
      });
    }
    document.addEventListener('keydown', (e) => {
      const t = e.target;
      const delta = this.route.kind === 'project' ? stepForKey(e, t instanceof HTMLInputElement || t instanceof HTMLSelectElement || t instanceof HTMLTextAreaElement) : 0;
      if (delta) {
        e.preventDefault();
        this.step(delta);
      }
    });
    window.addEventListener('beforeunload', (e) => {
      if (this.work?.autosave.unsaved) {
        void this.work.autosave.flush();
        e.preventDefault();
      }
    });
  }

  /** A project (or the projects list) is in the address: files go to the project, not the one-image page. */
  get active(): boolean {
    return this.route.kind !== 'one-image';
  }

  /** Follow the address (at start and on every hashchange). */
  async follow(): Promise<void> {
    const next = parseRoute(location.hash);
    const was = this.route;
    if (was.kind !== 'one-image' && next.kind === 'one-image') {
      await this.work?.autosave.flush();
      location.reload(); // the one-image page starts clean
      return;
    }
    const kept = this.page.objects.all.length;
    if (was.kind === 'one-image' && next.kind !== 'one-image' && kept && !window.confirm(`Leave this image? Its ${kept} object${kept === 1 ? ' is' : 's are'} not saved anywhere (export them first).`)) {
      history.replaceState(null, '', location.pathname + location.search);
      return;
    }
    this.route = next;
    document.body.classList.toggle('mode-projects', next.kind === 'projects');
    document.body.classList.toggle('mode-project', next.kind === 'project');
    for (const el of this.els.workArea) el.hidden = next.kind === 'projects';
    this.home.show(next.kind === 'projects');
    this.els.galleryPane.hidden = next.kind !== 'project';
    this.els.tools.hidden = next.kind !== 'project';
    if (next.kind !== 'project') return;
    try {
      if (this.project?.id !== next.pid) await this.openProject(next.pid);
      const first = this.images.find((i) => i.status === 'new' || i.status === 'in_progress') ?? this.images[0];
      const iid = next.iid ?? first?.id ?? null;
      if (iid === null) {
        this.bar.status('This project has no images yet: add some (files or a folder), or drop them here.');
      } else if (next.iid === null) {
        history.replaceState(null, '', routeHash({ kind: 'project', pid: next.pid, iid }));
        await this.open(iid);
      } else if (this.work?.image.id !== iid) {
        await this.open(iid);
      }
    } catch (e) {
      this.fail(e);
    }
  }

  /** Add image files to the open project (in small batches); refused files are listed, the rest kept. */
  async addFiles(files: readonly File[]): Promise<void> {
    const project = this.project;
    if (!project) {
      this.bar.error('Open or create a project first (Projects), then add its images.');
      return;
    }
    const wanted = files.filter((f) => f.type.startsWith('image/') || IMAGE_FILE.test(f.name));
    let stop = this.bar.progress(`Adding ${wanted.length} image${wanted.length === 1 ? '' : 's'}…`);
    const { images, errors: refused } = await addImagesInBatches(project.id, wanted, UPLOAD_BATCH, (sent) => {
      stop();
      stop = this.bar.progress(`Added ${sent} of ${wanted.length}…`);
    }).finally(() => stop());
    for (const img of images) {
      if (img.embedding_id) this.loader?.remember(img.id, img.embedding_id);
      const at = this.images.findIndex((i) => i.id === img.id);
      if (at < 0) this.images.push(img); // the same bytes again give the image the project has
    }
    const added = images.length;
    this.renderGallery();
    this.bar.status(`Added ${added} image${added === 1 ? '' : 's'} to “${project.name}”.`);
    if (refused.length) this.bar.error(`${refused.length} file${refused.length === 1 ? '' : 's'} not added: ${refused.map((r) => `${r.file_name} (${r.detail})`).join('; ')}`);
    if (!this.work && this.images[0]) this.go(this.images[0].id);
    else this.prefetchAround();
  }

  /** Next (+1) or previous (-1) image. */
  step(delta: number): void {
    const at = this.index;
    const target = this.images[at + delta];
    if (at >= 0 && target) this.go(target.id);
  }

  /** The open project's categories (empty with none open). */
  get categories(): readonly string[] {
    return this.route.kind === 'project' ? (this.project?.categories ?? []) : [];
  }

  /** Test hook: what the project part of the page shows. */
  debug(): Record<string, unknown> {
    const w = this.work;
    return {
      route: this.route,
      projectId: this.project?.id ?? null,
      categories: this.project?.categories ?? [],
      category: this.page.objects.category,
      imageId: w?.image.id ?? null,
      index: this.index,
      images: this.images.map((i) => ({ id: i.id, file: i.file_name, status: i.status })),
      status: w?.status ?? null,
      saveState: w?.autosave.state ?? null,
      version: w?.autosave.version ?? null,
      objects: this.page.objects.all.map((o) => ({ ...o.annotation, area: o.area, visible: o.visible, inside: w?.pointInside(o) ?? null })),
      proposals: w?.proposals.all.map((p) => ({ id: p.id, score: p.score, area: p.area, point: p.point })) ?? [],
      prefetched: this.loader?.readyIds ?? [],
      lastExport: this.lastExport,
    };
  }

  // ---------------------------------------------------------------- PageExtension

  layers(size: Size): Layer[] {
    return this.work?.proposals.layers(size) ?? [];
  }

  pick(p: Point): { point: Point; mask: Uint8Array; iou: number } | null {
    const q = this.work?.pick(p);
    this.els.refine.setAttribute('aria-pressed', 'false');
    return q ? { point: q.point, mask: q.mask, iou: q.score } : null;
  }

  kept(o: SavedObject): void {
    this.work?.kept(o);
  }

  objectsChanged(): void {
    if (!this.quiet) this.work?.autosave.changed();
  }

  // ---------------------------------------------------------------- internals

  private get index(): number {
    const id = this.work?.image.id;
    return id === undefined ? -1 : this.images.findIndex((i) => i.id === id);
  }

  private go(iid: number): void {
    if (this.project) location.hash = routeHash({ kind: 'project', pid: this.project.id, iid });
  }

  private async openProject(pid: number): Promise<void> {
    await this.work?.autosave.flush();
    if (this.work?.autosave.unsaved) throw new Error('This image’s edits are not saved yet (see the save state): resolve that first.');
    this.work?.dispose();
    this.work = null;
    this.galleryView.clear();
    const project = await getProject(pid);
    const images: ProjectImage[] = [];
    for (let offset = 0; ; offset += 1000) {
      const page = await listImages(pid, offset, 1000);
      images.push(...page.images);
      if (images.length >= page.total || !page.images.length) break;
    }
    this.project = project;
    this.images = images;
    this.loader = new ProjectImages(pid, () => this.dtype(), (targets) => this.page.session.decoder.prefetch(targets));
    this.els.title.textContent = project.name;
    this.els.category.replaceChildren(...project.categories.map((c) => new Option(c, c)));
    this.page.objects.category = project.categories[0] ?? '';
    this.renderGallery();
  }

  /** Open image `iid`: the current one's edits are saved first (a conflict keeps the person here). */
  private async open(iid: number): Promise<void> {
    const img = this.images.find((i) => i.id === iid);
    const project = need(this.project, 'Open a project first');
    if (!img) throw new Error(`Project “${project.name}” has no image ${iid}; pick one in the gallery.`);
    const back = (): void => history.replaceState(null, '', routeHash({ kind: 'project', pid: project.id, iid: this.work?.image.id ?? iid }));
    const seq = ++this.openSeq;
    // the image on screen stays editable (and saved) until the next one is ready to show
    let ready: [PreparedImage, Annotations, ServerProposal[]];
    try {
      ready = await Promise.all([need(this.loader, 'Open a project first').get(img), getAnnotations(project.id, iid), getProposals(project.id, iid)]);
    } catch (e) {
      if (seq === this.openSeq) back();
      throw e;
    }
    if (seq !== this.openSeq) return;
    const old = this.work;
    if (old) {
      await old.autosave.flush();
      if (old.autosave.unsaved) {
        back();
        this.bar.error('This image’s edits are not saved yet (see the save state): resolve that before leaving it.');
        return;
      }
      if (seq !== this.openSeq) return;
      old.dispose();
      this.work = null;
    }
    const [prepared, saved, proposals] = ready;
    this.prelabelled = false;
    this.proposalsList.render([], false);
    this.renderGallery(iid);
    await this.page.session.loadEncoded(prepared);
    if (seq !== this.openSeq || !this.page.session.image) return; // superseded, or the session showed its error
    const work = new ImageWork(project.id, img, this.page.objects, {
      saveState: (state, detail) => this.saveStateChanged(state, detail),
      objectsReplaced: () => this.refreshQuietly(),
      proposalsChanged: () => {
        this.proposalsList.render(this.work?.proposals.all ?? [], this.prelabelled);
        this.refreshQuietly();
      },
      failed: (e) => this.fail(e),
    });
    this.work = work;
    this.prelabelled = proposals.length > 0;
    work.apply(saved); // shows the objects
    work.showProposals(proposals);
    this.els.status.value = work.status;
    this.renderTools();
    this.prefetchAround();
  }

  private prefetchAround(): void {
    const at = this.index;
    const around = [this.images[at + 1], this.images[at - 1]].filter((i): i is ProjectImage => i !== undefined);
    this.loader?.prefetch(around);
  }

  private async prelabel(): Promise<void> {
    const work = this.work;
    if (!work || !this.loader) return;
    this.els.prelabel.disabled = true;
    const stop = this.bar.progress('Pre-labelling (segment everything on the server)…');
    try {
      this.prelabelled = true;
      const n = await work.prelabel(this.query);
      this.bar.status(`${n} proposal${n === 1 ? '' : 's'}: keep the good ones, click one to refine it.`);
    } catch (e) {
      this.fail(e);
    } finally {
      stop();
      this.els.prelabel.disabled = false;
    }
  }

  private async exportAll(): Promise<void> {
    const project = this.project;
    if (!project) return;
    try {
      await this.work?.autosave.flush();
      const { blob, name } = await exportProject(project.id, this.els.exportFormat.value as ExportFormat);
      download(blob, name);
      this.lastExport = { name, bytes: blob.size };
    } catch (e) {
      this.fail(e);
    }
  }

  private saveStateChanged(state: SaveState, detail: string | null): void {
    renderSaveState(this.els.saveState, state, detail);
    this.els.conflict.hidden = state !== 'conflict';
    if (state === 'conflict' && detail) this.bar.error(detail);
    const work = this.work;
    if (state === 'saved' && work) {
      this.els.status.value = work.status;
      this.galleryView.setStatus(work.image.id, work.status);
    }
  }

  private refreshQuietly(): void {
    this.quiet = true;
    try {
      this.page.refreshObjects();
    } finally {
      this.quiet = false;
    }
  }

  private renderGallery(current = this.work?.image.id ?? null): void {
    this.galleryView.render(
      this.images.map((i) => ({ id: i.id, fileName: i.file_name, status: i.status })),
      current,
    );
    this.renderTools();
  }

  private renderTools(): void {
    const at = this.index;
    this.els.position.textContent = at >= 0 ? `${at + 1} / ${this.images.length}` : `– / ${this.images.length}`;
    this.els.prev.disabled = at <= 0;
    this.els.next.disabled = at < 0 || at >= this.images.length - 1;
    this.els.prelabel.disabled = !this.work;
  }

  private dtype(): string {
    const manifest = need(this.page.session.manifest, 'The decoder manifest is not loaded');
    const variant = manifest.variants.get(this.query.get('variant') ?? manifest.defaultVariant);
    return embeddingDtype(need(variant ?? null, 'The decoder has no such variant'), manifest.imageInputs);
  }

  private fail(e: unknown): void {
    this.bar.error(e instanceof Error ? e.message : String(e));
  }
}
