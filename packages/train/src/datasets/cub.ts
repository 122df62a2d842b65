// CUB-200-2011 and NABirds share one family of index files, keyed by image id (1-based integers in
// CUB, UUIDs in NABirds): images.txt, image_class_labels.txt, train_test_split.txt, classes.txt.
import { join } from 'node:path';
import { type Dataset, type DatasetKind, type Sample, imagePath, layoutError, readRows, requireDir } from './dataset.js';

interface CubIndex {
  /** (image id, path under images/, line of images.txt) in the order of images.txt. */
  images: [string, string, number][];
  classOf: Map<string, number>;
  isTrain: Map<string, boolean>;
  classNames: Map<number, string>;
}

function readCubIndex(kind: DatasetKind, root: string): CubIndex {
  const images = readRows(kind, root, 'images.txt', 2).map((r) => [r.fields[0]!, r.fields[1]!, r.line] as [string, string, number]);
  const classOf = new Map<string, number>();
  for (const { line, fields } of readRows(kind, root, 'image_class_labels.txt', 2)) {
    classOf.set(fields[0]!, parseId(kind, root, 'image_class_labels.txt', line, fields[1]!));
  }
  const isTrain = new Map<string, boolean>();
  for (const { line, fields } of readRows(kind, root, 'train_test_split.txt', 2)) {
    const flag = fields[1]!;
    if (flag !== '0' && flag !== '1') throw layoutError(kind, root, `train_test_split.txt line ${line}: expected 0 or 1, got '${flag}'`);
    isTrain.set(fields[0]!, flag === '1');
  }
  const classNames = new Map<number, string>();
  for (const { line, fields } of readRows(kind, root, 'classes.txt', 2)) {
    classNames.set(parseId(kind, root, 'classes.txt', line, fields[0]!), fields[1]!);
  }
  return { images, classOf, isTrain, classNames };
}

function parseId(kind: DatasetKind, root: string, file: string, line: number, text: string): number {
  const v = Number(text);
  if (!Number.isInteger(v) || v < 0) throw layoutError(kind, root, `${file} line ${line}: expected a class id, got '${text}'`);
  return v;
}

/** Samples of the index with class ids mapped through `labelOf`; every image must be labelled and split. */
function samples(kind: DatasetKind, root: string, index: CubIndex, labelOf: Map<number, number>): { train: Sample[]; test: Sample[] } {
  const imagesDir = join(root, 'images');
  const train: Sample[] = [];
  const test: Sample[] = [];
  for (const [id, rel, line] of index.images) {
    const cls = index.classOf.get(id);
    if (cls === undefined) throw layoutError(kind, root, `image ${id} (${rel}) has no entry in image_class_labels.txt`);
    const label = labelOf.get(cls);
    if (label === undefined) throw layoutError(kind, root, `image ${id} has class ${cls}, which classes.txt does not list`);
    const split = index.isTrain.get(id);
    if (split === undefined) throw layoutError(kind, root, `image ${id} (${rel}) has no entry in train_test_split.txt`);
    (split ? train : test).push({ path: imagePath(kind, root, imagesDir, rel, `images.txt line ${line}`), label });
  }
  return { train, test };
}

/** CUB-200-2011: 200 classes, labels in the order of the 1-based class ids of classes.txt. */
export function readCub(root: string): Dataset {
  requireDir('cub', root, 'images');
  const index = readCubIndex('cub', root);
  const ids = [...index.classNames.keys()].sort((a, b) => a - b);
  const labelOf = new Map(ids.map((id, i) => [id, i]));
  // '001.Black_footed_Albatross' -> 'Black footed Albatross'
  const classes = ids.map((id) => index.classNames.get(id)!.replace(/^\d+\./, '').replace(/_/g, ' '));
  return { kind: 'cub', root, classes, superCategory: 'bird', imageRoot: join(root, 'images'), ...samples('cub', root, index, labelOf) };
}

/**
 * NABirds: classes.txt lists all 1011 nodes of the taxonomy (hierarchy.txt holds the parent of
 * each); images are labelled with 555 of them, sparse ids which become contiguous labels in
 * ascending id order.
 */
export function readNabirds(root: string): Dataset {
  requireDir('nabirds', root, 'images');
  const index = readCubIndex('nabirds', root);
  const parents = new Map<number, number>();
  for (const { line, fields } of readRows('nabirds', root, 'hierarchy.txt', 2)) {
    parents.set(parseId('nabirds', root, 'hierarchy.txt', line, fields[0]!), parseId('nabirds', root, 'hierarchy.txt', line, fields[1]!));
  }
  const used = [...new Set(index.classOf.values())].sort((a, b) => a - b);
  for (const id of used) {
    if (!index.classNames.has(id)) throw layoutError('nabirds', root, `class ${id} of image_class_labels.txt is not in classes.txt`);
    if (!parents.has(id)) throw layoutError('nabirds', root, `class ${id} of image_class_labels.txt is not in hierarchy.txt`);
  }
  const labelOf = new Map(used.map((id, i) => [id, i]));
  const classes = used.map((id) => index.classNames.get(id)!);
  return { kind: 'nabirds', root, classes, superCategory: 'bird', imageRoot: join(root, 'images'), ...samples('nabirds', root, index, labelOf) };
}
