// Permission grants (records of the built-in permissions protocol): a grantee reads through
// RecordsRead and MessagesQuery/MessagesRead within the grant's scope, and not after revocation.
// Includes the reference's MessagesQuery scope hole, marked [reference is wrong].
import assert from 'node:assert/strict';
import { before, describe, test } from 'node:test';

import { MessagesQuery, MessagesRead, PermissionsProtocol } from '@tbd54566975/dwn-sdk-js';

import { createActors } from '../lib/actors.mjs';
import { messageCid } from '../lib/compare.mjs';
import { bytesData, jsonData } from '../lib/data.mjs';
import { useInterop } from '../lib/harness.mjs';
import { nextTimestamp, protocolsConfigure, recordsRead, recordsWrite } from '../lib/messages.mjs';
import { loadProtocol } from '../lib/protocols.mjs';
import { isDehr } from '../lib/target.mjs';

const h = useInterop();
const DATE_EXPIRES = '2100-01-01T00:00:00.000000Z';

/** alice grants `grantee` the scope; the grant record is written to alice's DWN. */
async function grant(alice, grantee, scope) {
  const { recordsWrite: grantWrite, permissionGrantBytes } = await PermissionsProtocol.createGrant({
    signer: alice.signer, grantedTo: grantee.did, dateGranted: nextTimestamp(), dateExpires: DATE_EXPIRES, scope,
  });
  await h.send(alice.did, grantWrite.message, { data: bytesData(permissionGrantBytes), expect: 202 });
  return grantWrite.message;
}

/** A revocation with a deterministic timestamp (the SDK helper would use the current time). */
async function revoke(alice, grantMessage, protocol) {
  const revocation = await recordsWrite(alice, {
    protocol: PermissionsProtocol.uri,
    protocolPath: PermissionsProtocol.revocationPath,
    parentContextId: grantMessage.recordId,
    tags: { protocol },
    data: jsonData({}),
  });
  await h.write(alice.did, revocation);
}

const messagesQuery = async (actor, filters, permissionGrantId) => (await MessagesQuery.create({
  signer: actor.signer, filters, permissionGrantId, messageTimestamp: nextTimestamp(),
})).message;

describe('grants scoped to one protocol', () => {
  let alice, bob, carol, freeForAll, chat, post, thread;

  before(async () => {
    ({ alice, bob, carol } = await createActors('alice', 'bob', 'carol'));
    freeForAll = loadProtocol('free-for-all').protocol;
    chat = loadProtocol('chat').protocol;
    await h.send(alice.did, await protocolsConfigure(alice, loadProtocol('free-for-all')), { expect: 202 });
    await h.send(alice.did, await protocolsConfigure(alice, loadProtocol('chat')), { expect: 202 });
    post = await recordsWrite(alice, { protocol: freeForAll, protocolPath: 'post', schema: 'post' });
    await h.write(alice.did, post);
    thread = await recordsWrite(alice, { protocol: chat, protocolPath: 'thread', schema: 'thread' });
    await h.write(alice.did, thread);
  });

  test('RecordsRead with a Records.Read grant for the protocol (200); without it, 401', async () => {
    const readGrant = await grant(alice, bob, { interface: 'Records', method: 'Read', protocol: chat });
    await h.send(alice.did, await recordsRead(bob, { recordId: thread.message.recordId }), { expect: 401 });
    await h.send(alice.did,
      await recordsRead(bob, { recordId: thread.message.recordId }, { permissionGrantId: readGrant.recordId }), { expect: 200 });
    // The grant covers chat only.
    await h.send(alice.did,
      await recordsRead(bob, { recordId: post.message.recordId }, { permissionGrantId: readGrant.recordId }), { expect: 401 });
  });

  test('MessagesQuery and MessagesRead inside the scope; other protocols refused (401)', async () => {
    const queryGrant = await grant(alice, carol, { interface: 'Messages', method: 'Query', protocol: freeForAll });
    const readGrant = await grant(alice, carol, { interface: 'Messages', method: 'Read', protocol: freeForAll });

    const { summary } = await h.send(alice.did,
      await messagesQuery(carol, [{ protocol: freeForAll }], queryGrant.recordId), { expect: 200 });
    assert.ok(summary.entries.includes(await messageCid(post.message)));
    await h.send(alice.did, await messagesQuery(carol, [{ protocol: chat }], queryGrant.recordId), { expect: 401 });

    const read = async (message) => (await MessagesRead.create({
      signer: carol.signer, messageCid: await messageCid(message), permissionGrantId: readGrant.recordId, messageTimestamp: nextTimestamp(),
    })).message;
    const readBack = await h.send(alice.did, await read(post.message), { expect: 200 });
    assert.notEqual(readBack.summary.entry.data, null, 'MessagesRead returns the record data');
    await h.send(alice.did, await read(thread.message), { expect: 401 });
  });

  test('MessagesQuery with no filters under a protocol grant [reference is wrong: returns everything]', async () => {
    const { dave } = await createActors('dave');
    const queryGrant = await grant(alice, dave, { interface: 'Messages', method: 'Query', protocol: freeForAll });
    const everything = await messagesQuery(dave, [], queryGrant.recordId);
    const inScope = (await h.sendOracle(alice.did, await messagesQuery(dave, [{ protocol: freeForAll }], queryGrant.recordId))).entries;
    const threadCid = await messageCid(thread.message);
    if (isDehr) {
      // DeHR: "that protocol only", or refused.
      const reply = await h.sendTarget(alice.did, everything);
      if (reply.code !== 401) {
        assert.equal(reply.code, 200);
        assert.ok(reply.entries.every((cid) => inScope.includes(cid)), 'entries outside the granted protocol');
      }
    } else {
      const { summary } = await h.send(alice.did, everything, { expect: 200 });
      assert.ok(summary.entries.includes(threadCid), 'the reference leaks the chat thread');
    }
  });

  test('after revocation, the grant no longer works (401)', async () => {
    const { erin } = await createActors('erin');
    const queryGrant = await grant(alice, erin, { interface: 'Messages', method: 'Query', protocol: freeForAll });
    await h.send(alice.did, await messagesQuery(erin, [{ protocol: freeForAll }], queryGrant.recordId), { expect: 200 });
    await revoke(alice, queryGrant, freeForAll);
    await h.send(alice.did, await messagesQuery(erin, [{ protocol: freeForAll }], queryGrant.recordId), { expect: 401 });
  });

  test('a grant used by someone else is refused (401)', async () => {
    const { frank } = await createActors('frank');
    const queryGrant = await grant(alice, bob, { interface: 'Messages', method: 'Query', protocol: freeForAll });
    await h.send(alice.did, await messagesQuery(frank, [{ protocol: freeForAll }], queryGrant.recordId), { expect: 401 });
  });

  test('a message timestamped before the grant is refused (401)', async () => {
    const { gina } = await createActors('gina');
    const beforeGrant = nextTimestamp();
    const queryGrant = await grant(alice, gina, { interface: 'Messages', method: 'Query', protocol: freeForAll });
    const tooEarly = (await MessagesQuery.create({
      signer: gina.signer, filters: [{ protocol: freeForAll }], messageTimestamp: beforeGrant, permissionGrantId: queryGrant.recordId,
    })).message;
    await h.send(alice.did, tooEarly, { expect: 401 });
  });
});
