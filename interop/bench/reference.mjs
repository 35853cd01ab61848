// The reference side of `dehr bench`: the same workload on dwn-sdk-js 0.5.2 in-process (LevelDB
// stores, as dwn-server uses by default). Prints one JSON object on stdout; progress on stderr.
//
//   node bench/reference.mjs --writes 2000 --records 1000,10000 --queries 300
import { performance } from 'node:perf_hooks';
import { Readable } from 'node:stream';
import { parseArgs } from 'node:util';

import { RecordsQuery, RecordsWrite } from '@tbd54566975/dwn-sdk-js';

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

async function signedWrites(owner, count, offset) {
  const out = [];
  for (let i = 0; i < count; i++) {
    const data = observation(offset + i);
    const { message } = await RecordsWrite.create({ data, dataFormat: 'application/fhir+json', schema: SCHEMA, signer: owner.signer });
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

const clients = Number(values.clients);
const result = { implementation: '@tbd54566975/dwn-sdk-js 0.5.2', query_latency: {} };
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
  const owner = await createActor('owner');
  process.stderr.write(`reference: filling ${n} records…\n`);
  for (let done = 0; done < n; done += 2000) {
    await runWrites(oracle.dwn, owner, await signedWrites(owner, Math.min(2000, n - done), done), clients);
  }
  const latencies = [];
  for (let i = 0; i < Number(values.queries); i++) {
    const { message } = await RecordsQuery.create({ filter: { schema: SCHEMA }, pagination: { limit: 20 }, signer: owner.signer });
    const start = performance.now();
    const reply = await oracle.dwn.processMessage(owner.did, message);
    latencies.push(performance.now() - start);
    if (reply.status.code !== 200) throw new Error(`query failed: ${JSON.stringify(reply.status)}`);
  }
  latencies.sort((a, b) => a - b);
  result.query_latency[n] = { p50_ms: percentile(latencies, 0.5), p99_ms: percentile(latencies, 0.99) };
  process.stderr.write(`reference: query at ${n}: p50 ${result.query_latency[n].p50_ms.toFixed(3)} ms\n`);
  await oracle.close();
}
console.log(JSON.stringify(result));
