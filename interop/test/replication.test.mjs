// Replication between a DeHR node and @web5/dwn-server 0.6.1 as its peer (docs/replication.md),
// both ways: the DeHR node pushes a person's messages to dwn-server with dwn-server's own API
// (one dwn.processMessage each), and pulls what was written to dwn-server the web5-js way
// (MessagesQuery, then MessagesRead per message) under the person's Messages grants to the
// node's DID. Runs with DWN_TARGET=dehr only: it needs both kinds of node.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';

import { createActor } from '../lib/actors.mjs';
import { messagesQuery, recordsRead, recordsWrite } from '../lib/messages.mjs';
import { permissionGrant } from '../lib/permissions.mjs';
import { sendMessage } from '../lib/rpc.mjs';
import { isDehr, startServer } from '../lib/target.mjs';

/** The message CIDs `node` holds for `actor`. */
async function held(node, actor) {
  const { json } = await sendMessage(node.url, actor.did, await messagesQuery(actor));
  assert.equal(json.result.reply.status.code, 200, JSON.stringify(json));
  return new Set(json.result.reply.entries);
}

/** Waits until `node` holds every CID of `cids`. */
async function waitFor(node, actor, cids, what) {
  const deadline = Date.now() + 60_000;
  for (;;) {
    const have = await held(node, actor);
    const missing = [...cids].filter((cid) => !have.has(cid));
    if (missing.length === 0) return;
    if (Date.now() > deadline) assert.fail(`${what}: ${missing.length} of ${cids.size} messages never arrived`);
    await new Promise((resolve) => setTimeout(resolve, 200));
  }
}

describe('replication with @web5/dwn-server 0.6.1 as a peer', { skip: !isDehr && 'needs a DeHR node beside dwn-server' }, () => {
  let server;
  let dehr;
  let alice;

  before(async () => {
    server = await startServer('dwn-server');
    dehr = await startServer('dehr', {
      dehrArgs: ['--peer', server.url, '--replicate-every', '0.2', '--did-dht-gateway', 'http://127.0.0.1:9'],
    });
    alice = await createActor('alice');
    const nodeDid = (await (await fetch(`${dehr.url}/info`)).json()).did;
    assert.match(nodeDid, /^did:jwk:/);
    // Alice lets the DeHR node replicate her DWN: Messages Read and Query grants to its DID.
    for (const method of ['Read', 'Query']) {
      const grant = await permissionGrant(alice, { did: nodeDid }, { interface: 'Messages', method });
      const { json } = await sendMessage(dehr.url, alice.did, grant.message, { data: grant.data });
      assert.equal(json.result.reply.status.code, 202, JSON.stringify(json));
    }
  });

  after(async () => {
    await dehr?.stop();
    await server?.stop();
  });

  test('what is written to the DeHR node reaches dwn-server', async () => {
    for (let i = 0; i < 5; i += 1) {
      const { message, data } = await recordsWrite(alice, { schema: 'https://example.org/note' });
      const { json } = await sendMessage(dehr.url, alice.did, message, { data });
      assert.equal(json.result.reply.status.code, 202);
    }
    await waitFor(server, alice, await held(dehr, alice), 'DeHR → dwn-server');
  });

  test('what is written to dwn-server reaches the DeHR node, data included', async () => {
    const written = [];
    for (let i = 0; i < 5; i += 1) {
      const { message, data } = await recordsWrite(alice, { schema: 'https://example.org/direct' });
      const { json } = await sendMessage(server.url, alice.did, message, { data });
      assert.equal(json.result.reply.status.code, 202);
      written.push(message.recordId);
    }
    await waitFor(dehr, alice, await held(server, alice), 'dwn-server → DeHR');
    // Both nodes now hold the same messages, and the records read the same from either.
    assert.deepEqual([...(await held(dehr, alice))].sort(), [...(await held(server, alice))].sort());
    const fromDehr = await sendMessage(dehr.url, alice.did, await recordsRead(alice, { recordId: written[0] }));
    const fromServer = await sendMessage(server.url, alice.did, await recordsRead(alice, { recordId: written[0] }));
    assert.equal(fromDehr.json.result.reply.status.code, 200);
    assert.deepEqual(fromDehr.data, fromServer.data);
  });
});
