// The session: start-up (server config, decoder manifest and variant, the decoder worker) and the
// image being worked on (decoded in the browser, uploaded for its embedding, the embedding loaded
// into the worker), plus the decoder's run statistics. It reports through its listener and keeps
// no view of its own.

import { type EmbeddingMeta, type ServerConfig, embeddingUrl, getConfig, getManifestJson, postEmbedding } from './api';
import { DecoderClient, parseBackend } from './decoder';
import type { EditTarget } from './editor';
import { type Geometry, makeGeometry, preprocessShape } from './frames';
import { type DecoderManifest, type DecoderVariant, embeddingDtype, embeddingMismatch, parseManifest, serverMismatch } from './manifest';
import type { Backend, DecodeReply } from './protocol';

export interface LoadedImage {
  readonly name: string;
  /** What was sent to the server (the file, or its downscaled copy). */
  readonly upload: { readonly blob: Blob; readonly name: string };
  readonly bitmap: ImageBitmap;
  readonly meta: EmbeddingMeta;
  readonly geom: Geometry;
}

export interface SessionListener {
  /** The server's notice for this deployment (shown once, above the page). */
  notice(text: string): void;
  status(text: string): void;
  /** A progress line that counts seconds until the returned function is called. */
  progress(label: string): () => void;
  error(e: unknown): void;
  clearError(): void;
  /** A new image replaces the old one: drop everything about the old one and show `bitmap`. */
  imageShown(bitmap: ImageBitmap): void;
  /** The image is encoded and its embedding is in the decoder: prompts can start. */
  imageReady(img: LoadedImage): void;
  /** A load finished, well or not: what the buttons depend on may have changed. */
  settled(): void;
}

export interface StartOptions {
  /** The ?backend= value: webgpu or wasm by name, auto or null (WebGPU when it can run the model). */
  readonly backend: string | null;
  /** Decoder variant from the manifest; null: the manifest's default. */
  readonly variant: string | null;
}

/** How the status line names a decoder backend. */
export function backendLabel(r: { readonly backend: Backend; readonly threads: number }): string {
  return r.backend === 'webgpu' ? 'WebGPU' : `WASM ×${r.threads}`;
}

/** A file name for a pasted image (browsers call every pasted image "image.png"). */
export function pastedName(name: string, now: Date): string {
  return name && name !== 'image.png' ? name : `pasted-${now.toISOString().slice(0, 19)}.png`;
}

export class Session {
  readonly decoder = new DecoderClient();
  private config: ServerConfig | null = null;
  private manifestValue: DecoderManifest | null = null;
  private variantValue: DecoderVariant | null = null;
  private loadSeq = 0;
  /** The ready image (encoded, embedding in the decoder), or null. */
  image: LoadedImage | null = null;
  /** An image is on screen and still being encoded or loaded into the decoder. */
  loading = false;
  decoderReady = false;
  imagesLoaded = 0;
  /** The decoder backend, as the status line names it ('' before start-up). */
  backend = '';
  lastDecodeMs: number | null = null;
  decodeCount = 0;

  constructor(private readonly on: SessionListener) {}

  get manifest(): DecoderManifest | null {
    return this.manifestValue;
  }

  /** What the editor needs to edit the ready image, or null. */
  get target(): EditTarget | null {
    return this.image && this.variantValue ? { geom: this.image.geom, tokens: this.variantValue } : null;
  }

  /** Read the server config and the decoder manifest, and start the decoder worker. Throws on failure. */
  async start(opts: StartOptions): Promise<void> {
    const config = await getConfig();
    this.config = config;
    if (config.notice) this.on.notice(config.notice);
    const manifest = parseManifest(await getManifestJson(config.decoder_manifest));
    this.manifestValue = manifest;
    const mismatch = serverMismatch(manifest, config);
    if (mismatch) throw new Error(mismatch);
    const name = opts.variant ?? manifest.defaultVariant;
    const variant = manifest.variants.get(name);
    if (!variant) throw new Error(`The decoder has no variant "${name}"`);
    this.variantValue = variant;
    const manifestUrl = new URL(config.decoder_manifest, document.baseURI);
    this.on.status(`Loading the ${manifest.model} decoder…`);
    const ready = await this.decoder.init({
      modelUrl: new URL(variant.file, manifestUrl).href,
      prepUrl: variant.prep ? new URL(variant.prep.file, manifestUrl).href : null,
      ortBase: new URL('ort/', document.baseURI).href,
      embeddingDtype: embeddingDtype(variant, manifest.imageInputs),
      imageInputs: manifest.imageInputs.map((t) => t.name),
      lowResSize: manifest.lowResSize,
      backend: parseBackend(opts.backend),
    });
    this.backend = backendLabel(ready);
    this.decoderReady = true;
  }

  /** Record a decoder run of a commit (time and backend: WebGPU may fall back to WASM). */
  noteDecode(r: DecodeReply): void {
    this.lastDecodeMs = r.runMs;
    this.backend = backendLabel(r);
    this.decodeCount++;
  }

  /**
   * Show the image, upload it for encoding and load its embedding into the decoder. The browser
   * decodes it with EXIF orientation applied, as the server does, so clicks line up. Big photos are
   * downscaled before upload (the encoder only sees image_size anyway); masks still come out at the
   * original size because the geometry maps the original frame to the server's input size.
   */
  async loadImage(file: Blob, name: string): Promise<void> {
    const seq = ++this.loadSeq;
    this.on.clearError();
    let bitmap: ImageBitmap;
    try {
      bitmap = await createImageBitmap(file, { imageOrientation: 'from-image' });
    } catch {
      this.on.error(new Error(`“${name}” is not an image this browser can read (PNG, JPEG, WebP, GIF, BMP…). Choose another file.`));
      return;
    }
    if (seq !== this.loadSeq) return;
    await this.show(seq, name, bitmap, `Encoding “${name}” on the server…`, async () => {
      const { blob, uploadName } = await this.uploadable(file, name, bitmap);
      return { upload: { blob, name: uploadName }, meta: await postEmbedding(blob, uploadName) };
    });
  }

  /**
   * Show an image the server has already encoded (a project image, often prefetched): `bitmap` is
   * `blob` decoded with EXIF orientation, `meta` its embedding's metadata. No upload.
   */
  async loadEncoded(img: { readonly name: string; readonly blob: Blob; readonly bitmap: ImageBitmap; readonly meta: EmbeddingMeta }): Promise<void> {
    const seq = ++this.loadSeq;
    this.on.clearError();
    await this.show(seq, img.name, img.bitmap, `Loading “${img.name}”…`, () => Promise.resolve({ upload: { blob: img.blob, name: img.name }, meta: img.meta }));
  }

  /** Show `bitmap`, get its embedding from `encode` and load it into the decoder. */
  private async show(
    seq: number,
    name: string,
    bitmap: ImageBitmap,
    label: string,
    encode: () => Promise<{ upload: LoadedImage['upload']; meta: EmbeddingMeta }>,
  ): Promise<void> {
    this.image = null;
    this.loading = true;
    this.on.imageShown(bitmap);
    const stop = this.on.progress(label);
    try {
      const { upload, meta } = await encode();
      if (seq !== this.loadSeq) return;
      const manifest = need(this.manifestValue, 'The decoder manifest is not loaded');
      const mismatch = embeddingMismatch(manifest, meta);
      if (mismatch) throw new Error(mismatch);
      const input = { w: meta.input_size[1], h: meta.input_size[0] };
      const geom = makeGeometry({ w: bitmap.width, h: bitmap.height }, manifest.imageSize, manifest.lowResSize, input, manifest.resize);
      const dtype = embeddingDtype(need(this.variantValue, 'No decoder variant'), manifest.imageInputs);
      this.on.status(`Loading the embedding of “${name}”…`);
      await this.decoder.setEmbedding({
        url: new URL(embeddingUrl(meta, dtype), document.baseURI).href,
        dtype,
        tensors: meta.tensors,
        originalSize: [bitmap.height, bitmap.width],
      });
      if (seq !== this.loadSeq) return;
      this.image = { name, upload, bitmap, meta, geom };
      this.imagesLoaded++;
      this.on.imageReady(this.image);
    } catch (e) {
      if (seq === this.loadSeq) {
        this.on.error(e);
        this.on.status('The image could not be encoded; open another one.');
      }
    } finally {
      stop();
      if (seq === this.loadSeq) this.loading = false;
      this.on.settled();
    }
  }

  /** The blob to upload: the file itself, or a downscaled re-encode for very large photos. */
  private async uploadable(file: Blob, name: string, bitmap: ImageBitmap): Promise<{ blob: Blob; uploadName: string }> {
    const cfg = need(this.config, 'The server config is not loaded');
    const manifest = need(this.manifestValue, 'The decoder manifest is not loaded');
    const long = Math.max(bitmap.width, bitmap.height);
    const tooBig = file.size > cfg.max_upload_bytes || bitmap.width * bitmap.height > cfg.max_pixels;
    if (!tooBig && long <= 2 * manifest.imageSize) return { blob: file, uploadName: name };
    // Straight to the encoder's input size: the server's resize then is the identity, and the
    // orientation is baked into the pixels (no EXIF left to disagree about).
    const s = preprocessShape(bitmap.height, bitmap.width, manifest.imageSize);
    const canvas = new OffscreenCanvas(s.w, s.h);
    const ctx = canvas.getContext('2d');
    if (!ctx) throw new Error('No 2D canvas to downscale the image');
    ctx.imageSmoothingEnabled = true;
    ctx.imageSmoothingQuality = 'high';
    ctx.drawImage(bitmap, 0, 0, s.w, s.h);
    const png = file.type === 'image/png';
    const blob = await canvas.convertToBlob(png ? { type: 'image/png' } : { type: 'image/jpeg', quality: 0.95 });
    return { blob, uploadName: name.replace(/\.[^.]*$/, '') + (png ? '.png' : '.jpg') };
  }
}

/** `v`, or an error saying `what` is missing. */
export function need<T>(v: T | null, what: string): T {
  if (v === null) throw new Error(what);
  return v;
}
