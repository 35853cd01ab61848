// The "other way" entry point: check-messages.mjs must replay JSON lines into dwn-sdk-js and
// print one reply per line. Exercised here with messages built by dwn-sdk-js itself.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import path from 'node:path';
import { test } from 'node:test';

import { createActors } from '../lib/actors.mjs';
import { messageCid } from '../lib/compare.mjs';
import { bytesData } from '../lib/data.mjs';
import { recordsRead, recordsWrite } from '../lib/messages.mjs';
import { interopDir } from '../lib/paths.mjs';

function runCheckMessages(input) {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [path.join(interopDir, 'check-messages.mjs')], { stdio: ['pipe', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (chunk) => { stdout += chunk; });
    child.stderr.on('data', (chunk) => { stderr += chunk; });
    child.on('error', reject);
    child.on('close', (code) => resolve({ code, stderr, lines: stdout.trim().split('\n').filter(Boolean).map((l) => JSON.parse(l)) }));
    child.stdin.end(input);
  });
}

test('check-messages.mjs replays writes and reads, and reports bad lines', async () => {
  const { alice } = await createActors('alice');
  const written = await recordsWrite(alice, { schema: 'https://example.org/note', data: bytesData('hello') });
  const read = await recordsRead(alice, { recordId: written.message.recordId });
  const input = [
    JSON.stringify({ tenant: alice.did, message: written.message, dataBase64: Buffer.from('hello').toString('base64') }),
    '',
    JSON.stringify({ tenant: alice.did, message: read }),
    JSON.stringify({ tenant: alice.did, message: written.message, dataBase64: Buffer.from('hello').toString('base64') }),
    '{not json',
  ].join('\n');

  const { code, lines, stderr } = await runCheckMessages(input);
  assert.equal(lines.length, 4, stderr);
  assert.equal(lines[0].reply.status.code, 202);
  assert.equal(lines[0].messageCid, await messageCid(written.message));
  assert.equal(lines[1].reply.status.code, 200);
  assert.equal(Buffer.from(lines[1].reply.entry.dataBase64, 'base64').toString(), 'hello');
  assert.equal(lines[2].reply.status.code, 409);
  assert.match(lines[3].error, /JSON/);
  assert.equal(code, 1, 'a bad line makes the exit code 1');
});
