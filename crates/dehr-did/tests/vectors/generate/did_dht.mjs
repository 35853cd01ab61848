import { DidDhtDocument, DidDhtUtils } from '@web5/dids';
import { Ed25519, Secp256k1, X25519, computeJwkThumbprint } from '@web5/crypto';
import { encode as dnsEncode, decode as dnsDecode } from '@dnsquery/dns-packet';
const hex = (u) => Buffer.from(u).toString('hex');
const b64 = (u) => Buffer.from(u).toString('base64url');
Date.now = () => 1700000000000;
async function vec(desc, seedByte, build, types) {
  const priv = await Ed25519.bytesToPrivateKey({ privateKeyBytes: new Uint8Array(32).fill(seedByte) });
  const pub = await Ed25519.computePublicKey({ key: priv });
  const did = await DidDhtUtils.identityKeyToIdentifier({ identityKey: pub });
  const { kid, ...pubNoKid } = pub;
  const doc = await build(did, { ...pubNoKid, alg: 'EdDSA' });
  const docIn = JSON.parse(JSON.stringify(doc));
  const packet = await DidDhtDocument.toDnsPacket({ didDocument: doc, didMetadata: { types }, authoritativeGatewayUris: [] });
  const signer = { sign: async ({ data }) => Ed25519.sign({ key: priv, data }) };
  const msg = await DidDhtUtils.createBep44PutMessage({ dnsPacket: packet, publicKeyBytes: Buffer.from(pub.x, 'base64url'), signer });
  const body = new Uint8Array(msg.v.length + 72);
  body.set(msg.sig, 0); new DataView(body.buffer).setBigUint64(64, BigInt(msg.seq)); body.set(msg.v, 72);
  const decoded = await DidDhtDocument.fromDnsPacket({ didUri: did, dnsPacket: dnsDecode(msg.v) });
  return { description: desc, identitySeedHex: hex(new Uint8Array(32).fill(seedByte)), did, seq: msg.seq, types: types ?? [],
    document: docIn, relayBodyHex: hex(body), resolved: decoded.didDocument, resolvedMetadata: decoded.didDocumentMetadata };
}
const out = [];
out.push(await vec('identity key only', 1, async (did, idk) => ({
  id: did,
  verificationMethod: [{ id: `${did}#0`, type: 'JsonWebKey', controller: did, publicKeyJwk: idk }],
  authentication: [`${did}#0`], assertionMethod: [`${did}#0`], capabilityDelegation: [`${did}#0`], capabilityInvocation: [`${did}#0`],
})));
out.push(await vec('web5 connect style: sig+enc keys, dwn service', 2, async (did, idk) => {
  const sig = await Ed25519.computePublicKey({ key: await Ed25519.bytesToPrivateKey({ privateKeyBytes: new Uint8Array(32).fill(3) }) });
  const enc = await Secp256k1.computePublicKey({ key: await Secp256k1.bytesToPrivateKey({ privateKeyBytes: new Uint8Array(32).fill(4) }) });
  delete sig.kid; delete enc.kid; sig.alg = 'EdDSA'; enc.alg = 'ES256K';
  return {
    id: did,
    verificationMethod: [
      { id: `${did}#0`, type: 'JsonWebKey', controller: did, publicKeyJwk: idk },
      { id: `${did}#sig`, type: 'JsonWebKey', controller: did, publicKeyJwk: sig },
      { id: `${did}#enc`, type: 'JsonWebKey', controller: did, publicKeyJwk: enc },
    ],
    authentication: [`${did}#0`, `${did}#sig`], assertionMethod: [`${did}#0`, `${did}#sig`],
    capabilityDelegation: [`${did}#0`], capabilityInvocation: [`${did}#0`], keyAgreement: [`${did}#enc`],
    service: [{ id: `${did}#dwn`, type: 'DecentralizedWebNode', serviceEndpoint: ['https://dwn.example.com', 'https://dwn2.example.com/x'], enc: '#enc', sig: '#sig' }],
  };
}, [1, 7]));
out.push(await vec('thumbprint ids, x25519, controller, aka, long service endpoint', 5, async (did, idk) => {
  const k1 = await Secp256k1.computePublicKey({ key: await Secp256k1.bytesToPrivateKey({ privateKeyBytes: new Uint8Array(32).fill(6) }) });
  const x = await X25519.computePublicKey({ key: await X25519.bytesToPrivateKey({ privateKeyBytes: new Uint8Array(32).fill(8) }) });
  delete k1.kid; delete x.kid; k1.alg = 'ES256K'; x.alg = 'ECDH-ES+A256KW';
  const tp = await computeJwkThumbprint({ jwk: k1 });
  return {
    id: did, controller: 'did:example:ctrl', alsoKnownAs: ['did:example:a', 'did:example:b'],
    verificationMethod: [
      { id: `${did}#0`, type: 'JsonWebKey', controller: did, publicKeyJwk: idk },
      { id: `${did}#${tp}`, type: 'JsonWebKey', controller: 'did:example:other', publicKeyJwk: k1 },
      { id: `${did}#x`, type: 'JsonWebKey', controller: did, publicKeyJwk: x },
    ],
    authentication: [`${did}#0`], assertionMethod: [`${did}#${tp}`], keyAgreement: [`${did}#x`],
    service: [
      { id: `${did}#long`, type: 'LinkedDomains', serviceEndpoint: 'https://example.com/' + 'a'.repeat(300) },
      { id: `${did}#dwn`, type: 'DecentralizedWebNode', serviceEndpoint: 'https://dwn.example.org' },
    ],
  };
}));
console.log(JSON.stringify(out, null, 1));
