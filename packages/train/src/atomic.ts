// Files a run writes are replaced atomically: written to a temporary file beside the target,
// flushed, then renamed over it, so a crash never leaves a half-written checkpoint or config.
// A failed write (a full disk, no permission) is a WriteError naming the file, never a crash: the
// temporary file is removed and the old file stays as it was.
import { closeSync, fsyncSync, openSync, renameSync, rmSync, writeSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';

/** Writing a file failed: the disk is full, the folder is read-only, ... */
export class WriteError extends Error {
  override name = 'WriteError';
  constructor(
    readonly path: string,
    cause: unknown,
  ) {
    super(`cannot write ${path}: ${describeWriteFailure(cause)}`);
  }
}

const REASONS: Record<string, string> = {
  ENOSPC: 'no space left on the device',
  EDQUOT: 'disk quota exceeded',
  EROFS: 'read-only file system',
  EACCES: 'permission denied',
  EPERM: 'operation not permitted',
  ENOENT: 'no such folder',
  ENOTDIR: 'a path component is not a folder',
  EISDIR: 'it is a folder',
  EIO: 'input/output error',
  EFBIG: 'file too large',
};

function describeWriteFailure(e: unknown): string {
  const code = (e as NodeJS.ErrnoException)?.code;
  return (code && REASONS[code]) ?? (e as Error)?.message ?? String(e);
}

/** Runs a file-system write, turning its failure into a WriteError for `path`. */
export function writing<T>(path: string, write: () => T): T {
  try {
    return write();
  } catch (e) {
    if (e instanceof WriteError) throw e;
    throw new WriteError(path, e);
  }
}

export function writeFileAtomic(path: string, data: string | Uint8Array): void {
  const tmp = join(dirname(path), `.${basename(path)}.${process.pid}.tmp`);
  writing(path, () => {
    const fd = openSync(tmp, 'w');
    try {
      const bytes = typeof data === 'string' ? Buffer.from(data) : data;
      let off = 0;
      while (off < bytes.length) off += writeSync(fd, bytes, off, bytes.length - off);
      fsyncSync(fd);
    } catch (e) {
      closeSync(fd);
      rmSync(tmp, { force: true });
      throw e;
    }
    closeSync(fd);
    try {
      renameSync(tmp, path);
    } catch (e) {
      rmSync(tmp, { force: true });
      throw e;
    }
  });
}
