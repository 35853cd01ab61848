// Record encryption, both ways between DeHR and dwn-sdk-js 0.5.2 (A256CTR data, ECIES-ES256K
// key wrapping, HKDF key derivation; notes: crates/dehr-agent/src/encryption.rs).
//
// 1. `dehr encryption-vectors` prints records DeHR encrypted (protocolPath keys injected as
//    `$encryption`, a protocolContext key, a nested record, 40 kB of data, two roots). Each is
//    written to an in-process dwn-sdk-js Dwn, read back, and opened by `Records.decrypt` with
//    every key DeHR says opens it; the injected `$encryption` keys must be what dwn-sdk-js derives.
// 2. Records dwn-sdk-js encrypted (RecordsWrite.create, TestDataGenerator) are piped into
//    `dehr open-encrypted` with root and derived keys: our plaintext must equal theirs.
// 3. Wrong keys and altered messages or data must not open, on either side.
import assert from 'node:assert/strict';
import { execFileSync, spawn } from 'node:child_process';
import { after, before, describe, test } from 'node:test';

import {
  Cid, DataStream, Encoder, Encryption, HdKey, Jws, KeyDerivationScheme, Protocols, Records, RecordsWrite,
  Secp256k1, TestDataGenerator,
} from '@tbd54566975/dwn-sdk-js';

import { createActor } from '../lib/actors.mjs';
import { createOracle } from '../lib/oracle.mjs';
import { dehrBin, isDehr } from '../lib/target.mjs';

const skip = !isDehr && 'needs the dehr binary (DWN_TARGET=dehr)';

const b64 = (bytes) => Buffer.from(bytes).toString('base64');
const fromB64 = (text) => new Uint8Array(Buffer.from(text, 'base64'));

async function decryptWithSdk(message, key, ciphertext) {
  return DataStream.toBytes(await Records.decrypt(message, key, DataStream.fromBytes(ciphertext)));
}

async function assertSdkRefuses(message, key, ciphertext, pattern) {
  await assert.rejects(decryptWithSdk(message, key, ciphertext), (error) => {
    assert.match(`${error.code ?? ''} ${error.message}`, pattern);
    return true;
  });
}

/** Runs `dehr open-encrypted` on `requests` ({message, ciphertext, key}); one reply each, in order. */
function openWithDehr(requests) {
  const input = requests
    .map(({ message, ciphertext, key }) => JSON.stringify({ message, ciphertextBase64: b64(ciphertext), key }))
    .join('\n');
  return new Promise((resolve, reject) => {
    const child = spawn(dehrBin(), ['open-encrypted'], { stdio: ['pipe', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (chunk) => { stdout += chunk; });
    child.stderr.on('data', (chunk) => { stderr += chunk; });
    child.on('error', reject);
    child.on('close', (code) => {
      try {
        assert.equal(code, 0, `dehr open-encrypted exited with ${code}: ${stderr}`);
        const replies = stdout.trim().split('\n').filter(Boolean).map((l) => JSON.parse(l));
        assert.equal(replies.length, requests.length, `one reply per request expected: ${stderr}`);
        resolve(replies);
      } catch (error) {
        reject(error);
      }
    });
    child.stdin.end(input);
  });
}

/** Every rule set of a protocol definition's structure, with its protocol path segments. */
function* ruleSets(ruleSet, segments = []) {
  for (const [name, child] of Object.entries(ruleSet)) {
    if (name.startsWith('$')) continue;
    yield { segments: [...segments, name], ruleSet: child };
    yield* ruleSets(child, [...segments, name]);
  }
}

function withoutEncryptionKeys(definition) {
  const copy = structuredClone(definition);
  for (const { ruleSet } of ruleSets(copy.structure)) delete ruleSet.$encryption;
  return copy;
}

/** A copy of `message` whose first wrapped data key has one bit flipped. */
function withAlteredEncryptedKey(message) {
  const altered = structuredClone(message);
  const entry = altered.encryption.keyEncryption[0];
  const bytes = Encoder.base64UrlToBytes(entry.encryptedKey);
  bytes[0] ^= 1;
  entry.encryptedKey = Encoder.bytesToBase64Url(bytes);
  return altered;
}

describe('records encrypted by DeHR open with dwn-sdk-js', { skip }, () => {
  let oracle;
  let vectors;

  before(async () => {
    oracle = await createOracle();
    const output = execFileSync(dehrBin(), ['encryption-vectors'], { encoding: 'utf8', maxBuffer: 64 << 20 });
    vectors = output.trim().split('\n').map((l) => JSON.parse(l));
  });
  after(() => oracle?.close());

  test('dehr encryption-vectors covers the cases', () => {
    assert.equal(vectors.length, 4);
    const schemes = vectors.flatMap((v) => v.message.encryption.keyEncryption.map((k) => k.derivationScheme));
    assert.ok(schemes.includes('protocolContext'), 'a protocolContext key encryption');
    assert.ok(vectors.some((v) => v.message.descriptor.protocolPath === 'a/b'), 'a nested record');
    assert.ok(vectors.some((v) => fromB64(v.plaintextBase64).length > 40_000), 'more than 40 kB of data');
    assert.ok(vectors.some((v) => new Set(v.message.encryption.keyEncryption.map((k) => k.rootKeyId)).size === 2),
      'a record for two roots');
  });

  test('the injected $encryption keys are those dwn-sdk-js derives', async () => {
    for (const { definition, keys } of vectors) {
      const root = keys.find((k) => k.name === 'root').key;
      for (const { segments, ruleSet } of ruleSets(definition.structure)) {
        const expected = await HdKey.derivePublicKey(root,
          [KeyDerivationScheme.ProtocolPath, definition.protocol, ...segments]);
        assert.deepEqual(ruleSet.$encryption, { rootKeyId: root.rootKeyId, publicKeyJwk: expected }, segments.join('/'));
      }
      const injected = await Protocols.deriveAndInjectPublicEncryptionKeys(
        withoutEncryptionKeys(definition), root.rootKeyId, root.derivedPrivateKey);
      assert.deepEqual(definition, injected);
    }
  });

  test('dwn-sdk-js stores each record and Records.decrypt opens it with every key', async () => {
    const configured = new Set();
    for (const vector of vectors) {
      const { tenant, protocolsConfigure, message, read, keys, name } = vector;
      const configureCid = await Cid.computeCid(protocolsConfigure);
      if (!configured.has(configureCid)) {
        const reply = await oracle.dwn.processMessage(tenant, structuredClone(protocolsConfigure));
        assert.equal(reply.status.code, 202, `ProtocolsConfigure: ${reply.status.detail}`);
        configured.add(configureCid);
      }

      // The signature binds the encryption property (without encryptionCid dwn-sdk-js would
      // accept any `encryption`).
      const payload = Jws.decodePlainObjectPayload(message.authorization.signature);
      assert.equal(payload.encryptionCid, await Cid.computeCid(message.encryption), name);

      const ciphertext = fromB64(vector.ciphertextBase64);
      const plaintext = fromB64(vector.plaintextBase64);
      const written = await oracle.dwn.processMessage(tenant, structuredClone(message),
        { dataStream: DataStream.fromBytes(ciphertext) });
      assert.equal(written.status.code, 202, `${name}: ${written.status.detail}`);

      const reply = await oracle.dwn.processMessage(tenant, structuredClone(read));
      assert.equal(reply.status.code, 200, `${name}: RecordsRead ${reply.status.detail}`);
      const stored = await DataStream.toBytes(reply.entry.data);
      assert.deepEqual(stored, ciphertext, `${name}: stored data`);
      assert.deepEqual(reply.entry.recordsWrite.encryption, message.encryption, `${name}: stored encryption`);

      for (const { name: keyName, key } of keys) {
        const opened = await decryptWithSdk(reply.entry.recordsWrite, key, stored);
        assert.ok(Buffer.from(opened).equals(Buffer.from(plaintext)), `${name}: key ${keyName}`);
      }
    }
  });

  test('dwn-sdk-js refuses DeHR records with the wrong key', async () => {
    const [vector] = vectors;
    const root = vector.keys.find((k) => k.name === 'root').key;
    const ciphertext = fromB64(vector.ciphertextBase64);
    await assertSdkRefuses(vector.message, { ...root, rootKeyId: 'did:example:other#enc' }, ciphertext,
      /RecordsDecryptNoMatchingKeyEncryptedFound/);
    const { privateJwk } = await Secp256k1.generateKeyPair();
    await assertSdkRefuses(vector.message, { ...root, derivedPrivateKey: privateJwk }, ciphertext,
      /unable to authenticate/);
  });
});

describe('records encrypted by dwn-sdk-js open with DeHR', { skip }, () => {
  const protocol = 'http://example.com/care-thread';
  const definition = {
    protocol,
    published: true,
    types: {
      thread: { schema: 'https://example.com/thread', dataFormats: ['application/json'] },
      chat: { schema: 'https://example.com/chat', dataFormats: ['text/plain'] },
    },
    structure: {
      thread: { $actions: [{ who: 'anyone', can: ['create'] }], chat: { $actions: [{ who: 'anyone', can: ['create'] }] } },
    },
  };

  let alice;
  let rootKeyId;
  let rootPrivateJwk;
  let injected;
  const root = (derivationScheme) => ({ rootKeyId, derivationScheme, derivedPrivateKey: rootPrivateJwk });

  /** Encrypts `plaintext` with a fresh data key as dwn-sdk-js callers do. */
  async function encrypt(plaintext) {
    const key = TestDataGenerator.randomBytes(32);
    const initializationVector = TestDataGenerator.randomBytes(16);
    const ciphertext = await DataStream.toBytes(
      await Encryption.aes256CtrEncrypt(key, initializationVector, DataStream.fromBytes(plaintext)));
    return { ciphertext, encryptionInput: { key, initializationVector, keyEncryptionInputs: [] } };
  }

  const protocolPathInput = (path) => {
    let ruleSet = injected.structure;
    for (const segment of path.split('/')) ruleSet = ruleSet[segment];
    return {
      publicKeyId: ruleSet.$encryption.rootKeyId,
      publicKey: ruleSet.$encryption.publicKeyJwk,
      derivationScheme: KeyDerivationScheme.ProtocolPath,
    };
  };

  // Each: {name, message, ciphertext, plaintext, keys: [[name, DerivedPrivateJwk]]}.
  const records = [];

  before(async () => {
    alice = await createActor('alice');
    rootKeyId = `${alice.did}#enc`;
    ({ privateJwk: rootPrivateJwk } = await Secp256k1.generateKeyPair());
    injected = await Protocols.deriveAndInjectPublicEncryptionKeys(definition, rootKeyId, rootPrivateJwk);

    // A thread wrapped for its path key and for the context key, which depends on the record id:
    // created first, then the key encryptions added and the message signed again.
    const threadPlain = Encoder.stringToBytes('{"title":"lab results"}');
    const thread = await encrypt(threadPlain);
    const threadWrite = await RecordsWrite.create({
      signer: alice.signer, protocol, protocolPath: 'thread', schema: 'https://example.com/thread',
      dataFormat: 'application/json', data: thread.ciphertext,
    });
    const contextPath = Records.constructKeyDerivationPathUsingProtocolContextScheme(threadWrite.message.contextId);
    const contextKey = await HdKey.derivePrivateKey(root(KeyDerivationScheme.ProtocolContext), contextPath);
    thread.encryptionInput.keyEncryptionInputs.push(protocolPathInput('thread'), {
      publicKeyId: rootKeyId,
      publicKey: await HdKey.derivePublicKey(root(KeyDerivationScheme.ProtocolContext), contextPath),
      derivationScheme: KeyDerivationScheme.ProtocolContext,
    });
    await threadWrite.encryptSymmetricEncryptionKey(thread.encryptionInput);
    await threadWrite.sign({ signer: alice.signer });
    records.push({
      name: 'thread (protocolPath + protocolContext)',
      message: threadWrite.message,
      ciphertext: thread.ciphertext,
      plaintext: threadPlain,
      keys: [
        ['root', root(KeyDerivationScheme.ProtocolPath)],
        ['protocol', await HdKey.derivePrivateKey(root(KeyDerivationScheme.ProtocolPath), [KeyDerivationScheme.ProtocolPath, protocol])],
        ['path thread', await HdKey.derivePrivateKey(root(KeyDerivationScheme.ProtocolPath), Records.constructKeyDerivationPath(KeyDerivationScheme.ProtocolPath, threadWrite.message))],
        ['context root', root(KeyDerivationScheme.ProtocolContext)],
        ['context', contextKey],
      ],
    });

    // A reply in the thread, wrapped for the thread's context key by its `derivedPublicKey`;
    // 70 kB so that CTR runs over many blocks.
    const contextEntry = threadWrite.message.encryption.keyEncryption.find((k) => k.derivationScheme === KeyDerivationScheme.ProtocolContext);
    const chatPlain = Encoder.stringToBytes('the results are normal. '.repeat(3000));
    const chat = await encrypt(chatPlain);
    chat.encryptionInput.keyEncryptionInputs.push(protocolPathInput('thread/chat'), {
      publicKeyId: contextEntry.rootKeyId, publicKey: contextEntry.derivedPublicKey, derivationScheme: KeyDerivationScheme.ProtocolContext,
    });
    const chatWrite = await RecordsWrite.create({
      signer: alice.signer, protocol, protocolPath: 'thread/chat', parentContextId: threadWrite.message.contextId,
      schema: 'https://example.com/chat', dataFormat: 'text/plain', data: chat.ciphertext, encryptionInput: chat.encryptionInput,
    });
    records.push({
      name: 'chat (nested, 70 kB, the thread\'s context key)',
      message: chatWrite.message,
      ciphertext: chat.ciphertext,
      plaintext: chatPlain,
      keys: [
        ['root', root(KeyDerivationScheme.ProtocolPath)],
        ['path thread', await HdKey.derivePrivateKey(root(KeyDerivationScheme.ProtocolPath), [KeyDerivationScheme.ProtocolPath, protocol, 'thread'])],
        ['context', contextKey],
      ],
    });

    // dwn-sdk-js's own test generator, with its persona's key as the root of both schemes.
    const author = await TestDataGenerator.generatePersona();
    const personaRoot = (derivationScheme) => ({ rootKeyId: author.keyId, derivationScheme, derivedPrivateKey: author.keyPair.privateJwk });
    const generatedPlain = TestDataGenerator.randomBytes(1000);
    const generated = await TestDataGenerator.generateProtocolEncryptedRecordsWrite({
      plaintextBytes: generatedPlain,
      author,
      protocolDefinition: await Protocols.deriveAndInjectPublicEncryptionKeys(definition, author.keyId, author.keyPair.privateJwk),
      protocolPath: 'thread',
      encryptSymmetricKeyWithProtocolPathDerivedKey: true,
      encryptSymmetricKeyWithProtocolContextDerivedKey: true,
    });
    records.push({
      name: 'TestDataGenerator.generateProtocolEncryptedRecordsWrite',
      message: generated.message,
      ciphertext: generated.encryptedDataBytes,
      plaintext: generatedPlain,
      keys: [
        ['root', personaRoot(KeyDerivationScheme.ProtocolPath)],
        ['context root', personaRoot(KeyDerivationScheme.ProtocolContext)],
      ],
    });

    // A flat record wrapped for its dataFormats and schemas keys.
    const schema = 'https://hl7.org/fhir/Observation';
    const dataFormat = 'application/fhir+json';
    const flatPlain = Encoder.stringToBytes('{"resourceType":"Observation","status":"final"}');
    const flat = await encrypt(flatPlain);
    const dataFormatsPath = [KeyDerivationScheme.DataFormats, schema, dataFormat];
    const schemasPath = [KeyDerivationScheme.Schemas, schema];
    flat.encryptionInput.keyEncryptionInputs.push({
      publicKeyId: rootKeyId, publicKey: await HdKey.derivePublicKey(root(KeyDerivationScheme.DataFormats), dataFormatsPath),
      derivationScheme: KeyDerivationScheme.DataFormats,
    }, {
      publicKeyId: rootKeyId, publicKey: await HdKey.derivePublicKey(root(KeyDerivationScheme.Schemas), schemasPath),
      derivationScheme: KeyDerivationScheme.Schemas,
    });
    const flatWrite = await RecordsWrite.create({
      signer: alice.signer, schema, dataFormat, data: flat.ciphertext, encryptionInput: flat.encryptionInput,
    });
    records.push({
      name: 'flat record (dataFormats + schemas)',
      message: flatWrite.message,
      ciphertext: flat.ciphertext,
      plaintext: flatPlain,
      keys: [
        ['dataFormats root', root(KeyDerivationScheme.DataFormats)],
        ['dataFormats leaf', await HdKey.derivePrivateKey(root(KeyDerivationScheme.DataFormats), dataFormatsPath)],
        ['schemas root', root(KeyDerivationScheme.Schemas)],
        ['schemas leaf', await HdKey.derivePrivateKey(root(KeyDerivationScheme.Schemas), schemasPath)],
      ],
    });
  });

  test('dehr open-encrypted gives the plaintext dwn-sdk-js gives, with every key', async () => {
    const requests = records.flatMap(({ name, message, ciphertext, plaintext, keys }) =>
      keys.map(([keyName, key]) => ({ label: `${name}: key ${keyName}`, message, ciphertext, plaintext, key })));
    const replies = await openWithDehr(requests);
    for (const [i, { label, message, ciphertext, plaintext, key }] of requests.entries()) {
      const theirs = await decryptWithSdk(message, key, ciphertext);
      assert.ok(Buffer.from(theirs).equals(Buffer.from(plaintext)), `${label}: dwn-sdk-js`);
      assert.equal(replies[i].ok, true, `${label}: ${replies[i].error}`);
      assert.equal(replies[i].plaintextBase64, b64(plaintext), label);
    }
  });

  test('dehr open-encrypted refuses wrong keys and altered messages or data', async () => {
    const [thread] = records;
    const rootKey = thread.keys.find(([name]) => name === 'root')[1];
    const { privateJwk: otherPrivateJwk } = await Secp256k1.generateKeyPair();
    // A message signed over the altered property, so only the key unwrapping can catch it.
    const resigned = await RecordsWrite.parse(thread.message);
    resigned.message.encryption = withAlteredEncryptedKey(thread.message).encryption;
    delete resigned.message.authorization;
    await resigned.sign({ signer: alice.signer });
    const alteredData = Uint8Array.from(thread.ciphertext);
    alteredData[0] ^= 1;

    const cases = [
      {
        label: 'another root id',
        key: { ...rootKey, rootKeyId: 'did:example:other#enc' },
        expect: /RecordsDecryptNoMatchingKeyEncryptedFound/,
        sdk: /RecordsDecryptNoMatchingKeyEncryptedFound/,
      },
      {
        label: 'another root key under the right id',
        key: { ...rootKey, derivedPrivateKey: otherPrivateJwk },
        expect: /does not authenticate/,
        sdk: /unable to authenticate/,
      },
      {
        label: 'the right key declared for another scheme',
        key: { ...rootKey, derivationScheme: KeyDerivationScheme.Schemas },
        expect: /RecordsDecryptNoMatchingKeyEncryptedFound/,
        sdk: /RecordsDecryptNoMatchingKeyEncryptedFound/,
      },
      {
        label: 'a key of another protocol',
        key: await HdKey.derivePrivateKey(rootKey, [KeyDerivationScheme.ProtocolPath, 'http://example.com/other']),
        expect: /RecordsInvalidAncestorKeyDerivationSegment/,
        sdk: /RecordsInvalidAncestorKeyDerivationSegment/,
      },
      {
        label: 'encryptedKey altered and the message signed again',
        message: resigned.message,
        key: rootKey,
        expect: /does not authenticate/,
        sdk: /unable to authenticate/,
      },
      {
        // dwn-sdk-js refuses such a message at parse time (RecordsWrite.parse, below).
        label: 'encryptedKey altered without signing again',
        message: withAlteredEncryptedKey(thread.message),
        key: rootKey,
        expect: /encryptionCid|EncryptionCidMismatch/i,
      },
      {
        // A256CTR has no tag: dwn-sdk-js decrypts altered data to altered plaintext (below);
        // what catches it is dataCid, which DeHR checks before decrypting.
        label: 'ciphertext altered',
        ciphertext: alteredData,
        key: rootKey,
        expect: /dataCid/,
      },
    ];
    const replies = await openWithDehr(cases.map((c) => ({
      message: c.message ?? thread.message, ciphertext: c.ciphertext ?? thread.ciphertext, key: c.key,
    })));
    for (const [i, c] of cases.entries()) {
      assert.equal(replies[i].ok, false, `${c.label}: DeHR opened it`);
      assert.match(replies[i].error, c.expect, c.label);
      if (c.sdk) await assertSdkRefuses(c.message ?? thread.message, c.key, thread.ciphertext, c.sdk);
    }

    await assert.rejects(RecordsWrite.parse(withAlteredEncryptedKey(thread.message)),
      /RecordsWriteValidateIntegrityEncryptionCidMismatch/);
    const alteredPlain = await decryptWithSdk(thread.message, rootKey, alteredData);
    assert.equal(alteredPlain[0], thread.plaintext[0] ^ 1, 'CTR flips the same plaintext bit');
  });

  test('dehr open-encrypted reports bad lines and goes on', async () => {
    const [thread] = records;
    const replies = await openWithDehr([
      { message: { not: 'a message' }, ciphertext: thread.ciphertext, key: thread.keys[0][1] },
      { message: thread.message, ciphertext: thread.ciphertext, key: thread.keys[0][1] },
    ]);
    assert.equal(replies[0].ok, false);
    assert.match(replies[0].error, /RecordsWrite/);
    assert.equal(replies[1].ok, true, replies[1].error);
  });
});
