// Dawn's native code reports adapter limits it lowers ("maxDynamicUniformBuffersPerPipelineLayout
// artificially reduced from 1000000 to 16 …") with fprintf(stderr) while it discovers adapters:
// four lines on every command, meant for Dawn's developers. While a call discovers adapters, fd 2
// is a pipe (non-blocking, so a flood can never stall the process); afterwards every line that is
// not one of those notices goes on to the real stderr. Node on Linux and macOS only, through the
// optional FFI package `koffi`; anywhere it or libc is missing the call runs unfiltered.
// MPFGVC_DAWN_LOG=1 leaves Dawn's output alone.

/** Dawn's notices about limits it lowers to fit its own allocation; nothing a user can act on. */
export const DAWN_LIMIT_NOTICE = /^Warning: maxDynamic\w+ artificially reduced from \d+ to \d+ to fit dynamic offset allocation limit\.$/;

interface Libc {
  dup(fd: number): number;
  dup2(from: number, to: number): number;
  pipe(fds: number[]): number;
  close(fd: number): number;
  fcntl(fd: number, cmd: number, arg: number): number;
  /** F_SETFL and O_NONBLOCK on this system. */
  setfl: number;
  nonblock: number;
  readSync: (fd: number, buf: Uint8Array, offset: number, length: number, position: null) => number;
  closeSync: (fd: number) => void;
}

let libc: Promise<Libc | null> | undefined;

/** libc through koffi, opened once; null where either is missing or the filter is turned off. */
function loadLibc(): Promise<Libc | null> {
  return (libc ??= openLibc());
}

async function openLibc(): Promise<Libc | null> {
  const proc = (globalThis as { process?: { platform?: string; env?: Record<string, string | undefined> } }).process;
  if (proc?.env?.MPFGVC_DAWN_LOG === '1' || (proc?.platform !== 'linux' && proc?.platform !== 'darwin')) return null;
  try {
    // Specifiers in variables: bundlers leave both to Node at run time.
    const [name, fsName] = ['koffi', 'node:fs'];
    const koffi = ((await import(/* @vite-ignore */ name)) as { default: KoffiModule }).default;
    const fs = (await import(/* @vite-ignore */ fsName)) as Pick<Libc, 'readSync' | 'closeSync'>;
    const paths = proc.platform === 'darwin' ? ['/usr/lib/libSystem.B.dylib'] : ['libc.so.6', 'libc.so', 'libc.musl-x86_64.so.1', 'libc.musl-aarch64.so.1'];
    let lib: KoffiLibrary | undefined;
    for (const p of paths) {
      try {
        lib = koffi.load(p);
        break;
      } catch {
        // The next name.
      }
    }
    if (!lib) return null;
    return {
      dup: lib.func('int dup(int)') as Libc['dup'],
      dup2: lib.func('int dup2(int, int)') as Libc['dup2'],
      pipe: lib.func('int pipe(_Out_ int *fds)') as Libc['pipe'],
      close: lib.func('int close(int)') as Libc['close'],
      fcntl: lib.func('int fcntl(int, int, int)') as Libc['fcntl'],
      setfl: 4,
      nonblock: proc.platform === 'darwin' ? 0x4 : 0o4000,
      readSync: fs.readSync,
      closeSync: fs.closeSync,
    };
  } catch {
    return null;
  }
}

interface KoffiLibrary {
  func(signature: string): (...args: unknown[]) => unknown;
}
interface KoffiModule {
  load(path: string): KoffiLibrary;
}

/** Everything a read end holds until its writers are gone. */
function drain(c: Libc, fd: number): string {
  const chunks: Uint8Array[] = [];
  const buf = new Uint8Array(65536);
  for (;;) {
    let n: number;
    try {
      n = c.readSync(fd, buf, 0, buf.length, null);
    } catch {
      break;
    }
    if (n <= 0) break;
    chunks.push(buf.slice(0, n));
  }
  c.closeSync(fd);
  const all = new Uint8Array(chunks.reduce((s, b) => s + b.length, 0));
  let at = 0;
  for (const b of chunks) {
    all.set(b, at);
    at += b.length;
  }
  return new TextDecoder().decode(all);
}

// One window at a time: a second one opened inside the first would save the first's pipe as
// "stderr", and the first's read would then wait for a writer that never closes.
let windows: Promise<unknown> = Promise.resolve();

/**
 * Runs `call` with the process's native stderr captured, then writes on what is not one of
 * Dawn's limit notices. Calls wait for each other; `call` must not itself call this.
 */
export function withoutDawnNotices<T>(call: () => Promise<T>): Promise<T> {
  const run = windows.then(() => filtered(call));
  windows = run.catch(() => undefined);
  return run;
}

async function filtered<T>(call: () => Promise<T>): Promise<T> {
  const c = await loadLibc();
  if (!c) return call();
  const fds = [0, 0];
  const saved = c.dup(2);
  if (saved < 0) return call();
  if (c.pipe(fds) !== 0) {
    c.close(saved);
    return call();
  }
  const [read, write] = fds as [number, number];
  c.fcntl(write, c.setfl, c.nonblock);
  c.dup2(write, 2);
  c.close(write);
  try {
    return await call();
  } finally {
    // fd 2 back first: the pipe then has no writer left, and reading it ends.
    c.dup2(saved, 2);
    c.close(saved);
    const kept = drain(c, read)
      .split('\n')
      .filter((line, i, all) => !(i === all.length - 1 && line === '') && !DAWN_LIMIT_NOTICE.test(line));
    if (kept.length > 0) process.stderr.write(`${kept.join('\n')}\n`);
  }
}
