// Who sees what: anonymous callers see published records only; a non-owner also sees the
// unpublished records they authored or received; nobody else sees unpublished records.
import assert from 'node:assert/strict';
import { before, describe, test } from 'node:test';

import { createActors } from '../lib/actors.mjs';
import { useInterop } from '../lib/harness.mjs';
import { protocolsConfigure, recordsQuery, recordsRead, recordsWrite } from '../lib/messages.mjs';
import { loadProtocol } from '../lib/protocols.mjs';

const h = useInterop();
const NOTE = 'https://example.org/note';

describe('flat records of alice: published, unpublished, and one for bob', () => {
  let alice, bob, carol, published, unpublished, forBob;

  before(async () => {
    ({ alice, bob, carol } = await createActors('alice', 'bob', 'carol'));
    published = await recordsWrite(alice, { schema: NOTE, published: true });
    unpublished = await recordsWrite(alice, { schema: NOTE });
    forBob = await recordsWrite(alice, { schema: NOTE, recipient: bob.did });
    for (const written of [published, unpublished, forBob]) await h.write(alice.did, written);
  });

  const count = async (actor, filter, expected) => {
    const { summary } = await h.send(alice.did, await recordsQuery(actor, filter), { expect: 200 });
    assert.equal(summary.entries.length, expected);
  };

  test('the owner sees all three', () => count(alice, { schema: NOTE }, 3));
  test('anonymous query sees the published one', () => count(null, { schema: NOTE }, 1));
  test('anonymous query for published:true sees it too', () => count(null, { schema: NOTE, published: true }, 1));
  test('anonymous query for published:false is refused (401)', async () => {
    await h.send(alice.did, await recordsQuery(null, { schema: NOTE, published: false }), { expect: 401 });
  });
  test('bob (recipient) sees the published one and his own', () => count(bob, { schema: NOTE }, 2));
  test('bob asking for unpublished sees only his own', () => count(bob, { schema: NOTE, published: false }, 1));
  test('bob filtering on recipient=bob sees his own', () => count(bob, { recipient: bob.did }, 1));
  test('carol (stranger) sees the published one', () => count(carol, { schema: NOTE }, 1));
  test('carol filtering on recipient=bob sees nothing', () => count(carol, { recipient: bob.did }, 0));

  test('anonymous read: published 200, unpublished 401', async () => {
    await h.send(alice.did, await recordsRead(null, { recordId: published.message.recordId }), { expect: 200 });
    await h.send(alice.did, await recordsRead(null, { recordId: unpublished.message.recordId }), { expect: 401 });
  });

  test('bob reads the record for him (200) but not the unpublished one (401)', async () => {
    await h.send(alice.did, await recordsRead(bob, { recordId: forBob.message.recordId }), { expect: 200 });
    await h.send(alice.did, await recordsRead(bob, { recordId: unpublished.message.recordId }), { expect: 401 });
  });

  test('carol reads the published one (200), not the ones for alice or bob (401)', async () => {
    await h.send(alice.did, await recordsRead(carol, { recordId: published.message.recordId }), { expect: 200 });
    await h.send(alice.did, await recordsRead(carol, { recordId: forBob.message.recordId }), { expect: 401 });
    await h.send(alice.did, await recordsRead(carol, { recordId: unpublished.message.recordId }), { expect: 401 });
  });

  test('a read of a record that does not exist is 404, for anyone', async () => {
    const recordId = 'bafyreigyfjfpf47ickaa4uzqo5tultwzy2spvvqqtvexseym75ovknnpq4';
    await h.send(alice.did, await recordsRead(alice, { recordId }), { expect: 404 });
    await h.send(alice.did, await recordsRead(null, { recordId }), { expect: 404 });
  });

  test('bob cannot write a flat record into alice\'s DWN (401)', async () => {
    await h.write(alice.did, await recordsWrite(bob, { schema: NOTE }), 401);
  });
});

describe('records bob authored in alice\'s DWN (free-for-all protocol)', () => {
  let alice, bob, carol, protocol, bobsPost;

  before(async () => {
    ({ alice, bob, carol } = await createActors('alice', 'bob', 'carol'));
    const definition = loadProtocol('free-for-all');
    protocol = definition.protocol;
    await h.send(alice.did, await protocolsConfigure(alice, definition), { expect: 202 });
    bobsPost = await recordsWrite(bob, { protocol, protocolPath: 'post', schema: 'post' });
    await h.write(alice.did, bobsPost);
  });

  test('bob, the author, finds his unpublished post by query', async () => {
    const { summary } = await h.send(alice.did, await recordsQuery(bob, { protocol }), { expect: 200 });
    assert.equal(summary.entries.length, 1);
  });

  test('carol\'s query does not list it (query ignores who:anyone read rules)', async () => {
    const { summary } = await h.send(alice.did, await recordsQuery(carol, { protocol }), { expect: 200 });
    assert.equal(summary.entries.length, 0);
  });

  test('but carol may read it: the protocol lets anyone read posts', async () => {
    await h.send(alice.did, await recordsRead(carol, { recordId: bobsPost.message.recordId }), { expect: 200 });
  });

  test('an anonymous read of it succeeds too (who:anyone includes unsigned readers)', async () => {
    await h.send(alice.did, await recordsRead(null, { recordId: bobsPost.message.recordId }), { expect: 200 });
  });

  test('yet an anonymous query does not list it', async () => {
    const { summary } = await h.send(alice.did, await recordsQuery(null, { protocol }), { expect: 200 });
    assert.equal(summary.entries.length, 0);
  });

  test('alice, the owner, sees it', async () => {
    const { summary } = await h.send(alice.did, await recordsQuery(alice, { protocol, protocolPath: 'post' }), { expect: 200 });
    assert.equal(summary.entries.length, 1);
  });
});
