// A run folder: the files a run writes there, and the lock that keeps one process training into it
// at a time.
//
// One process trains into a run folder at a time. The lock is a file, `run.lock`, created with
// O_EXCL and holding the owner's pid, host and process start time; it is removed when the owner
// ends (normally, on an error, or on a signal it handles). A lock whose owner is gone — killed with
// SIGKILL, or the machine rebooted — is stale: its pid no longer runs on this host, or runs as
// another process (the kernel's start time differs), and the next run takes it over. On another
// host the owner cannot be checked, so the lock is respected and the error says how to clear it.
import { closeSync, existsSync, mkdirSync, openSync, readFileSync, readdirSync, renameSync, rmSync, statSync, writeSync } from 'node:fs';
import { hostname } from 'node:os';
import { join } from 'node:path';
import { WriteError, writing } from './atomic.js';
import { MODEL_CARD_FILE, isModelCardFile } from './model-card.js';
import { RunFolderError } from './errors.js';

export const LOCK_FILE = 'run.lock';

/**
 * Files a run writes into its folder (what --overwrite clears; other files there are left alone).
 * Its model card, README.md, is cleared too when it is one (isModelCardFile): a README.md of the
 * user's own stays.
 */
export const RUN_FILES = /^(config\.json|cli\.json|metrics\.jsonl|summary\.json|best\.json|checkpoint(-stage1)?\.json|(model|model-stage1|best)\.safetensors|step-\d+(-stage\d)?\.(model|optim)\.safetensors|eval-stage\d\.json|confusion-stage\d\.(csv|svg)|curves\.(svg|png)|\..+\.\d+\.tmp)$/;

/** Whether `dir` holds (part of) a run: train() into it is refused, resume or clear it instead. */
export function holdsRun(dir: string): boolean {
  if (!existsSync(dir)) return false;
  return existsSync(join(dir, LOCK_FILE)) || holdsRunBesidesLock(dir);
}

/** Whether `dir` holds files of a run (a lock aside). */
export function holdsRunBesidesLock(dir: string): boolean {
  return readdirSync(dir).some((f) => RUN_FILES.test(f) && !f.startsWith('.'));
}

/** Removes the files of a run from `dir` (the caller holds its lock); other files there stay. */
export function clearRun(dir: string): string[] {
  const gone = readdirSync(dir).filter((f) => RUN_FILES.test(f) || (f === MODEL_CARD_FILE && isModelCardFile(join(dir, f))));
  for (const f of gone) writing(join(dir, f), () => rmSync(join(dir, f), { force: true }));
  return gone;
}

export interface LockOwner {
  pid: number;
  host: string;
  /** The process's start time as the kernel counts it (Linux: /proc/<pid>/stat field 22); '' elsewhere. */
  start: string;
  /** When the lock was taken (ISO 8601). */
  since: string;
  /** What holds it ("train", "demo"). */
  command: string;
}

export interface RunLock {
  readonly path: string;
  readonly owner: LockOwner;
  /** Removes the lock (once; later calls do nothing). */
  release(): void;
}

/** The kernel's start time of `pid`, or '' where it cannot be read (not Linux, or no such process). */
function processStart(pid: number): string {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'latin1');
    // Field 2 (the command) is in parentheses and may hold spaces: count fields after its ')'.
    return stat.slice(stat.lastIndexOf(')') + 2).split(' ')[19] ?? '';
  } catch {
    return '';
  }
}

function running(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM'; // alive, another user's
  }
}

/** Whether the lock's owner is gone (only decidable on the host that took it). */
function stale(owner: LockOwner): boolean {
  if (owner.host !== hostname()) return false;
  if (!running(owner.pid)) return true;
  const start = processStart(owner.pid);
  return owner.start !== '' && start !== '' && start !== owner.start;
}

function readOwner(path: string): LockOwner | undefined {
  try {
    const o = JSON.parse(readFileSync(path, 'utf8')) as Partial<LockOwner>;
    if (typeof o.pid === 'number' && Number.isInteger(o.pid) && o.pid > 0 && typeof o.host === 'string') {
      return { pid: o.pid, host: o.host, start: typeof o.start === 'string' ? o.start : '', since: String(o.since ?? ''), command: String(o.command ?? '') };
    }
  } catch {
    // unreadable or half-written: judged below by its age
  }
  return undefined;
}

const releasers = new Set<() => void>();
let exitHook = false;

/**
 * Takes the run folder `dir` (which must exist) for this process, or throws RunFolderError naming
 * the process that holds it. Released by `release()`, and in any case when the process exits.
 */
export function lockRun(dir: string, command = 'train'): RunLock {
  const path = join(dir, LOCK_FILE);
  const owner: LockOwner = { pid: process.pid, host: hostname(), start: processStart(process.pid), since: new Date().toISOString(), command };
  for (let attempt = 0; ; attempt++) {
    let fd: number;
    try {
      fd = openSync(path, 'wx');
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw new WriteError(path, e);
      const holder = readOwner(path);
      if (holder && holder.pid === process.pid && holder.host === owner.host) throw new RunFolderError(`${dir} is already in use by this process`);
      if (attempt < 3 && (holder ? stale(holder) : lockAgeMs(path) > 10_000)) {
        // Moved aside first, so that of two processes taking over the same stale lock only one succeeds.
        const aside = `${path}.stale-${process.pid}`;
        try {
          renameSync(path, aside);
          rmSync(aside, { force: true });
        } catch {
          // another process took it over first; try again
        }
        continue;
      }
      if (!holder) throw new RunFolderError(`${dir} is in use: ${path} exists but names no process; if no run is training there, delete it`);
      const where = holder.host === owner.host ? `pid ${holder.pid}` : `pid ${holder.pid} on ${holder.host}`;
      throw new RunFolderError(`${dir} is in use by ${holder.command || 'a run'} (${where}, since ${holder.since}); wait for it to end${holder.host === owner.host ? '' : `, or delete ${path} if that process is gone`}`);
    }
    writing(path, () => {
      try {
        writeSync(fd, `${JSON.stringify(owner)}\n`);
      } finally {
        closeSync(fd);
      }
    });
    break;
  }
  let held = true;
  const release = () => {
    if (!held) return;
    held = false;
    releasers.delete(release);
    // Only our own lock: a folder taken over after ours went stale is not ours to clear.
    const now = readOwner(path);
    if (now && now.pid === owner.pid && now.host === owner.host) rmSync(path, { force: true });
  };
  releasers.add(release);
  if (!exitHook) {
    exitHook = true;
    process.on('exit', () => {
      for (const r of [...releasers]) r();
    });
  }
  return { path, owner, release };
}

/** How long ago the lock file was written (a lock that names no owner is stale once it is old). */
function lockAgeMs(path: string): number {
  try {
    return Date.now() - statSync(path).mtimeMs;
  } catch {
    return Infinity; // gone already
  }
}

/**
 * Creates and locks `dir` for a new run of `command`. A folder that already holds a run is refused
 * (RunFolderError; `refusal` says what to do instead) unless `overwrite`, which removes that run's
 * files first (`onCleared` hears which).
 */
export function takeRunFolder(dir: string, opts: { command: string; overwrite?: boolean; refusal?: string; onCleared?: (files: string[]) => void }): RunLock {
  writing(dir, () => mkdirSync(dir, { recursive: true }));
  const lock = lockRun(dir, opts.command);
  try {
    if (holdsRunBesidesLock(dir)) {
      if (!opts.overwrite) throw new RunFolderError(`${dir} already holds a run${opts.refusal ? `: ${opts.refusal}` : '; resume it or choose another outDir'}`);
      opts.onCleared?.(clearRun(dir).filter((f) => !f.startsWith('.')));
    }
  } catch (e) {
    lock.release();
    throw e;
  }
  return lock;
}

