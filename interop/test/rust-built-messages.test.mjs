// The other way round: messages built by DeHR's Rust builders (`dehr sample-messages`: flat and
// protocol records, updates, queries, reads, deletes and prunes, signed with Ed25519, secp256k1
// and P-256 keys; permission grants, a grantee's read, MessagesQuery and MessagesRead, a
// revocation, and a write by a delegate under a delegated grant) must be accepted by dwn-sdk-js
// 0.5.2 exactly as DeHR expects.
import assert from 'node:assert/strict';
import { execFileSync, spawn } from 'node:child_process';
import path from 'node:path';
import { test } from 'node:test';

import { interopDir } from '../lib/paths.mjs';
import { dehrBin, isDehr } from '../lib/target.mjs';

function replay(input) {
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

test('dwn-sdk-js accepts the messages DeHR builds', { skip: !isDehr && 'needs the dehr binary (DWN_TARGET=dehr)' }, async () => {
  const input = execFileSync(dehrBin(), ['sample-messages'], { encoding: 'utf8' });
  const sent = input.trim().split('\n').map((l) => JSON.parse(l));
  assert.ok(sent.length >= 10, 'dehr sample-messages printed too few messages');
  const { lines, stderr } = await replay(input);
  assert.equal(lines.length, sent.length, stderr);
  lines.forEach((line, i) => {
    const { message, expect } = sent[i];
    const kind = `${message.descriptor.interface}${message.descriptor.method}`;
    assert.equal(line.error, undefined, `line ${i} (${kind}) could not be replayed: ${line.error}`);
    assert.equal(line.reply.status.code, expect, `line ${i} (${kind}): ${line.reply.status.detail}`);
  });
});
