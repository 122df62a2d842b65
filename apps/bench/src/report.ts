// One row format for every suite: {suite, name, shape, metric, value, unit}.
export interface Row {
  suite: string;
  name: string;
  shape: string;
  metric: string;
  value: number;
  unit: string;
  /** Free-form note: a peer that is missing, a check that failed, the variant measured. */
  note?: string;
}

function fmt(v: number): string {
  if (!Number.isFinite(v)) return String(v);
  if (Math.abs(v) >= 100) return v.toFixed(0);
  if (Math.abs(v) >= 10) return v.toFixed(1);
  if (v !== 0 && Math.abs(v) < 0.01) return v.toExponential(1);
  return v.toFixed(2);
}

export function markdownTable(rows: Row[], adapter: string): string {
  const out = [`Adapter: ${adapter}`, '', '| suite | name | shape | metric | value | unit | note |', '|---|---|---|---|---:|---|---|'];
  for (const r of rows) out.push(`| ${r.suite} | ${r.name} | ${r.shape} | ${r.metric} | ${fmt(r.value)} | ${r.unit} | ${r.note ?? ''} |`);
  return out.join('\n');
}
