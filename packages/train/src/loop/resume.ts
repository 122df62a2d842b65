// Continuing a run from its checkpoint: the configuration it continues with (its own, with longer
// stages where asked), a branch into another folder that copies what the resume needs, the rows of
// metrics.jsonl written after the checkpoint dropped, and the reports of the stages it finished before.
import { copyFileSync, existsSync, readFileSync, statSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { writeFileAtomic, writing } from '../atomic.js';
import { type LoadedCheckpoint, type RunPosition, CHECKPOINT_FILE, CheckpointError, STAGE1_CHECKPOINT_FILE, readCheckpoint, readCheckpointRecord } from '../checkpoint.js';
import { ConfigurationError } from '../errors.js';
import type { EvalResult } from '../eval.js';
import { MAX_JSON_BYTES } from '../pretrained.js';
import { readRegularText } from '../safe-files.js';
import { type TrainConfig, type TrainConfigInput, recordedConfig, resolveConfig } from './config.js';
import { BEST_MODEL_FILE, BEST_RECORD_FILE } from './run-context.js';
import type { StageReport } from './stage.js';

/** Continue a run from its checkpoint, with the configuration recorded there. */
export interface ResumeInput {
  resume: string;
  /**
   * Longer stages than the run has (epochs only grow). A longer stage 1 continues from where
   * stage 1 stands (its cosine schedule stretched to the new length); a longer stage 2 trains
   * stage 2 again from the end of stage 1, as a run started with that length would.
   */
  epochs?: { stage1?: number; stage2?: number };
  /** Continue into this folder (a branch of the run) and leave the one in `resume` as it is. */
  outDir?: string;
}

/** A recorded position that the run's configuration cannot have produced is a damaged (or crafted) checkpoint. */
function checkResumePosition(at: RunPosition, cfg: TrainConfig, source: string): void {
  const sc = at.stage === 1 ? cfg.stage1 : cfg.stage2;
  const bad = (what: string) => new CheckpointError(`${source}: position ${what}`);
  if (at.stage === 2 && cfg.model.objective === 'vision') throw bad("is in stage 2, which the ViT-only objective does not have");
  if (at.data.epoch > sc.epochs || (at.data.epoch === sc.epochs && at.data.index !== 0)) throw bad(`epoch ${at.data.epoch} (index ${at.data.index}) lies beyond stage ${at.stage}'s ${sc.epochs} epochs`);
  if (at.data.index % sc.batchSize !== 0) throw bad(`index ${at.data.index} is not a multiple of stage ${at.stage}'s batch size ${sc.batchSize}`);
}

/**
 * The checkpoint a resume starts from and the configuration it continues with: the run's own, with
 * longer stages where asked. A run branched into another folder gets a copy of what it needs
 * there first. Rows of metrics.jsonl written after the checkpoint (by a run killed later) go.
 */
export function prepareResume(input: ResumeInput, take: (dir: string, fresh: { refusal: string } | undefined) => void, say: (line: string) => void): { ckpt: LoadedCheckpoint; cfg: TrainConfig } {
  const from = resolve(input.resume);
  const recordPath = join(from, CHECKPOINT_FILE);
  const record = readCheckpointRecord(from);
  let ran: TrainConfig;
  try {
    ran = resolveConfig(recordedConfig(record.config), `${recordPath}: config`);
  } catch (e) {
    throw new CheckpointError((e as Error).message);
  }
  checkResumePosition(record.position, ran, recordPath);
  let cfg = ran;
  const at = record.position;
  let file = CHECKPOINT_FILE;
  const longer = { 1: false, 2: false };
  for (const stage of [1, 2] as const) {
    const want = input.epochs?.[`stage${stage}`];
    const have = (stage === 1 ? ran.stage1 : ran.stage2).epochs;
    if (want === undefined || want === have) continue;
    if (!Number.isInteger(want) || want < have) throw new ConfigurationError(`stage ${stage} epochs: a resumed run's stages can only grow (it has ${have}), got ${want}`);
    longer[stage] = true;
    cfg = { ...cfg, [`stage${stage}`]: { ...(stage === 1 ? cfg.stage1 : cfg.stage2), epochs: want } };
  }
  if (longer[1] || longer[2]) {
    cfg = resolveConfig(cfg as unknown as TrainConfigInput, 'the longer run');
    // Stage 2 starts from the end of stage 1; so does a longer stage 1 once stage 1 has ended.
    if (at.stage === 2) {
      file = STAGE1_CHECKPOINT_FILE;
      if (!existsSync(join(from, file))) throw new CheckpointError(`${from}: no checkpoint at the end of stage 1 (${file}) to train a longer stage ${longer[1] ? 1 : 2} from`);
    }
  }
  const dest = input.outDir ? resolve(input.outDir) : from;
  if (dest !== from) {
    take(dest, { refusal: 'branch into another folder' });
    branchRun(from, dest, file);
  } else take(from, undefined);
  cfg = { ...cfg, outDir: dest };
  let ckpt = readCheckpoint(dest, file);
  if (longer[1] || longer[2] || dest !== from) {
    // The folder records the run it now holds: a later resume continues this one.
    writeFileAtomic(join(dest, 'config.json'), JSON.stringify(cfg, null, 1) + '\n');
    writeFileAtomic(join(dest, CHECKPOINT_FILE), JSON.stringify({ ...ckpt.record, config: cfg }, null, 1) + '\n');
  }
  // A stage that ended shorter than the run now asks for goes on.
  const p = ckpt.record.position;
  const sc = p.stage === 1 ? cfg.stage1 : cfg.stage2;
  if (p.stageDone && p.data.epoch < sc.epochs) ckpt = { ...ckpt, record: { ...ckpt.record, position: { ...p, stageDone: false } } };
  checkResumePosition(ckpt.record.position, cfg, join(dest, file));
  const what = longer[2] && at.stage === 2 ? `; stage 2 trains again from the end of stage 1 with ${cfg.stage2.epochs} epochs (was ${ran.stage2.epochs})` : longer[1] ? `; stage 1 goes on to ${cfg.stage1.epochs} epochs (was ${ran.stage1.epochs})` : '';
  say(`resuming ${dest}${dest !== from ? ` (branched from ${from})` : ''} at stage ${ckpt.record.position.stage}, step ${ckpt.record.position.step}${what}`);
  dropMetricsAfter(join(dest, 'metrics.jsonl'), ckpt.record.metricsBytes, say);
  return { ckpt, cfg };
}

/** Copies what a resume needs from the run in `from` into the new folder `dest` (taken already). */
function branchRun(from: string, dest: string, file: string): void {
  const need = new Set(['config.json', 'cli.json', 'metrics.jsonl', 'model-stage1.safetensors', 'eval-stage1.json', 'confusion-stage1.csv', 'summary.json', BEST_MODEL_FILE, BEST_RECORD_FILE]);
  const start = readCheckpointRecord(from, file);
  for (const f of [file, start.model, start.optimizer]) need.add(f);
  if (start.position.stage === 2) for (const f of ['eval-stage2.json', 'confusion-stage2.csv']) need.add(f);
  if (existsSync(join(from, STAGE1_CHECKPOINT_FILE))) {
    const s1 = readCheckpointRecord(from, STAGE1_CHECKPOINT_FILE);
    for (const f of [STAGE1_CHECKPOINT_FILE, s1.model, s1.optimizer]) need.add(f);
  }
  for (const f of need) {
    const src = join(from, f);
    if (existsSync(src)) writing(join(dest, f), () => copyFileSync(src, join(dest, f)));
  }
}

/** Drops the rows of metrics.jsonl written after a checkpoint (recorded length `bytes`), atomically. */
function dropMetricsAfter(path: string, bytes: number | undefined, say: (line: string) => void): void {
  if (bytes === undefined || !existsSync(path) || statSync(path).size <= bytes) return;
  const all = readFileSync(path);
  const dropped = all.subarray(bytes).toString('utf8').split('\n').filter((l) => l.trim() !== '').length;
  writeFileAtomic(path, all.subarray(0, bytes));
  say(`metrics.jsonl: ${dropped} row${dropped === 1 ? '' : 's'} written after the checkpoint dropped`);
}

/** Reports of the stages a resumed run finished before (from their eval files and the summary then). */
export function earlierStages(dir: string, at: RunPosition): StageReport[] {
  const reports: StageReport[] = [];
  let before: { stages?: { stage?: unknown; steps?: unknown; seconds?: unknown }[] } = {};
  try {
    before = JSON.parse(readRegularText(join(dir, 'summary.json'), { what: 'run summary', maxBytes: MAX_JSON_BYTES })) as typeof before;
  } catch {
    // no summary yet (a run killed in its first stage), or a damaged one: steps and times unknown
  }
  const num = (v: unknown) => (typeof v === 'number' && Number.isFinite(v) ? v : 0);
  for (const stage of [1, 2] as const) {
    if (!(stage < at.stage || (stage === at.stage && at.stageDone))) continue;
    const evalJson = join(dir, `eval-stage${stage}.json`);
    let result: EvalResult;
    try {
      result = JSON.parse(readRegularText(evalJson, { what: 'evaluation', maxBytes: MAX_JSON_BYTES })) as EvalResult;
      if (!Array.isArray(result.heads) || typeof result.top1 !== 'object') continue;
    } catch {
      continue; // a stage without epochs, or a report lost: the summary goes without it
    }
    const then = Array.isArray(before.stages) ? before.stages.find((s) => s?.stage === stage) : undefined;
    reports.push({ stage, steps: num(then?.steps), seconds: num(then?.seconds), eval: result, evalJson, confusionCsv: join(dir, `confusion-stage${stage}.csv`) });
  }
  return reports;
}
