// Food-101: meta/classes.txt gives the label order, meta/train.txt and meta/test.txt list
// '<class>/<id>' entries whose images are images/<class>/<id>.jpg.
import { join } from 'node:path';
import { type Dataset, type Sample, imagePath, layoutError, readRows, requireDir } from './dataset.js';

export function readFood101(root: string): Dataset {
  const imagesDir = requireDir('food101', root, 'images');
  const names = readRows('food101', root, 'meta/classes.txt', 1).map((r) => r.fields[0]!);
  const labelOf = new Map(names.map((c, i) => [c, i]));
  const read = (rel: string): Sample[] =>
    readRows('food101', root, rel, 1).map(({ line, fields }) => {
      const entry = fields[0]!;
      const label = labelOf.get(entry.split('/')[0]!);
      if (label === undefined) throw layoutError('food101', root, `${rel} line ${line}: class of '${entry}' is not in meta/classes.txt`);
      return { path: imagePath('food101', root, imagesDir, `${entry}.jpg`, `${rel} line ${line}`), label };
    });
  const train = read('meta/train.txt');
  const test = read('meta/test.txt');
  // 'apple_pie' -> 'apple pie'
  return { kind: 'food101', root, classes: names.map((c) => c.replace(/_/g, ' ')), superCategory: 'food', imageRoot: imagesDir, train, test };
}
