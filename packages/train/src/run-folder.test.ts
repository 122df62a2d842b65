import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { hostname, tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { MODEL_CARD_MARK } from './model-card.js';
import { LOCK_FILE, clearRun, holdsRun, lockRun } from './run-folder.js';

const temp = mkdtempSync(join(tmpdir(), 'mpfgvc-lock-'));
afterAll(() => rmSync(temp, { recursive: true, force: true }));

const folder = (name: string) => {
  const dir = join(temp, name);
  rmSync(dir, { recursive: true, force: true });
  spawnSync('mkdir', ['-p', dir]);
  return dir;
};

/** A pid that ran and has exited (so no process has it now, barring reuse within the test). */
function deadPid(): number {
  const r = spawnSync(process.execPath, ['-e', 'process.stdout.write(String(process.pid))'], { encoding: 'utf8' });
  return Number(r.stdout);
}

describe('lockRun', () => {
  it('holds the folder for this process, names the holder to another, and is gone once released', () => {
    const dir = folder('held');
    const lock = lockRun(dir, 'train');
    const owner = JSON.parse(readFileSync(join(dir, LOCK_FILE), 'utf8'));
    expect(owner).toMatchObject({ pid: process.pid, host: hostname(), command: 'train' });
    expect(() => lockRun(dir)).toThrow(`${dir} is already in use by this process`);
    // Another process on this host sees the holder's pid.
    const other = spawnSync(process.execPath, ['--input-type=module', '-e', `import { lockRun } from ${JSON.stringify(new URL('../dist/run-folder.js', import.meta.url).href)}; try { lockRun(${JSON.stringify(dir)}); } catch (e) { console.log(e.name + ': ' + e.message); }`], { encoding: 'utf8' });
    expect(other.stdout.trim()).toMatch(new RegExp(`^RunFolderError: .* is in use by train \\(pid ${process.pid}, since .*\\); wait for it to end$`));
    expect(holdsRun(dir)).toBe(true);
    lock.release();
    lock.release();
    expect(existsSync(join(dir, LOCK_FILE))).toBe(false);
    lockRun(dir).release();
  });

  it('takes over a lock whose process is gone, or whose pid now runs another process', () => {
    const dir = folder('stale');
    writeFileSync(join(dir, LOCK_FILE), JSON.stringify({ pid: deadPid(), host: hostname(), start: '1', since: 'then', command: 'train' }));
    const a = lockRun(dir);
    expect(JSON.parse(readFileSync(join(dir, LOCK_FILE), 'utf8')).pid).toBe(process.pid);
    a.release();
    // A running pid with another start time: the holder ended and its pid went to a new process.
    if (existsSync('/proc/self/stat')) {
      writeFileSync(join(dir, LOCK_FILE), JSON.stringify({ pid: process.ppid, host: hostname(), start: '123', since: 'then', command: 'train' }));
      lockRun(dir).release();
    }
    // Half-written (no owner yet) and fresh: respected; the same file 20 s old: taken over.
    writeFileSync(join(dir, LOCK_FILE), '');
    expect(() => lockRun(dir)).toThrow(/names no process; if no run is training there, delete it/);
    spawnSync('touch', ['-d', '20 seconds ago', join(dir, LOCK_FILE)]);
    lockRun(dir).release();
  });

  it("respects a lock taken on another host, saying how to clear it, and never removes a lock that is not its own", () => {
    const dir = folder('remote');
    writeFileSync(join(dir, LOCK_FILE), JSON.stringify({ pid: deadPid(), host: 'elsewhere', start: '', since: 'then', command: 'demo' }));
    expect(() => lockRun(dir)).toThrow(new RegExp(`in use by demo \\(pid \\d+ on elsewhere, since then\\); wait for it to end, or delete ${join(dir, LOCK_FILE)} if that process is gone$`));
    rmSync(join(dir, LOCK_FILE));
    const mine = lockRun(dir);
    writeFileSync(join(dir, LOCK_FILE), JSON.stringify({ pid: 1, host: hostname(), start: '', since: 'later', command: 'train' }));
    mine.release();
    expect(existsSync(join(dir, LOCK_FILE))).toBe(true);
  });
});

describe('run files', () => {
  it('a folder holds a run when it has a run file; clearing removes those alone', () => {
    const dir = folder('files');
    writeFileSync(join(dir, 'notes.txt'), 'mine');
    expect(holdsRun(dir)).toBe(false);
    for (const f of ['config.json', 'metrics.jsonl', 'step-4.model.safetensors', 'step-9-stage1.optim.safetensors', 'checkpoint-stage1.json', 'eval-stage2.json', '.summary.json.77.tmp']) writeFileSync(join(dir, f), '');
    expect(holdsRun(dir)).toBe(true);
    expect(clearRun(dir).sort()).toEqual(['.summary.json.77.tmp', 'checkpoint-stage1.json', 'config.json', 'eval-stage2.json', 'metrics.jsonl', 'step-4.model.safetensors', 'step-9-stage1.optim.safetensors']);
    expect(holdsRun(dir)).toBe(false);
    expect(readFileSync(join(dir, 'notes.txt'), 'utf8')).toBe('mine');
  });

  it("clears the run's model card and confusion pictures, not a README.md of the user's own", () => {
    const dir = folder('card');
    writeFileSync(join(dir, 'README.md'), '# my project\n');
    expect(holdsRun(dir)).toBe(false);
    writeFileSync(join(dir, 'confusion-stage2.svg'), '<svg/>');
    expect(clearRun(dir)).toEqual(['confusion-stage2.svg']);
    expect(readFileSync(join(dir, 'README.md'), 'utf8')).toBe('# my project\n');
    writeFileSync(join(dir, 'README.md'), `${MODEL_CARD_MARK}\n# MP-FGVC on synthetic birds\n`);
    expect(clearRun(dir)).toEqual(['README.md']);
    expect(existsSync(join(dir, 'README.md'))).toBe(false);
  });
});
