// A grantee invoking a grant with `permissionGrantId`, method by method: RecordsWrite,
// RecordsRead, RecordsQuery, RecordsSubscribe, RecordsDelete, ProtocolsConfigure,
// ProtocolsQuery, MessagesQuery, MessagesRead and MessagesSubscribe, within the grant's scope
// (allowed) and outside it (denied). alice owns the DWN; bob holds grants scoped to NOTES.
// Note what dwn-sdk-js 0.5.2 does with RecordsQuery, RecordsSubscribe and RecordsDelete: it has
// no `permissionGrantId` path for them (only delegated grants reach them, see
// delegation.test.mjs), so the grant id is ignored there and the grantee is a plain non-owner.
import assert from 'node:assert/strict';
import { before, describe, test } from 'node:test';

import { RecordsQuery, RecordsSubscribe } from '@tbd54566975/dwn-sdk-js';

import { createActors } from '../lib/actors.mjs';
import { messageCid } from '../lib/compare.mjs';
import { generatedBytes } from '../lib/data.mjs';
import { useInterop } from '../lib/harness.mjs';
import {
  messagesQuery, messagesRead, messagesSubscribe, nextTimestamp, protocolsConfigure, protocolsQuery, recordsDelete,
  recordsQuery, recordsRead, recordsUpdate, recordsWrite, signedMessage,
} from '../lib/messages.mjs';
import { permissionGrant } from '../lib/permissions.mjs';
import { isDehr } from '../lib/target.mjs';

const h = useInterop();

// Nobody but the owner may do anything in these (unpublished) protocols without a grant.
const NOTES = {
  protocol: 'https://example.org/grant-access/notes',
  published: false,
  types: { note: { dataFormats: ['application/json'] } },
  structure: { note: {} },
};
const OTHER = {
  protocol: 'https://example.org/grant-access/other',
  published: false,
  types: { thing: { dataFormats: ['application/json'] } },
  structure: { thing: {} },
};

let alice, bob, carol, notesConfigure, otherConfigure, note, thing, publishedNote;

/** alice grants `grantee` (bob by default) a scope on NOTES; `protocol: undefined` for an unrestricted one. */
async function grant(scope, { grantee = bob, ...options } = {}) {
  const full = { protocol: NOTES.protocol, ...scope };
  if (full.protocol === undefined) delete full.protocol;
  const built = await permissionGrant(alice, grantee, full, options);
  await h.write(alice.did, built);
  return built;
}

/** The same message re-signed by `actor` with a permissionGrantId (the SDK builders of RecordsQuery/Subscribe/Delete take none). */
const withGrantId = (actor, message, permissionGrantId) => signedMessage(actor, message.descriptor, { permissionGrantId });

const noteBy = (actor, options = {}) => recordsWrite(actor, { protocol: NOTES.protocol, protocolPath: 'note', ...options });
const thingBy = (actor, options = {}) => recordsWrite(actor, { protocol: OTHER.protocol, protocolPath: 'thing', ...options });

before(async () => {
  ({ alice, bob, carol } = await createActors('alice', 'bob', 'carol'));
  notesConfigure = await protocolsConfigure(alice, NOTES);
  otherConfigure = await protocolsConfigure(alice, OTHER);
  await h.send(alice.did, notesConfigure, { expect: 202 });
  await h.send(alice.did, otherConfigure, { expect: 202 });
  note = await noteBy(alice);
  thing = await thingBy(alice);
  publishedNote = await noteBy(alice, { published: true });
  for (const written of [note, thing, publishedNote]) await h.write(alice.did, written);
});

describe('RecordsWrite', () => {
  test('a Records.Write grant for NOTES: bob writes a note (202); without the grant id, 401', async () => {
    const writeGrant = await grant({ interface: 'Records', method: 'Write' });
    await h.write(alice.did, await noteBy(bob), 401);
    await h.write(alice.did, await noteBy(bob, { permissionGrantId: writeGrant.id }));
  });

  test('…but not in OTHER (401)', async () => {
    const writeGrant = await grant({ interface: 'Records', method: 'Write' });
    await h.write(alice.did, await thingBy(bob, { permissionGrantId: writeGrant.id }), 401);
  });

  test('a Records.Write grant lets bob update a note alice wrote (202)', async () => {
    const writeGrant = await grant({ interface: 'Records', method: 'Write' });
    const alicesNote = await noteBy(alice);
    await h.write(alice.did, alicesNote);
    await h.write(alice.did, await recordsUpdate(bob, alicesNote.message,
      { data: await generatedBytes(64, 'bob-update'), permissionGrantId: writeGrant.id }));
  });

  test('a Records.Read grant does not authorize writes (401)', async () => {
    const readGrant = await grant({ interface: 'Records', method: 'Read' });
    await h.write(alice.did, await noteBy(bob, { permissionGrantId: readGrant.id }), 401);
  });
});

describe('RecordsRead', () => {
  test('a Records.Read grant for NOTES: bob reads alice\'s note (200) but not OTHER\'s thing (401)', async () => {
    const readGrant = await grant({ interface: 'Records', method: 'Read' });
    await h.send(alice.did, await recordsRead(bob, { recordId: note.message.recordId }), { expect: 401 });
    const { summary } = await h.send(alice.did,
      await recordsRead(bob, { recordId: note.message.recordId }, { permissionGrantId: readGrant.id }), { expect: 200 });
    assert.notEqual(summary.entry.data, null);
    await h.send(alice.did,
      await recordsRead(bob, { recordId: thing.message.recordId }, { permissionGrantId: readGrant.id }), { expect: 401 });
  });

  test('a Records.Write grant does not authorize reads (401)', async () => {
    const writeGrant = await grant({ interface: 'Records', method: 'Write' });
    await h.send(alice.did,
      await recordsRead(bob, { recordId: note.message.recordId }, { permissionGrantId: writeGrant.id }), { expect: 401 });
  });

  test('a published record is read whatever the grant id, even one that names no grant (200)', async () => {
    await h.send(alice.did,
      await recordsRead(carol, { recordId: publishedNote.message.recordId }, { permissionGrantId: 'bafyreinogrant' }), { expect: 200 });
  });

  test('a grant id that names no grant is refused for an unpublished record (401)', async () => {
    await h.send(alice.did,
      await recordsRead(carol, { recordId: note.message.recordId }, { permissionGrantId: note.message.recordId }), { expect: 401 });
  });
});

// dwn-sdk-js 0.5.2 has no permissionGrantId path for RecordsQuery, RecordsSubscribe and
// RecordsDelete (its builders for them take no grant id): there the grantee is a plain
// non-owner. DeHR lets a grant whose scope names a protocol work there too, within the grant's
// scope (a provider finds what a patient shared). These tests assert each side's behaviour; the
// DeHR side runs in erin's DWN so that alice's stays identical on both sides.
describe('RecordsQuery, RecordsSubscribe and RecordsDelete with permissionGrantId [dehr extends the reference]', () => {
  let erin, erinNote, erinPublished;
  const query = async (actor, permissionGrantId, filter = { protocol: NOTES.protocol }) => {
    const built = await RecordsQuery.create({ filter, messageTimestamp: nextTimestamp() });
    return withGrantId(actor, built.message, permissionGrantId);
  };
  /** erin grants `grantee` a scope on NOTES in her DWN. */
  const erinGrant = async (scope, grantee) => {
    const built = await permissionGrant(erin, grantee, { protocol: NOTES.protocol, ...scope });
    await h.write(erin.did, built);
    return built;
  };

  before(async () => {
    ({ erin } = await createActors('erin'));
    await h.send(erin.did, await protocolsConfigure(erin, NOTES), { expect: 202 });
    erinNote = await noteBy(erin);
    erinPublished = await noteBy(erin, { published: true });
    for (const written of [erinNote, erinPublished]) await h.write(erin.did, written);
  });

  test('a Records.Query grant: the reference shows published notes only; DeHR every note in scope', async () => {
    const { dave } = await createActors('dave');
    const queryGrant = await erinGrant({ interface: 'Records', method: 'Query' }, dave);
    const cids = async (summary) => summary.entries.map((entry) => entry.cid);
    const unpublished = await messageCid(erinNote.message);
    const published = await messageCid(erinPublished.message);
    if (isDehr) {
      const granted = await h.sendTarget(erin.did, await query(dave, queryGrant.id));
      assert.equal(granted.code, 200);
      assert.deepEqual((await cids(granted)).sort(), [unpublished, published].sort());
      // Out of scope: another protocol, or no protocol at all.
      const other = await h.sendTarget(erin.did, await query(dave, queryGrant.id, { protocol: OTHER.protocol }));
      assert.equal(other.code, 401);
      const unfiltered = await h.sendTarget(erin.did, await query(dave, queryGrant.id, { schema: 'https://example.org/x' }));
      assert.equal(unfiltered.code, 401);
      // Someone else using dave's grant, and a grant id that names no grant.
      assert.equal((await h.sendTarget(erin.did, await query(carol, queryGrant.id))).code, 401);
      assert.equal((await h.sendTarget(erin.did, await query(carol, 'bafyreinogrant'))).code, 401);
    } else {
      const granted = await h.send(erin.did, await query(dave, queryGrant.id), { expect: 200 });
      assert.deepEqual(await cids(granted.summary), [published]);
      await h.send(erin.did, await query(carol, 'bafyreinogrant'), { expect: 200 });
    }
  });

  test('a Records.Subscribe grant: the reference delivers published notes only; DeHR every note in scope', async () => {
    const { dave } = await createActors('dave');
    const subscribeGrant = await erinGrant({ interface: 'Records', method: 'Subscribe' }, dave);
    const built = await RecordsSubscribe.create({ filter: { protocol: NOTES.protocol }, messageTimestamp: nextTimestamp() });
    const subscription = await h.openSubscription(erin.did, await withGrantId(dave, built.message, subscribeGrant.id));
    assert.equal(subscription.code, 200);
    await h.write(erin.did, await noteBy(erin));
    await h.write(erin.did, await noteBy(erin, { published: true }));
    const expected = isDehr ? 2 : 1;
    const events = isDehr ? subscription.targetEvents : subscription.oracleEvents;
    const deadline = Date.now() + 5000;
    while (events.length < expected && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 20));
    await new Promise((resolve) => setTimeout(resolve, 200));
    assert.equal(events.length, expected);
    await subscription.close();
  });

  test('a Records.Delete grant: the reference refuses (401); DeHR deletes within scope (202), not outside it (401)', async () => {
    const { dave } = await createActors('dave');
    const deleteGrant = await erinGrant({ interface: 'Records', method: 'Delete' }, dave);
    const doomed = await noteBy(erin);
    await h.write(erin.did, doomed);
    const deletion = await withGrantId(dave, await recordsDelete(dave, doomed.message.recordId), deleteGrant.id);
    if (isDehr) {
      const otherThing = await thingBy(erin);
      await h.send(erin.did, await protocolsConfigure(erin, OTHER), { expect: 202 });
      await h.write(erin.did, otherThing);
      const outside = await withGrantId(dave, await recordsDelete(dave, otherThing.message.recordId), deleteGrant.id);
      assert.equal((await h.sendTarget(erin.did, outside)).code, 401);
      assert.equal((await h.sendTarget(erin.did, deletion)).code, 202);
      assert.equal((await h.sendTarget(erin.did, await recordsRead(erin, { recordId: doomed.message.recordId }))).code, 404);
    } else {
      await h.send(erin.did, deletion, { expect: 401 });
      await h.send(erin.did, await recordsRead(erin, { recordId: doomed.message.recordId }), { expect: 200 });
    }
  });
});

describe('ProtocolsConfigure', () => {
  const edited = (definition) => ({
    ...definition, types: { ...definition.types, extra: {} }, structure: { ...definition.structure, extra: {} },
  });

  test('a Protocols.Configure grant for one protocol: bob reconfigures it (202), not OTHER (401)', async () => {
    const scratch = { ...NOTES, protocol: 'https://example.org/grant-access/scratch' };
    await h.send(alice.did, await protocolsConfigure(alice, scratch), { expect: 202 });
    const configureGrant = await grant({ interface: 'Protocols', method: 'Configure', protocol: scratch.protocol });
    await h.send(alice.did, await protocolsConfigure(bob, edited(scratch)), { expect: 401 });
    await h.send(alice.did, await protocolsConfigure(bob, edited(OTHER), { permissionGrantId: configureGrant.id }), { expect: 401 });
    await h.send(alice.did, await protocolsConfigure(bob, edited(scratch), { permissionGrantId: configureGrant.id }), { expect: 202 });
    // alice's DWN now holds bob's definition, and only that one.
    const { summary } = await h.send(alice.did, await protocolsQuery(alice, { protocol: scratch.protocol }), { expect: 200 });
    assert.equal(summary.entries.length, 1);
  });

  test('an unrestricted Protocols.Configure grant: bob installs a new protocol (202)', async () => {
    const configureGrant = await grant({ interface: 'Protocols', method: 'Configure', protocol: undefined });
    const fresh = { ...OTHER, protocol: 'https://example.org/grant-access/fresh' };
    await h.send(alice.did, await protocolsConfigure(bob, fresh, { permissionGrantId: configureGrant.id }), { expect: 202 });
  });

  test('a Protocols.Query grant does not authorize configuring (401)', async () => {
    const queryGrant = await grant({ interface: 'Protocols', method: 'Query' });
    await h.send(alice.did, await protocolsConfigure(bob, edited(NOTES), { permissionGrantId: queryGrant.id }), { expect: 401 });
  });
});

describe('ProtocolsQuery', () => {
  const count = async (actor, filter, options, expect = 200) => {
    const { summary } = await h.send(alice.did, await protocolsQuery(actor, filter, options), { expect });
    return summary.entries?.length;
  };

  test('a Protocols.Query grant for NOTES: bob sees the unpublished NOTES definition', async () => {
    const queryGrant = await grant({ interface: 'Protocols', method: 'Query' });
    assert.equal(await count(bob, { protocol: NOTES.protocol }), 0);
    assert.equal(await count(bob, { protocol: NOTES.protocol }, { permissionGrantId: queryGrant.id }), 1);
  });

  test('out of scope (OTHER, or no filter), the reply falls back to published definitions (200, none)', async () => {
    const queryGrant = await grant({ interface: 'Protocols', method: 'Query' });
    assert.equal(await count(bob, { protocol: OTHER.protocol }, { permissionGrantId: queryGrant.id }), 0);
    assert.equal(await count(bob, undefined, { permissionGrantId: queryGrant.id }), 0);
  });

  test('an expired Protocols.Query grant is refused outright (401), unlike an out-of-scope one', async () => {
    const expired = await grant({ interface: 'Protocols', method: 'Query' }, { dateExpires: nextTimestamp() });
    await count(bob, { protocol: NOTES.protocol }, { permissionGrantId: expired.id }, 401);
  });
});

describe('MessagesQuery', () => {
  test('a Messages.Query grant for NOTES: NOTES filters pass (200), OTHER or mixed filters are refused (401)', async () => {
    const queryGrant = await grant({ interface: 'Messages', method: 'Query' });
    await h.send(alice.did, await messagesQuery(bob, [{ protocol: NOTES.protocol }]), { expect: 401 });
    const { summary } = await h.send(alice.did,
      await messagesQuery(bob, [{ protocol: NOTES.protocol }], { permissionGrantId: queryGrant.id }), { expect: 200 });
    assert.ok(summary.entries.includes(await messageCid(note.message)));
    assert.ok(!summary.entries.includes(await messageCid(thing.message)));
    await h.send(alice.did,
      await messagesQuery(bob, [{ protocol: OTHER.protocol }], { permissionGrantId: queryGrant.id }), { expect: 401 });
    await h.send(alice.did,
      await messagesQuery(bob, [{ protocol: NOTES.protocol }, { protocol: OTHER.protocol }], { permissionGrantId: queryGrant.id }),
      { expect: 401 });
  });

  test('an unrestricted Messages.Query grant sees what the owner sees', async () => {
    const queryGrant = await grant({ interface: 'Messages', method: 'Query', protocol: undefined });
    const granted = await h.send(alice.did, await messagesQuery(bob, [{ interface: 'Records' }], { permissionGrantId: queryGrant.id }),
      { expect: 200 });
    const owner = await h.send(alice.did, await messagesQuery(alice, [{ interface: 'Records' }]), { expect: 200 });
    assert.deepEqual(granted.summary.entries, owner.summary.entries);
  });

  test('a Messages.Read grant does not authorize queries (401)', async () => {
    const readGrant = await grant({ interface: 'Messages', method: 'Read' });
    await h.send(alice.did,
      await messagesQuery(bob, [{ protocol: NOTES.protocol }], { permissionGrantId: readGrant.id }), { expect: 401 });
  });
});

describe('MessagesRead', () => {
  let readGrant;
  /** A MessagesRead by `actor` (bob) invoking `grantId` (bob's Messages.Read grant; null for none). */
  const read = async (message, grantId = readGrant.id, actor = bob) =>
    messagesRead(actor, await messageCid(message), { permissionGrantId: grantId ?? undefined });

  before(async () => { readGrant = await grant({ interface: 'Messages', method: 'Read' }); });

  test('a Messages.Read grant for NOTES: a NOTES record with its data (200); OTHER\'s (401)', async () => {
    await h.send(alice.did, await read(note.message, null), { expect: 401 });
    const { summary } = await h.send(alice.did, await read(note.message), { expect: 200 });
    assert.notEqual(summary.entry.data, null, 'MessagesRead returns the record data');
    await h.send(alice.did, await read(thing.message), { expect: 401 });
  });

  test('the NOTES definition (200) but not OTHER\'s (401)', async () => {
    await h.send(alice.did, await read(notesConfigure), { expect: 200 });
    await h.send(alice.did, await read(otherConfigure), { expect: 401 });
  });

  test('permission records tagged with NOTES (200), others (401)', async () => {
    await h.send(alice.did, await read(readGrant.message), { expect: 200 });
    const otherGrant = await permissionGrant(alice, carol, { interface: 'Records', method: 'Read', protocol: OTHER.protocol });
    await h.write(alice.did, otherGrant);
    await h.send(alice.did, await read(otherGrant.message), { expect: 401 });
  });

  test('the RecordsDelete of a NOTES record (200)', async () => {
    const doomed = await noteBy(alice);
    await h.write(alice.did, doomed);
    const deletion = await recordsDelete(alice, doomed.message.recordId);
    await h.send(alice.did, deletion, { expect: 202 });
    await h.send(alice.did, await read(deletion), { expect: 200 });
  });

  test('a CID that is not stored [reference is wrong: 404, before authorization and scope]', async () => {
    const notStored = (await noteBy(alice)).message;
    // The reference answers 404 or 401 depending on whether the message exists, which tells a
    // stranger (or a grantee limited to one protocol) what else the DWN holds. DeHR answers
    // 401 to both: the stranger is not authorized, the grantee's scope does not cover it.
    const asGrantee = await read(notStored);
    const stranger = await read(notStored, null, carol);
    if (isDehr) {
      assert.equal((await h.sendTarget(alice.did, asGrantee)).code, 401);
      assert.equal((await h.sendTarget(alice.did, stranger)).code, 401);
    } else {
      await h.send(alice.did, asGrantee, { expect: 404 });
      await h.send(alice.did, stranger, { expect: 404 });
    }
  });

  test('a Messages.Query grant does not authorize reads (401)', async () => {
    const queryGrant = await grant({ interface: 'Messages', method: 'Query' });
    await h.send(alice.did, await read(note.message, queryGrant.id), { expect: 401 });
  });
});

describe('MessagesSubscribe', () => {
  test('a Messages.Subscribe grant for NOTES: events for NOTES only; an OTHER filter is refused (401)', async () => {
    const subscribeGrant = await grant({ interface: 'Messages', method: 'Subscribe' });
    await h.subscribe(alice.did,
      await messagesSubscribe(bob, [{ protocol: OTHER.protocol }], { permissionGrantId: subscribeGrant.id }), { expect: 401 });
    await h.subscribe(alice.did, await messagesSubscribe(bob, [{ protocol: NOTES.protocol }]), { expect: 401 });
    const subscription = await h.subscribe(alice.did,
      await messagesSubscribe(bob, [{ protocol: NOTES.protocol }], { permissionGrantId: subscribeGrant.id }), { expect: 200 });
    await h.write(alice.did, await noteBy(alice));
    await h.write(alice.did, await thingBy(alice));
    await h.write(alice.did, await noteBy(alice, { published: true }));
    await subscription.expectEvents(2);
    await subscription.close();
  });
});

describe('grants that are not bob\'s to use', () => {
  test('a grant carol wrote in her own DWN means nothing in alice\'s (401)', async () => {
    // The permissions protocol is built in: carol needs no ProtocolsConfigure to store a grant.
    const carolsGrant = await permissionGrant(carol, bob, { interface: 'Records', method: 'Read', protocol: NOTES.protocol });
    await h.write(carol.did, carolsGrant);
    await h.send(alice.did,
      await recordsRead(bob, { recordId: note.message.recordId }, { permissionGrantId: carolsGrant.id }), { expect: 401 });
  });

  test('a grant alice gave bob, invoked by carol (401)', async () => {
    const bobsGrant = await grant({ interface: 'Messages', method: 'Query' });
    await h.send(alice.did,
      await messagesQuery(carol, [{ protocol: NOTES.protocol }], { permissionGrantId: bobsGrant.id }), { expect: 401 });
  });

  test('a message dated before the grant (401)', async () => {
    const early = nextTimestamp();
    const readGrant = await grant({ interface: 'Records', method: 'Read' });
    await h.send(alice.did, await recordsRead(bob, { recordId: note.message.recordId },
      { permissionGrantId: readGrant.id, messageTimestamp: early }), { expect: 401 });
  });
});
