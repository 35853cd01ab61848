// Subscriptions over WebSocket: rpc.subscribe.dwn.processMessage streams events for later writes,
// updates and deletes, exactly the ones the oracle's subscription sees; rpc.subscribe.close ends it.
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { after, describe, test } from 'node:test';

import { createActors } from '../lib/actors.mjs';
import { bytesData } from '../lib/data.mjs';
import { assertSameReply, messageCid } from '../lib/compare.mjs';
import { useInterop } from '../lib/harness.mjs';
import { recordsDelete, recordsQuery, recordsSubscribe, recordsUpdate, recordsWrite } from '../lib/messages.mjs';
import { processMessageRequest } from '../lib/rpc.mjs';
import { isDehr } from '../lib/target.mjs';
import { openSocket } from '../lib/ws.mjs';

const h = useInterop();
const NOTE = 'https://example.org/note';
const NO_ANSWER_MS = 1500;

const sockets = [];
async function socket() {
  await h.ready();
  const opened = await openSocket(h.target.wsUrl);
  sockets.push(opened);
  return opened;
}
after(async () => { await Promise.all(sockets.map((s) => s.close())); });

/** Subscribes on the target (over `ws`) and on the oracle; both replies must agree. */
async function subscribeBoth(ws, tenant, message) {
  const subscriptionId = randomUUID();
  const request = { ...processMessageRequest(tenant, message), method: 'rpc.subscribe.dwn.processMessage', subscription: { id: subscriptionId } };
  const response = await ws.request(request);
  assert.ok(response.result?.reply, `no subscribe reply: ${JSON.stringify(response)}`);

  const oracleEvents = [];
  const oracleReply = await h.oracle.dwn.processMessage(tenant, structuredClone(message), {
    subscriptionHandler: (event) => oracleEvents.push(event),
  });
  await assertSameReply(response.result.reply, oracleReply, 'RecordsSubscribe');
  return {
    id: subscriptionId,
    code: response.result.reply.status.code,
    targetEvents: ws.events(subscriptionId),
    oracleEvents,
    closeOracle: () => oracleReply.subscription?.close(),
  };
}

async function summarizeEvents(events) {
  return Promise.all(events.map(async (event) => ({
    message: await messageCid(event.message),
    initialWrite: event.initialWrite ? await messageCid(event.initialWrite) : null,
  })));
}

/** Waits until both sides have `count` events (events are pushed asynchronously), then compares. */
async function assertSameEvents(subscription, count) {
  const deadline = Date.now() + 5000;
  while (Date.now() < deadline &&
    (subscription.targetEvents.length < count || subscription.oracleEvents.length < count)) {
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
  await new Promise((resolve) => setTimeout(resolve, 200)); // and nothing more arrives
  const [target, oracle] = await Promise.all([
    summarizeEvents(subscription.targetEvents), summarizeEvents(subscription.oracleEvents),
  ]);
  assert.deepEqual(target, oracle, 'target and oracle events differ');
  assert.equal(target.length, count);
  return target;
}

describe('RecordsSubscribe', () => {
  test('the owner gets events for matching writes, updates and deletes; close stops them', async () => {
    const { alice } = await createActors('alice');
    const ws = await socket();
    const subscription = await subscribeBoth(ws, alice.did, await recordsSubscribe(alice, { schema: NOTE }));
    assert.equal(subscription.code, 200);

    const note = await recordsWrite(alice, { schema: NOTE });
    await h.write(alice.did, note);
    await h.write(alice.did, await recordsWrite(alice, { schema: 'https://example.org/other' })); // no event
    await h.write(alice.did, await recordsUpdate(alice, note.message, { data: bytesData('edited') }));
    await h.send(alice.did, await recordsDelete(alice, note.message.recordId), { expect: 202 });
    const events = await assertSameEvents(subscription, 3);
    assert.equal(events[0].initialWrite, null);
    assert.notEqual(events[1].initialWrite, null, 'an update event carries initialWrite');

    const closed = await ws.request({ jsonrpc: '2.0', id: randomUUID(), method: 'rpc.subscribe.close', params: {}, subscription: { id: subscription.id } });
    assert.deepEqual(closed.result, { reply: { status: 200, detail: 'Accepted' } });
    await subscription.closeOracle();

    await h.write(alice.did, await recordsWrite(alice, { schema: NOTE }));
    await assertSameEvents(subscription, 3);
  });

  test('an anonymous subscription sees published records only', async () => {
    const { alice } = await createActors('alice');
    const ws = await socket();
    const subscription = await subscribeBoth(ws, alice.did, await recordsSubscribe(null, { schema: NOTE }));
    assert.equal(subscription.code, 200);
    await h.write(alice.did, await recordsWrite(alice, { schema: NOTE }));
    await h.write(alice.did, await recordsWrite(alice, { schema: NOTE, published: true }));
    await assertSameEvents(subscription, 1);
    await subscription.closeOracle();
  });

  test('a stranger\'s subscription sees published records and those sent to them', async () => {
    const { alice, bob } = await createActors('alice', 'bob');
    const ws = await socket();
    const subscription = await subscribeBoth(ws, alice.did, await recordsSubscribe(bob, { schema: NOTE }));
    assert.equal(subscription.code, 200);
    await h.write(alice.did, await recordsWrite(alice, { schema: NOTE }));
    await h.write(alice.did, await recordsWrite(alice, { schema: NOTE, recipient: bob.did }));
    await h.write(alice.did, await recordsWrite(alice, { schema: NOTE, published: true }));
    await assertSameEvents(subscription, 2);
    await subscription.closeOracle();
  });

  test('two subscriptions on one socket are independent', async () => {
    const { alice } = await createActors('alice');
    const ws = await socket();
    const notes = await subscribeBoth(ws, alice.did, await recordsSubscribe(alice, { schema: NOTE }));
    const photos = await subscribeBoth(ws, alice.did, await recordsSubscribe(alice, { schema: 'https://example.org/photo' }));
    await h.write(alice.did, await recordsWrite(alice, { schema: NOTE }));
    await h.write(alice.did, await recordsWrite(alice, { schema: 'https://example.org/photo' }));
    await h.write(alice.did, await recordsWrite(alice, { schema: 'https://example.org/photo' }));
    await assertSameEvents(notes, 1);
    await assertSameEvents(photos, 2);
    await notes.closeOracle();
    await photos.closeOracle();
  });
});

describe('JSON-RPC over WebSocket', () => {
  test('a RecordsQuery over the socket gets the same reply as over HTTP', async () => {
    const { alice } = await createActors('alice');
    await h.write(alice.did, await recordsWrite(alice, { schema: NOTE }));
    const ws = await socket();
    const query = await recordsQuery(alice, { schema: NOTE });
    const response = await ws.request(processMessageRequest(alice.did, query));
    const oracleReply = await h.oracle.dwn.processMessage(alice.did, structuredClone(query));
    const summary = await assertSameReply(response.result.reply, oracleReply, 'RecordsQuery');
    assert.equal(summary.entries.length, 1);
  });

  test('a RecordsWrite over the socket is refused (-32602): data only over HTTP', async () => {
    const { alice } = await createActors('alice');
    const ws = await socket();
    const response = await ws.request(processMessageRequest(alice.did, (await recordsWrite(alice, { schema: NOTE })).message));
    assert.equal(response.error?.code, -32602);
  });

  test('a subscription id already in use is refused (-32602)', async () => {
    const { alice } = await createActors('alice');
    const ws = await socket();
    const subscription = { id: randomUUID() };
    const first = await ws.request({ ...processMessageRequest(alice.did, await recordsSubscribe(alice, { schema: NOTE })), method: 'rpc.subscribe.dwn.processMessage', subscription });
    assert.equal(first.result?.reply?.status?.code, 200);
    const second = await ws.request({ ...processMessageRequest(alice.did, await recordsSubscribe(alice, { schema: NOTE })), method: 'rpc.subscribe.dwn.processMessage', subscription });
    assert.equal(second.error?.code, -32602);
  });

  test('closing an unknown subscription is refused (-32602)', async () => {
    const ws = await socket();
    const response = await ws.request({ jsonrpc: '2.0', id: randomUUID(), method: 'rpc.subscribe.close', params: {}, subscription: { id: 'never-opened' } });
    assert.equal(response.error?.code, -32602);
  });

  test('a close request without params [reference is wrong: dwn-server never answers]', async () => {
    const { alice } = await createActors('alice');
    const ws = await socket();
    const subscription = { id: randomUUID() };
    const opened = await ws.request({ ...processMessageRequest(alice.did, await recordsSubscribe(alice, { schema: NOTE })), method: 'rpc.subscribe.dwn.processMessage', subscription });
    assert.equal(opened.result?.reply?.status?.code, 200);
    const response = await ws.request({ jsonrpc: '2.0', id: randomUUID(), method: 'rpc.subscribe.close', subscription },
      { timeoutMs: isDehr ? 5000 : NO_ANSWER_MS });
    if (isDehr) assert.deepEqual(response.result, { reply: { status: 200, detail: 'Accepted' } });
    else assert.equal(response.timedOut, true, 'dwn-server answered a close without params');
  });

  test('a malformed JSON message gets -50400 and the socket stays usable', async () => {
    const ws = await socket();
    ws.sendRaw('{"jsonrpc": "2.0", "method": ');
    const reply = await ws.nextUnmatched();
    assert.equal(reply.error?.code, -50400);
    const { alice } = await createActors('alice');
    const response = await ws.request(processMessageRequest(alice.did, await recordsQuery(alice, { schema: NOTE })));
    assert.equal(response.result?.reply?.status?.code, 200);
  });
});
