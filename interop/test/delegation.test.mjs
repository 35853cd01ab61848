// Delegation: an app key acting for a person with an author-delegated grant (a `delegated: true`
// grant embedded as `authorization.authorDelegatedGrant`; the person is the message's author),
// owner signatures (`signAsOwner`: alice keeps a copy of a record bob authored) and
// owner-delegated grants (`signAsOwnerDelegate`: alice's app keeps such copies for her).
// Includes a hole in dwn-sdk-js: the data of an embedded grant is never checked against the
// grant's signed dataCid, so whoever holds any grant can rewrite its scope (tests marked
// [reference accepts a forged grant]).
import assert from 'node:assert/strict';
import { before, describe, test } from 'node:test';

import { Encoder, Message, RecordsWrite } from '@tbd54566975/dwn-sdk-js';

import { createActors } from '../lib/actors.mjs';
import { bytesData } from '../lib/data.mjs';
import { useInterop } from '../lib/harness.mjs';
import {
  messagesQuery, nextTimestamp, protocolsConfigure, protocolsQuery, recordsDelete, recordsQuery, recordsRead,
  recordsSubscribe, recordsUpdate, recordsWrite, signedMessage,
} from '../lib/messages.mjs';
import { FAR_FUTURE, permissionGrant, permissionRevocation } from '../lib/permissions.mjs';
import { isDehr } from '../lib/target.mjs';

const h = useInterop();

// In alice's DWN nobody but alice may do anything without a grant.
const NOTES = {
  protocol: 'https://example.org/delegation/notes',
  published: false,
  types: { note: { dataFormats: ['application/json'] } },
  structure: { note: {} },
};
const OTHER = {
  protocol: 'https://example.org/delegation/other',
  published: false,
  types: { thing: { dataFormats: ['application/json'] } },
  structure: { thing: {} },
};
// In bob's DWN anyone may post, and update and read their own posts.
const BOARD = {
  protocol: 'https://example.org/delegation/board',
  published: true,
  types: { post: { dataFormats: ['application/json'] } },
  structure: { post: { $actions: [{ who: 'anyone', can: ['create', 'update'] }] } },
};

let alice, app, otherApp, bob, carol, note, thing;

const noteBy = (actor, options = {}) => recordsWrite(actor, { protocol: NOTES.protocol, protocolPath: 'note', ...options });
const thingBy = (actor, options = {}) => recordsWrite(actor, { protocol: OTHER.protocol, protocolPath: 'thing', ...options });

/** A delegated grant from alice to `grantee` (the app by default), not written anywhere unless `store`. */
async function delegatedGrant(scope, { grantee = app, store = false, ...options } = {}) {
  const built = await permissionGrant(alice, grantee, { protocol: NOTES.protocol, ...scope }, { delegated: true, ...options });
  if (store) await h.write(alice.did, built);
  return built;
}

/** The logical author of each entry of a RecordsQuery reply, on both sides. */
function authorsOf({ target, oracle }) {
  return {
    target: target.entries.map((entry) => Message.getAuthor(entry)),
    oracle: oracle.entries.map((entry) => Message.getAuthor(entry)),
  };
}

/** `grant`'s signed record with its data replaced: what a grantee can forge without alice's key. */
function forge(grant, grantData) {
  return { ...structuredClone(grant.dataEncodedMessage), encodedData: Encoder.stringToBase64Url(JSON.stringify(grantData)) };
}

before(async () => {
  ({ alice, app, otherApp, bob, carol } = await createActors('alice', 'app', 'otherApp', 'bob', 'carol'));
  for (const definition of [NOTES, OTHER]) {
    await h.send(alice.did, await protocolsConfigure(alice, definition), { expect: 202 });
  }
  await h.send(bob.did, await protocolsConfigure(bob, BOARD), { expect: 202 });
  note = await noteBy(alice);
  thing = await thingBy(alice);
  await h.write(alice.did, note);
  await h.write(alice.did, thing);
});

describe('author-delegated grants: RecordsWrite', () => {
  test('the app writes a note in alice\'s DWN with a delegated grant (202); alice is its author', async () => {
    // The grant is not stored anywhere: the embedded copy, signed by alice, is enough.
    const grant = await delegatedGrant({ interface: 'Records', method: 'Write' });
    await h.write(alice.did, await noteBy(app), 401);
    const written = await noteBy(app, { delegatedGrant: grant.dataEncodedMessage });
    await h.write(alice.did, written);
    const replies = await h.send(alice.did, await recordsQuery(alice, { recordId: written.message.recordId }), { expect: 200 });
    assert.deepEqual(authorsOf(replies), { target: [alice.did], oracle: [alice.did] });
  });

  test('in bob\'s DWN the app posts as alice (202) and later updates the post as alice (202)', async () => {
    const grant = await delegatedGrant({ interface: 'Records', method: 'Write', protocol: BOARD.protocol });
    const post = await recordsWrite(app, { protocol: BOARD.protocol, protocolPath: 'post', delegatedGrant: grant.dataEncodedMessage });
    await h.write(bob.did, post);
    await h.write(bob.did, await recordsUpdate(app, post.message,
      { data: bytesData('edited by the app'), delegatedGrant: grant.dataEncodedMessage }));
    const replies = await h.send(bob.did, await recordsQuery(bob, { protocol: BOARD.protocol }), { expect: 200 });
    assert.deepEqual(authorsOf(replies), { target: [alice.did], oracle: [alice.did] });
    // alice herself may update what her app posted: same logical author.
    await h.write(bob.did, await recordsUpdate(alice, replies.oracle.entries[0], { data: bytesData('edited by alice') }));
  });

  test('another key presenting the app\'s grant is refused (400)', async () => {
    const grant = await delegatedGrant({ interface: 'Records', method: 'Write' });
    await h.write(alice.did, await noteBy(otherApp, { delegatedGrant: grant.dataEncodedMessage }), 400);
  });

  test('a grant without `delegated: true` cannot be embedded (400)', async () => {
    const grant = await permissionGrant(alice, app, { interface: 'Records', method: 'Write', protocol: NOTES.protocol });
    await h.write(alice.did, await noteBy(app, { delegatedGrant: grant.dataEncodedMessage }), 400);
  });

  test('out of the grant\'s scope: another protocol, or a Records.Read grant used to write (401)', async () => {
    const writeGrant = await delegatedGrant({ interface: 'Records', method: 'Write' });
    await h.write(alice.did, await thingBy(app, { delegatedGrant: writeGrant.dataEncodedMessage }), 401);
    const readGrant = await delegatedGrant({ interface: 'Records', method: 'Read' });
    await h.write(alice.did, await noteBy(app, { delegatedGrant: readGrant.dataEncodedMessage }), 401);
  });

  test('conditions still apply: publication Required refuses an unpublished write (401)', async () => {
    const grant = await delegatedGrant({ interface: 'Records', method: 'Write' }, { conditions: { publication: 'Required' } });
    await h.write(alice.did, await noteBy(app, { delegatedGrant: grant.dataEncodedMessage }), 401);
    await h.write(alice.did, await noteBy(app, { delegatedGrant: grant.dataEncodedMessage, published: true }));
  });

  test('carol\'s delegated grant makes the app act as carol, who may not write in alice\'s DWN (401)', async () => {
    const carols = await permissionGrant(carol, app, { interface: 'Records', method: 'Write', protocol: NOTES.protocol }, { delegated: true });
    await h.write(alice.did, await noteBy(app, { delegatedGrant: carols.dataEncodedMessage }), 401);
  });

  test('a revoked delegated grant: writes before the revocation pass, after it 401', async () => {
    const grant = await delegatedGrant({ interface: 'Records', method: 'Write' }, { store: true });
    await h.write(alice.did, await noteBy(app, { delegatedGrant: grant.dataEncodedMessage }));
    await h.write(alice.did, await permissionRevocation(alice, grant));
    await h.write(alice.did, await noteBy(app, { delegatedGrant: grant.dataEncodedMessage }), 401);
  });

  test('an expired delegated grant (401)', async () => {
    const grant = await delegatedGrant({ interface: 'Records', method: 'Write' }, { dateExpires: nextTimestamp() });
    await h.write(alice.did, await noteBy(app, { delegatedGrant: grant.dataEncodedMessage }), 401);
  });

  test('a message whose delegatedGrantId does not match the embedded grant (400)', async () => {
    const grant = await delegatedGrant({ interface: 'Records', method: 'Write' });
    const another = await delegatedGrant({ interface: 'Records', method: 'Write' });
    const written = await noteBy(app, { delegatedGrant: grant.dataEncodedMessage });
    const swapped = structuredClone(written.message);
    swapped.authorization.authorDelegatedGrant = another.dataEncodedMessage;
    await h.send(alice.did, swapped, { data: written.data, expect: 400 });
  });
});

describe('author-delegated grants: reading, querying, subscribing, deleting, configuring', () => {
  test('RecordsRead: alice\'s note (200), OTHER\'s thing (401)', async () => {
    const grant = await delegatedGrant({ interface: 'Records', method: 'Read' });
    const read = (record) => recordsRead(app, { recordId: record.message.recordId }, { delegatedGrant: grant.dataEncodedMessage });
    await h.send(alice.did, await read(note), { expect: 200 });
    await h.send(alice.did, await read(thing), { expect: 401 });
  });

  test('RecordsQuery: the app sees NOTES as alice does, unpublished included; OTHER or no protocol (401)', async () => {
    const grant = await delegatedGrant({ interface: 'Records', method: 'Query' });
    const query = (filter) => recordsQuery(app, filter, { delegatedGrant: grant.dataEncodedMessage });
    const asApp = await h.send(alice.did, await query({ protocol: NOTES.protocol }), { expect: 200 });
    const asAlice = await h.send(alice.did, await recordsQuery(alice, { protocol: NOTES.protocol }), { expect: 200 });
    assert.deepEqual(asApp.summary.entries, asAlice.summary.entries);
    await h.send(alice.did, await query({ protocol: OTHER.protocol }), { expect: 401 });
    await h.send(alice.did, await query({ dataFormat: 'application/json' }), { expect: 401 });
  });

  test('RecordsSubscribe: the app gets alice\'s unpublished NOTES events; OTHER (401)', async () => {
    const grant = await delegatedGrant({ interface: 'Records', method: 'Subscribe' });
    await h.subscribe(alice.did,
      await recordsSubscribe(app, { protocol: OTHER.protocol }, { delegatedGrant: grant.dataEncodedMessage }), { expect: 401 });
    const subscription = await h.subscribe(alice.did,
      await recordsSubscribe(app, { protocol: NOTES.protocol }, { delegatedGrant: grant.dataEncodedMessage }), { expect: 200 });
    await h.write(alice.did, await noteBy(alice));
    await h.write(alice.did, await thingBy(alice));
    await subscription.expectEvents(1);
    await subscription.close();
  });

  test('RecordsDelete: the app deletes a note as alice (202), not OTHER\'s thing (401)', async () => {
    const grant = await delegatedGrant({ interface: 'Records', method: 'Delete' });
    const doomed = await noteBy(alice);
    await h.write(alice.did, doomed);
    await h.send(alice.did,
      await recordsDelete(app, thing.message.recordId, { delegatedGrant: grant.dataEncodedMessage }), { expect: 401 });
    await h.send(alice.did,
      await recordsDelete(app, doomed.message.recordId, { delegatedGrant: grant.dataEncodedMessage }), { expect: 202 });
  });

  test('ProtocolsConfigure: the app configures the granted protocol (202), not another (401)', async () => {
    const scratch = { ...OTHER, protocol: 'https://example.org/delegation/scratch' };
    const grant = await delegatedGrant({ interface: 'Protocols', method: 'Configure', protocol: scratch.protocol });
    await h.send(alice.did, await protocolsConfigure(app, { ...OTHER, published: true },
      { delegatedGrant: grant.dataEncodedMessage }), { expect: 401 });
    await h.send(alice.did, await protocolsConfigure(app, scratch, { delegatedGrant: grant.dataEncodedMessage }), { expect: 202 });
    const replies = await h.send(alice.did, await protocolsQuery(alice, { protocol: scratch.protocol }), { expect: 200 });
    assert.deepEqual(authorsOf(replies), { target: [alice.did], oracle: [alice.did] });
  });

  test('ProtocolsQuery and the Messages interface take no delegated grant: their schemas refuse it (400)', async () => {
    const protocolsGrant = await delegatedGrant({ interface: 'Protocols', method: 'Query' });
    const query = await protocolsQuery(alice, { protocol: NOTES.protocol });
    await h.send(alice.did,
      await signedMessage(app, query.descriptor, { delegatedGrant: protocolsGrant.dataEncodedMessage }), { expect: 400 });
    const messagesGrant = await delegatedGrant({ interface: 'Messages', method: 'Query' });
    const messages = await messagesQuery(alice, [{ protocol: NOTES.protocol }]);
    await h.send(alice.did,
      await signedMessage(app, messages.descriptor, { delegatedGrant: messagesGrant.dataEncodedMessage }), { expect: 400 });
  });
});

describe('owner signatures: alice keeps a copy of a record bob authored', () => {
  /** bob's RecordsWrite, signed over by `signer` as owner. */
  async function ownerSigned(write, signer) {
    const copy = await RecordsWrite.parse(structuredClone(write.message));
    await copy.signAsOwner(signer);
    return copy.message;
  }

  test('flat space: bob\'s published record, read from bob\'s DWN, stored in alice\'s (202) and read back (200)', async () => {
    const original = await recordsWrite(bob, { schema: 'https://example.org/delegation/card', published: true });
    await h.write(bob.did, original);
    const fetched = await h.send(bob.did, await recordsRead(alice, { recordId: original.message.recordId }), { expect: 200 });
    await h.write(alice.did, original, 401); // bob cannot write into alice's DWN by himself
    const kept = await ownerSigned(original, alice.signer);
    await h.send(alice.did, kept, { data: original.data, expect: 202 });
    const readBack = await h.send(alice.did, await recordsRead(alice, { recordId: original.message.recordId }), { expect: 200 });
    assert.deepEqual(readBack.summary.entry.data, fetched.summary.entry.data);
    assert.equal(readBack.summary.entry.recordsWrite, await Message.getCid(kept), 'stored with alice\'s owner signature');
  });

  test('protocol space: bob\'s NOTES record is refused alone (401) and kept with alice\'s owner signature (202)', async () => {
    const bobsNote = await noteBy(bob);
    await h.write(alice.did, bobsNote, 401);
    await h.send(alice.did, await ownerSigned(bobsNote, alice.signer), { data: bobsNote.data, expect: 202 });
    const replies = await h.send(alice.did, await recordsQuery(alice, { recordId: bobsNote.message.recordId }), { expect: 200 });
    assert.deepEqual(authorsOf(replies), { target: [bob.did], oracle: [bob.did] }, 'bob stays the author');
  });

  test('carol signing as owner cannot store into alice\'s DWN (401)', async () => {
    const bobsNote = await noteBy(bob);
    await h.send(alice.did, await ownerSigned(bobsNote, carol.signer), { data: bobsNote.data, expect: 401 });
  });

  test('an owner signature taken from another record is refused (400)', async () => {
    const first = await noteBy(bob);
    const second = await noteBy(bob);
    const stolen = structuredClone(second.message);
    stolen.authorization.ownerSignature = (await ownerSigned(first, alice.signer)).authorization.ownerSignature;
    await h.send(alice.did, stolen, { data: second.data, expect: 400 });
  });
});

describe('owner-delegated grants: alice\'s app keeps copies for her', () => {
  async function ownerDelegateSigned(write, signer, grant) {
    const copy = await RecordsWrite.parse(structuredClone(write.message));
    await copy.signAsOwnerDelegate(signer, grant);
    return copy.message;
  }

  test('the app stores bob\'s NOTES record in alice\'s DWN (202); bob stays the author', async () => {
    const grant = await delegatedGrant({ interface: 'Records', method: 'Write' });
    const bobsNote = await noteBy(bob);
    await h.send(alice.did, await ownerDelegateSigned(bobsNote, app.signer, grant.dataEncodedMessage),
      { data: bobsNote.data, expect: 202 });
    const replies = await h.send(alice.did, await recordsQuery(alice, { recordId: bobsNote.message.recordId }), { expect: 200 });
    assert.deepEqual(authorsOf(replies), { target: [bob.did], oracle: [bob.did] });
  });

  test('another app presenting the grant (400)', async () => {
    const grant = await delegatedGrant({ interface: 'Records', method: 'Write' });
    const bobsNote = await noteBy(bob);
    await h.send(alice.did, await ownerDelegateSigned(bobsNote, otherApp.signer, grant.dataEncodedMessage),
      { data: bobsNote.data, expect: 400 });
  });

  test('a grant without `delegated: true` (400)', async () => {
    const grant = await permissionGrant(alice, app, { interface: 'Records', method: 'Write', protocol: NOTES.protocol });
    const bobsNote = await noteBy(bob);
    await h.send(alice.did, await ownerDelegateSigned(bobsNote, app.signer, grant.dataEncodedMessage),
      { data: bobsNote.data, expect: 400 });
  });

  test('a grant for another protocol, or for another method (401)', async () => {
    const otherProtocol = await delegatedGrant({ interface: 'Records', method: 'Write', protocol: OTHER.protocol });
    const readGrant = await delegatedGrant({ interface: 'Records', method: 'Read' });
    const bobsNote = await noteBy(bob);
    await h.send(alice.did, await ownerDelegateSigned(bobsNote, app.signer, otherProtocol.dataEncodedMessage),
      { data: bobsNote.data, expect: 401 });
    await h.send(alice.did, await ownerDelegateSigned(bobsNote, app.signer, readGrant.dataEncodedMessage),
      { data: bobsNote.data, expect: 401 });
  });

  test('a revoked owner-delegated grant (401)', async () => {
    const grant = await delegatedGrant({ interface: 'Records', method: 'Write' }, { store: true });
    await h.write(alice.did, await permissionRevocation(alice, grant));
    const bobsNote = await noteBy(bob);
    await h.send(alice.did, await ownerDelegateSigned(bobsNote, app.signer, grant.dataEncodedMessage),
      { data: bobsNote.data, expect: 401 });
  });

  test('a grant from carol cannot keep records in alice\'s DWN (401)', async () => {
    const carols = await permissionGrant(carol, app, { interface: 'Records', method: 'Write', protocol: NOTES.protocol }, { delegated: true });
    const bobsNote = await noteBy(bob);
    await h.send(alice.did, await ownerDelegateSigned(bobsNote, app.signer, carols.dataEncodedMessage),
      { data: bobsNote.data, expect: 401 });
  });
});

describe('forged grant data [reference accepts a forged grant]', () => {
  // The grantor signs the grant's descriptor, whose dataCid commits to the grant data; the
  // embedded copy's `encodedData` is never checked against that dataCid (nor covered by the
  // delegatedGrantId, a CID computed without encodedData). DeHR must refuse such a message.
  const forgedScope = (scope) => ({ dateExpires: FAR_FUTURE, delegated: true, scope });

  /** dwn-server accepts with `reference`; DeHR must answer a refusal (400 or 401). */
  async function forged(tenant, message, data, reference) {
    if (isDehr) {
      const reply = await h.sendTarget(tenant, message, { data });
      assert.ok([400, 401].includes(reply.code), `DeHR accepted a forged grant (${reply.code})`);
    } else {
      await h.send(tenant, message, { data, expect: reference });
    }
  }

  test('the app widens its delegated Records.Read grant on NOTES into Records.Write on OTHER', async () => {
    const grant = await delegatedGrant({ interface: 'Records', method: 'Read' });
    const widened = forge(grant, forgedScope({ interface: 'Records', method: 'Write', protocol: OTHER.protocol }));
    const written = await thingBy(app, { delegatedGrant: widened });
    await forged(alice.did, written.message, written.data, 202);
  });

  test('a grantee turns an ordinary Messages.Query grant into a delegated Protocols.Configure grant', async () => {
    // bob holds a plain grant from alice (as its recipient he can always read it) and becomes alice.
    const plain = await permissionGrant(alice, bob, { interface: 'Messages', method: 'Query', protocol: NOTES.protocol });
    const evil = { ...NOTES, protocol: 'https://example.org/delegation/evil', published: true };
    const configure = await protocolsConfigure(bob, evil,
      { delegatedGrant: forge(plain, forgedScope({ interface: 'Protocols', method: 'Configure' })) });
    await forged(alice.did, configure, undefined, 202);
  });

  test('the app widens an owner-delegated grant to keep a record of another protocol', async () => {
    const grant = await delegatedGrant({ interface: 'Records', method: 'Write' });
    const widened = forge(grant, forgedScope({ interface: 'Records', method: 'Write', protocol: OTHER.protocol }));
    const bobsThing = await thingBy(bob);
    const copy = await RecordsWrite.parse(structuredClone(bobsThing.message));
    await copy.signAsOwnerDelegate(app.signer, widened);
    await forged(alice.did, copy.message, bobsThing.data, 202);
  });
});
