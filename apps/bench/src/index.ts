export { markdownTable, type Row } from './report.js';
export { median, timeGpu, type TimingOptions } from './measure.js';
export { kernelsSuite, type SuiteOptions } from './suites/kernels.js';
export { runSuites, SUITES } from './run.js';
