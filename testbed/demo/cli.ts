// Entry of `npm start` (build/start.js bundles and runs it after building and provisioning nginx).
import { startDemo } from './demo';
import { USAGE, UsageError, parseDemoArgs } from './options';

export async function main(argv: string[]): Promise<number> {
  let options;
  try {
    options = parseDemoArgs(argv);
  } catch (error) {
    if (error instanceof UsageError) {
      if (error.message) process.stderr.write(`npm start: ${error.message}\n`);
      process.stderr.write(USAGE + '\n');
      return error.message ? 2 : 0;
    }
    throw error;
  }
  const demo = await startDemo(options, { write: (text) => process.stdout.write(text), interactive: Boolean(process.stdout.isTTY) });
  const stop = () => demo.stop();
  process.once('SIGINT', stop);
  process.once('SIGTERM', stop);
  const summary = await demo.done;
  process.off('SIGINT', stop);
  process.off('SIGTERM', stop);
  process.stdout.write(`stopped nginx and the emulated replicas: ${summary.sent} demo requests sent, ${summary.completed} completed, ${summary.errors} errors${summary.errors > 0 ? ' (' + Object.entries(summary.errorKinds).map(([k, n]) => `${n} ${k}`).join(', ') + ')' : ''}\n`);
  return 0;
}
