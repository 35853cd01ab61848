// The agent's FHIR R4 API driven by a real FHIR client, fhir-kit-client (npm): a `dehr node`,
// an identity and an import made with the `dehr` CLI, then `dehr agent` serving the record.
// DeHR's own API, so it runs only against dehr.
import assert from 'node:assert/strict';
import { execFile, spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { createInterface } from 'node:readline';
import { after, before, describe, test } from 'node:test';
import { promisify } from 'node:util';

import { Client } from 'fhir-kit-client';

import { fixturesDir } from '../lib/paths.mjs';
import { dehrBin, isDehr, startTarget } from '../lib/target.mjs';


const run = promisify(execFile);

/** Starts `dehr agent` and resolves with its base URL and token once it listens. */
function startAgent(bin, env, identity = 'alice') {
  const child = spawn(bin, ['agent', '--identity', identity, '--listen', '127.0.0.1:0'], {
    env,
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  return new Promise((resolve, reject) => {
    const lines = createInterface({ input: child.stdout });
    lines.once('line', (line) => {
      const [baseUrl, token] = line.trim().split(' token=');
      resolve({ child, baseUrl, token });
    });
    child.once('exit', (code) => reject(new Error(`dehr agent exited (${code}) before listening`)));
  });
}

describe('the FHIR API with fhir-kit-client', { skip: !isDehr && 'a DeHR API: runs against dehr only' }, () => {
  let node;
  let agent;
  let client;
  let home;

  before(async () => {
    node = await startTarget();
    const bin = dehrBin();
    home = mkdtempSync(path.join(os.tmpdir(), 'dehr-fhir-client-'));
    const env = {
      ...process.env,
      DEHR_HOME: home,
      DEHR_PASSPHRASE: 'fhir client test passphrase',
      DEHR_FHIR_DEFINITIONS: path.join(fixturesDir(), 'fhir-r4', 'definitions'),
      RUST_LOG: 'warn',
    };
    await run(bin, ['identity', 'create', '--name', 'alice', '--role', 'patient', '--node', node.url], { env });
    const file = path.join(home, 'seed.ndjson');
    writeFileSync(file, [
      { resourceType: 'Patient', id: 'p1', birthDate: '1971-03-04', gender: 'female' },
      { resourceType: 'Observation', id: 'o1', status: 'final', subject: { reference: 'Patient/p1' },
        code: { coding: [{ system: 'http://loinc.org', code: '4548-4' }] }, effectiveDateTime: '2024-05-01' },
      { resourceType: 'Observation', id: 'o2', status: 'final', subject: { reference: 'Patient/p1' },
        code: { coding: [{ system: 'http://loinc.org', code: '4548-4' }] }, effectiveDateTime: '2025-05-01' },
      { resourceType: 'Observation', id: 'o3', status: 'final', subject: { reference: 'Patient/p1' },
        code: { coding: [{ system: 'http://loinc.org', code: '2345-7' }] }, effectiveDateTime: '2025-06-01' },
    ].map((r) => JSON.stringify(r)).join('\n'));
    await run(bin, ['import', '--identity', 'alice', file], { env });
    agent = await startAgent(bin, env);
    client = new Client({
      baseUrl: agent.baseUrl,
      customHeaders: { Authorization: `Bearer ${agent.token}` },
    });
  });

  after(async () => {
    agent?.child.kill('SIGTERM');
    await node?.stop();
    if (home) rmSync(home, { recursive: true, force: true });
  });

  test('capabilityStatement tells what is served', async () => {
    const statement = await client.capabilityStatement();
    assert.equal(statement.resourceType, 'CapabilityStatement');
    assert.equal(statement.fhirVersion, '4.0.1');
    const observation = statement.rest[0].resource.find((r) => r.type === 'Observation');
    assert.deepEqual(
      observation.interaction.map((i) => i.code).sort(),
      ['create', 'delete', 'history-instance', 'read', 'search-type', 'update', 'vread'],
    );
    assert.deepEqual(statement.rest[0].interaction.map((i) => i.code), ['transaction', 'batch']);
    assert.ok(observation.searchParam.some((p) => p.name === '_lastUpdated'));
    // Only the parameters a type has elements for.
    const patient = statement.rest[0].resource.find((r) => r.type === 'Patient');
    assert.ok(patient.searchParam.some((p) => p.name === 'birthdate'));
    assert.ok(!patient.searchParam.some((p) => p.name === 'code'));
  });

  test('read', async () => {
    const patient = await client.read({ resourceType: 'Patient', id: 'p1' });
    assert.equal(patient.birthDate, '1971-03-04');
    await assert.rejects(client.read({ resourceType: 'Patient', id: 'missing' }), (error) => {
      assert.equal(error.response.status, 404);
      return true;
    });
  });

  test('search with token and date parameters, and paging', async () => {
    const bundle = await client.search({
      resourceType: 'Observation',
      searchParams: { code: 'http://loinc.org|4548-4', date: 'ge2025' },
    });
    assert.equal(bundle.type, 'searchset');
    assert.deepEqual(bundle.entry.map((e) => e.resource.id), ['o2']);
    const first = await client.search({
      resourceType: 'Observation',
      searchParams: { patient: 'p1', _count: 2, _sort: '-date' },
    });
    assert.equal(first.total, 3);
    assert.deepEqual(first.entry.map((e) => e.resource.id), ['o3', 'o2']);
    const second = await client.nextPage({ bundle: first });
    assert.deepEqual(second.entry.map((e) => e.resource.id), ['o1']);
    // The same search as a POST with a form body.
    const posted = await client.search({
      resourceType: 'Observation',
      searchParams: { code: '4548-4', _sort: 'date' },
      options: { postSearch: true },
    });
    assert.deepEqual(posted.entry.map((e) => e.resource.id), ['o1', 'o2']);
  });

  test('update, vread and history', async () => {
    const current = await client.read({ resourceType: 'Observation', id: 'o3' });
    assert.equal(current.meta.versionId, '1');
    const updated = await client.update({
      resourceType: 'Observation',
      id: 'o3',
      body: { ...current, status: 'amended' },
      options: { headers: { 'If-Match': 'W/"1"' } },
    });
    assert.equal(updated.meta.versionId, '2');
    await assert.rejects(
      client.update({
        resourceType: 'Observation',
        id: 'o3',
        body: { ...current, status: 'corrected' },
        options: { headers: { 'If-Match': 'W/"1"' } },
      }),
      (error) => {
        assert.equal(error.response.status, 412);
        return true;
      },
    );
    const first = await client.vread({ resourceType: 'Observation', id: 'o3', version: '1' });
    assert.equal(first.status, 'final');
    const history = await client.history({ resourceType: 'Observation', id: 'o3' });
    assert.equal(history.type, 'history');
    assert.deepEqual(history.entry.map((e) => e.resource.status), ['amended', 'final']);
  });

  test('delete: gone, with its history kept', async () => {
    const created = await client.create({
      resourceType: 'Observation',
      body: { resourceType: 'Observation', status: 'final', code: { text: 'temporary' }, subject: { reference: 'Patient/p1' } },
    });
    await client.delete({ resourceType: 'Observation', id: created.id });
    await assert.rejects(client.read({ resourceType: 'Observation', id: created.id }), (error) => {
      assert.equal(error.response.status, 410);
      return true;
    });
    const history = await client.history({ resourceType: 'Observation', id: created.id });
    assert.deepEqual(history.entry.map((e) => e.request.method), ['DELETE', 'POST']);
  });

  test('transaction and batch', async () => {
    const response = await client.transaction({
      body: {
        resourceType: 'Bundle',
        type: 'transaction',
        entry: [
          {
            fullUrl: 'urn:uuid:5a0e0c3e-9a4e-4a8a-8d3c-6d4f1f1c2b10',
            resource: { resourceType: 'Encounter', status: 'finished', class: { code: 'AMB' }, subject: { reference: 'Patient/p1' } },
            request: { method: 'POST', url: 'Encounter' },
          },
          {
            resource: {
              resourceType: 'Observation', status: 'final', code: { text: 'blood pressure' },
              subject: { reference: 'Patient/p1' },
              encounter: { reference: 'urn:uuid:5a0e0c3e-9a4e-4a8a-8d3c-6d4f1f1c2b10' },
            },
            request: { method: 'POST', url: 'Observation' },
          },
        ],
      },
    });
    assert.equal(response.type, 'transaction-response');
    assert.deepEqual(response.entry.map((e) => e.response.status), ['201', '201']);
    const encounterId = response.entry[0].resource.id;
    assert.equal(response.entry[1].resource.encounter.reference, `Encounter/${encounterId}`);
    // One invalid entry: the whole transaction is refused, and nothing of it is written.
    const count = async () =>
      (await client.search({ resourceType: 'Observation', searchParams: { _count: 0 } })).total;
    const before = await count();
    await assert.rejects(
      client.transaction({
        body: {
          resourceType: 'Bundle',
          type: 'transaction',
          entry: [
            { resource: { resourceType: 'Observation', status: 'final', code: { text: 'fine' } }, request: { method: 'POST', url: 'Observation' } },
            { resource: { resourceType: 'Observation', status: 'bogus', code: { text: 'bad' } }, request: { method: 'POST', url: 'Observation' } },
          ],
        },
      }),
      (error) => {
        assert.equal(error.response.status, 422);
        return true;
      },
    );
    assert.equal(await count(), before);
    const batch = await client.batch({
      body: {
        resourceType: 'Bundle',
        type: 'batch',
        entry: [
          { request: { method: 'GET', url: 'Patient/p1' } },
          { request: { method: 'GET', url: 'Patient/missing' } },
        ],
      },
    });
    assert.equal(batch.type, 'batch-response');
    assert.deepEqual(batch.entry.map((e) => e.response.status), ['200', '404']);
  });

  test('create: valid is stored, invalid gets an OperationOutcome', async () => {
    const created = await client.create({
      resourceType: 'Condition',
      body: { resourceType: 'Condition', subject: { reference: 'Patient/p1' }, code: { text: 'asthma' } },
    });
    assert.ok(created.id);
    const readBack = await client.read({ resourceType: 'Condition', id: created.id });
    assert.equal(readBack.code.text, 'asthma');
    await assert.rejects(
      client.create({
        resourceType: 'Condition',
        body: { resourceType: 'Condition', subject: { reference: 'Patient/p1' }, onsetDateTime: '2024-13-40' },
      }),
      (error) => {
        assert.equal(error.response.status, 422);
        assert.equal(error.response.data.resourceType, 'OperationOutcome');
        assert.match(JSON.stringify(error.response.data), /Condition\.onsetDateTime/);
        return true;
      },
    );
  });

  test('no token, no access', async () => {
    const anonymous = new Client({ baseUrl: agent.baseUrl });
    await assert.rejects(anonymous.read({ resourceType: 'Patient', id: 'p1' }), (error) => {
      assert.equal(error.response.status, 401);
      return true;
    });
  });
});

/** The DID of `name` in the vault at `env.DEHR_HOME`, from `dehr identity list`. */
async function didOf(bin, env, name) {
  const { stdout } = await run(bin, ['identity', 'list'], { env });
  const line = stdout.split('\n').find((l) => l.startsWith(`${name} `));
  return line.trim().split(/\s+/)[2];
}

describe('a provider\'s FHIR API over what a patient shared', { skip: !isDehr && 'a DeHR API: runs against dehr only' }, () => {
  let node;
  let agent;
  let client;
  let clinicDid;
  let patientEnv;
  const homes = [];

  before(async () => {
    node = await startTarget();
    const bin = dehrBin();
    const envFor = (name) => {
      const home = mkdtempSync(path.join(os.tmpdir(), `dehr-${name}-`));
      homes.push(home);
      return {
        ...process.env,
        DEHR_HOME: home,
        DEHR_PASSPHRASE: `${name} test passphrase`,
        DEHR_FHIR_DEFINITIONS: path.join(fixturesDir(), 'fhir-r4', 'definitions'),
        RUST_LOG: 'warn',
      };
    };
    const patient = envFor('patient');
    const clinic = envFor('clinic');
    await run(bin, ['identity', 'create', '--name', 'alice', '--role', 'patient', '--node', node.url], { env: patient });
    await run(bin, ['identity', 'create', '--name', 'clinic', '--role', 'provider', '--node', node.url], { env: clinic });
    const file = path.join(patient.DEHR_HOME, 'seed.ndjson');
    writeFileSync(file, [
      { resourceType: 'Patient', id: 'p7', birthDate: '1980-01-02' },
      { resourceType: 'Observation', id: 'o7', status: 'final', subject: { reference: 'Patient/p7' },
        code: { coding: [{ system: 'http://loinc.org', code: '8867-4' }] }, effectiveDateTime: '2025-02-03' },
      { resourceType: 'Condition', id: 'c7', subject: { reference: 'Patient/p7' }, code: { text: 'private' } },
    ].map((r) => JSON.stringify(r)).join('\n'));
    await run(bin, ['import', '--identity', 'alice', file], { env: patient });
    const aliceDid = await didOf(bin, patient, 'alice');
    clinicDid = await didOf(bin, clinic, 'clinic');
    patientEnv = patient;
    await run(bin, ['share', '--identity', 'alice', '--with', clinicDid,
      '--category', 'demographics', '--category', 'observations', '--write'], { env: patient });
    await run(bin, ['receive', '--identity', 'clinic', '--from', aliceDid], { env: clinic });
    agent = await startAgent(bin, clinic, 'clinic');
    client = new Client({ baseUrl: agent.baseUrl, customHeaders: { Authorization: `Bearer ${agent.token}` } });
  });

  after(async () => {
    agent?.child.kill('SIGTERM');
    await node?.stop();
    for (const home of homes) rmSync(home, { recursive: true, force: true });
  });

  test('serves the shared categories only', async () => {
    const patient = await client.read({ resourceType: 'Patient', id: 'p7' });
    assert.equal(patient.birthDate, '1980-01-02');
    const found = await client.search({ resourceType: 'Observation', searchParams: { patient: 'p7', code: '8867-4' } });
    assert.deepEqual(found.entry.map((e) => e.resource.id), ['o7']);
    await assert.rejects(client.read({ resourceType: 'Condition', id: 'c7' }), (error) => {
      assert.equal(error.response.status, 404);
      return true;
    });
  });

  test('adds a signed Observation to the patient\'s record', async () => {
    const created = await client.create({
      resourceType: 'Observation',
      body: { resourceType: 'Observation', status: 'final', code: { text: 'heart rate' },
        subject: { reference: 'Patient/p7' }, valueQuantity: { value: 61, unit: '/min' } },
    });
    const author = created.meta.extension.find((e) => e.url.endsWith('record-author')).valueUri;
    assert.equal(author, clinicDid);
    // In the patient's own record, as the patient's export shows.
    const { stdout } = await run(dehrBin(), ['export', '--identity', 'alice', '--format', 'bundle'], { env: patientEnv });
    assert.ok(JSON.parse(stdout).entry.some((e) => e.resource.id === created.id));
    const everything = await client.operation({ name: '$everything', resourceType: 'Patient', id: 'p7', method: 'GET' });
    assert.ok(everything.entry.some((e) => e.resource.id === created.id));
  });
});
