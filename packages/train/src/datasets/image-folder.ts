// A generic ImageFolder as torchvision reads it: train/<class>/**/<image> and val/<class>/**,
// classes are the sorted folder names of train/, files are walked in sorted order.
import { readdirSync } from 'node:fs';
import { extname, join } from 'node:path';
import { type Dataset, type Sample, isDir, layoutError, requireDir } from './dataset.js';

/** torchvision's IMG_EXTENSIONS. */
export const IMAGE_EXTENSIONS: ReadonlySet<string> = new Set(['.jpg', '.jpeg', '.png', '.ppm', '.bmp', '.pgm', '.tif', '.tiff', '.webp']);

export interface ImageFolderOptions {
  superCategory: string;
  /** Folder of the evaluation split; default 'val', else 'test' when only that exists. */
  evalDir?: string;
}

export function readImageFolder(root: string, opts: ImageFolderOptions): Dataset {
  const trainDir = requireDir('imagefolder', root, 'train');
  const evalRel = opts.evalDir ?? (isDir(join(root, 'val')) || !isDir(join(root, 'test')) ? 'val' : 'test');
  const evalDir = requireDir('imagefolder', root, evalRel);
  const classes = subdirs(trainDir);
  if (classes.length === 0) throw layoutError('imagefolder', root, 'train/ has no class folders');
  const labelOf = new Map(classes.map((c, i) => [c, i]));
  const read = (dir: string, rel: string): Sample[] => {
    const out: Sample[] = [];
    for (const c of subdirs(dir)) {
      const label = labelOf.get(c);
      if (label === undefined) throw layoutError('imagefolder', root, `${rel}/${c} is not a class of train/`);
      for (const path of walkImages(join(dir, c))) out.push({ path, label });
    }
    return out;
  };
  return { kind: 'imagefolder', root, classes, superCategory: opts.superCategory, imageRoot: root, train: read(trainDir, 'train'), test: read(evalDir, evalRel) };
}

/** Sorted by code unit, as Python's sorted() orders names. */
function subdirs(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).filter((d) => d.isDirectory()).map((d) => d.name).sort();
}

/** The image files under `dir`, every level, in sorted order. */
export function walkImages(dir: string): string[] {
  const out: string[] = [];
  for (const d of readdirSync(dir, { withFileTypes: true }).sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0))) {
    const p = join(dir, d.name);
    if (d.isDirectory()) out.push(...walkImages(p));
    else if (IMAGE_EXTENSIONS.has(extname(d.name).toLowerCase())) out.push(p);
  }
  return out;
}
