// One entry point for all readers, with layout detection: each official archive has a file no
// other layout has, and users often pass the folder above the unpacked one (CUB_200_2011/ inside
// the folder the tarball was extracted to), so the usual top folder names are tried too.
import { join, resolve } from 'node:path';
import { readCub, readNabirds } from './cub.js';
import { type Dataset, DatasetError, type DatasetKind, isDir, isFile } from './dataset.js';
import { readFood101 } from './food101.js';
import { readImageFolder } from './image-folder.js';
import { readStanfordDogs } from './stanford-dogs.js';

export interface OpenDatasetOptions {
  /** Replaces the dataset's own super-category; required for ImageFolder. */
  superCategory?: string;
  /** ImageFolder's evaluation folder (default 'val'). */
  evalDir?: string;
}

const ARCHIVE_FOLDERS = ['CUB_200_2011', 'nabirds', 'food-101', 'StanfordDogs', 'stanford-dogs'];

function markerKind(dir: string): DatasetKind | undefined {
  const has = (rel: string) => isFile(join(dir, rel));
  if (has('images.txt') && has('hierarchy.txt')) return 'nabirds';
  if (has('images.txt')) return 'cub';
  if (isDir(join(dir, 'Images')) && ['train_list.mat', 'lists/train_list.mat', 'train_list.txt', 'lists/train_list.txt'].some(has)) return 'stanford-dogs';
  if (has('meta/classes.txt')) return 'food101';
  if (isDir(join(dir, 'train'))) return 'imagefolder';
  return undefined;
}

/** The layout at `root` or in its usual archive folder, by marker files only. */
export function detectLayout(root: string): { kind: DatasetKind; root: string } | undefined {
  const dir = resolve(root);
  for (const d of [dir, ...ARCHIVE_FOLDERS.map((n) => join(dir, n))]) {
    const kind = markerKind(d);
    if (kind) return { kind, root: d };
  }
  return undefined;
}

export function openDataset(kind: DatasetKind | 'auto', root: string, opts: OpenDatasetOptions = {}): Dataset {
  const found = kind === 'auto' ? detectLayout(root) : { kind, root: resolve(root) };
  if (!found) {
    throw new DatasetError(
      `cannot detect a dataset layout at ${resolve(root)}: expected images.txt + hierarchy.txt (NABirds), images.txt (CUB-200-2011), ` +
        `Images/ + train_list.mat or train_list.txt (Stanford Dogs), meta/classes.txt (Food-101) or train/<class>/ (ImageFolder)`,
    );
  }
  const ds = read(found.kind, found.root, opts);
  if (opts.superCategory !== undefined) ds.superCategory = opts.superCategory;
  return ds;
}

function read(kind: DatasetKind, root: string, opts: OpenDatasetOptions): Dataset {
  switch (kind) {
    case 'cub': return readCub(root);
    case 'nabirds': return readNabirds(root);
    case 'stanford-dogs': return readStanfordDogs(root);
    case 'food101': return readFood101(root);
    case 'imagefolder': {
      if (opts.superCategory === undefined) throw new DatasetError(`ImageFolder at ${root}: the superCategory option is required (e.g. 'bird')`);
      return readImageFolder(root, { superCategory: opts.superCategory, evalDir: opts.evalDir });
    }
  }
}
