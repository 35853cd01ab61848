// The web5-js way of copying a DWN (SyncEngineLevel's pull, @web5/agent 0.8.1): a MessagesQuery
// to the remote node, then for each message a MessagesRead from it and a processMessage into the
// local dwn-sdk-js 0.5.2 Dwn, one message at a time. `dehr bench --replication N --reference`
// runs it against a DeHR node. Prints one JSON object on stdout; progress on stderr.
//
//   node bench/sync-pull.mjs --source http://127.0.0.1:3000 --did did:jwk:… --jwk '{…}' --limit 2000
import { performance } from 'node:perf_hooks';
import { Readable } from 'node:stream';
import { parseArgs } from 'node:util';

import { MessagesQuery, MessagesRead, PrivateKeySigner } from '@tbd54566975/dwn-sdk-js';

import { createOracle } from '../lib/oracle.mjs';

const { values } = parseArgs({
  options: {
    source: { type: 'string' },
    did: { type: 'string' },
    jwk: { type: 'string' },
    limit: { type: 'string', default: '2000' },
  },
});
const did = values.did;
const signer = new PrivateKeySigner({
  privateJwk: JSON.parse(values.jwk),
  keyId: `${did}#0`,
  algorithm: 'EdDSA',
});

/** One JSON-RPC dwn.processMessage over HTTP: the reply, and the data when the reply has some. */
async function send(message) {
  const request = { jsonrpc: '2.0', id: crypto.randomUUID(), method: 'dwn.processMessage', params: { target: did, message } };
  const response = await fetch(`${values.source}/`, { method: 'POST', headers: { 'dwn-request': JSON.stringify(request) } });
  const header = response.headers.get('dwn-response');
  if (header !== null) {
    return { reply: JSON.parse(header).result.reply, data: new Uint8Array(await response.arrayBuffer()) };
  }
  return { reply: (await response.json()).result.reply, data: undefined };
}

const oracle = await createOracle();
const started = performance.now();
const query = await MessagesQuery.create({ signer });
const { reply: listed } = await send(query.message);
const cids = listed.entries.slice(0, Number(values.limit));
let copied = 0;
for (const messageCid of cids) {
  const read = await MessagesRead.create({ messageCid, signer });
  const { reply, data } = await send(read.message);
  if (reply.status.code !== 200) throw new Error(`MessagesRead ${messageCid}: ${reply.status.code} ${reply.status.detail}`);
  const dataStream = data === undefined ? undefined : Readable.from([Buffer.from(data)]);
  const result = await oracle.dwn.processMessage(did, reply.entry.message, { dataStream });
  if (result.status.code !== 202 && result.status.code !== 204 && result.status.code !== 409) {
    throw new Error(`processMessage ${messageCid}: ${result.status.code} ${result.status.detail}`);
  }
  copied += 1;
  if (copied % 500 === 0) process.stderr.write(`  web5-js pull: ${copied}/${cids.length}\n`);
}
const seconds = (performance.now() - started) / 1000;
await oracle.close();
console.log(JSON.stringify({ messages: copied, seconds, perSecond: copied / seconds }));
