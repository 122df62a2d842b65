// What every dataset reader returns, and the file helpers they share. Readers take the folder an
// official archive unpacks to; a wrong folder is reported by the first file it lacks, in the form
// "<dataset> at <root>: missing <file>", so the user sees which layout was expected.
import { existsSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { readRegularText, relativeName } from '../safe-files.js';

export interface Sample {
  /** Absolute path of the image file. */
  path: string;
  /** Contiguous class index in [0, classes.length). */
  label: number;
}

export type DatasetKind = 'cub' | 'nabirds' | 'stanford-dogs' | 'food101' | 'imagefolder';

export interface Dataset {
  kind: DatasetKind;
  root: string;
  /** Display names, indexed by label. */
  classes: string[];
  /** The name DaTP appends to every class prompt (`bird`, `dog`, `food`, ...). */
  superCategory: string;
  /**
   * The folder every image path lies in (images/, Images/, or the root of an ImageFolder): the
   * image pipeline refuses a file that resolves outside it, symlinks included.
   */
  imageRoot: string;
  train: Sample[];
  test: Sample[];
}

export const DATASET_NAMES: Record<DatasetKind, string> = {
  cub: 'CUB-200-2011',
  nabirds: 'NABirds',
  'stanford-dogs': 'Stanford Dogs',
  food101: 'Food-101',
  imagefolder: 'ImageFolder',
};

/** A dataset folder of the wrong layout, or with a list that names a file outside it. */
export class DatasetError extends Error {
  override name = 'DatasetError';
}

export function layoutError(kind: DatasetKind, root: string, message: string): DatasetError {
  return new DatasetError(`${DATASET_NAMES[kind]} at ${root}: ${message}`);
}

export function isFile(path: string): boolean {
  return existsSync(path) && statSync(path).isFile();
}

export function isDir(path: string): boolean {
  return existsSync(path) && statSync(path).isDirectory();
}

export function requireDir(kind: DatasetKind, root: string, rel: string): string {
  const p = join(root, rel);
  if (!isDir(p)) throw layoutError(kind, root, `missing ${rel}/`);
  return p;
}

/** Index files larger than this are refused (NABirds' largest is under 5 MB, Food-101's 2 MB). */
export const MAX_LIST_BYTES = 256 * 1024 * 1024;

/** An image path read from a list file: relative, inside its folder (checked lexically here, and after symlinks when the image is read). */
export function imagePath(kind: DatasetKind, root: string, dir: string, name: string, where: string): string {
  try {
    return join(dir, relativeName(name, where));
  } catch (e) {
    throw layoutError(kind, root, (e as Error).message);
  }
}

/**
 * Rows of a whitespace-separated text file with at least `columns` fields; the last field keeps
 * the rest of the line, since NABirds class names contain spaces. Blank lines are ignored.
 */
export function readRows(kind: DatasetKind, root: string, rel: string, columns: number): { line: number; fields: string[] }[] {
  const p = join(root, rel);
  if (!existsSync(p)) throw layoutError(kind, root, `missing ${rel}`);
  if (!isFile(p)) throw layoutError(kind, root, `${rel} is not a regular file`);
  const rows: { line: number; fields: string[] }[] = [];
  const lines = readRegularText(p, { what: `${DATASET_NAMES[kind]} list`, maxBytes: MAX_LIST_BYTES }).split(/\r?\n/);
  for (let i = 0; i < lines.length; i++) {
    const text = lines[i]!.trim();
    if (text === '') continue;
    const fields: string[] = [];
    let rest = text;
    while (fields.length < columns - 1) {
      const m = /^(\S+)\s+(.*)$/.exec(rest);
      if (!m) break;
      fields.push(m[1]!);
      rest = m[2]!;
    }
    fields.push(rest);
    if (fields.length < columns) throw layoutError(kind, root, `${rel} line ${i + 1}: expected ${columns} fields, got '${text}'`);
    rows.push({ line: i + 1, fields });
  }
  return rows;
}
