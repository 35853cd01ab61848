// Where things live, resolved relative to this file so no machine path is ever written down.
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import path from 'node:path';

export const interopDir = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
export const repoDir = path.resolve(interopDir, '..');

/** `<repo>/../shared/fixtures` unless DEHR_FIXTURES says otherwise. */
export function fixturesDir() {
  const dir = process.env.DEHR_FIXTURES
    ? path.resolve(process.env.DEHR_FIXTURES)
    : path.resolve(repoDir, '..', 'shared', 'fixtures');
  if (!existsSync(path.join(dir, 'dwn', 'protocol-definitions'))) {
    throw new Error(
      `DWN fixtures not found: expected ${path.join(dir, 'dwn', 'protocol-definitions')}. ` +
      'Check out shared/ beside the repo, or point DEHR_FIXTURES at the fixtures folder.');
  }
  return dir;
}
