import { createRequire } from 'node:module';

const require = createRequire(import.meta.url);
/** The core's version, which plugins' `coreVersion` ranges are checked against. */
export const CORE_VERSION: string = (require('../package.json') as { version: string }).version;
