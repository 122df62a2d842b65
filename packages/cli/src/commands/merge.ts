// Joins the outputs of a job's shards (predict/features with --shard i/n) into the output one
// machine would have written: JSON Lines rows in index order, or a features .json/.safetensors file
// whose rows follow the whole job's order. Every shard must be there exactly once.
import { extname } from 'node:path';
import { Command } from 'commander';
import { parseSafetensors, readF32 } from '@mpfgvc/model';
import { readRegularFile, readRegularText, writeFileAtomic } from '@mpfgvc/train';
import { CliError, ExitCode } from '../errors.js';
import { type EmbeddingTable, embeddingFile } from './features.js';
import { resolveOptions } from './options.js';

const MAX_BYTES = 16 * 1024 * 1024 * 1024;

/** Indices 0..total-1, each once: what is missing or repeated is named. */
function checkComplete(indices: readonly number[], total: number, what: string): void {
  const seen = new Uint8Array(total);
  for (const i of indices) {
    if (!Number.isInteger(i) || i < 0 || i >= total) throw new CliError(`${what}: row index ${i} is outside the job's ${total} inputs`);
    if (seen[i]) throw new CliError(`${what}: input ${i} appears in two shards (a shard given twice?)`);
    seen[i] = 1;
  }
  const missing = seen.indexOf(0);
  if (missing >= 0) throw new CliError(`${what}: ${total - indices.length} of ${total} inputs missing, the first is input ${missing} (a shard not given, or not finished?)`, ExitCode.failure);
}

/** JSON Lines rows with an `index`, from every shard, in index order. */
export function mergeJsonl(files: readonly { name: string; text: string }[]): string {
  const rows: { index: number; line: string }[] = [];
  for (const f of files) {
    f.text.split('\n').forEach((line, n) => {
      if (line.trim() === '') return;
      let index: unknown;
      try {
        index = (JSON.parse(line) as { index?: unknown }).index;
      } catch (e) {
        throw new CliError(`${f.name}:${n + 1}: not JSON (${(e as Error).message})`);
      }
      if (typeof index !== 'number') throw new CliError(`${f.name}:${n + 1}: a row without an index (not the output of --jsonl?)`);
      rows.push({ index, line });
    });
  }
  rows.sort((a, b) => a.index - b.index);
  checkComplete(rows.map((r) => r.index), rows.length === 0 ? 0 : rows[rows.length - 1]!.index + 1, 'merge');
  return rows.map((r) => `${r.line}\n`).join('');
}

/** A features shard file, read back. */
function readTable(file: string): EmbeddingTable {
  if (file.endsWith('.json')) {
    const j = JSON.parse(readRegularText(file, { what: 'features', maxBytes: MAX_BYTES })) as Record<string, unknown>;
    const flat = (rows: unknown) => Float32Array.from((rows as number[][]).flat());
    const t: EmbeddingTable = { kind: j.kind as 'image', checkpoint: String(j.checkpoint), dim: Number(j.dim), inputs: j.inputs as string[], data: flat(j.embeddings) };
    if (j.projected) t.projected = { dim: Number(j.projectedDim), data: flat(j.projected) };
    if (j.shard) t.shard = { of: String(j.shard), total: Number(j.total), indices: j.indices as number[] };
    return t;
  }
  const b = readRegularFile(file, { what: 'features', maxBytes: MAX_BYTES });
  const st = parseSafetensors(new Uint8Array(b.buffer, b.byteOffset, b.byteLength), file);
  const m = st.metadata;
  const emb = st.tensors.get('embeddings');
  if (!emb) throw new CliError(`${file}: no 'embeddings' tensor (not written by mpfgvc features?)`);
  const t: EmbeddingTable = { kind: m.kind as 'image', checkpoint: m.checkpoint ?? '', dim: emb.shape[1]!, inputs: JSON.parse(m.inputs ?? '[]') as string[], data: readF32(st, 'embeddings') };
  const proj = st.tensors.get('projected');
  if (proj) t.projected = { dim: proj.shape[1]!, data: readF32(st, 'projected') };
  if (m.shard) t.shard = { of: m.shard, total: Number(m.total), indices: JSON.parse(m.indices ?? '[]') as number[] };
  return t;
}

/** Shards of a features job as the one table the whole job writes. */
export function mergeTables(tables: readonly { name: string; table: EmbeddingTable }[]): EmbeddingTable {
  const first = tables[0]!.table;
  for (const { name, table: t } of tables) {
    if (!t.shard) throw new CliError(`${name}: not a shard's output (written without --shard)`);
    const same = t.kind === first.kind && t.checkpoint === first.checkpoint && t.dim === first.dim && t.projected?.dim === first.projected?.dim && t.shard.total === first.shard!.total;
    if (!same) throw new CliError(`${name}: another job's shard (kind, checkpoint, width or input count differ from ${tables[0]!.name})`);
    if (t.shard.indices.length !== t.inputs.length) throw new CliError(`${name}: ${t.inputs.length} rows but ${t.shard.indices.length} indices`);
  }
  const total = first.shard!.total;
  const all = tables.flatMap(({ table: t }) => t.shard!.indices.map((index, row) => ({ index, t, row })));
  checkComplete(all.map((a) => a.index), total, 'merge');
  all.sort((a, b) => a.index - b.index);
  const data = new Float32Array(total * first.dim);
  const projected = first.projected ? new Float32Array(total * first.projected.dim) : undefined;
  const inputs: string[] = [];
  all.forEach(({ t, row }, i) => {
    data.set(t.data.subarray(row * t.dim, (row + 1) * t.dim), i * t.dim);
    if (projected && t.projected) projected.set(t.projected.data.subarray(row * t.projected.dim, (row + 1) * t.projected.dim), i * t.projected.dim);
    inputs.push(t.inputs[row]!);
  });
  return { kind: first.kind, checkpoint: first.checkpoint, dim: first.dim, inputs, data, ...(projected ? { projected: { dim: first.projected!.dim, data: projected } } : {}) };
}

export function mergeCommand(): Command {
  return new Command('merge')
    .description("join the outputs of a job's shards (predict/features --shard i/n) into the output of the whole job")
    .argument('<files...>', "every shard's output: .jsonl rows, or features .json/.safetensors files")
    .requiredOption('--out <file>', 'the merged file (same kind as the inputs)')
    .action(async (files: string[], _opts: unknown, cmd: Command) => {
      const o = resolveOptions<{ out: string }>(cmd);
      const kind = extname(o.out);
      if (!['.jsonl', '.json', '.safetensors'].includes(kind)) throw new CliError(`--out ${o.out}: expected a .jsonl, .json or .safetensors file name`, ExitCode.usage);
      const other = files.find((f) => extname(f) !== kind);
      if (other) throw new CliError(`${other}: a ${extname(other) || 'file without extension'} among ${kind} shards; merge joins one kind of output`, ExitCode.usage);
      if (files.includes(o.out)) throw new CliError(`--out ${o.out} is one of the shards`, ExitCode.usage);
      let count: number;
      if (kind === '.jsonl') {
        const merged = mergeJsonl(files.map((name) => ({ name, text: readRegularText(name, { what: 'shard', maxBytes: MAX_BYTES }) })));
        writeFileAtomic(o.out, merged);
        count = merged === '' ? 0 : merged.split('\n').length - 1;
      } else {
        const table = mergeTables(files.map((name) => ({ name, table: readTable(name) })));
        writeFileAtomic(o.out, embeddingFile(table, kind === '.json' ? 'json' : 'safetensors'));
        count = table.inputs.length;
      }
      process.stdout.write(`merged ${files.length} shards: ${count} rows to ${o.out}\n`);
    });
}
