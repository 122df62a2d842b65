export { markdownTable, type Row } from './report.js';
export { median, timeGpu, type TimingOptions } from './measure.js';
export { kernelsSuite } from './suites/kernels.js';
export type { SuiteOptions } from './suites/options.js';
export { runSuites, SUITES } from './run.js';
