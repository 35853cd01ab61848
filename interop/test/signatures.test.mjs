// Signature algorithms and DID methods accepted (Ed25519, secp256k1, P-256 over did:jwk and
// did:key), and signatures that must be refused.
import { describe, test } from 'node:test';

import { PrivateKeySigner } from '@tbd54566975/dwn-sdk-js';
import { DidJwk } from '@web5/dids';

import { createActor, createActors } from '../lib/actors.mjs';
import { useInterop } from '../lib/harness.mjs';
import {
  protocolsConfigure, recordsDelete, recordsQuery, recordsRead, recordsWrite,
} from '../lib/messages.mjs';
import { loadProtocol } from '../lib/protocols.mjs';

const h = useInterop();
const NOTE = 'https://example.org/note';

const IDENTITIES = [
  { method: 'jwk', algorithm: 'Ed25519' },
  { method: 'key', algorithm: 'Ed25519' },
  { method: 'jwk', algorithm: 'secp256k1' },
  { method: 'key', algorithm: 'secp256k1' },
  { method: 'jwk', algorithm: 'secp256r1' }, // P-256; @web5/dids has no did:key mapping for it
];

describe('accepted signers', () => {
  for (const { method, algorithm } of IDENTITIES) {
    test(`did:${method} ${algorithm} as owner: configure, write, read, query, delete`, async () => {
      const alice = await createActor('alice', { method, algorithm });
      await h.send(alice.did, await protocolsConfigure(alice, loadProtocol('minimal')), { expect: 202 });
      const written = await recordsWrite(alice, { schema: NOTE });
      await h.write(alice.did, written);
      await h.send(alice.did, await recordsRead(alice, { recordId: written.message.recordId }), { expect: 200 });
      await h.send(alice.did, await recordsQuery(alice, { schema: NOTE }), { expect: 200 });
      await h.send(alice.did, await recordsDelete(alice, written.message.recordId), { expect: 202 });
    });

    test(`did:${method} ${algorithm} as a non-owner author in a protocol`, async () => {
      const { alice } = await createActors('alice');
      const bob = await createActor('bob', { method, algorithm });
      const definition = loadProtocol('free-for-all');
      await h.send(alice.did, await protocolsConfigure(alice, definition), { expect: 202 });
      const post = await recordsWrite(bob, { protocol: definition.protocol, protocolPath: 'post', schema: 'post' });
      await h.write(alice.did, post);
      await h.send(alice.did, await recordsRead(bob, { recordId: post.message.recordId }), { expect: 200 });
    });
  }
});

// --- tampering helpers: General JWS pieces are base64url -----------------------------------
const b64 = {
  decode: (text) => Buffer.from(text, 'base64url'),
  encode: (bytes) => Buffer.from(bytes).toString('base64url'),
  json: (text) => JSON.parse(b64.decode(text).toString('utf8')),
  fromJson: (value) => b64.encode(Buffer.from(JSON.stringify(value))),
};
const firstSignature = (message) => message.authorization.signature.signatures[0];

const SECP256K1_N = 0xfffffffffffffffffffffffffffffffebaaedce6af48a03bbfd25e8cd0364141n;

describe('refused or tolerated signatures', () => {
  test('a flipped signature byte is refused (401)', async () => {
    const { alice } = await createActors('alice');
    const query = await recordsQuery(alice, { schema: NOTE });
    const sig = b64.decode(firstSignature(query).signature);
    sig[0] ^= 0xff;
    firstSignature(query).signature = b64.encode(sig);
    await h.send(alice.did, query, { expect: 401 });
  });

  test('a flipped signature byte on a RecordsWrite is refused (401)', async () => {
    const { alice } = await createActors('alice');
    const written = await recordsWrite(alice, { schema: NOTE });
    const sig = b64.decode(firstSignature(written.message).signature);
    sig[10] ^= 0x01;
    firstSignature(written.message).signature = b64.encode(sig);
    await h.write(alice.did, written, 401);
  });

  test('bob\'s signature under alice\'s key id is refused (401)', async () => {
    const { alice, bob } = await createActors('alice', 'bob');
    const mine = await recordsQuery(alice, { schema: NOTE });
    const forged = await recordsQuery(bob, { schema: NOTE }, { messageTimestamp: mine.descriptor.messageTimestamp });
    // bob signs the same descriptor; the protected header still names alice's key.
    const protectedHeader = b64.json(firstSignature(mine).protected);
    firstSignature(forged).protected = b64.fromJson(protectedHeader);
    await h.send(alice.did, forged, { expect: 401 });
  });

  test('a descriptor changed after signing is refused (RecordsQuery, 400)', async () => {
    // The descriptorCid check is part of parsing, before authentication: 400, not 401.
    const { alice } = await createActors('alice');
    const query = await recordsQuery(alice, { schema: NOTE });
    query.descriptor.filter.schema = 'https://example.org/other';
    await h.send(alice.did, query, { expect: 400 });
  });

  test('a descriptor changed after signing is refused (RecordsWrite, 400)', async () => {
    const { alice } = await createActors('alice');
    const written = await recordsWrite(alice, { schema: NOTE });
    written.message.descriptor.dataFormat = 'text/plain';
    await h.write(alice.did, written, 400);
  });

  test('a recordId that is not the signed one is refused (400)', async () => {
    const { alice } = await createActors('alice');
    const written = await recordsWrite(alice, { schema: NOTE });
    const other = await recordsWrite(alice, { schema: NOTE });
    written.message.recordId = other.message.recordId;
    await h.write(alice.did, written, 400);
  });

  test('a signer whose DID cannot be resolved is refused (401)', async () => {
    // A valid signature by a key labelled did:example, a method no resolver here knows.
    const { alice } = await createActors('alice');
    const portable = await (await DidJwk.create()).export();
    const stranger = {
      did: 'did:example:stranger',
      signer: new PrivateKeySigner({ privateJwk: portable.privateKeys[0], keyId: 'did:example:stranger#key-1', algorithm: 'EdDSA' }),
    };
    await h.send(alice.did, await recordsQuery(stranger, { schema: NOTE }), { expect: 401 });
    await h.write(alice.did, await recordsWrite(stranger, { schema: NOTE }), 401);
  });

  test('a kid whose fragment names no verification method is refused (401)', async () => {
    const { alice } = await createActors('alice');
    const query = await recordsQuery(alice, { schema: NOTE });
    const header = b64.json(firstSignature(query).protected);
    header.kid = `${alice.did}#nope`;
    firstSignature(query).protected = b64.fromJson(header);
    await h.send(alice.did, query, { expect: 401 });
  });

  test('the verifier follows the key\'s crv, not the header\'s alg', async () => {
    // dwn-sdk-js picks the algorithm by the resolved JWK's crv; a wrong `alg` is not checked.
    const alice = await createActor('alice');
    alice.signer.algorithm = 'ES256K';
    const written = await recordsWrite(alice, { schema: NOTE });
    await h.write(alice.did, written);
  });

  test('a high-S secp256k1 signature is accepted', async () => {
    // dwn-sdk-js verifies with lowS:false, so (r, n-s) is as valid as (r, s).
    const alice = await createActor('alice', { algorithm: 'secp256k1' });
    const query = await recordsQuery(alice, { schema: NOTE });
    const sig = b64.decode(firstSignature(query).signature);
    const s = BigInt(`0x${sig.subarray(32).toString('hex')}`);
    const highS = Buffer.from((SECP256K1_N - s).toString(16).padStart(64, '0'), 'hex');
    firstSignature(query).signature = b64.encode(Buffer.concat([sig.subarray(0, 32), highS]));
    await h.send(alice.did, query, { expect: 200 });
  });

  test('two signatures in the JWS are refused (400)', async () => {
    const { alice } = await createActors('alice');
    const query = await recordsQuery(alice, { schema: NOTE });
    query.authorization.signature.signatures.push({ ...firstSignature(query) });
    await h.send(alice.did, query, { expect: 400 });
  });

  test('an unsigned RecordsWrite is refused', async () => {
    const { alice } = await createActors('alice');
    const written = await recordsWrite(alice, { schema: NOTE });
    delete written.message.authorization;
    await h.write(alice.did, written, 400);
  });
});
