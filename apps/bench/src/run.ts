import type { Device } from '@mpfgvc/kernels';
import type { Row } from './report.js';
import { kernelsSuite } from './suites/kernels.js';
import type { SuiteOptions } from './suites/options.js';
import { checkSuite } from './suites/check.js';
import { inferSuite, memorySuite, textSuite, trainSuite } from './suites/model.js';
import { peersSuite } from './suites/peers.js';

export const SUITES: Record<string, (dev: Device, opts: SuiteOptions) => Promise<Row[]>> = {
  check: checkSuite,
  kernels: kernelsSuite,
  train: trainSuite,
  infer: inferSuite,
  text: textSuite,
  peers: peersSuite,
  memory: memorySuite,
};

export async function runSuites(dev: Device, names: string[], opts: SuiteOptions = {}): Promise<Row[]> {
  const list = names.includes('all') ? Object.keys(SUITES) : names;
  const rows: Row[] = [];
  for (const name of list) {
    const suite = SUITES[name];
    if (!suite) throw new Error(`unknown suite '${name}'; suites: ${Object.keys(SUITES).join(', ')}, all`);
    rows.push(...(await suite(dev, opts)));
  }
  return rows;
}
