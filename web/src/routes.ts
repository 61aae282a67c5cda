// The page's address: one-image mode (no hash), the projects list (#/projects), a project
// (#/projects/3) or one of its images (#/projects/3/images/17), so a reload or a shared link opens
// exactly that image.

export type Route =
  | { readonly kind: 'one-image' }
  | { readonly kind: 'projects' }
  | { readonly kind: 'project'; readonly pid: number; readonly iid: number | null };

const ID = '([1-9][0-9]{0,9})';
const PROJECT = new RegExp(`^#/projects/${ID}/?$`);
const IMAGE = new RegExp(`^#/projects/${ID}/images/${ID}/?$`);

/** What `hash` (location.hash) asks for; anything unknown is the one-image page. */
export function parseRoute(hash: string): Route {
  if (hash === '#/projects' || hash === '#/projects/') return { kind: 'projects' };
  const image = IMAGE.exec(hash);
  if (image) return { kind: 'project', pid: Number(image[1]), iid: Number(image[2]) };
  const project = PROJECT.exec(hash);
  if (project) return { kind: 'project', pid: Number(project[1]), iid: null };
  return { kind: 'one-image' };
}

export function routeHash(r: Route): string {
  if (r.kind === 'one-image') return '';
  if (r.kind === 'projects') return '#/projects';
  return r.iid === null ? `#/projects/${r.pid}` : `#/projects/${r.pid}/images/${r.iid}`;
}
