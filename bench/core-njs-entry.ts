// njs entry for the core benchmark: njs loads only a default export.
import { runAll } from './core-cases';

export default { runAll };
