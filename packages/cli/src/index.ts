export { CliError, ExitCode } from './errors.js';
export { buildProgram, runCli } from './program.js';
