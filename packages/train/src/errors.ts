// The errors the training package throws on purpose, by kind, so that callers (the CLI maps them
// to exit codes) can tell a user's configuration from a damaged run folder without reading text.

/** A configuration the loop cannot run, naming the field ("config: stage1.lr: ..."). */
export class ConfigurationError extends Error {
  override name = 'ConfigurationError';
}

/** The run folder cannot be used as asked (it already holds a run, or another process has it). */
export class RunFolderError extends Error {
  override name = 'RunFolderError';
}
