// `npm run fuzz -- [--count N] [--target name]... [--seed S] [--from K] [--json]`: seeded mutation
// fuzzing of every parser that reads files users hand us (see targets.ts), each input watched for
// exceptions of a foreign kind, hangs and memory growth. The same file is the campaigns' worker.
import { readFileSync } from 'node:fs';
import { isMainThread, parentPort, workerData } from 'node:worker_threads';
import { Command, InvalidArgumentError } from 'commander';
import sharp from 'sharp';
import { Rng, requestDevice } from '@mpfgvc/kernels';
import { MPFGVC } from '@mpfgvc/model';
import { birdClasses, demoConfig, encodePng, generateBird, readRegularText, realFolder, resolveConfig, writeCubLayout } from '@mpfgvc/train';
import { COUNTERS, type CampaignResult, type Limits, TIMES, type WorkerInput, type WorkerMessage, runCampaign } from './campaign.js';
import { type Seeds, TARGETS, inputRng, targetByName, workerDir } from './targets.js';

const repo = new URL('../../../', import.meta.url);
const file = (rel: string) => new Uint8Array(readFileSync(new URL(rel, repo)));

/** A tiny MP-FGVC model (built on the default adapter once), fixtures and synthetic files. */
async function makeSeeds(): Promise<Seeds> {
  const dev = await requestDevice();
  const cfg = demoConfig({ outDir: '/tmp/mpfgvc-fuzz-seed' });
  const model = new MPFGVC(dev, new Rng(0), { ...cfg.model, vision: { ...cfg.model.vision, depth: 2 }, numClasses: 3, superCategory: 'bird' }, cfg.promptTokens!);
  const modelBytes = await model.save();
  model.dispose();
  dev.destroy();

  const bird = generateBird(0, birdClasses(2)[0]!, 1, 48);
  const png = await encodePng(bird.rgb, 48, 48);
  const jpeg = new Uint8Array(await sharp(bird.rgb, { raw: { width: 48, height: 48, channels: 3 } }).jpeg({ quality: 80 }).toBuffer());

  const tmp = workerDir();
  try {
    const cubDir = `${tmp.dir}/cub`;
    await writeCubLayout(cubDir, { numClasses: 2, trainPerClass: 2, testPerClass: 1, size: 16 });
    const cub: Record<string, string> = { 'images/.keep': '' };
    for (const f of ['images.txt', 'image_class_labels.txt', 'train_test_split.txt', 'classes.txt']) cub[f] = readRegularText(`${cubDir}/${f}`);
    const hierarchy = cub['classes.txt']!.trim().split('\n').map((l) => `${l.split(' ')[0]} 0`).join('\n') + '\n';
    const dogDirs = ['n02085620-Chihuahua', 'n02085782-Japanese_spaniel'];
    const dogList = (n: number) => dogDirs.flatMap((d) => Array.from({ length: n }, (_, i) => `${d}/${d.split('-')[0]}_${i + 1}.jpg`)).join('\n') + '\n';
    const seeds: Seeds = {
      model: modelBytes,
      safetensors: [file('packages/model/fixtures/vit_hf.safetensors'), file('packages/model/fixtures/text_clip_tiny.safetensors')],
      tokenizer: JSON.parse(readRegularText(new URL('packages/model/fixtures/tokenizer-clip-tiny.json', repo).pathname)),
      mat: [file('packages/train/src/datasets/fixtures/dogs_train_list.mat'), file('packages/train/src/datasets/fixtures/uncompressed.mat')],
      images: [png, jpeg],
      checkpoint: {
        format: 'mpfgvc-run-1',
        position: { stage: 1, stageDone: false, step: 4, stageStep: 4, data: { epoch: 0, index: 128 } },
        model: 'step-4.model.safetensors',
        optimizer: 'step-4.optim.safetensors',
        seed: 0,
        config: resolveConfig(cfg),
        skipped: { '/data/images/x.jpg': 'unsupported image format' },
        time: '2026-12-04T00:00:00.000Z',
      },
      metrics: [
        '{"stage":1,"epoch":0,"step":1,"lr":0.0001,"loss":4.2,"lossVision":3.1,"lossText":1.1,"gradNorm":2.5,"imagesPerSec":80.5,"time":1.2}',
        '{"stage":1,"epoch":0,"split":"test","top1":{"vision":0.1,"text":0.2,"vlfm":0,"ensemble":0.15},"top5":{"vision":0.4,"text":0.5,"vlfm":0.2,"ensemble":0.45}}',
        '{"event":"resume","stage":1,"step":4,"time":0.5}',
        '{"stage":2,"epoch":3,"step":40,"lr":0.003,"loss":1.5,"imagesPerSec":300,"time":20}',
        '{"event":"diverged","stage":1,"epoch":0,"step":9,"lr":1e30,"time":3}',
      ].join('\n'),
      trainConfigs: [
        { 'stage1-epochs': 2, 'stage2-epochs': 1, 'per-class': 10, classes: 8, strict: false, fresh: true, seed: 3 },
        { model: 'demo', 'image-size': 32, 'select-k': 4, prompts: 'fixed', 'stage1-lr': 0.002, 'stage1-optimizer': 'sgd', 'label-smoothing': 0.1, 'checkpoint-every': 50 },
        { objective: 'vision', 'stage2-epochs': 0, accumulate: 2, 'warmup-epochs': 0.5, 'clip-norm': 0, 'max-skipped': 0.2, 'eval-every': 1 },
      ],
      layouts: {
        cub,
        nabirds: { ...cub, 'hierarchy.txt': hierarchy },
        food101: { 'images/.keep': '', 'meta/classes.txt': 'apple_pie\nbaby_back_ribs\n', 'meta/train.txt': 'apple_pie/1005649\nbaby_back_ribs/1\n', 'meta/test.txt': 'apple_pie/1011328\nbaby_back_ribs/2\n' },
        'stanford-dogs': { ...Object.fromEntries(dogDirs.map((d) => [`Images/${d}/.keep`, ''])), 'train_list.txt': dogList(2), 'test_list.txt': dogList(1) },
      },
    };
    return seeds;
  } finally {
    tmp.remove();
  }
}

/** The worker: runs inputs [from, to) of one target, counting in shared memory. */
async function workerMain(): Promise<void> {
  const w = workerData as WorkerInput;
  const target = targetByName(w.target);
  const counters = new Int32Array(w.counters);
  const times = new Float64Array(w.times);
  const scratch = workerDir();
  // Libraries under test print what they dislike (the tokenizer library dumps whole patterns); the report says what matters.
  console.log = console.warn = console.error = () => undefined;
  const run = target.open(w.seeds, realFolder(scratch.dir));
  const post = (m: WorkerMessage) => parentPort!.postMessage(m);
  post({ ready: true });
  try {
    for (let i = w.from; i < w.to; i++) {
      const rng = inputRng(w.seed, i);
      const t0 = Date.now();
      times[TIMES.started] = t0;
      Atomics.store(counters, COUNTERS.current, i);
      try {
        await run(rng, i);
        Atomics.add(counters, COUNTERS.accepted, 1);
      } catch (e) {
        const name = (e as Error)?.name ?? typeof e;
        const k = target.allowed.indexOf(name);
        if (k >= 0) Atomics.add(counters, COUNTERS.firstKind + k, 1);
        else {
          Atomics.add(counters, COUNTERS.foreign, 1);
          post({ finding: { index: i, kind: 'foreign', detail: `${name}: ${String((e as Error)?.message ?? e).split('\n')[0]!.slice(0, 300)}` } });
        }
      }
      const ms = Date.now() - t0;
      if (ms > times[TIMES.slowestMs]!) {
        times[TIMES.slowestMs] = ms;
        times[TIMES.slowestIndex] = i;
      }
    }
  } finally {
    Atomics.store(counters, COUNTERS.current, -1);
    scratch.remove();
  }
}

function table(results: CampaignResult[]): string {
  const rows = [['target', 'inputs', 'accepted', 'rejected (by kind)', 'foreign', 'hangs', 'memory', 'slowest'], ...results.map((r) => [
    r.target,
    String(r.inputs),
    String(r.accepted),
    Object.entries(r.rejected).map(([k, n]) => `${k} ${n}`).join(', ') || '-',
    String(r.foreign),
    String(r.hangs),
    String(r.memory + r.crashes),
    r.slowest.index >= 0 ? `${r.slowest.ms} ms (#${r.slowest.index})` : '-',
  ])];
  const width = rows[0]!.map((_, c) => Math.max(...rows.map((r) => r[c]!.length)));
  return rows.map((r) => r.map((x, c) => x.padEnd(width[c]!)).join('  ').trimEnd()).join('\n');
}

const count = (v: string) => {
  const n = Number(v);
  if (!Number.isInteger(n) || n < 0) throw new InvalidArgumentError(`expected a non-negative integer, got '${v}'`);
  return n;
};

async function main(argv: string[]): Promise<number> {
  const program = new Command('fuzz')
    .description('seeded mutation fuzzing of the parsers of untrusted files; exits 1 on any finding')
    .option('--count <n>', 'inputs per target', count, 2000)
    .option('--target <name...>', `targets (default all): ${TARGETS.map((t) => t.name).join(', ')}`)
    .option('--seed <n>', 'campaign seed (input k of a target is a function of seed and k)', count, 1)
    .option('--from <k>', 'first input index (to reproduce a finding: --from k --count 1)', count, 0)
    .option('--time-limit <ms>', 'an input running longer is a hang', count, 5000)
    .option('--memory-limit <mib>', 'an input growing resident memory by more is a violation', count, 1024)
    .option('--json', 'print one JSON object');
  program.parse(argv, { from: 'user' });
  const o = program.opts<{ count: number; target?: string[]; seed: number; from: number; timeLimit: number; memoryLimit: number; json?: boolean }>();
  const targets = (o.target ?? TARGETS.map((t) => t.name)).map(targetByName);
  const seeds = await makeSeeds();
  const limits: Limits = { timeMs: o.timeLimit, memoryBytes: o.memoryLimit * 2 ** 20 };
  const results: CampaignResult[] = [];
  for (const t of targets) {
    const r = await runCampaign(t, seeds, { seed: o.seed, from: o.from, count: o.count, limits, entry: new URL(import.meta.url) });
    results.push(r);
    if (!o.json) process.stderr.write(`${t.name}: ${r.inputs} inputs in ${r.seconds.toFixed(1)} s\n`);
  }
  const violations = results.reduce((a, r) => a + r.foreign + r.hangs + r.memory + r.crashes, 0);
  if (o.json) process.stdout.write(`${JSON.stringify({ seed: o.seed, limits: { timeMs: limits.timeMs, memoryMiB: o.memoryLimit }, violations, results })}\n`);
  else {
    process.stdout.write(`${table(results)}\n`);
    for (const r of results) for (const f of r.findings) process.stdout.write(`${r.target} #${f.index} ${f.kind}: ${f.detail}\n`);
    process.stdout.write(violations === 0 ? 'no findings\n' : `${violations} finding(s); reproduce one with --target <name> --seed ${o.seed} --from <index> --count 1\n`);
  }
  return violations === 0 ? 0 : 1;
}

if (isMainThread) process.exitCode = await main(process.argv.slice(2));
else await workerMain();
