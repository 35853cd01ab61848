// Every protocol definition from the shared fixtures: configure, query by owner and anonymously,
// newest-wins, and who may configure.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';

import { createActors } from '../lib/actors.mjs';
import { useInterop } from '../lib/harness.mjs';
import { nextTimestamp, protocolsConfigure, protocolsQuery, signedMessage } from '../lib/messages.mjs';
import { allProtocols, loadProtocol } from '../lib/protocols.mjs';

const h = useInterop();
const protocols = allProtocols();

test('the fixtures folder holds the 16 definitions dwn-sdk-js 0.5.2 ships', () => {
  assert.equal(protocols.length, 16, protocols.map(([name]) => name).join(', '));
});

describe('each fixture', () => {
  for (const [name, definition] of protocols) {
    test(name, async () => {
      const { alice, bob } = await createActors('alice', 'bob');
      await h.send(alice.did, await protocolsConfigure(alice, definition), { expect: 202 });

      const filter = { protocol: definition.protocol };
      const owner = await h.send(alice.did, await protocolsQuery(alice, filter), { expect: 200 });
      assert.equal(owner.summary.entries.length, 1);

      const anonymous = await h.send(alice.did, await protocolsQuery(null, filter), { expect: 200 });
      assert.equal(anonymous.summary.entries.length, definition.published ? 1 : 0);

      const stranger = await h.send(alice.did, await protocolsQuery(bob, filter), { expect: 200 });
      assert.equal(stranger.summary.entries.length, definition.published ? 1 : 0);
    });
  }
});

describe('one tenant with all of them', () => {
  test('owner lists all, anonymous lists the published ones', async () => {
    const { alice } = await createActors('alice');
    for (const [, definition] of protocols) {
      // friend-role and minimal share http://minimal.xyz: the later configure replaces the earlier.
      await h.send(alice.did, await protocolsConfigure(alice, definition), { expect: 202 });
    }
    const uris = new Set(protocols.map(([, d]) => d.protocol));
    const owner = await h.send(alice.did, await protocolsQuery(alice), { expect: 200 });
    assert.equal(owner.summary.entries.length, uris.size);
    const anonymous = await h.send(alice.did, await protocolsQuery(null), { expect: 200 });
    const latest = new Map(protocols.map(([, d]) => [d.protocol, d]));
    assert.equal(anonymous.summary.entries.length, [...latest.values()].filter((d) => d.published).length);
  });
});

describe('configure rules', () => {
  test('an older configure of the same protocol is a conflict (409)', async () => {
    const { alice } = await createActors('alice');
    const definition = loadProtocol('minimal');
    const older = await protocolsConfigure(alice, definition, { messageTimestamp: nextTimestamp() });
    const newer = await protocolsConfigure(alice, { ...definition, published: true });
    await h.send(alice.did, newer, { expect: 202 });
    await h.send(alice.did, older, { expect: 409 });
    const { summary } = await h.send(alice.did, await protocolsQuery(null, { protocol: definition.protocol }), { expect: 200 });
    assert.equal(summary.entries.length, 1, 'the newer (published) definition is the one kept');
  });

  test('the same configure twice is a conflict (409)', async () => {
    const { alice } = await createActors('alice');
    const configure = await protocolsConfigure(alice, loadProtocol('chat'));
    await h.send(alice.did, configure, { expect: 202 });
    await h.send(alice.did, configure, { expect: 409 });
  });

  test('a newer configure replaces the definition (published → unpublished)', async () => {
    const { alice } = await createActors('alice');
    const definition = loadProtocol('email');
    await h.send(alice.did, await protocolsConfigure(alice, definition), { expect: 202 });
    await h.send(alice.did, await protocolsConfigure(alice, { ...definition, published: false }), { expect: 202 });
    const { summary } = await h.send(alice.did, await protocolsQuery(null, { protocol: definition.protocol }), { expect: 200 });
    assert.equal(summary.entries.length, 0);
  });

  test('a stranger cannot configure a protocol in alice\'s DWN (401)', async () => {
    const { alice, bob } = await createActors('alice', 'bob');
    await h.send(alice.did, await protocolsConfigure(bob, loadProtocol('free-for-all')), { expect: 401 });
  });

  test('a definition with an action on an unknown role path is rejected (400)', async () => {
    const { alice } = await createActors('alice');
    const definition = loadProtocol('free-for-all');
    definition.structure.post.$actions = [{ role: 'nonexistent', can: ['read'] }];
    // ProtocolsConfigure.create refuses to build this, so the descriptor is signed by hand.
    const message = await signedMessage(alice, {
      interface: 'Protocols', method: 'Configure', messageTimestamp: nextTimestamp(), definition,
    });
    await h.send(alice.did, message, { expect: 400 });
  });

  test('a definition that fails the JSON schema is rejected (400)', async () => {
    const { alice } = await createActors('alice');
    const definition = { ...loadProtocol('minimal'), structure: { foo: { $actions: [{ who: 'everyone', can: ['read'] }] } } };
    const message = await signedMessage(alice, {
      interface: 'Protocols', method: 'Configure', messageTimestamp: nextTimestamp(), definition,
    });
    await h.send(alice.did, message, { expect: 400 });
  });

  test('ProtocolsQuery for an unknown protocol is an empty list', async () => {
    const { alice } = await createActors('alice');
    const { summary } = await h.send(alice.did,
      await protocolsQuery(alice, { protocol: 'http://unknown.xyz' }), { expect: 200 });
    assert.equal(summary.entries.length, 0);
  });
});
