// The permissions protocol itself (https://tbd.website/dwn/permissions): requests, grants and
// revocations are records in the grantor's DWN. Who may write and read them; what data and tags
// they must carry (bad grant data, missing or mismatched `protocol` tag, revocation by someone
// other than the grantor); the scope shapes (Records by protocol, protocolPath or contextId;
// Protocols; Messages with and without protocol); conditions.publication; an expiry already
// past; and a revocation that takes effect on the next request.
// The per-method use of grants is in grant-access.test.mjs, delegated grants in delegation.test.mjs.
import assert from 'node:assert/strict';
import { before, describe, test } from 'node:test';

import { PermissionsProtocol } from '@tbd54566975/dwn-sdk-js';

import { createActors } from '../lib/actors.mjs';
import { messageCid } from '../lib/compare.mjs';
import { jsonData } from '../lib/data.mjs';
import { useInterop } from '../lib/harness.mjs';
import {
  messagesQuery, nextTimestamp, protocolsConfigure, protocolsQuery, recordsQuery, recordsRead, recordsWrite,
} from '../lib/messages.mjs';
import {
  FAR_FUTURE, permissionGrant, permissionRequest, permissionRevocation, rawGrant,
} from '../lib/permissions.mjs';
import { sendMessage } from '../lib/rpc.mjs';
import { isDehr } from '../lib/target.mjs';

const h = useInterop();
const PERMISSIONS = PermissionsProtocol.uri;

// Only the owner may do anything in these protocols: every other access needs a grant.
const NOTES = {
  protocol: 'https://example.org/notes',
  published: false,
  types: { note: { dataFormats: ['application/json'] }, comment: { dataFormats: ['application/json'] } },
  structure: { note: { comment: {} } },
};
const OTHER = {
  protocol: 'https://example.org/other',
  published: false,
  types: { thing: { dataFormats: ['application/json'] } },
  structure: { thing: {} },
};

/** Fresh actors; alice configures NOTES and OTHER and writes two notes with a comment each. */
async function setup() {
  const actors = await createActors('alice', 'bob', 'carol');
  const { alice } = actors;
  await h.send(alice.did, await protocolsConfigure(alice, NOTES), { expect: 202 });
  await h.send(alice.did, await protocolsConfigure(alice, OTHER), { expect: 202 });
  const note = async (path, parent) => {
    const built = await recordsWrite(alice, {
      protocol: NOTES.protocol, protocolPath: path, parentContextId: parent?.contextId,
    });
    await h.write(alice.did, built);
    return built.message;
  };
  const note1 = await note('note');
  const comment1 = await note('note/comment', note1);
  const note2 = await note('note');
  const comment2 = await note('note/comment', note2);
  return { ...actors, note1, comment1, note2, comment2 };
}

const readAs = async (actor, record, grant, options = {}) =>
  recordsRead(actor, { recordId: record.recordId }, { permissionGrantId: grant?.id, ...options });

describe('permission records in the grantor\'s DWN', () => {
  let p;
  before(async () => { p = await setup(); });

  test('the owner writes a grant (202); the grantee reads and queries it; a stranger may not', async () => {
    const grant = await permissionGrant(p.alice, p.bob, { interface: 'Records', method: 'Read', protocol: NOTES.protocol });
    await h.write(p.alice.did, grant);
    await h.send(p.alice.did, await recordsRead(p.bob, { recordId: grant.id }), { expect: 200 });
    await h.send(p.alice.did, await recordsRead(p.carol, { recordId: grant.id }), { expect: 401 });

    const grantsOf = async (actor) => (await h.send(p.alice.did,
      await recordsQuery(actor, { protocol: PERMISSIONS, protocolPath: 'grant' }), { expect: 200 })).summary.entries;
    const cid = await messageCid(grant.message);
    assert.ok((await grantsOf(p.bob)).some((entry) => entry.cid === cid), 'the grantee lists the grant');
    assert.equal((await grantsOf(p.carol)).length, 0, 'a stranger lists nothing');
  });

  test('anyone writes a request into the grantor\'s DWN (202); the owner lists it and answers with a grant', async () => {
    const scope = { interface: 'Records', method: 'Write', protocol: NOTES.protocol };
    const request = await permissionRequest(p.bob, scope, { description: 'let me write notes' });
    assert.deepEqual(request.message.descriptor.tags, { protocol: NOTES.protocol });
    await h.write(p.alice.did, request);

    const requests = async (actor) => (await h.send(p.alice.did,
      await recordsQuery(actor, { protocol: PERMISSIONS, protocolPath: 'request' }), { expect: 200 })).summary.entries;
    assert.equal((await requests(p.alice)).length, 1);
    assert.equal((await requests(p.bob)).length, 1, 'the requester sees the request he wrote');
    assert.equal((await requests(p.carol)).length, 0);

    await h.write(p.alice.did, await permissionGrant(p.alice, p.bob, scope, { requestId: request.message.recordId }));
  });

  test('a request without its protocol tag, or with another protocol\'s, is refused (400)', async () => {
    const data = jsonData({ delegated: false, scope: { interface: 'Records', method: 'Read', protocol: NOTES.protocol } });
    const request = (tags) => recordsWrite(p.bob, { protocol: PERMISSIONS, protocolPath: 'request', tags, data });
    await h.write(p.alice.did, await request(undefined), 400);
    await h.write(p.alice.did, await request({ protocol: OTHER.protocol }), 400);
  });

  test('only the owner writes grants into her DWN: bob granting himself is refused (401)', async () => {
    const selfGrant = await permissionGrant(p.bob, p.bob, { interface: 'Records', method: 'Read', protocol: NOTES.protocol });
    await h.write(p.alice.did, selfGrant, 401);
    // …and a grant bob wrote cannot be used either.
    await h.send(p.alice.did, await readAs(p.bob, p.note1, selfGrant), { expect: 401 });
  });

  test('a grant at the permissions protocol\'s `request` path is no grant (401 when used)', async () => {
    // A request record carries the same data shape; fetchGrant insists on protocolPath `grant`.
    const request = await permissionRequest(p.bob, { interface: 'Records', method: 'Read', protocol: NOTES.protocol });
    await h.write(p.alice.did, request);
    await h.send(p.alice.did, await readAs(p.bob, p.note1, { id: request.message.recordId }), { expect: 401 });
  });
});

describe('grant data and tags are validated', () => {
  let p;
  const scope = () => ({ interface: 'Records', method: 'Read', protocol: NOTES.protocol });
  before(async () => { p = await setup(); });

  const refused = (name, grantData, options, expect = 400) => test(name, async () => {
    await h.write(p.alice.did, await rawGrant(p.alice, p.bob, typeof grantData === 'function' ? grantData() : grantData, options), expect);
  });

  refused('grant data without dateExpires (400)', () => ({ scope: scope() }));
  refused('grant data without a scope (400)', { dateExpires: FAR_FUTURE });
  refused('a scope with an unknown method (400)', () => ({ dateExpires: FAR_FUTURE, scope: { ...scope(), method: 'Fly' } }));
  refused('a Messages scope with a protocolPath (400: not in that scope\'s schema)',
    () => ({ dateExpires: FAR_FUTURE, scope: { interface: 'Messages', method: 'Query', protocol: NOTES.protocol, protocolPath: 'note' } }));
  refused('dateExpires without microseconds (400)', () => ({ dateExpires: '2100-01-01T00:00:00Z', scope: scope() }));
  refused('an unknown property in the grant data (400)', () => ({ dateExpires: FAR_FUTURE, scope: scope(), color: 'red' }));
  refused('conditions.publication other than Required/Prohibited (400)',
    () => ({ dateExpires: FAR_FUTURE, scope: scope(), conditions: { publication: 'Sometimes' } }));
  refused('a Records scope with both contextId and protocolPath (400)',
    () => ({ dateExpires: FAR_FUTURE, scope: { ...scope(), protocolPath: 'note', contextId: 'abc' } }));
  refused('a protocol-scoped grant without the protocol tag (400)', () => ({ dateExpires: FAR_FUTURE, scope: scope() }), { tags: null });
  refused('a protocol tag that differs from the scope\'s protocol (400)',
    () => ({ dateExpires: FAR_FUTURE, scope: scope() }), { tags: { protocol: OTHER.protocol } });
  refused('grant data over the protocol\'s $size max of 10000 bytes (400)',
    () => ({ dateExpires: FAR_FUTURE, scope: scope(), description: 'x'.repeat(10_000) }));

  /**
   * Grant data the reference fails to validate cleanly: the error escapes its handler, so
   * dwn-sdk-js throws and dwn-server answers HTTP 500. DeHR must refuse it as bad data (400).
   */
  const crashesReference = (name, build) => test(`${name}: dwn-sdk-js throws (dwn-server: HTTP 500); DeHR must answer 400`,
    async () => {
      const bad = await build();
      if (isDehr) {
        assert.equal((await h.sendTarget(p.alice.did, bad.message, { data: bad.data })).code, 400);
      } else {
        const result = await sendMessage(h.target.url, p.alice.did, bad.message, { data: bad.data });
        assert.equal(result.httpStatus, 500, 'dwn-server reports the escaped error as an internal error');
        await assert.rejects(h.sendOracle(p.alice.did, bad.message, { data: bad.data }));
      }
      // Nothing was stored: the grant does not work.
      await h.send(p.alice.did, await readAs(p.bob, p.note1, { id: bad.message.recordId }), { expect: 401 });
    });

  crashesReference('grant data that is not JSON',
    () => rawGrant(p.alice, p.bob, 'this is not JSON', { tags: { protocol: NOTES.protocol } }));
  crashesReference('a scope protocol that is not a normalized URL',
    () => rawGrant(p.alice, p.bob, { dateExpires: FAR_FUTURE, scope: { ...scope(), protocol: 'example.org/notes' } }));

  test('a protocol tag on a grant whose scope has no protocol is accepted (202)', async () => {
    await h.write(p.alice.did, await rawGrant(p.alice, p.bob,
      { dateExpires: FAR_FUTURE, scope: { interface: 'Protocols', method: 'Query' } }, { tags: { protocol: NOTES.protocol } }));
  });

  test('a Records grant with no protocol (PermissionsProtocol.createGrant refuses to build one) is accepted (202) '
    + 'and covers flat records', async () => {
    // The JSON schema makes `protocol` optional in Records scopes; only the SDK helper insists.
    const unscoped = await rawGrant(p.alice, p.bob, { dateExpires: FAR_FUTURE, scope: { interface: 'Records', method: 'Read' } });
    await h.write(p.alice.did, unscoped);
    const flat = await recordsWrite(p.alice, { schema: 'https://example.org/diary' });
    await h.write(p.alice.did, flat);
    await h.send(p.alice.did, await readAs(p.bob, flat.message, { id: unscoped.message.recordId }), { expect: 200 });
    // It does not reach protocol records: the scope's (absent) protocol must equal the record's.
    await h.send(p.alice.did, await readAs(p.bob, p.note1, { id: unscoped.message.recordId }), { expect: 401 });
  });
});

describe('scope shapes', () => {
  let p;
  before(async () => { p = await setup(); });

  /** Writes a grant for bob and checks the protocol tag the SDK put on it. */
  const granted = async (scope, options) => {
    const grant = await permissionGrant(p.alice, p.bob, scope, options);
    assert.deepEqual(grant.message.descriptor.tags, scope.protocol ? { protocol: scope.protocol } : undefined);
    await h.write(p.alice.did, grant);
    return grant;
  };

  test('Records scope by protocol: every record of the protocol, no other', async () => {
    const grant = await granted({ interface: 'Records', method: 'Read', protocol: NOTES.protocol });
    await h.send(p.alice.did, await readAs(p.bob, p.note1, grant), { expect: 200 });
    await h.send(p.alice.did, await readAs(p.bob, p.comment2, grant), { expect: 200 });
    const thing = await recordsWrite(p.alice, { protocol: OTHER.protocol, protocolPath: 'thing' });
    await h.write(p.alice.did, thing);
    await h.send(p.alice.did, await readAs(p.bob, thing.message, grant), { expect: 401 });
  });

  test('Records scope by protocolPath: notes but not comments', async () => {
    const grant = await granted({ interface: 'Records', method: 'Read', protocol: NOTES.protocol, protocolPath: 'note' });
    await h.send(p.alice.did, await readAs(p.bob, p.note2, grant), { expect: 200 });
    await h.send(p.alice.did, await readAs(p.bob, p.comment2, grant), { expect: 401 });
  });

  test('Records scope by contextId: the first note\'s thread only', async () => {
    const grant = await granted({ interface: 'Records', method: 'Read', protocol: NOTES.protocol, contextId: p.note1.contextId });
    await h.send(p.alice.did, await readAs(p.bob, p.note1, grant), { expect: 200 });
    await h.send(p.alice.did, await readAs(p.bob, p.comment1, grant), { expect: 200 });
    await h.send(p.alice.did, await readAs(p.bob, p.note2, grant), { expect: 401 });
    await h.send(p.alice.did, await readAs(p.bob, p.comment2, grant), { expect: 401 });
  });

  test('Records.Write scope by protocolPath: bob writes notes, not comments', async () => {
    const grant = await granted({ interface: 'Records', method: 'Write', protocol: NOTES.protocol, protocolPath: 'note' });
    const write = (path, parent) => recordsWrite(p.bob, {
      protocol: NOTES.protocol, protocolPath: path, parentContextId: parent?.contextId, permissionGrantId: grant.id,
    });
    await h.write(p.alice.did, await write('note'));
    await h.write(p.alice.did, await write('note/comment', p.note1), 401);
  });

  test('Protocols scope without protocol: bob sees every (unpublished) definition', async () => {
    await h.send(p.alice.did, await protocolsQuery(p.bob, { protocol: NOTES.protocol }), { expect: 200 }); // published only: none
    const grant = await granted({ interface: 'Protocols', method: 'Query' });
    const { summary } = await h.send(p.alice.did,
      await protocolsQuery(p.bob, undefined, { permissionGrantId: grant.id }), { expect: 200 });
    assert.equal(summary.entries.length, 2);
  });

  test('Messages scope with protocol: filters must name it; without protocol: everything', async () => {
    const scoped = await granted({ interface: 'Messages', method: 'Query', protocol: NOTES.protocol });
    const inScope = await h.send(p.alice.did,
      await messagesQuery(p.bob, [{ protocol: NOTES.protocol }], { permissionGrantId: scoped.id }), { expect: 200 });
    // The grant itself is tagged with the protocol, so the protocol filter lists it too.
    assert.ok(inScope.summary.entries.includes(await messageCid(scoped.message)));
    await h.send(p.alice.did,
      await messagesQuery(p.bob, [{ protocol: OTHER.protocol }], { permissionGrantId: scoped.id }), { expect: 401 });
    await h.send(p.alice.did,
      await messagesQuery(p.bob, [{ protocol: NOTES.protocol }, { interface: 'Protocols' }], { permissionGrantId: scoped.id }),
      { expect: 401 });

    const unrestricted = await granted({ interface: 'Messages', method: 'Query' });
    const all = await h.send(p.alice.did, await messagesQuery(p.bob, [], { permissionGrantId: unrestricted.id }), { expect: 200 });
    const owner = await h.send(p.alice.did, await messagesQuery(p.alice, []), { expect: 200 });
    assert.deepEqual(all.summary.entries, owner.summary.entries);
  });
});

describe('conditions, expiry and revocation', () => {
  let p;
  before(async () => { p = await setup(); });

  const noteBy = (actor, grant, options = {}) => recordsWrite(actor, {
    protocol: NOTES.protocol, protocolPath: 'note', permissionGrantId: grant.id, ...options,
  });

  test('conditions.publication Required: only published writes (401 otherwise)', async () => {
    const grant = await permissionGrant(p.alice, p.bob,
      { interface: 'Records', method: 'Write', protocol: NOTES.protocol }, { conditions: { publication: 'Required' } });
    await h.write(p.alice.did, grant);
    await h.write(p.alice.did, await noteBy(p.bob, grant), 401);
    await h.write(p.alice.did, await noteBy(p.bob, grant, { published: true }));
  });

  test('conditions.publication Prohibited: only unpublished writes (401 otherwise)', async () => {
    const grant = await permissionGrant(p.alice, p.carol,
      { interface: 'Records', method: 'Write', protocol: NOTES.protocol }, { conditions: { publication: 'Prohibited' } });
    await h.write(p.alice.did, grant);
    await h.write(p.alice.did, await noteBy(p.carol, grant, { published: true }), 401);
    await h.write(p.alice.did, await noteBy(p.carol, grant));
  });

  test('a grant whose dateExpires is already past is stored (202) but authorizes nothing (401)', async () => {
    const { dave } = await createActors('dave');
    const past = nextTimestamp();
    const grant = await permissionGrant(p.alice, dave, { interface: 'Records', method: 'Read', protocol: NOTES.protocol },
      { dateExpires: past });
    await h.write(p.alice.did, grant);
    await h.send(p.alice.did, await readAs(dave, p.note1, grant), { expect: 401 });
  });

  test('dateExpires is exclusive; [reference is wrong: an expired grant still reads when the read is back-dated]', async () => {
    const { erin } = await createActors('erin');
    const granted = nextTimestamp();
    const lastGoodSecond = nextTimestamp();
    const expiry = nextTimestamp();
    const grant = await permissionGrant(p.alice, erin, { interface: 'Records', method: 'Read', protocol: NOTES.protocol },
      { dateGranted: granted, dateExpires: expiry });
    await h.write(p.alice.did, grant);
    const reads = [
      await readAs(erin, p.note1, grant, { messageTimestamp: granted }),
      await readAs(erin, p.note1, grant, { messageTimestamp: lastGoodSecond }),
      await readAs(erin, p.note1, grant, { messageTimestamp: expiry }),
    ];
    if (isDehr) {
      // The test clock is in 2024, so this grant expired long ago: DeHR judges a read, which it
      // answers now, at the time it answers it, whatever the sender dated it.
      for (const read of reads) assert.equal((await h.sendTarget(p.alice.did, read)).code, 401);
    } else {
      // The reference judges only the sender's timestamp.
      await h.send(p.alice.did, reads[0], { expect: 200 });
      await h.send(p.alice.did, reads[1], { expect: 200 });
      await h.send(p.alice.did, reads[2], { expect: 401 });
    }
  });

  test('a revocation takes effect on the next request; a read back-dated before it [reference is wrong: still passes]', async () => {
    const { frank } = await createActors('frank');
    const grant = await permissionGrant(p.alice, frank, { interface: 'Records', method: 'Read', protocol: NOTES.protocol });
    await h.write(p.alice.did, grant);
    const stampedBefore = nextTimestamp();
    await h.send(p.alice.did, await readAs(frank, p.note1, grant), { expect: 200 });
    const revocation = await permissionRevocation(p.alice, grant);
    await h.write(p.alice.did, revocation);
    await h.send(p.alice.did, await readAs(frank, p.note1, grant), { expect: 401 });
    // The reference compares timestamps only: a read its sender dates before the revocation is
    // still allowed, so a revoked grantee keeps reading by back-dating. DeHR refuses a read, query
    // or subscription once a revocation is in force, whatever its timestamp.
    const backDated = await readAs(frank, p.note1, grant, { messageTimestamp: stampedBefore });
    if (isDehr) assert.equal((await h.sendTarget(p.alice.did, backDated)).code, 401);
    else await h.send(p.alice.did, backDated, { expect: 200 });
    // Anyone may read a revocation.
    await h.send(p.alice.did, await recordsRead(p.carol, { recordId: revocation.message.recordId }), { expect: 200 });
  });

  test('only the grantor revokes: the grantee or a stranger revoking is refused (401)', async () => {
    const { gina } = await createActors('gina');
    const grant = await permissionGrant(p.alice, gina, { interface: 'Records', method: 'Read', protocol: NOTES.protocol });
    await h.write(p.alice.did, grant);
    await h.write(p.alice.did, await permissionRevocation(gina, grant), 401);
    await h.write(p.alice.did, await permissionRevocation(p.carol, grant), 401);
    await h.send(p.alice.did, await readAs(gina, p.note1, grant), { expect: 200 });
  });

  test('a revocation whose protocol tag is missing or differs from the grant\'s is refused (400)', async () => {
    const { hank } = await createActors('hank');
    const grant = await permissionGrant(p.alice, hank, { interface: 'Records', method: 'Read', protocol: NOTES.protocol });
    await h.write(p.alice.did, grant);
    await h.write(p.alice.did, await permissionRevocation(p.alice, grant, { protocol: null }), 400);
    await h.write(p.alice.did, await permissionRevocation(p.alice, grant, { protocol: OTHER.protocol }), 400);
    await h.send(p.alice.did, await readAs(hank, p.note1, grant), { expect: 200 });
  });

  test('a revocation of a grant without protocol carries no tag (202)', async () => {
    const { ivan } = await createActors('ivan');
    const grant = await permissionGrant(p.alice, ivan, { interface: 'Messages', method: 'Query' });
    await h.write(p.alice.did, grant);
    await h.send(p.alice.did, await messagesQuery(ivan, [], { permissionGrantId: grant.id }), { expect: 200 });
    await h.write(p.alice.did, await permissionRevocation(p.alice, grant));
    await h.send(p.alice.did, await messagesQuery(ivan, [], { permissionGrantId: grant.id }), { expect: 401 });
  });

  test('a revocation for a grant that is not in the DWN is refused (400)', async () => {
    const { judy } = await createActors('judy');
    const neverWritten = await permissionGrant(p.alice, judy, { interface: 'Records', method: 'Read', protocol: NOTES.protocol });
    await h.write(p.alice.did, await permissionRevocation(p.alice, neverWritten), 400);
  });

  test('revoking twice: the second revocation is accepted too (202)', async () => {
    const { kim } = await createActors('kim');
    const grant = await permissionGrant(p.alice, kim, { interface: 'Records', method: 'Read', protocol: NOTES.protocol });
    await h.write(p.alice.did, grant);
    await h.write(p.alice.did, await permissionRevocation(p.alice, grant));
    await h.write(p.alice.did, await permissionRevocation(p.alice, grant, { description: 'again' }));
    await h.send(p.alice.did, await readAs(kim, p.note1, grant), { expect: 401 });
  });

  test('the grant\'s data comes back byte for byte to its grantee', async () => {
    const { leo } = await createActors('leo');
    const grant = await permissionGrant(p.alice, leo, { interface: 'Records', method: 'Read', protocol: NOTES.protocol },
      { description: 'read my notes' });
    await h.write(p.alice.did, grant);
    const { summary } = await h.send(p.alice.did, await recordsRead(leo, { recordId: grant.id }), { expect: 200 });
    assert.equal(summary.entry.data.size, grant.data.size);
    assert.deepEqual(JSON.parse(Buffer.from(grant.data.bytes).toString()).scope,
      { interface: 'Records', method: 'Read', protocol: NOTES.protocol });
  });
});
