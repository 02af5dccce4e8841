// Entry of dist/cli/llm-balancer.js (run by bin/llm-balancer.js).
import { main } from './cli';

process.exitCode = main(process.argv.slice(2), (text) => process.stdout.write(text), (text) => process.stderr.write(text));
