// Named identities (alice, bob, carol…) with DIDs made by @web5/dids 1.2.0 and a dwn-sdk-js
// Signer over the DID's first verification method. did:jwk and did:key resolve offline, so the
// target and the oracle can verify every signature without any network.
import { PrivateKeySigner } from '@tbd54566975/dwn-sdk-js';
import { DidJwk, DidKey } from '@web5/dids';

// @web5/dids key algorithm name → JWS `alg` header that dwn-sdk-js signers put in `protected`.
const JWS_ALG = { Ed25519: 'EdDSA', secp256k1: 'ES256K', secp256r1: 'ES256' };
const DID_METHODS = { jwk: DidJwk, key: DidKey };

/**
 * @param {string} name          for messages only ("alice")
 * @param {object} [options]
 * @param {'jwk'|'key'} [options.method]                      did:jwk by default
 * @param {'Ed25519'|'secp256k1'|'secp256r1'} [options.algorithm]  Ed25519 by default
 *   (did:key in @web5/dids 1.2.0 has no P-256 mapping, so secp256r1 needs did:jwk)
 */
export async function createActor(name, { method = 'jwk', algorithm = 'Ed25519' } = {}) {
  const bearerDid = await DID_METHODS[method].create({ options: { algorithm } });
  const portable = await bearerDid.export();
  const verificationMethod = portable.document.verificationMethod[0];
  const signer = new PrivateKeySigner({
    privateJwk: portable.privateKeys[0],
    keyId: verificationMethod.id.startsWith('#') ? `${bearerDid.uri}${verificationMethod.id}` : verificationMethod.id,
    algorithm: JWS_ALG[algorithm],
  });
  return { name, did: bearerDid.uri, signer, algorithm, method };
}

/** Several Ed25519 did:jwk actors at once: `const { alice, bob } = await createActors('alice', 'bob')`. */
export async function createActors(...names) {
  const actors = await Promise.all(names.map((name) => createActor(name)));
  return Object.fromEntries(actors.map((actor) => [actor.name, actor]));
}
