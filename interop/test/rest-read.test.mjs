// dwn-server's REST read helpers (GET routes that build unsigned messages server-side, so only
// published data comes back, and a DWN 401 becomes HTTP 404). Compared with anonymous queries
// to the oracle where there is an equivalent.
import assert from 'node:assert/strict';
import { before, describe, test } from 'node:test';

import { createActors } from '../lib/actors.mjs';
import { summarizeReply } from '../lib/compare.mjs';
import { bytesData } from '../lib/data.mjs';
import { useInterop } from '../lib/harness.mjs';
import { protocolsConfigure, protocolsQuery, recordsQuery, recordsWrite } from '../lib/messages.mjs';
import { loadProtocol } from '../lib/protocols.mjs';

const h = useInterop();
const NOTE = 'https://example.org/note';

let alice, published, unpublished, definition, firstPost, latestPost;
before(async () => {
  ({ alice } = await createActors('alice'));
  published = await recordsWrite(alice, { schema: NOTE, published: true, dataFormat: 'text/plain', data: bytesData('public note') });
  unpublished = await recordsWrite(alice, { schema: NOTE, data: bytesData('private note') });
  await h.write(alice.did, published);
  await h.write(alice.did, unpublished);

  definition = loadProtocol('free-for-all');
  await h.send(alice.did, await protocolsConfigure(alice, definition), { expect: 202 });
  await h.send(alice.did, await protocolsConfigure(alice, loadProtocol('private-protocol')), { expect: 202 });
  const postOptions = { protocol: definition.protocol, protocolPath: 'post', schema: 'post', published: true };
  firstPost = await recordsWrite(alice, { ...postOptions, data: bytesData('{"n":1}') });
  latestPost = await recordsWrite(alice, { ...postOptions, data: bytesData('{"n":2}') });
  await h.write(alice.did, firstPost);
  await h.write(alice.did, latestPost);
});

const get = async (path) => {
  await h.ready();
  return fetch(`${h.target.url}${path}`);
};
const b64url = (text) => Buffer.from(text).toString('base64url');

describe('GET /:did/records/:id and /:did/read/records/:id', () => {
  for (const route of ['records', 'read/records']) {
    test(`${route}: a published record's data, with dwn-response and its dataFormat`, async () => {
      const res = await get(`/${alice.did}/${route}/${published.message.recordId}`);
      assert.equal(res.status, 200);
      assert.match(res.headers.get('content-type'), /^text\/plain/);
      assert.equal(await res.text(), 'public note');
      const reply = JSON.parse(res.headers.get('dwn-response'));
      assert.equal(reply.status.code, 200);
      assert.equal(reply.entry.recordsWrite.recordId, published.message.recordId);
    });

    test(`${route}: an unpublished record is 404`, async () => {
      const res = await get(`/${alice.did}/${route}/${unpublished.message.recordId}`);
      assert.equal(res.status, 404);
    });
  }
});

describe('GET /:did/query', () => {
  test('returns the anonymous RecordsQuery reply', async () => {
    const res = await get(`/${alice.did}/query?filter.schema=${encodeURIComponent(NOTE)}`);
    assert.equal(res.status, 200);
    const target = await summarizeReply(await res.json());
    const oracle = await h.sendOracle(alice.did, await recordsQuery(null, { schema: NOTE }));
    assert.deepEqual(target, oracle);
    assert.equal(target.entries.length, 1);
  });

  test('with dateSort', async () => {
    const res = await get(`/${alice.did}/query?filter.protocol=${encodeURIComponent(definition.protocol)}&dateSort=createdDescending`);
    assert.equal(res.status, 200);
    const target = await summarizeReply(await res.json());
    const oracle = await h.sendOracle(alice.did,
      await recordsQuery(null, { protocol: definition.protocol }, { dateSort: 'createdDescending' }));
    assert.deepEqual(target, oracle);
    assert.equal(target.entries.length, 2);
  });

  test('pagination.limit is refused (400): query-string values stay strings', async () => {
    // dwn-server passes "1" (a string) into RecordsQuery.create, whose schema wants an integer.
    const res = await get(`/${alice.did}/query?filter.schema=${encodeURIComponent(NOTE)}&pagination.limit=1`);
    assert.equal(res.status, 400);
  });
});

describe('GET /:did/query/protocols and /:did/read/protocols/…', () => {
  test('query/protocols lists the published definitions', async () => {
    const res = await get(`/${alice.did}/query/protocols`);
    assert.equal(res.status, 200);
    const target = await summarizeReply({ status: { code: 200 }, entries: await res.json() });
    const oracle = await h.sendOracle(alice.did, await protocolsQuery(null));
    assert.deepEqual(target.entries, oracle.entries);
    assert.equal(target.entries.length, 1);
  });

  test('read/protocols/:b64url returns the definition message; unknown or unpublished is 404', async () => {
    const res = await get(`/${alice.did}/read/protocols/${b64url(definition.protocol)}`);
    assert.equal(res.status, 200);
    assert.deepEqual((await res.json()).descriptor.definition, definition);
    assert.equal((await get(`/${alice.did}/read/protocols/${b64url('http://private-protocol.xyz')}`)).status, 404);
    assert.equal((await get(`/${alice.did}/read/protocols/${b64url('http://unknown.xyz')}`)).status, 404);
  });

  test('read/protocols/:b64url/:path returns the latest published record\'s data', async () => {
    const res = await get(`/${alice.did}/read/protocols/${b64url(definition.protocol)}/post`);
    assert.equal(res.status, 200);
    assert.equal(await res.text(), '{"n":2}');
    assert.equal((await get(`/${alice.did}/read/protocols/${b64url(definition.protocol)}/post/attachment`)).status, 404);
  });
});
