// The dwn-server 0.6.1 HTTP surface: health, info, CORS, the JSON-RPC envelope, and bad input.
// Where DWN-REFERENCE "Where the reference is wrong" documents that DeHR does better, the test
// is marked [reference is wrong] and asserts the reference's answer against dwn-server and our
// documented answer against dehr.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';

import { createActors } from '../lib/actors.mjs';
import { bytesData } from '../lib/data.mjs';
import { useInterop } from '../lib/harness.mjs';
import { recordsQuery, recordsRead, recordsSubscribe, recordsWrite } from '../lib/messages.mjs';
import { postRaw, processMessageRequest } from '../lib/rpc.mjs';
import { isDehr } from '../lib/target.mjs';

const h = useInterop();
const NOTE = 'https://example.org/note';

// dwn-server never answers some requests; this is how long we wait to call it "no answer".
const NO_ANSWER_MS = 1500;

const post = async (options) => { await h.ready(); return postRaw(h.target.url, options); };
const rpc = (request, options) => post({ header: JSON.stringify(request), ...options });

/** A JSON-RPC error over HTTP as dehr documents it: a 4xx status with a JSON-RPC error body. */
function assertClientError(result, codes) {
  assert.ok(!result.timedOut, 'no answer');
  assert.ok(result.httpStatus >= 400 && result.httpStatus < 500, `HTTP ${result.httpStatus}, expected 4xx`);
  assert.equal(result.json?.jsonrpc, '2.0');
  assert.ok(codes.includes(result.json?.error?.code), `JSON-RPC error ${result.json?.error?.code}, expected one of ${codes}`);
}

describe('plain routes', () => {
  test('GET /health', async () => {
    await h.ready();
    const res = await fetch(`${h.target.url}/health`);
    assert.equal(res.status, 200);
    assert.deepEqual(await res.json(), { ok: true });
  });

  test('GET /info', async () => {
    await h.ready();
    const res = await fetch(`${h.target.url}/info`);
    assert.equal(res.status, 200);
    const info = await res.json();
    assert.equal(typeof info.url, 'string');
    assert.equal(typeof info.server, 'string');
    assert.equal(typeof info.maxFileSize, 'number');
    assert.ok(Array.isArray(info.registrationRequirements));
    assert.equal(info.webSocketSupport, true);
    if (!isDehr) {
      assert.equal(info.server, '@web5/dwn-server');
      assert.equal(info.sdkVersion, '0.5.2');
    }
  });

  test('CORS: preflight allows dwn-request; responses expose dwn-response', async () => {
    // Browser clients (web5-js) need both to speak this API at all.
    await h.ready();
    const preflight = await fetch(`${h.target.url}/`, {
      method: 'OPTIONS',
      headers: { origin: 'http://app.example', 'access-control-request-method': 'POST', 'access-control-request-headers': 'dwn-request' },
    });
    assert.ok(preflight.status === 204 || preflight.status === 200, `preflight ${preflight.status}`);
    assert.equal(preflight.headers.get('access-control-allow-origin'), '*');
    assert.match(preflight.headers.get('access-control-allow-headers') ?? '', /dwn-request/i);
    const res = await fetch(`${h.target.url}/health`, { headers: { origin: 'http://app.example' } });
    assert.equal(res.headers.get('access-control-allow-origin'), '*');
    assert.match(res.headers.get('access-control-expose-headers') ?? '', /dwn-response/i);
  });
});

describe('the JSON-RPC envelope', () => {
  test('the request id is echoed; a reply without data is a JSON body', async () => {
    const { alice } = await createActors('alice');
    const result = await rpc({ ...processMessageRequest(alice.did, await recordsQuery(alice, { schema: NOTE })), id: 'req-42' });
    assert.equal(result.httpStatus, 200);
    assert.match(result.headers['content-type'], /^application\/json/);
    assert.equal(result.json.id, 'req-42');
    assert.equal(result.json.result.reply.status.code, 200);
  });

  test('a reply with data: octet-stream body, JSON-RPC response in dwn-response without entry.data', async () => {
    const { alice } = await createActors('alice');
    const written = await recordsWrite(alice, { schema: NOTE, data: bytesData('hello') });
    await h.write(alice.did, written);
    const read = await recordsRead(alice, { recordId: written.message.recordId });
    const result = await rpc({ ...processMessageRequest(alice.did, read), id: 7 });
    assert.equal(result.httpStatus, 200);
    assert.equal(result.headers['content-type'], 'application/octet-stream');
    assert.equal(result.json.id, 7);
    assert.equal(result.json.result.reply.status.code, 200);
    assert.equal(result.json.result.reply.entry.data, undefined);
    assert.ok(result.json.result.reply.entry.recordsWrite);
    assert.equal(result.data.size, 5);
  });

  test('DWN errors are HTTP 200 with the code in the reply', async () => {
    const { alice, bob } = await createActors('alice', 'bob');
    const result = await rpc(processMessageRequest(alice.did, (await recordsWrite(bob, { schema: NOTE })).message));
    assert.equal(result.httpStatus, 200);
    assert.equal(result.json.result.reply.status.code, 401);
  });
});

describe('bad input to POST /', () => {
  test('missing dwn-request header: 400, -50400', async () => {
    const result = await post({});
    assert.equal(result.httpStatus, 400);
    assert.equal(result.json?.error?.code, -50400);
  });

  test('malformed JSON in dwn-request: 400, -50400', async () => {
    const result = await post({ header: '{"jsonrpc": "2.0", "method": ' });
    assert.equal(result.httpStatus, 400);
    assert.equal(result.json?.error?.code, -50400);
  });

  test('unknown JSON-RPC method [reference is wrong: dwn-server never answers]', async () => {
    const result = await rpc({ jsonrpc: '2.0', id: 1, method: 'dwn.unknownMethod', params: {} }, { timeoutMs: isDehr ? 5000 : NO_ANSWER_MS });
    if (isDehr) assertClientError(result, [-32601]);
    else assert.equal(result.timedOut, true, 'dwn-server answered an unknown method');
  });

  test('a request with no params [reference is wrong: dwn-server never answers]', async () => {
    const result = await rpc({ jsonrpc: '2.0', id: 1, method: 'dwn.processMessage' }, { timeoutMs: isDehr ? 5000 : NO_ANSWER_MS });
    if (isDehr) assertClientError(result, [-32600, -32602, -32603]);
    else assert.equal(result.timedOut, true, 'dwn-server answered a request without params');
  });

  test('a request with no message [reference is wrong: HTTP 500 for a client mistake]', async () => {
    const { alice } = await createActors('alice');
    const result = await rpc({ jsonrpc: '2.0', id: 1, method: 'dwn.processMessage', params: { target: alice.did } });
    if (isDehr) {
      assertClientError(result, [-32600, -32602, -32603]);
    } else {
      assert.equal(result.httpStatus, 500);
      assert.equal(result.json.error.code, -32603);
    }
  });

  test('a message without a descriptor [reference is wrong: HTTP 500 for a client mistake]', async () => {
    const { alice } = await createActors('alice');
    const result = await rpc(processMessageRequest(alice.did, {}));
    if (isDehr) {
      // Either a JSON-RPC client error or a DWN 400 reply is a clear answer.
      const dwnCode = result.json?.result?.reply?.status?.code;
      if (dwnCode !== undefined) assert.equal(dwnCode, 400);
      else assertClientError(result, [-32600, -32602, -32603]);
    } else {
      assert.equal(result.httpStatus, 500);
      assert.equal(result.json.error.code, -32603);
    }
  });

  test('RecordsSubscribe over HTTP [reference is wrong: HTTP 500 for a client mistake]', async () => {
    const { alice } = await createActors('alice');
    const subscribe = await recordsSubscribe(alice, { schema: NOTE });
    for (const request of [
      processMessageRequest(alice.did, subscribe),
      { ...processMessageRequest(alice.did, subscribe), method: 'rpc.subscribe.dwn.processMessage', subscription: { id: 'sub-1' } },
    ]) {
      const result = await rpc(request);
      if (isDehr) {
        assertClientError(result, [-32600, -32602]);
      } else {
        assert.equal(result.httpStatus, 500);
        assert.equal(result.json.error.code, -32600);
      }
    }
  });

  test('rpc.subscribe.close over HTTP [reference is wrong: HTTP 500 for a client mistake]', async () => {
    const result = await rpc({ jsonrpc: '2.0', id: 1, method: 'rpc.subscribe.close', params: {}, subscription: { id: 'nope' } });
    if (isDehr) {
      assertClientError(result, [-32600, -32602]);
    } else {
      assert.equal(result.httpStatus, 500);
      assert.equal(result.json.error.code, -32600);
    }
  });
});

describe('bad DWN messages (compared with the oracle)', () => {
  const cases = [
    ['RecordsWrite without dataFormat', (m) => { delete m.descriptor.dataFormat; }],
    ['RecordsWrite without dataCid', (m) => { delete m.descriptor.dataCid; }],
    ['RecordsWrite without dateCreated', (m) => { delete m.descriptor.dateCreated; }],
    ['RecordsWrite without recordId', (m) => { delete m.recordId; }],
    ['RecordsWrite with a 3-digit timestamp', (m) => { m.descriptor.messageTimestamp = '2024-01-01T00:00:00.000Z'; }],
    ['RecordsWrite with a string dataSize', (m) => { m.descriptor.dataSize = String(m.descriptor.dataSize); }],
    ['RecordsWrite with an unknown descriptor property', (m) => { m.descriptor.color = 'blue'; }],
    ['RecordsWrite without interface', (m) => { delete m.descriptor.interface; }],
    ['RecordsWrite with an unknown method', (m) => { m.descriptor.method = 'Teleport'; }],
    ['RecordsWrite with an unknown interface', (m) => { m.descriptor.interface = 'Nothing'; }],
  ];
  for (const [name, mutate] of cases) {
    test(`${name} (400)`, async () => {
      const { alice } = await createActors('alice');
      const written = await recordsWrite(alice, { schema: NOTE });
      mutate(written.message);
      await h.write(alice.did, written, 400);
    });
  }

  test('RecordsQuery without a filter (400)', async () => {
    const { alice } = await createActors('alice');
    const query = await recordsQuery(alice, { schema: NOTE });
    delete query.descriptor.filter;
    await h.send(alice.did, query, { expect: 400 });
  });

  test('RecordsQuery with an empty filter (400)', async () => {
    const { alice } = await createActors('alice');
    const query = await recordsQuery(alice, { schema: NOTE });
    query.descriptor.filter = {};
    await h.send(alice.did, query, { expect: 400 });
  });

  test('RecordsRead without messageTimestamp (400)', async () => {
    const { alice } = await createActors('alice');
    const read = await recordsRead(alice, { recordId: 'bafyreigyfjfpf47ickaa4uzqo5tultwzy2spvvqqtvexseym75ovknnpq4' });
    delete read.descriptor.messageTimestamp;
    await h.send(alice.did, read, { expect: 400 });
  });
});
