// JSON Lines output of a batch job, one row per input as it is done: to stdout, or to a file that
// is written beside its name (<file>.partial) and renamed into place when the job ends, so a file
// under the final name is always a whole job's (or a whole shard's).
import { closeSync, openSync, renameSync, rmSync, writeSync } from 'node:fs';
import { writing } from '@mpfgvc/train';

export class JsonlWriter {
  private readonly fd: number | undefined;
  private readonly partial: string | undefined;

  /** `file` undefined: stdout. */
  constructor(private readonly file?: string) {
    if (file) {
      this.partial = `${file}.partial`;
      this.fd = writing(file, () => openSync(this.partial!, 'w'));
    }
  }

  write(line: string): void {
    if (this.fd === undefined) process.stdout.write(line);
    else writing(this.file!, () => writeSync(this.fd!, line));
  }

  /** The file under its name (nothing to do for stdout). */
  commit(): void {
    if (this.fd === undefined) return;
    closeSync(this.fd);
    writing(this.file!, () => renameSync(this.partial!, this.file!));
  }

  /** A failed job leaves no file under the name, and no partial one. */
  abandon(): void {
    if (this.fd === undefined) return;
    try {
      closeSync(this.fd);
    } catch {
      // Already closed by commit.
    }
    rmSync(this.partial!, { force: true });
  }
}
