// The reference side of `dehr bench`: the same workload on dwn-sdk-js 0.5.2 in-process (LevelDB
// stores, as dwn-server uses by default). Prints one JSON object on stdout; progress on stderr.
//
// At each record count, the tenant's records are in a one-type protocol (as in `dehr bench`), and
// four query workloads are timed, each query freshly signed before the clock starts:
// - query_latency: RecordsQuery by the owner, filter {schema}, limit 20;
// - messages_query_latency: MessagesQuery by the owner from the cursor a replica got when it
//   last polled, 20 events before the end of the log;
// - messages_query_protocol_latency: the same with filter {protocol};
// - grant_query_latency: RecordsQuery {protocol, schema} limit 20 by a grantee holding a
//   Records/Query grant on the protocol, with the grant's id as `permissionGrantId` in the
//   signature payload (RecordsQuery.create takes none, so the message is re-signed with
//   Message.createAuthorization). dwn-sdk-js 0.5.2 ignores that id on RecordsQuery: the grantee
//   gets the non-owner view (the records are neither published nor addressed to it, so none),
//   which is still the work of a non-owner query. DeHR answers the records in the grant's scope.
//
//   node bench/reference.mjs --writes 2000 --records 1000,10000 --queries 300
import { performance } from 'node:perf_hooks';
import { Readable } from 'node:stream';
import { parseArgs } from 'node:util';

import {
  Message, MessagesQuery, PermissionsProtocol, ProtocolsConfigure, RecordsQuery, RecordsWrite,
} from '@tbd54566975/dwn-sdk-js';

import { createActor } from '../lib/actors.mjs';
import { createOracle } from '../lib/oracle.mjs';

const { values } = parseArgs({
  options: {
    writes: { type: 'string', default: '2000' },
    records: { type: 'string', default: '1000,10000' },
    queries: { type: 'string', default: '300' },
    clients: { type: 'string', default: '8' },
  },
});
const SCHEMA = 'https://hl7.org/fhir/Observation';
// The same protocol as `dehr bench`: one type, the Observation.
const PROTOCOL = 'https://dehr.example/bench/observations';
const PROTOCOL_PATH = 'observation';
const DEFINITION = {
  protocol: PROTOCOL,
  published: true,
  types: { [PROTOCOL_PATH]: { schema: SCHEMA, dataFormats: ['application/fhir+json'] } },
  structure: { [PROTOCOL_PATH]: {} },
};
/** Events after the sync cursor: a replica polling MessagesQuery finds this many new messages. */
const NEW_EVENTS = 20;

/** The same 1 KB FHIR Observation as `dehr bench` (crates/dehr/src/bench.rs). */
function observation(i) {
  const obs = {
    resourceType: 'Observation',
    id: `bp-${i}`,
    status: 'final',
    category: [{ coding: [{ system: 'http://terminology.hl7.org/CodeSystem/observation-category', code: 'vital-signs', display: 'Vital Signs' }] }],
    code: { coding: [{ system: 'http://loinc.org', code: '85354-9', display: 'Blood pressure panel with all children optional' }], text: 'Blood pressure' },
    subject: { reference: 'Patient/example' },
    effectiveDateTime: '2024-05-01T09:30:00Z',
    component: [
      { code: { coding: [{ system: 'http://loinc.org', code: '8480-6', display: 'Systolic blood pressure' }] }, valueQuantity: { value: 107 + (i % 40), unit: 'mmHg', system: 'http://unitsofmeasure.org', code: 'mm[Hg]' } },
      { code: { coding: [{ system: 'http://loinc.org', code: '8462-4', display: 'Diastolic blood pressure' }] }, valueQuantity: { value: 60 + (i % 30), unit: 'mmHg', system: 'http://unitsofmeasure.org', code: 'mm[Hg]' } },
    ],
  };
  let bytes = Buffer.from(JSON.stringify(obs));
  if (bytes.length < 1024) {
    obs.note = [{ text: 'x'.repeat(1024 - bytes.length - 20) }];
    bytes = Buffer.from(JSON.stringify(obs));
  }
  return new Uint8Array(bytes);
}

/** Signed writes with their data; flat records, or records of PROTOCOL when `inProtocol`. */
async function signedWrites(owner, count, offset, inProtocol = false) {
  const out = [];
  const protocol = inProtocol ? { protocol: PROTOCOL, protocolPath: PROTOCOL_PATH } : {};
  for (let i = 0; i < count; i++) {
    const data = observation(offset + i);
    const { message } = await RecordsWrite.create({ data, dataFormat: 'application/fhir+json', schema: SCHEMA, ...protocol, signer: owner.signer });
    out.push({ message, data });
  }
  return out;
}

async function runWrites(dwn, owner, writes, clients) {
  const queue = [...writes];
  const start = performance.now();
  await Promise.all(Array.from({ length: clients }, async () => {
    for (let next = queue.pop(); next; next = queue.pop()) {
      const reply = await dwn.processMessage(owner.did, next.message, { dataStream: Readable.from([Buffer.from(next.data)]) });
      if (reply.status.code !== 202) throw new Error(`write failed: ${JSON.stringify(reply.status)}`);
    }
  }));
  return writes.length / ((performance.now() - start) / 1000);
}

function percentile(sorted, p) {
  return sorted.length ? sorted[Math.round((sorted.length - 1) * p)] : 0;
}

/** Times `queries` messages made by `next` (signed before the clock starts) sent to `tenant`. */
async function latency(dwn, tenant, next) {
  const latencies = [];
  let entries = 0;
  for (let i = 0; i < Number(values.queries); i++) {
    const message = await next();
    const start = performance.now();
    const reply = await dwn.processMessage(tenant, message);
    latencies.push(performance.now() - start);
    if (reply.status.code !== 200) throw new Error(`query failed: ${JSON.stringify(reply.status)}`);
    entries = reply.entries?.length ?? 0;
  }
  latencies.sort((a, b) => a - b);
  return { p50_ms: percentile(latencies, 0.5), p99_ms: percentile(latencies, 0.99), entries };
}

async function accept(dwn, tenant, message, data) {
  const reply = await dwn.processMessage(tenant, message, data ? { dataStream: Readable.from([Buffer.from(data)]) } : {});
  if (reply.status.code !== 202) throw new Error(`message refused: ${JSON.stringify(reply.status)}`);
}

async function fill(dwn, owner, offset, count) {
  for (let done = 0; done < count; done += 2000) {
    await runWrites(dwn, owner, await signedWrites(owner, Math.min(2000, count - done), offset + done, true), clients);
  }
}

const WORKLOADS = ['query_latency', 'messages_query_latency', 'messages_query_protocol_latency', 'grant_query_latency'];
const clients = Number(values.clients);
const result = { implementation: '@tbd54566975/dwn-sdk-js 0.5.2', grant_query_mode: 'permissionGrantId in the signature payload, ignored by dwn-sdk-js on RecordsQuery: non-owner view' };
for (const key of WORKLOADS) result[key] = {};
{
  const oracle = await createOracle();
  const owner = await createActor('owner');
  process.stderr.write(`reference: signing ${values.writes} writes…\n`);
  const writes = await signedWrites(owner, Number(values.writes), 0);
  result.writes_per_s_in_process = await runWrites(oracle.dwn, owner, writes, clients);
  process.stderr.write(`reference: ${result.writes_per_s_in_process.toFixed(0)} writes/s\n`);
  await oracle.close();
}
for (const n of values.records.split(',').map(Number)) {
  const oracle = await createOracle();
  const { dwn } = oracle;
  const owner = await createActor('owner');
  const grantee = await createActor('grantee');
  const configure = await ProtocolsConfigure.create({ definition: DEFINITION, signer: owner.signer });
  await accept(dwn, owner.did, configure.message);
  const grant = await PermissionsProtocol.createGrant({
    signer: owner.signer,
    grantedTo: grantee.did,
    dateExpires: '2100-01-01T00:00:00.000000Z',
    scope: { interface: 'Records', method: 'Query', protocol: PROTOCOL },
  });
  await accept(dwn, owner.did, grant.recordsWrite.message, grant.permissionGrantBytes);
  const grantId = grant.recordsWrite.message.recordId;

  process.stderr.write(`reference: filling ${n} records…\n`);
  const tail = Math.min(n, NEW_EVENTS);
  await fill(dwn, owner, 0, n - tail);
  // Where a replica that last polled now would resume: the cursor of the last event so far.
  const everything = await MessagesQuery.create({ filters: [], signer: owner.signer });
  const polled = await dwn.processMessage(owner.did, everything.message);
  if (polled.status.code !== 200 || !polled.cursor) throw new Error(`MessagesQuery failed: ${JSON.stringify(polled.status)}`);
  const { cursor } = polled;
  await fill(dwn, owner, n - tail, tail);

  const figures = {
    query_latency: await latency(dwn, owner.did, async () =>
      (await RecordsQuery.create({ filter: { schema: SCHEMA }, pagination: { limit: 20 }, signer: owner.signer })).message),
    messages_query_latency: await latency(dwn, owner.did, async () =>
      (await MessagesQuery.create({ filters: [], cursor, signer: owner.signer })).message),
    messages_query_protocol_latency: await latency(dwn, owner.did, async () =>
      (await MessagesQuery.create({ filters: [{ protocol: PROTOCOL }], cursor, signer: owner.signer })).message),
    grant_query_latency: await latency(dwn, owner.did, async () => {
      const { message: { descriptor } } = await RecordsQuery.create({ filter: { protocol: PROTOCOL, schema: SCHEMA }, pagination: { limit: 20 } });
      const authorization = await Message.createAuthorization({ descriptor, signer: grantee.signer, permissionGrantId: grantId });
      return { descriptor, authorization };
    }),
  };
  for (const key of WORKLOADS) {
    result[key][n] = figures[key];
    process.stderr.write(`reference: ${key} at ${n}: p50 ${figures[key].p50_ms.toFixed(3)} ms, ${figures[key].entries} entries\n`);
  }
  await oracle.close();
}
console.log(JSON.stringify(result));
