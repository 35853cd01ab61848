// The protocol definitions dwn-sdk-js 0.5.2 tests itself with, read from shared fixtures.
import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';

import { fixturesDir } from './paths.mjs';

function definitionsDir() {
  return path.join(fixturesDir(), 'dwn', 'protocol-definitions');
}

/** Every fixture as [name, definition], sorted by name. */
export function allProtocols() {
  return readdirSync(definitionsDir())
    .filter((file) => file.endsWith('.json'))
    .sort()
    .map((file) => [path.basename(file, '.json'), loadProtocol(path.basename(file, '.json'))]);
}

/** One fixture by name ("free-for-all"), as a fresh object each time. */
export function loadProtocol(name) {
  return JSON.parse(readFileSync(path.join(definitionsDir(), `${name}.json`), 'utf8'));
}
