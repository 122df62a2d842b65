// What every suite is run with.

export interface SuiteOptions {
  /** Toy sizes for the smoke test: results are produced, timings are not meaningful. */
  quick?: boolean;
}
