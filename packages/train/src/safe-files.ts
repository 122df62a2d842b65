// Reading files whose names come from data (dataset lists, checkpoint.json) or from users. Two
// rules hold for every such read: a name taken from a file's contents never leaves its folder (no
// absolute paths, no `..`, and after resolving symlinks the file still lies inside the folder), and
// only regular files are opened: a FIFO would block forever and a device such as /dev/zero never
// ends. Files are opened non-blocking and checked with fstat before a byte is read.
import { closeSync, constants, fstatSync, openSync, readSync, realpathSync, type Stats } from 'node:fs';
import { open, realpath } from 'node:fs/promises';
import { isAbsolute, join, normalize, relative, sep } from 'node:path';

/** A path read from data points outside the folder it belongs to. */
export class UnsafePathError extends Error {
  override name = 'UnsafePathError';
}

/** A file that is not a regular file (a FIFO, a device, a folder, a socket), or too large. */
export class FileKindError extends Error {
  override name = 'FileKindError';
}

const OPEN_FLAGS = constants.O_RDONLY | (constants.O_NONBLOCK ?? 0);

function kindOf(st: Stats): string {
  if (st.isDirectory()) return 'a folder';
  if (st.isFIFO()) return 'a named pipe';
  if (st.isCharacterDevice() || st.isBlockDevice()) return 'a device';
  if (st.isSocket()) return 'a socket';
  return 'not a regular file';
}

function checkStat(st: Stats, path: string, what: string, maxBytes: number): void {
  if (!st.isFile()) throw new FileKindError(`${what} ${path}: ${kindOf(st)}, not a regular file`);
  if (st.size > maxBytes) throw new FileKindError(`${what} ${path}: ${st.size} bytes, more than the ${maxBytes} this reader accepts`);
}

export interface ReadOptions {
  /** Names the file in errors ('image', 'checkpoint', ...). */
  what?: string;
  /** Larger files are refused before they are read. Default 8 GiB. */
  maxBytes?: number;
}

const DEFAULT_MAX = 8 * 1024 ** 3;

/** A regular file's bytes; FIFOs, devices and folders are refused without blocking. */
export function readRegularFile(path: string, opts: ReadOptions = {}): Buffer {
  const what = opts.what ?? 'file';
  const fd = openSync(path, OPEN_FLAGS);
  try {
    const st = fstatSync(fd);
    checkStat(st, path, what, opts.maxBytes ?? DEFAULT_MAX);
    const out = Buffer.allocUnsafe(st.size);
    let off = 0;
    while (off < st.size) {
      const n = readSync(fd, out, off, st.size - off, null);
      if (n === 0) break;
      off += n;
    }
    return off === st.size ? out : out.subarray(0, off);
  } finally {
    closeSync(fd);
  }
}

/** readRegularFile as UTF-8 text. */
export function readRegularText(path: string, opts: ReadOptions = {}): string {
  return readRegularFile(path, opts).toString('utf8');
}

/** The same check without blocking the event loop (the image pipeline reads this way). */
export async function readRegularFileAsync(path: string, opts: ReadOptions = {}): Promise<Buffer> {
  const what = opts.what ?? 'file';
  const fh = await open(path, OPEN_FLAGS);
  try {
    checkStat(await fh.stat(), path, what, opts.maxBytes ?? DEFAULT_MAX);
    return await fh.readFile();
  } finally {
    await fh.close();
  }
}

/**
 * A relative name read from a data file, checked lexically: not absolute, no `..` segment, no NUL.
 * Returns it normalised. `where` names the file and line in the error.
 */
export function relativeName(name: string, where: string): string {
  if (name.includes('\0')) throw new UnsafePathError(`${where}: the path holds a NUL character`);
  if (isAbsolute(name) || /^[a-zA-Z]:[\\/]/.test(name)) throw new UnsafePathError(`${where}: '${name}' is an absolute path; only paths inside the dataset folder are read`);
  const parts = name.split(/[\\/]+/);
  if (parts.includes('..')) throw new UnsafePathError(`${where}: '${name}' climbs out with '..'; only paths inside the dataset folder are read`);
  return normalize(name);
}

function within(root: string, path: string): boolean {
  const rel = relative(root, path);
  return rel === '' || (!rel.startsWith(`..${sep}`) && rel !== '..' && !isAbsolute(rel));
}

/** The folder's real path (symlinks resolved), for the checks below. */
export function realFolder(dir: string): string {
  return realpathSync(dir);
}

/**
 * `path` with symlinks resolved, which must lie inside `realRoot` (a realFolder() result); a file
 * that does not exist passes through unresolved (its reader reports it missing).
 */
export function insideFolder(realRoot: string, path: string, what: string): string {
  let real: string;
  try {
    real = realpathSync(path);
  } catch {
    return path;
  }
  if (!within(realRoot, real)) throw new UnsafePathError(`${what} ${path} resolves to ${real}, outside ${realRoot} (symlinks are followed)`);
  return real;
}

/** insideFolder without blocking the event loop. */
export async function insideFolderAsync(realRoot: string, path: string, what: string): Promise<string> {
  let real: string;
  try {
    real = await realpath(path);
  } catch {
    return path;
  }
  if (!within(realRoot, real)) throw new UnsafePathError(`${what} ${path} resolves to ${real}, outside ${realRoot} (symlinks are followed)`);
  return real;
}

/** join(dir, name) for a name that must be a plain file name (no separators), checked. */
export function childFile(dir: string, name: string, where: string): string {
  if (name === '' || name === '.' || name === '..' || /[\\/\0]/.test(name)) throw new UnsafePathError(`${where}: '${name}' is not a plain file name`);
  return join(dir, name);
}
