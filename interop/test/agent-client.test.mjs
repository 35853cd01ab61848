// The agent's DWN client against both servers: `dehr client-check` configures a protocol with
// injected $encryption keys, subscribes over WebSocket, writes an encrypted record of ~50 KB
// (data streamed), receives the event, queries, reads the data back, verifies and decrypts it,
// and falls back past a dead node. It must work unchanged against @web5/dwn-server 0.6.1 and
// against our node, whatever DWN_TARGET the rest of the suite runs with.
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { after, before, describe, test } from 'node:test';
import { promisify } from 'node:util';

const run = promisify(execFile);

// target.mjs picks its server from DWN_TARGET when first imported; a distinct module URL (the
// query string) gives each server its own instance of the module.
async function startServer(kind) {
  const previous = process.env.DWN_TARGET;
  process.env.DWN_TARGET = kind;
  try {
    const target = await import(`../lib/target.mjs?${kind}`);
    return { start: target.startTarget, dehrBin: target.dehrBin };
  } finally {
    if (previous === undefined) delete process.env.DWN_TARGET;
    else process.env.DWN_TARGET = previous;
  }
}

for (const kind of ['dwn-server', 'dehr']) {
  describe(`the agent's client against ${kind}`, () => {
    let server;
    let bin;
    before(async () => {
      const module = await startServer(kind);
      bin = module.dehrBin();
      server = await module.start();
    });
    after(async () => { await server?.stop(); });

    test('an encrypted round trip: configure, subscribe, write, event, query, read, decrypt, fallback', async () => {
      const { stdout } = await run(bin, ['client-check', '--node', server.url], {
        timeout: 60_000,
        env: { ...process.env, RUST_LOG: 'warn' },
      });
      const lines = stdout.trim().split('\n').map((line) => JSON.parse(line));
      const steps = lines.filter((l) => l.step).map((l) => l.step);
      assert.deepEqual(steps, ['configure', 'subscribe', 'write', 'event', 'query', 'read', 'fallback']);
      assert.deepEqual(lines.at(-1), { ok: true });
      const read = lines.find((l) => l.step === 'read');
      assert.ok(read.detail > 30_000, `data streamed back (${read.detail} bytes)`);
    });
  });
}
