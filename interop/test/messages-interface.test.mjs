// The Messages interface, used by the owner: MessagesQuery over the event log with filters
// (interface, method, protocol, messageTimestamp ranges, several filters OR-ed) and cursor
// pagination, and what the log holds after updates, deletes, prunes and reconfigurations;
// MessagesRead of RecordsWrite (small data kept inline, and data over 30,000 bytes kept in the
// data store), RecordsDelete and ProtocolsConfigure messages, and of CIDs that are not there;
// MessagesSubscribe over WebSocket, receiving the same events as the oracle.
// Grant-holders' use of these methods is in grant-access.test.mjs.
import assert from 'node:assert/strict';
import { before, describe, test } from 'node:test';

import { createActors } from '../lib/actors.mjs';
import { messageCid } from '../lib/compare.mjs';
import { bytesData, generatedBytes, generatedData } from '../lib/data.mjs';
import { useInterop } from '../lib/harness.mjs';
import {
  messagesQuery, messagesRead, messagesSubscribe, nextTimestamp, protocolsConfigure, recordsDelete, recordsUpdate,
  recordsWrite, signedMessage, unsigned,
} from '../lib/messages.mjs';
import { permissionGrant } from '../lib/permissions.mjs';

const h = useInterop();

const NOTES = {
  protocol: 'https://example.org/messages/notes',
  published: true,
  types: { note: { dataFormats: ['application/json'] }, comment: { dataFormats: ['application/json'] } },
  structure: { note: { comment: {} } },
};
const OTHER = {
  protocol: 'https://example.org/messages/other',
  published: true,
  types: { thing: { dataFormats: ['application/json'] } },
  structure: { thing: {} },
};
const DIARY = 'https://example.org/messages/diary';

const cids = (messages) => Promise.all(messages.map((message) => messageCid(message)));

/** alice's MessagesQuery: both sides must list the same CIDs in the same order. */
async function query(alice, filters, expect = 200) {
  const { summary } = await h.send(alice.did, await messagesQuery(alice, filters), { expect });
  return summary.entries;
}

describe('MessagesQuery filters', () => {
  let alice, bob, notesConfigure, otherConfigure, note, comment, thing, diary, deletion, grant;
  const t = {}; // timestamps between the writes

  before(async () => {
    ({ alice, bob } = await createActors('alice', 'bob'));
    notesConfigure = await protocolsConfigure(alice, NOTES);
    otherConfigure = await protocolsConfigure(alice, OTHER);
    await h.send(alice.did, notesConfigure, { expect: 202 });
    await h.send(alice.did, otherConfigure, { expect: 202 });
    t.afterConfigure = nextTimestamp();
    note = await recordsWrite(alice, { protocol: NOTES.protocol, protocolPath: 'note' });
    comment = await recordsWrite(alice, { protocol: NOTES.protocol, protocolPath: 'note/comment', parentContextId: note.message.contextId });
    t.afterNotes = nextTimestamp();
    thing = await recordsWrite(alice, { protocol: OTHER.protocol, protocolPath: 'thing' });
    diary = await recordsWrite(alice, { schema: DIARY });
    for (const written of [note, comment, thing, diary]) await h.write(alice.did, written);
    deletion = await recordsDelete(alice, diary.message.recordId);
    await h.send(alice.did, deletion, { expect: 202 });
    grant = await permissionGrant(alice, bob, { interface: 'Records', method: 'Read', protocol: NOTES.protocol });
    // Bob's own DWN: none of it may show up in alice's log.
    await h.send(bob.did, await protocolsConfigure(bob, NOTES), { expect: 202 });
  });

  // Written in a test, not in `before`: a node without permission grants would fail the whole group.
  test('alice writes a grant tagged with NOTES (202)', async () => {
    await h.write(alice.did, grant);
  });

  test('no filters: the whole log in order', async () => {
    const all = await query(alice, []);
    assert.deepEqual(all, await cids([notesConfigure, otherConfigure, note.message, comment.message, thing.message,
      diary.message, deletion, grant.message]));
  });

  test('interface Protocols: the two configures', async () => {
    assert.deepEqual(await query(alice, [{ interface: 'Protocols' }]), await cids([notesConfigure, otherConfigure]));
  });

  test('interface Records and method Delete: the delete only', async () => {
    assert.deepEqual(await query(alice, [{ interface: 'Records', method: 'Delete' }]), await cids([deletion]));
  });

  test('method Write: every RecordsWrite, the grant included', async () => {
    const writes = await query(alice, [{ method: 'Write' }]);
    assert.ok(writes.includes(await messageCid(grant.message)));
    assert.ok(!writes.includes(await messageCid(notesConfigure)));
  });

  test('protocol NOTES: its configure, its records and the grant tagged with it', async () => {
    assert.deepEqual(await query(alice, [{ protocol: NOTES.protocol }]),
      await cids([notesConfigure, note.message, comment.message, grant.message]));
  });

  test('messageTimestamp from (inclusive), to (exclusive), and both', async () => {
    const from = await query(alice, [{ messageTimestamp: { from: note.message.descriptor.messageTimestamp } }]);
    assert.equal(from[0], await messageCid(note.message));
    const to = await query(alice, [{ messageTimestamp: { to: note.message.descriptor.messageTimestamp } }]);
    assert.deepEqual(to, await cids([notesConfigure, otherConfigure]));
    const between = await query(alice, [{ messageTimestamp: { from: t.afterConfigure, to: t.afterNotes } }]);
    assert.deepEqual(between, await cids([note.message, comment.message]));
  });

  test('protocol with messageTimestamp also bounds the tagged permission records', async () => {
    const early = await query(alice, [{ protocol: NOTES.protocol, messageTimestamp: { to: t.afterNotes } }]);
    assert.deepEqual(early, await cids([notesConfigure, note.message, comment.message]));
  });

  test('several filters are OR-ed', async () => {
    const either = await query(alice, [{ protocol: OTHER.protocol }, { method: 'Delete' }]);
    assert.deepEqual(either, await cids([otherConfigure, thing.message, deletion]));
  });

  test('a filter nothing matches: no entries and no cursor', async () => {
    const { summary } = await h.send(alice.did, await messagesQuery(alice, [{ protocol: 'https://example.org/none' }]), { expect: 200 });
    assert.deepEqual(summary.entries, []);
    assert.equal(summary.cursor, null);
  });

  test('bad filters (400): interface Messages, an empty filter, an unnormalized protocol', async () => {
    const base = await messagesQuery(alice, []);
    const withFilters = (filters) => signedMessage(alice, { ...base.descriptor, filters, messageTimestamp: nextTimestamp() });
    await h.send(alice.did, await withFilters([{ interface: 'Messages' }]), { expect: 400 });
    await h.send(alice.did, await withFilters([{}]), { expect: 400 });
    await h.send(alice.did, await withFilters([{ protocol: 'example.org/messages/notes' }]), { expect: 400 });
  });

  test('a stranger is refused (401); an unsigned query is malformed (400)', async () => {
    await h.send(alice.did, await messagesQuery(bob, []), { expect: 401 });
    await h.send(alice.did, unsigned(await messagesQuery(alice, [])), { expect: 400 });
  });
});

describe('MessagesQuery cursor', () => {
  /** Both sides resume from their own cursor (its watermark is private to each node). */
  async function resume(alice, filters, previous) {
    const messageTimestamp = nextTimestamp();
    const make = (cursor) => messagesQuery(alice, filters, { cursor: cursor ?? undefined, messageTimestamp });
    return h.sendPair(alice.did, {
      target: await make(previous?.target.cursor), oracle: await make(previous?.oracle.cursor),
    }, { expect: 200 });
  }

  test('a query resumed from the last cursor lists only what came after', async () => {
    const { alice } = await createActors('alice');
    const first = [await recordsWrite(alice, { schema: DIARY }), await recordsWrite(alice, { schema: DIARY })];
    for (const written of first) await h.write(alice.did, written);
    const page1 = await resume(alice, []);
    assert.deepEqual(page1.summary.entries, await cids(first.map((w) => w.message)));
    assert.equal(page1.summary.cursor.messageCid, await messageCid(first[1].message));

    const later = [await recordsWrite(alice, { schema: DIARY }), await recordsWrite(alice, { schema: DIARY })];
    for (const written of later) await h.write(alice.did, written);
    const page2 = await resume(alice, [], page1);
    assert.deepEqual(page2.summary.entries, await cids(later.map((w) => w.message)));

    const page3 = await resume(alice, [], page2);
    assert.deepEqual(page3.summary.entries, []);
  });

  test('a cursor with a filter: only later matching events', async () => {
    const { alice } = await createActors('alice');
    await h.send(alice.did, await protocolsConfigure(alice, NOTES), { expect: 202 });
    const page1 = await resume(alice, [{ protocol: NOTES.protocol }]);
    assert.equal(page1.summary.entries.length, 1);
    const note = await recordsWrite(alice, { protocol: NOTES.protocol, protocolPath: 'note' });
    await h.write(alice.did, await recordsWrite(alice, { schema: DIARY }));
    await h.write(alice.did, note);
    const page2 = await resume(alice, [{ protocol: NOTES.protocol }], page1);
    assert.deepEqual(page2.summary.entries, [await messageCid(note.message)]);
  });
});

describe('the log after updates, deletes, prunes and reconfigurations', () => {
  test('updates: the initial write and the newest write stay, the ones between go', async () => {
    const { alice } = await createActors('alice');
    const v1 = await recordsWrite(alice, { schema: DIARY });
    await h.write(alice.did, v1);
    const v2 = await recordsUpdate(alice, v1.message, { data: bytesData('v2') });
    await h.write(alice.did, v2);
    const v3 = await recordsUpdate(alice, v1.message, { data: bytesData('v3') });
    await h.write(alice.did, v3);
    assert.deepEqual(await query(alice, []), await cids([v1.message, v3.message]));
    // The dropped update cannot be read any more.
    await h.send(alice.did, await messagesRead(alice, await messageCid(v2.message)), { expect: 404 });
  });

  test('a delete: the initial write and the delete stay', async () => {
    const { alice } = await createActors('alice');
    const v1 = await recordsWrite(alice, { schema: DIARY });
    await h.write(alice.did, v1);
    const v2 = await recordsUpdate(alice, v1.message, { data: bytesData('v2') });
    await h.write(alice.did, v2);
    const deletion = await recordsDelete(alice, v1.message.recordId);
    await h.send(alice.did, deletion, { expect: 202 });
    assert.deepEqual(await query(alice, []), await cids([v1.message, deletion]));
  });

  test('a prune: the children\'s messages leave the log', async () => {
    const { alice } = await createActors('alice');
    const configure = await protocolsConfigure(alice, NOTES);
    await h.send(alice.did, configure, { expect: 202 });
    const note = await recordsWrite(alice, { protocol: NOTES.protocol, protocolPath: 'note' });
    await h.write(alice.did, note);
    const comments = [];
    for (let i = 0; i < 3; i += 1) {
      const comment = await recordsWrite(alice, {
        protocol: NOTES.protocol, protocolPath: 'note/comment', parentContextId: note.message.contextId,
      });
      await h.write(alice.did, comment);
      comments.push(comment.message);
    }
    const prune = await recordsDelete(alice, note.message.recordId, { prune: true });
    await h.send(alice.did, prune, { expect: 202 });
    assert.deepEqual(await query(alice, [{ protocol: NOTES.protocol }]), await cids([configure, note.message, prune]));
    await h.send(alice.did, await messagesRead(alice, await messageCid(comments[0])), { expect: 404 });
  });

  test('a newer ProtocolsConfigure replaces the older one', async () => {
    const { alice } = await createActors('alice');
    const older = await protocolsConfigure(alice, NOTES);
    await h.send(alice.did, older, { expect: 202 });
    const newer = await protocolsConfigure(alice, { ...NOTES, published: false });
    await h.send(alice.did, newer, { expect: 202 });
    assert.deepEqual(await query(alice, [{ interface: 'Protocols' }]), await cids([newer]));
  });
});

describe('MessagesRead', () => {
  let alice, bob;
  before(async () => { ({ alice, bob } = await createActors('alice', 'bob')); });

  const read = async (reader, message, expect, tenant = alice) =>
    (await h.send(tenant.did, await messagesRead(reader, await messageCid(message)), { expect })).summary;

  test('a RecordsWrite with small data: the message and its data', async () => {
    const written = await recordsWrite(alice, { schema: DIARY, data: bytesData('dear diary') });
    await h.write(alice.did, written);
    const { entry } = await read(alice, written.message, 200);
    assert.equal(entry.messageCid, await messageCid(written.message));
    assert.equal(entry.message, await messageCid(written.message));
    assert.equal(entry.data.size, 'dear diary'.length);
  });

  test('a RecordsWrite with 30,001 bytes (kept in the data store): the data streams back', async () => {
    const written = await recordsWrite(alice, { schema: DIARY, data: await generatedBytes(30_001, 'messages-read'), dataFormat: 'application/octet-stream' });
    await h.write(alice.did, written);
    const { entry } = await read(alice, written.message, 200);
    assert.equal(entry.data.size, 30_001);
  });

  test('a RecordsWrite with 1 MB of data', async () => {
    const written = await recordsWrite(alice, { schema: DIARY, data: generatedData(1024 * 1024, 'messages-read-1mb'), dataFormat: 'application/octet-stream' });
    await h.write(alice.did, written);
    const { entry } = await read(alice, written.message, 200);
    assert.equal(entry.data.size, 1024 * 1024);
  });

  test('the initial write of an updated record, and the update', async () => {
    const v1 = await recordsWrite(alice, { schema: DIARY, data: bytesData('first') });
    await h.write(alice.did, v1);
    const v2 = await recordsUpdate(alice, v1.message, { data: bytesData('second') });
    await h.write(alice.did, v2);
    await read(alice, v1.message, 200);
    assert.equal((await read(alice, v2.message, 200)).entry.data.size, 'second'.length);
  });

  test('a RecordsWrite stored without data (204): the message, no data', async () => {
    const written = await recordsWrite(alice, { schema: DIARY });
    await h.send(alice.did, written.message, { expect: 204 });
    const { entry } = await read(alice, written.message, 200);
    assert.equal(entry.data, null);
  });

  test('a ProtocolsConfigure and a RecordsDelete: the message, no data', async () => {
    const configure = await protocolsConfigure(alice, OTHER);
    await h.send(alice.did, configure, { expect: 202 });
    assert.equal((await read(alice, configure, 200)).entry.data, null);
    const written = await recordsWrite(alice, { schema: DIARY });
    await h.write(alice.did, written);
    const deletion = await recordsDelete(alice, written.message.recordId);
    await h.send(alice.did, deletion, { expect: 202 });
    assert.equal((await read(alice, deletion, 200)).entry.data, null);
  });

  test('a CID that is not stored (404), or stored in another tenant (404)', async () => {
    const never = await recordsWrite(alice, { schema: DIARY });
    await read(alice, never.message, 404);
    const bobs = await recordsWrite(bob, { schema: DIARY });
    await h.write(bob.did, bobs);
    await read(alice, bobs.message, 404);
  });

  test('a stranger: 401 for a stored CID', async () => {
    const written = await recordsWrite(alice, { schema: DIARY, published: true });
    await h.write(alice.did, written);
    await read(bob, written.message, 401);
  });

  test('a messageCid that is not a CID (400)', async () => {
    const valid = await messagesRead(alice, await messageCid((await recordsWrite(alice, { schema: DIARY })).message));
    await h.send(alice.did, await signedMessage(alice, { ...valid.descriptor, messageCid: 'not-a-cid' }), { expect: 400 });
  });
});

describe('MessagesSubscribe over WebSocket', () => {
  test('the owner gets every event (configure, write, update, delete) in order; close stops them', async () => {
    const { alice } = await createActors('alice');
    const subscription = await h.subscribe(alice.did, await messagesSubscribe(alice, []), { expect: 200 });
    await h.send(alice.did, await protocolsConfigure(alice, NOTES), { expect: 202 });
    const written = await recordsWrite(alice, { schema: DIARY });
    await h.write(alice.did, written);
    await h.write(alice.did, await recordsUpdate(alice, written.message, { data: bytesData('again') }));
    await h.send(alice.did, await recordsDelete(alice, written.message.recordId), { expect: 202 });
    const events = await subscription.expectEvents(4);
    assert.equal(events[1].message, await messageCid(written.message));
    assert.notEqual(events[2].initialWrite, null, 'an update event carries the initial write');

    await subscription.close();
    await h.write(alice.did, await recordsWrite(alice, { schema: DIARY }));
    await subscription.expectEvents(4);
  });

  test('a protocol filter: that protocol\'s configure and records, and the grants tagged with it', async () => {
    const { alice, bob } = await createActors('alice', 'bob');
    const subscription = await h.subscribe(alice.did, await messagesSubscribe(alice, [{ protocol: NOTES.protocol }]), { expect: 200 });
    await h.send(alice.did, await protocolsConfigure(alice, NOTES), { expect: 202 });
    await h.send(alice.did, await protocolsConfigure(alice, OTHER), { expect: 202 });
    await h.write(alice.did, await recordsWrite(alice, { protocol: NOTES.protocol, protocolPath: 'note' }));
    await h.write(alice.did, await recordsWrite(alice, { protocol: OTHER.protocol, protocolPath: 'thing' }));
    await h.write(alice.did, await recordsWrite(alice, { schema: DIARY }));
    await h.write(alice.did, await permissionGrant(alice, bob, { interface: 'Records', method: 'Read', protocol: NOTES.protocol }));
    await subscription.expectEvents(3);
    await subscription.close();
  });

  test('an interface filter: configures only', async () => {
    const { alice } = await createActors('alice');
    const subscription = await h.subscribe(alice.did, await messagesSubscribe(alice, [{ interface: 'Protocols' }]), { expect: 200 });
    await h.write(alice.did, await recordsWrite(alice, { schema: DIARY }));
    await h.send(alice.did, await protocolsConfigure(alice, OTHER), { expect: 202 });
    await subscription.expectEvents(1);
    await subscription.close();
  });

  test('events of other tenants never arrive', async () => {
    const { alice, bob } = await createActors('alice', 'bob');
    const subscription = await h.subscribe(alice.did, await messagesSubscribe(alice, []), { expect: 200 });
    await h.write(bob.did, await recordsWrite(bob, { schema: DIARY }));
    await h.write(alice.did, await recordsWrite(alice, { schema: DIARY }));
    await subscription.expectEvents(1);
    await subscription.close();
  });

  test('a stranger\'s subscription is refused (401)', async () => {
    const { alice, bob } = await createActors('alice', 'bob');
    await h.subscribe(alice.did, await messagesSubscribe(bob, []), { expect: 401 });
  });
});
