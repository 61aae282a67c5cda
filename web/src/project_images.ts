// A project's images made ready to click: bytes fetched, decoded with EXIF orientation, the
// embedding's metadata known and its bytes in the browser's HTTP cache (the decoder worker's fetch
// of the same immutable URL is then a cache hit). Opening an image waits for this; prefetching the
// next ones makes "next" instant. An image keeps its embedding id from its upload answer (also in
// localStorage, so a reload skips the upload while the server still has the embedding); without
// one, or when the server forgot it, the bytes are posted to /api/embeddings again. Once prefetched
// images are ready, their embeddings are handed to `prefetched` (the decoder runs its per-image graph
// on them ahead, when the page is quiet).

import { ApiError, type EmbeddingMeta, embeddingUrl, getEmbeddingMeta, postEmbedding } from './api';
import type { EmbeddingTarget } from './decoder';
import { type ProjectImage, imageBlob } from './projects_api';

export interface PreparedImage {
  readonly name: string;
  readonly blob: Blob;
  readonly bitmap: ImageBitmap;
  readonly meta: EmbeddingMeta;
}

/** How many prepared images (decoded bitmaps) are kept around. */
const KEEP_PREPARED = 6;

function embeddingKey(pid: number, iid: number): string {
  return `clicksam.embedding.${pid}.${iid}`;
}

export class ProjectImages {
  private readonly blobs = new Map<number, Promise<Blob>>();
  private readonly prepared = new Map<number, Promise<PreparedImage>>();
  private readonly done = new Set<number>();
  private prefetchSeq = 0;

  constructor(
    private readonly pid: number,
    /** The embedding dtype the decoder reads (the manifest variant's). */
    private readonly dtype: () => string,
    /** The latest prefetch's embeddings, in its order, once its images are ready. */
    private readonly prefetched: (targets: EmbeddingTarget[]) => void = () => undefined,
  ) {}

  /** Remember an upload's embedding id for image `iid`. */
  remember(iid: number, embeddingId: string): void {
    try {
      localStorage.setItem(embeddingKey(this.pid, iid), embeddingId);
    } catch {
      // storage disabled: the id is only lost after a reload (the bytes are posted again then)
    }
  }

  /** The image's bytes (fetched once, shared by the gallery and the view). */
  blob(iid: number): Promise<Blob> {
    let b = this.blobs.get(iid);
    if (!b) {
      b = imageBlob(this.pid, iid);
      b.catch(() => this.blobs.delete(iid)); // a failed fetch is retried next time
      this.blobs.set(iid, b);
    }
    return b;
  }

  /** Whether `iid` is ready to show without waiting. */
  ready(iid: number): boolean {
    return this.done.has(iid);
  }

  /** Ids of the images ready to show. */
  get readyIds(): number[] {
    return [...this.done];
  }

  /** The image ready to show (prepared now, or by an earlier prefetch). */
  get(img: ProjectImage): Promise<PreparedImage> {
    let p = this.prepared.get(img.id);
    if (!p) {
      p = this.prepare(img);
      p.then(
        () => this.done.add(img.id),
        () => this.prepared.delete(img.id),
      );
      this.prepared.set(img.id, p);
      this.evict(img.id);
    }
    return p;
  }

  /** Start preparing `images` (errors show when one is opened). */
  prefetch(images: readonly ProjectImage[]): void {
    const seq = ++this.prefetchSeq;
    void Promise.allSettled(images.map((img) => this.get(img))).then((all) => {
      if (seq !== this.prefetchSeq) return; // a newer prefetch replaced this one
      const dtype = this.dtype();
      if (dtype !== 'float32' && dtype !== 'float16') return;
      const metas = all.flatMap((r) => (r.status === 'fulfilled' ? [r.value.meta] : []));
      this.prefetched(metas.map((m) => ({ url: this.embeddingHref(m), dtype, tensors: m.tensors })));
    });
  }

  /** The embedding's absolute URL, as the decoder worker fetches it (the key of its prepared outputs). */
  private embeddingHref(meta: EmbeddingMeta): string {
    return new URL(embeddingUrl(meta, this.dtype()), document.baseURI).href;
  }

  private async prepare(img: ProjectImage): Promise<PreparedImage> {
    const blob = await this.blob(img.id);
    const bitmap = await createImageBitmap(blob, { imageOrientation: 'from-image' }).catch(() => {
      throw new Error(`“${img.file_name}” is not an image this browser can read`);
    });
    const meta = await this.embedding(img, blob);
    const warm = await fetch(this.embeddingHref(meta));
    if (!warm.ok) throw new ApiError(`The embedding of “${img.file_name}” could not be fetched (${warm.status})`, warm.status);
    await warm.arrayBuffer(); // read to the end, so the HTTP cache keeps it
    return { name: img.file_name, blob, bitmap, meta };
  }

  private async embedding(img: ProjectImage, blob: Blob): Promise<EmbeddingMeta> {
    let id = img.embedding_id;
    try {
      id ??= localStorage.getItem(embeddingKey(this.pid, img.id));
    } catch {
      id = null;
    }
    if (id) {
      try {
        return await getEmbeddingMeta(id);
      } catch (e) {
        if (!(e instanceof ApiError && e.status === 404)) throw e; // 404: the server forgot it, encode again
      }
    }
    const meta = await postEmbedding(blob, img.file_name);
    this.remember(img.id, meta.id);
    return meta;
  }

  /** Keep the newest KEEP_PREPARED prepared images, and always `keep`. */
  private evict(keep: number): void {
    const ids = [...this.prepared.keys()];
    for (const id of ids.slice(0, Math.max(0, ids.length - KEEP_PREPARED))) {
      if (id === keep) continue;
      this.prepared.delete(id);
      this.done.delete(id);
    }
  }
}
