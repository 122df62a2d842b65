import { execFileSync, spawn } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import type { OptimizerState } from '@mpfgvc/kernels';
import { serializeSafetensors } from '@mpfgvc/model';
import { CHECKPOINT_FILE, CheckpointError, STAGE1_CHECKPOINT_FILE, assertFiniteSafetensors, parseOptimizer, readCheckpoint, serializeOptimizer, writeCheckpoint } from './checkpoint.js';

const temp = mkdtempSync(join(tmpdir(), 'mpfgvc-ckpt-'));
afterAll(() => rmSync(temp, { recursive: true, force: true }));

const state: OptimizerState = {
  kind: 'adamw',
  params: [
    { name: 'weight', step: 3, buffers: { m: Float32Array.from([1, 2]), v: Float32Array.from([3, 4]) } },
    { name: 'bias', step: 2, buffers: { m: Float32Array.from([5]), v: Float32Array.from([6]) } },
  ],
};
const model = (x: number) => serializeSafetensors({ w: { dtype: 'F32', shape: [2], data: Float32Array.from([x, 1]) } }, { format: 'test' });
const position = (step: number) => ({ stage: 1 as const, stageDone: false, step, stageStep: step, data: { epoch: 0, index: 8 * step } });

describe('checkpoints', () => {
  it('round-trip the optimiser state exactly', () => {
    expect(parseOptimizer(serializeOptimizer(state), 'optim')).toEqual(state);
    expect(() => parseOptimizer(model(1), 'model.safetensors')).toThrow('model.safetensors: not an optimiser state written by this trainer');
  });

  it('commit through checkpoint.json and remove the files of the one they replace', () => {
    const dir = join(temp, 'run');
    fresh(dir);
    writeCheckpoint(dir, { position: position(2), seed: 1, config: { a: 1 }, skipped: {} }, model(2), serializeOptimizer(state));
    writeCheckpoint(dir, { position: position(4), seed: 1, config: { a: 1 }, skipped: { '/x.jpg': 'bad' } }, model(4), serializeOptimizer(state));
    expect(readdirSync(dir).sort()).toEqual([CHECKPOINT_FILE, 'step-4.model.safetensors', 'step-4.optim.safetensors']);
    const got = readCheckpoint(dir);
    expect(got.record.position.step).toBe(4);
    expect(got.record.skipped).toEqual({ '/x.jpg': 'bad' });
    expect(Buffer.from(got.model).equals(Buffer.from(model(4)))).toBe(true);
    expect(got.optimizer).toEqual(state);
  });

  it('refuse a non-finite model or optimiser state and leave the previous checkpoint in force', () => {
    const dir = join(temp, 'guard');
    fresh(dir);
    writeCheckpoint(dir, { position: position(1), seed: 1, config: {}, skipped: {} }, model(1), serializeOptimizer(state));
    const before = readFileSync(join(dir, CHECKPOINT_FILE), 'utf8');
    expect(() => writeCheckpoint(dir, { position: position(2), seed: 1, config: {}, skipped: {} }, model(NaN), serializeOptimizer(state))).toThrow("checkpoint at step 2: model: tensor 'w' holds NaN at 0");
    const bad = { ...state, params: [{ ...state.params[1]!, buffers: { m: Float32Array.from([Infinity]), v: Float32Array.from([0]) } }] };
    expect(() => writeCheckpoint(dir, { position: position(2), seed: 1, config: {}, skipped: {} }, model(2), serializeOptimizer(bad))).toThrow(/optimiser state: tensor '0.m' holds Infinity/);
    expect(readFileSync(join(dir, CHECKPOINT_FILE), 'utf8')).toBe(before);
    expect(readdirSync(dir).sort()).toEqual([CHECKPOINT_FILE, 'step-1.model.safetensors', 'step-1.optim.safetensors']);
  });

  it('name what is missing when a run cannot be resumed', () => {
    const dir = join(temp, 'broken');
    fresh(dir);
    expect(() => readCheckpoint(dir)).toThrow(`cannot resume from ${dir}: missing checkpoint.json`);
    writeCheckpoint(dir, { position: position(1), seed: 1, config: {}, skipped: {} }, model(1), serializeOptimizer(state));
    rmSync(join(dir, 'step-1.optim.safetensors'));
    expect(() => readCheckpoint(dir)).toThrow(`${join(dir, CHECKPOINT_FILE)} names step-1.optim.safetensors, which is missing`);
    writeFileSync(join(dir, CHECKPOINT_FILE), '{');
    expect(() => readCheckpoint(dir)).toThrow(/checkpoint.json: unreadable/);
  });

  it('a process killed (SIGKILL) while writing checkpoints leaves the last one it committed loadable', async () => {
    const dir = join(temp, 'killed');
    mkdirSync(dir);
    // A writer of 16 MiB checkpoints, one after another, as fast as the disk takes them.
    const script = `
      import { writeCheckpoint, serializeOptimizer } from ${JSON.stringify(new URL('../dist/checkpoint.js', import.meta.url).href)};
      import { serializeSafetensors } from '@mpfgvc/model';
      const n = 4 * 1024 * 1024;
      for (let step = 1; ; step++) {
        const w = new Float32Array(n).fill(step);
        const model = serializeSafetensors({ w: { dtype: 'F32', shape: [n], data: w } }, { format: 'test' });
        const optimizer = serializeOptimizer({ kind: 'adamw', params: [{ name: 'w', step, buffers: { m: w } }] });
        const position = { stage: 1, stageDone: step % 5 === 0, step, stageStep: step, data: { epoch: 0, index: 0 } };
        writeCheckpoint(${JSON.stringify(dir)}, { position, seed: 0, config: {}, skipped: {} }, model, optimizer);
        if (step === 1) process.stdout.write('first\\n');
      }`;
    for (const delay of [37, 90, 151, 230, 333]) {
      const child = spawn(process.execPath, ['--input-type=module', '-e', script], { cwd: new URL('..', import.meta.url).pathname, stdio: ['ignore', 'pipe', 'inherit'] });
      await new Promise<void>((done) => child.stdout.once('data', () => done()));
      await new Promise((r) => setTimeout(r, delay));
      child.kill('SIGKILL');
      await new Promise((r) => child.once('exit', r));
      const { record, model, optimizer } = readCheckpoint(dir);
      assertFiniteSafetensors(model, 'kept');
      expect(optimizer.params[0]!.step).toBe(record.position.step);
      expect(optimizer.params[0]!.buffers.m![0]).toBe(record.position.step);
      // The committed checkpoint's files and the last stage end's stay, besides at most a write cut short.
      expect(readdirSync(dir).filter((f) => f.endsWith('.safetensors')).length).toBeLessThanOrEqual(6);
      if (readdirSync(dir).includes(STAGE1_CHECKPOINT_FILE)) readCheckpoint(dir, STAGE1_CHECKPOINT_FILE);
    }
  });
});

describe('a crafted checkpoint.json', () => {
  /** A run folder with one good checkpoint whose record is then edited. */
  const crafted = (name: string, edit: (record: Record<string, any>) => { replace: unknown } | void) => {
    const dir = join(temp, name);
    fresh(dir);
    writeCheckpoint(dir, { position: position(3), seed: 1, config: { a: 1 }, skipped: {} }, model(3), serializeOptimizer(state));
    const record = JSON.parse(readFileSync(join(dir, CHECKPOINT_FILE), 'utf8'));
    const replaced = edit(record) as { replace: unknown } | undefined;
    const edited = replaced ? replaced.replace : record;
    writeFileSync(join(dir, CHECKPOINT_FILE), JSON.stringify(edited));
    return { dir, path: join(dir, CHECKPOINT_FILE) };
  };

  it('cannot name a path: the step is an integer and the files are the ones the position implies', () => {
    const pwned = crafted('pwned', (r) => {
      r.position.step = '/../../../../tmp/x/PWNED';
    });
    expect(() => readCheckpoint(pwned.dir)).toThrow(`${pwned.path}: position.step: expected a number, got "/../../../../tmp/x/PWNED"`);
    const other = crafted('other', (r) => {
      r.model = '../other/model.safetensors';
    });
    expect(() => readCheckpoint(other.dir)).toThrow(`${other.path}: model: must be 'step-3.model.safetensors' for the recorded position`);
    const stage = crafted('stage7', (r) => {
      r.position.stage = 7;
    });
    expect(() => readCheckpoint(stage.dir)).toThrow(`${stage.path}: position.stage: matches none of the accepted forms, got 7`);
    const abc = crafted('abc', (r) => {
      r.position.step = 'abc';
    });
    expect(() => readCheckpoint(abc.dir)).toThrow(CheckpointError);
    for (const [name, value] of [['empty', {}], ['array', []], ['number', 5]] as const) {
      const c = crafted(name, () => ({ replace: value }));
      expect(() => readCheckpoint(c.dir)).toThrow(CheckpointError);
    }
  });

  it('reads only regular files inside the run folder, symlinks followed', () => {
    const { dir, path } = crafted('linked', () => undefined);
    const elsewhere = join(temp, 'elsewhere.safetensors');
    writeFileSync(elsewhere, model(3));
    rmSync(join(dir, 'step-3.model.safetensors'));
    symlinkSync(elsewhere, join(dir, 'step-3.model.safetensors'));
    expect(() => readCheckpoint(dir)).toThrow(`${path} names ${join(dir, 'step-3.model.safetensors')} resolves to ${elsewhere}, outside ${dir} (symlinks are followed)`);
    rmSync(join(dir, 'step-3.model.safetensors'));
    execFileSync('mkfifo', [join(dir, 'step-3.model.safetensors')]);
    expect(() => readCheckpoint(dir)).toThrow(`checkpoint file ${join(dir, 'step-3.model.safetensors')}: a named pipe, not a regular file`);
  });
});

function fresh(dir: string): void {
  rmSync(dir, { recursive: true, force: true });
  mkdirSync(dir);
}
