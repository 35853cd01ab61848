// General JWS vectors signed the way dwn-sdk-js 0.5.2 does (protected {kid, alg}, payload
// b64url(JSON), signing input `protected.payload`), with keys from @web5/crypto 1.0.6.
import { DidKeyUtils } from '@web5/dids';
import { Ed25519, Secp256k1, Secp256r1 } from '@web5/crypto';
const b64 = (x) => Buffer.from(typeof x === 'string' ? x : x).toString('base64url');
const payload = b64(JSON.stringify({ descriptorCid: 'bafyreiaioqmyy2exhevnsinysxea4sqiixpwq6us2avjqy7cwnwu67t55q' }));
async function make(desc, Alg, alg, seedByte, didOf) {
  const priv = await Alg.bytesToPrivateKey({ privateKeyBytes: new Uint8Array(32).fill(seedByte) });
  const pub = await Alg.computePublicKey({ key: priv });
  const { did, kid } = await didOf(pub);
  const protectedHeader = b64(JSON.stringify({ kid, alg }));
  const sig = await Alg.sign({ key: priv, data: new TextEncoder().encode(`${protectedHeader}.${payload}`) });
  return { description: desc, did, kid, jws: { payload, signatures: [{ protected: protectedHeader, signature: b64(sig) }] } };
}
const jwkDid = async (pub) => {
  const { kid: _, ...rest } = pub;
  const did = `did:jwk:${b64(JSON.stringify(rest))}`;
  return { did, kid: `${did}#0` };
};
const keyDid = async (pub) => {
  const did = `did:key:${await DidKeyUtils.publicKeyToMultibaseId({ publicKey: pub })}`;
  return { did, kid: `${did}#${did.slice(8)}` };
};
const out = [
  await make('Ed25519 did:jwk (secret 32 x 0x07, as DWN-REFERENCE §2.4)', Ed25519, 'EdDSA', 7, jwkDid),
  await make('secp256k1 did:key ES256K', Secp256k1, 'ES256K', 9, keyDid),
  await make('P-256 did:jwk ES256', Secp256r1, 'ES256', 11, jwkDid),
];
console.log(JSON.stringify({ description: 'General JWS signed as dwn-sdk-js 0.5.2 does, generated with @web5/crypto 1.0.6 / @web5/dids 1.2.0', vectors: out }, null, 2));
