// cloudlet for Node as an ES module: the same objects as the CommonJS entry (index.js).
import { createRequire } from 'node:module';

const cloudlet = createRequire(import.meta.url)('./index.js');

export const { Lab, CloudletError, validate, schema, version } = cloudlet;
export default cloudlet;
