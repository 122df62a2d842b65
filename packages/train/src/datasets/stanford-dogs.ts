// Stanford Dogs: images under Images/<wnid>-<name>/, the split in the official train_list.mat /
// test_list.mat (from lists.tar; MAT v5 with a cell array `file_list` and a 1-based `labels`
// vector), or in the train_list.txt / test_list.txt text lists some mirrors ship instead.
import { readdirSync } from 'node:fs';
import { join } from 'node:path';
import { readRegularFile } from '../safe-files.js';
import { type Dataset, MAX_LIST_BYTES, type Sample, imagePath, isFile, layoutError, readRows, requireDir } from './dataset.js';
import { type MatValue, readMat5 } from './mat5.js';

/** Where the lists may be: at the root as lists.tar unpacks, or in a lists/ folder. */
function findList(root: string, split: 'train' | 'test', ext: 'mat' | 'txt'): string | undefined {
  return [`${split}_list.${ext}`, `lists/${split}_list.${ext}`].find((rel) => isFile(join(root, rel)));
}

export function readStanfordDogs(root: string): Dataset {
  const imagesDir = requireDir('stanford-dogs', root, 'Images');
  const dirs = readdirSync(imagesDir, { withFileTypes: true }).filter((d) => d.isDirectory()).map((d) => d.name).sort();
  if (dirs.length === 0) throw layoutError('stanford-dogs', root, 'Images/ has no class folders');
  const labelOfDir = new Map(dirs.map((d, i) => [d, i]));
  // 'n02085782-Japanese_spaniel' -> 'Japanese spaniel'
  const classes = dirs.map((d) => d.replace(/^n\d+-/, '').replace(/_/g, ' '));

  const read = (split: 'train' | 'test'): Sample[] => {
    const mat = findList(root, split, 'mat');
    if (mat) return fromMat(root, mat, imagesDir, dirs, labelOfDir);
    const txt = findList(root, split, 'txt');
    if (txt) return fromText(root, txt, imagesDir, labelOfDir);
    throw layoutError('stanford-dogs', root, `missing ${split}_list.mat (official lists.tar) or ${split}_list.txt (text list), looked in ./ and lists/`);
  };
  return { kind: 'stanford-dogs', root, classes, superCategory: 'dog', imageRoot: imagesDir, train: read('train'), test: read('test') };
}

function fromMat(root: string, rel: string, imagesDir: string, dirs: string[], labelOfDir: Map<string, number>): Sample[] {
  let vars: Map<string, MatValue>;
  try {
    vars = readMat5(readRegularFile(join(root, rel), { what: 'Stanford Dogs list', maxBytes: MAX_LIST_BYTES }));
  } catch (e) {
    throw layoutError('stanford-dogs', root, `${rel}: ${(e as Error).message}`);
  }
  const files = vars.get('file_list');
  const labels = vars.get('labels');
  if (files?.type !== 'cell') throw layoutError('stanford-dogs', root, `${rel}: no cell array 'file_list'`);
  if (labels?.type !== 'numeric') throw layoutError('stanford-dogs', root, `${rel}: no numeric 'labels'`);
  if (labels.data.length !== files.cells.length) {
    throw layoutError('stanford-dogs', root, `${rel}: ${files.cells.length} files but ${labels.data.length} labels`);
  }
  return files.cells.map((cell, i) => {
    if (cell.type !== 'char' || cell.rows.length !== 1) throw layoutError('stanford-dogs', root, `${rel}: file_list{${i + 1}} is not a string`);
    const file = cell.rows[0]!;
    const label = labels.data[i]! - 1;
    const dir = file.split('/')[0]!;
    // The official labels number the class folders in sorted order; a disagreement means the
    // Images/ folder is not the one the list was made for.
    if (labelOfDir.get(dir) !== label) {
      throw layoutError('stanford-dogs', root, `${rel}: ${file} has label ${label + 1}, but Images/ sorts its folder as ${dirs.indexOf(dir) + 1 || 'absent'}`);
    }
    return { path: imagePath('stanford-dogs', root, imagesDir, file, `${rel}: file_list{${i + 1}}`), label };
  });
}

/** One relative path per line ('n02085620-Chihuahua/n02085620_5927.jpg'); the folder gives the label. */
function fromText(root: string, rel: string, imagesDir: string, labelOfDir: Map<string, number>): Sample[] {
  return readRows('stanford-dogs', root, rel, 1).map(({ line, fields }) => {
    const file = fields[0]!.split(/\s+/)[0]!;
    const label = labelOfDir.get(file.split('/')[0]!);
    if (label === undefined) throw layoutError('stanford-dogs', root, `${rel} line ${line}: ${file} is not in a class folder of Images/`);
    return { path: imagePath('stanford-dogs', root, imagesDir, file, `${rel} line ${line}`), label };
  });
}
