import { DidKey, DidKeyUtils, DidJwk } from '@web5/dids';
import { Ed25519, Secp256k1, X25519, Secp256r1 } from '@web5/crypto';
const seed = new Uint8Array(32).fill(7);
const out = [];
async function add(desc, pub) {
  const mb = await DidKeyUtils.publicKeyToMultibaseId({ publicKey: pub });
  const did = `did:key:${mb}`;
  const res = await DidKey.resolve(did);
  out.push({ description: desc, input: did, output: res });
}
const edPriv = await Ed25519.bytesToPrivateKey({ privateKeyBytes: seed });
await add('ed25519', await Ed25519.computePublicKey({ key: edPriv }));
const kPriv = await Secp256k1.bytesToPrivateKey({ privateKeyBytes: seed });
await add('secp256k1', await Secp256k1.computePublicKey({ key: kPriv }));
const xPriv = await X25519.bytesToPrivateKey({ privateKeyBytes: seed });
await add('x25519', await X25519.computePublicKey({ key: xPriv }));
for (const did of ['did:key:abc', 'did:key:z6Mk', 'did:key:zQ3shokFTS3brHcDQrn82RUDfCZESWL1ZdCEJwekUDPQiYBme', 'did:key:zDnaerDaTF5BXEavCrfRZEk316dpbLsfPDZ3WJ5hRTPFU2169']) {
  try { out.push({ description: 'error '+did, input: did, output: await DidKey.resolve(did) }); } catch (e) { out.push({input: did, thrown: String(e)}); }
}
console.log(JSON.stringify(out, null, 1));
