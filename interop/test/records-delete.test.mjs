// RecordsDelete: tombstones, reads and queries after delete, conflicts, authorization,
// and pruning of descendants in a protocol (prune true/false).
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';

import { MessagesQuery } from '@tbd54566975/dwn-sdk-js';

import { createActors } from '../lib/actors.mjs';
import { useInterop } from '../lib/harness.mjs';
import {
  nextTimestamp, protocolsConfigure, recordsDelete, recordsQuery, recordsRead, recordsUpdate, recordsWrite,
} from '../lib/messages.mjs';
import { loadProtocol } from '../lib/protocols.mjs';

const h = useInterop();
const NOTE = 'https://example.org/note';

describe('flat records', () => {
  test('delete (202), then read is 404 with recordsDelete and initialWrite, and query is empty', async () => {
    const { alice } = await createActors('alice');
    const written = await recordsWrite(alice, { schema: NOTE });
    await h.write(alice.did, written);
    await h.send(alice.did, await recordsDelete(alice, written.message.recordId), { expect: 202 });

    const { summary } = await h.send(alice.did,
      await recordsRead(alice, { recordId: written.message.recordId }), { expect: 404 });
    assert.notEqual(summary.entry?.recordsDelete, null, 'entry.recordsDelete');
    assert.notEqual(summary.entry?.initialWrite, null, 'entry.initialWrite');

    const query = await h.send(alice.did, await recordsQuery(alice, { schema: NOTE }), { expect: 200 });
    assert.equal(query.summary.entries.length, 0);
  });

  test('reads of a deleted record are authorized against its initial write', async () => {
    // Published by an update, then deleted: the tombstone read checks the (unpublished) initial
    // write, so an anonymous reader is refused where the owner gets 404 with the entry.
    const { alice } = await createActors('alice');
    const v1 = await recordsWrite(alice, { schema: NOTE });
    const v2 = await recordsUpdate(alice, v1.message, { published: true });
    await h.write(alice.did, v1);
    await h.send(alice.did, v2.message, { expect: 202 });
    await h.send(alice.did, await recordsDelete(alice, v1.message.recordId), { expect: 202 });
    await h.send(alice.did, await recordsRead(null, { recordId: v1.message.recordId }), { expect: 401 });
    const { summary } = await h.send(alice.did,
      await recordsRead(alice, { recordId: v1.message.recordId }), { expect: 404 });
    assert.notEqual(summary.entry?.initialWrite, null, 'entry.initialWrite');
  });

  test('deleting twice: the second is 404', async () => {
    const { alice } = await createActors('alice');
    const written = await recordsWrite(alice, { schema: NOTE });
    await h.write(alice.did, written);
    await h.send(alice.did, await recordsDelete(alice, written.message.recordId), { expect: 202 });
    await h.send(alice.did, await recordsDelete(alice, written.message.recordId), { expect: 404 });
  });

  test('deleting a record that never existed is 404', async () => {
    const { alice } = await createActors('alice');
    const unknown = await recordsWrite(alice, { schema: NOTE }); // built, never sent
    await h.send(alice.did, await recordsDelete(alice, unknown.message.recordId), { expect: 404 });
  });

  test('a delete older than the newest write is a conflict (409)', async () => {
    const { alice } = await createActors('alice');
    const v1 = await recordsWrite(alice, { schema: NOTE });
    const staleDelete = await recordsDelete(alice, v1.message.recordId, { messageTimestamp: nextTimestamp() });
    const v2 = await recordsUpdate(alice, v1.message, { published: true });
    await h.write(alice.did, v1);
    await h.send(alice.did, v2.message, { expect: 202 });
    await h.send(alice.did, staleDelete, { expect: 409 });
  });

  test('a stranger cannot delete (401)', async () => {
    const { alice, bob } = await createActors('alice', 'bob');
    const written = await recordsWrite(alice, { schema: NOTE, published: true });
    await h.write(alice.did, written);
    await h.send(alice.did, await recordsDelete(bob, written.message.recordId), { expect: 401 });
  });

  test('a stranger reading a deleted unpublished record is refused (401)', async () => {
    const { alice, bob } = await createActors('alice', 'bob');
    const written = await recordsWrite(alice, { schema: NOTE });
    await h.write(alice.did, written);
    await h.send(alice.did, await recordsDelete(alice, written.message.recordId), { expect: 202 });
    await h.send(alice.did, await recordsRead(bob, { recordId: written.message.recordId }), { expect: 401 });
  });

  test('MessagesQuery lists the same event log after writes, updates and deletes', async () => {
    const { alice } = await createActors('alice');
    const v1 = await recordsWrite(alice, { schema: NOTE });
    await h.write(alice.did, v1);
    for (let i = 0; i < 3; i += 1) {
      // Intermediate updates are dropped: only the initial write and the newest message stay.
      await h.write(alice.did, await recordsUpdate(alice, v1.message, { data: v1.data, tags: { n: i } }));
    }
    await h.send(alice.did, await recordsDelete(alice, v1.message.recordId), { expect: 202 });
    const query = await MessagesQuery.create({ filters: [], messageTimestamp: nextTimestamp(), signer: alice.signer });
    const { summary } = await h.send(alice.did, query.message, { expect: 200 });
    assert.equal(summary.entries.length, 2);
  });
});

describe('pruning in the free-for-all protocol (post → attachment)', () => {
  async function postWithAttachments() {
    const { alice, bob } = await createActors('alice', 'bob');
    const definition = loadProtocol('free-for-all');
    await h.send(alice.did, await protocolsConfigure(alice, definition), { expect: 202 });
    const { protocol } = definition;
    const post = await recordsWrite(alice, { protocol, protocolPath: 'post', schema: 'post' });
    await h.write(alice.did, post);
    const attachments = [];
    for (const author of [alice, bob]) {
      const attachment = await recordsWrite(author, {
        protocol, protocolPath: 'post/attachment', parentContextId: post.message.contextId,
      });
      await h.write(alice.did, attachment);
      attachments.push(attachment);
    }
    const countAttachments = async () => {
      const { summary } = await h.send(alice.did,
        await recordsQuery(alice, { protocol, protocolPath: 'post/attachment' }), { expect: 200 });
      return summary.entries.length;
    };
    assert.equal(await countAttachments(), 2);
    return { alice, bob, protocol, post, attachments, countAttachments };
  }

  test('prune:false deletes the post only; its attachments stay readable', async () => {
    const { alice, post, attachments, countAttachments } = await postWithAttachments();
    await h.send(alice.did, await recordsDelete(alice, post.message.recordId, { prune: false }), { expect: 202 });
    await h.send(alice.did, await recordsRead(alice, { recordId: post.message.recordId }), { expect: 404 });
    assert.equal(await countAttachments(), 2);
    await h.send(alice.did, await recordsRead(alice, { recordId: attachments[1].message.recordId }), { expect: 200 });
  });

  test('prune:true deletes the post and every attachment', async () => {
    const { alice, post, attachments, countAttachments } = await postWithAttachments();
    await h.send(alice.did, await recordsDelete(alice, post.message.recordId, { prune: true }), { expect: 202 });
    assert.equal(await countAttachments(), 0);
    for (const attachment of attachments) {
      await h.send(alice.did, await recordsRead(alice, { recordId: attachment.message.recordId }), { expect: 404 });
    }
  });

  test('a new attachment under a deleted post is refused', async () => {
    const { alice, protocol, post } = await postWithAttachments();
    await h.send(alice.did, await recordsDelete(alice, post.message.recordId, { prune: true }), { expect: 202 });
    const late = await recordsWrite(alice, {
      protocol, protocolPath: 'post/attachment', parentContextId: post.message.contextId,
    });
    await h.write(alice.did, late, 400);
  });

  test('bob may prune alice\'s post: free-for-all grants co-prune to anyone', async () => {
    const { alice, bob, post, countAttachments } = await postWithAttachments();
    await h.send(alice.did, await recordsDelete(bob, post.message.recordId, { prune: true }), { expect: 202 });
    assert.equal(await countAttachments(), 0);
  });
});

describe('delete rules in the author-can protocol', () => {
  test('no rule grants delete of a post, not even to its author (401); the owner may (202)', async () => {
    const { alice, bob } = await createActors('alice', 'bob');
    const definition = loadProtocol('author-can');
    await h.send(alice.did, await protocolsConfigure(alice, definition), { expect: 202 });
    const post = await recordsWrite(bob, { protocol: definition.protocol, protocolPath: 'post' });
    await h.write(alice.did, post);
    await h.send(alice.did, await recordsDelete(bob, post.message.recordId), { expect: 401 });
    await h.send(alice.did, await recordsDelete(alice, post.message.recordId), { expect: 202 });
  });

  test('the author of a post may co-delete a comment on it; others may not', async () => {
    const { alice, bob, carol } = await createActors('alice', 'bob', 'carol');
    const definition = loadProtocol('author-can');
    const { protocol } = definition;
    await h.send(alice.did, await protocolsConfigure(alice, definition), { expect: 202 });
    const post = await recordsWrite(bob, { protocol, protocolPath: 'post' });
    await h.write(alice.did, post);
    const comment = await recordsWrite(alice, { protocol, protocolPath: 'post/comment', parentContextId: post.message.contextId });
    await h.write(alice.did, comment);
    await h.send(alice.did, await recordsDelete(carol, comment.message.recordId), { expect: 401 });
    await h.send(alice.did, await recordsDelete(bob, comment.message.recordId), { expect: 202 });
  });
});
