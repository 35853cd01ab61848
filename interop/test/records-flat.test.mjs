// Flat (protocol-less) records: sizes around the inline and chunking boundaries, queries,
// updates, conflicts, immutability, writes without data, writes after delete, data integrity.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';

import { createActors } from '../lib/actors.mjs';
import { bytesData, generatedBytes, generatedData, describeData } from '../lib/data.mjs';
import { useInterop } from '../lib/harness.mjs';
import {
  formatTimestamp, recordsDelete, recordsQuery, recordsRead, recordsUpdate, recordsWrite,
} from '../lib/messages.mjs';

const h = useInterop();
const NOTE = 'https://example.org/note';

/** Reads a record as its owner and checks that both sides returned exactly `data`. */
async function assertReadBack(owner, recordId, data) {
  const { summary } = await h.send(owner.did, await recordsRead(owner, { recordId }), { expect: 200 });
  const { sha256, dataSize } = await describeData(data);
  assert.deepEqual(summary.entry.data, { sha256, size: dataSize });
  return summary;
}

describe('write and read back across data sizes', () => {
  // 30,000 B is the largest size returned inline as encodedData; 256 KiB is one UnixFS chunk.
  for (const size of [1, 1000, 30_000, 30_001, 300_000]) {
    test(`${size} B`, async () => {
      const { alice } = await createActors('alice');
      const written = await recordsWrite(alice, {
        schema: NOTE, dataFormat: 'application/octet-stream', data: await generatedBytes(size, `size-${size}`),
      });
      await h.write(alice.did, written);
      await assertReadBack(alice, written.message.recordId, written.data);

      const { summary } = await h.send(alice.did,
        await recordsQuery(alice, { recordId: written.message.recordId }), { expect: 200 });
      assert.equal(summary.entries.length, 1);
      assert.equal(summary.entries[0].encodedData !== null, size <= 30_000, 'encodedData only up to 30,000 B');
    });
  }

  test('50 MB streamed (multi-level UnixFS tree)', async () => {
    const { alice } = await createActors('alice');
    const data = generatedData(50 * 1024 * 1024, 'fifty-megabytes');
    const written = await recordsWrite(alice, { schema: NOTE, dataFormat: 'application/octet-stream', data });
    assert.match(written.message.descriptor.dataCid, /^bafybei/, 'large data has a dag-pb root');
    await h.write(alice.did, written);
    await assertReadBack(alice, written.message.recordId, data);
  });

  test('0 B with content-length: 0 is "no data": 204, not readable', async () => {
    // dwn-server only passes a body to the DWN when content-length > 0 or transfer-encoding is
    // set, so an empty record sent the ordinary way is an initial write without data.
    const { alice } = await createActors('alice');
    const written = await recordsWrite(alice, { data: bytesData('') });
    await h.write(alice.did, written, 204);
    await h.send(alice.did, await recordsRead(alice, { recordId: written.message.recordId }), { expect: 404 });
  });

  test('0 B with a chunked empty body is data: 202, readable', async () => {
    const { alice } = await createActors('alice');
    const written = await recordsWrite(alice, { data: bytesData('') });
    await h.send(alice.did, written.message, { data: written.data, transfer: 'chunked', expect: 202 });
    await assertReadBack(alice, written.message.recordId, written.data);
  });
});

describe('queries', () => {
  // alice's records, each a different mix of schema, dataFormat, dateCreated and size.
  async function seed() {
    const { alice } = await createActors('alice');
    const specs = [
      { schema: NOTE, dataFormat: 'text/plain', dateCreated: '2023-01-10', size: 10 },
      { schema: NOTE, dataFormat: 'application/json', dateCreated: '2023-02-10', size: 100 },
      { schema: 'https://example.org/photo', dataFormat: 'image/png', dateCreated: '2023-03-10', size: 1000 },
      { schema: 'https://example.org/photo', dataFormat: 'image/png', dateCreated: '2023-04-10', size: 40_000 },
    ];
    const records = [];
    for (const [i, spec] of specs.entries()) {
      const written = await recordsWrite(alice, {
        schema: spec.schema,
        dataFormat: spec.dataFormat,
        data: await generatedBytes(spec.size, `query-${i}`),
        messageTimestamp: formatTimestamp(`${spec.dateCreated}T12:00:00Z`),
      });
      await h.write(alice.did, written);
      records.push(written.message);
    }
    return { alice, records };
  }

  const cases = [
    ['schema', () => ({ schema: NOTE }), 2],
    ['recordId', (r) => ({ recordId: r[2].recordId }), 1],
    ['dataFormat', () => ({ dataFormat: 'image/png' }), 2],
    ['dateCreated from', () => ({ dateCreated: { from: formatTimestamp('2023-02-10T12:00:00Z') } }), 3],
    ['dateCreated to (exclusive)', () => ({ dateCreated: { to: formatTimestamp('2023-03-10T12:00:00Z') } }), 2],
    ['dateCreated from..to', () => ({ dateCreated: {
      from: formatTimestamp('2023-02-01T00:00:00Z'), to: formatTimestamp('2023-04-01T00:00:00Z') } }), 2],
    ['dataSize gte', () => ({ dataSize: { gte: 100 } }), 3],
    ['dataSize gt..lt', () => ({ dataSize: { gt: 10, lt: 40_000 } }), 2],
    ['dataSize lte', () => ({ dataSize: { lte: 1000 } }), 3],
    ['schema and dataFormat', () => ({ schema: NOTE, dataFormat: 'text/plain' }), 1],
    ['dataCid', (r) => ({ dataCid: r[3].descriptor.dataCid }), 1],
    ['no match', () => ({ schema: 'https://example.org/none' }), 0],
  ];

  test('filters on schema, recordId, dataFormat, dateCreated, dataSize, dataCid', async (t) => {
    const { alice, records } = await seed();
    for (const [name, filter, count] of cases) {
      await t.test(name, async () => {
        const { summary } = await h.send(alice.did, await recordsQuery(alice, filter(records)), { expect: 200 });
        assert.equal(summary.entries.length, count);
      });
    }
  });
});

describe('updates and conflicts', () => {
  test('a newer write replaces the record; read and query carry initialWrite', async () => {
    const { alice } = await createActors('alice');
    const v1 = await recordsWrite(alice, { schema: NOTE, data: bytesData('version 1') });
    await h.write(alice.did, v1);
    const v2 = await recordsUpdate(alice, v1.message, { data: bytesData('version 2') });
    await h.write(alice.did, v2);

    const read = await assertReadBack(alice, v1.message.recordId, v2.data);
    assert.notEqual(read.entry.initialWrite, null);
    const { summary } = await h.send(alice.did, await recordsQuery(alice, { schema: NOTE }), { expect: 200 });
    assert.equal(summary.entries.length, 1);
    assert.notEqual(summary.entries[0].initialWrite, null);
  });

  test('an older write after a newer one is a conflict (409)', async () => {
    const { alice } = await createActors('alice');
    const v1 = await recordsWrite(alice, { schema: NOTE });
    const v2 = await recordsUpdate(alice, v1.message, { data: bytesData('v2') });
    const v3 = await recordsUpdate(alice, v1.message, { data: bytesData('v3') });
    await h.write(alice.did, v1);
    await h.write(alice.did, v3);
    await h.write(alice.did, v2, 409);
    await assertReadBack(alice, v1.message.recordId, v3.data);
  });

  test('the same write twice is a conflict (409)', async () => {
    const { alice } = await createActors('alice');
    const v1 = await recordsWrite(alice, { schema: NOTE });
    await h.write(alice.did, v1);
    await h.write(alice.did, v1, 409);
  });

  for (const size of [20, 40_000]) {
    test(`an update without data keeps the data when dataCid is unchanged (${size} B)`, async () => {
      const { alice } = await createActors('alice');
      const v1 = await recordsWrite(alice, { schema: NOTE, data: await generatedBytes(size, `keep-${size}`) });
      await h.write(alice.did, v1);
      const v2 = await recordsUpdate(alice, v1.message, { published: true });
      await h.send(alice.did, v2.message, { expect: 202 }); // no body
      await assertReadBack(alice, v1.message.recordId, v1.data);
    });
  }

  test('an update without data but with a new dataCid is rejected (400); the record is unchanged', async () => {
    // Otherwise anyone could claim a known dataCid and gain its data (dwn-sdk-js #359).
    const { alice } = await createActors('alice');
    const v1 = await recordsWrite(alice, { schema: NOTE, data: bytesData('original') });
    await h.write(alice.did, v1);
    const v2 = await recordsUpdate(alice, v1.message, { data: bytesData('replacement') });
    await h.send(alice.did, v2.message, { expect: 400 }); // message only, no body
    await assertReadBack(alice, v1.message.recordId, v1.data);
  });

  for (const [property, change] of [
    ['schema', { schema: 'https://example.org/other' }],
    ['dateCreated', { dateCreated: formatTimestamp('2020-01-01T00:00:00Z') }],
    ['recipient', { recipient: 'did:example:someone-else' }],
  ]) {
    test(`changing the immutable ${property} is rejected (400)`, async () => {
      const { alice } = await createActors('alice');
      const v1 = await recordsWrite(alice, { schema: NOTE });
      await h.write(alice.did, v1);
      const v2 = await recordsUpdate(alice, v1.message, { data: bytesData('changed'), ...change });
      await h.write(alice.did, v2, 400);
    });
  }

  test('mutable properties (dataFormat, published, tags) may change', async () => {
    const { alice } = await createActors('alice');
    const v1 = await recordsWrite(alice, { schema: NOTE, tags: { status: 'draft' } });
    await h.write(alice.did, v1);
    const v2 = await recordsUpdate(alice, v1.message, {
      data: bytesData('plain now'), dataFormat: 'text/plain', published: true, tags: { status: 'final' },
    });
    await h.write(alice.did, v2);
  });
});

describe('writes without data, and after delete', () => {
  test('an initial write without data is stored (204) but not readable (404) nor queryable', async () => {
    const { alice } = await createActors('alice');
    const written = await recordsWrite(alice, { schema: NOTE });
    await h.send(alice.did, written.message, { expect: 204 });
    await h.send(alice.did, await recordsRead(alice, { recordId: written.message.recordId }), { expect: 404 });
    const { summary } = await h.send(alice.did, await recordsQuery(alice, { schema: NOTE }), { expect: 200 });
    assert.equal(summary.entries.length, 0);
  });

  test('re-sending that initial write with its data is a conflict; a newer write with data completes it', async () => {
    const { alice } = await createActors('alice');
    const written = await recordsWrite(alice, { schema: NOTE });
    await h.send(alice.did, written.message, { expect: 204 });
    await h.write(alice.did, written, 409);
    const v2 = await recordsUpdate(alice, written.message, { data: written.data });
    await h.write(alice.did, v2);
    await assertReadBack(alice, written.message.recordId, written.data);
  });

  test('a write after a delete is rejected (400)', async () => {
    const { alice } = await createActors('alice');
    const v1 = await recordsWrite(alice, { schema: NOTE });
    await h.write(alice.did, v1);
    await h.send(alice.did, await recordsDelete(alice, v1.message.recordId), { expect: 202 });
    const v2 = await recordsUpdate(alice, v1.message, { data: bytesData('too late') });
    await h.write(alice.did, v2, 400);
  });
});

describe('data integrity', () => {
  test('a body that does not match dataCid is rejected (400)', async () => {
    const { alice } = await createActors('alice');
    const declared = await recordsWrite(alice, { schema: NOTE, data: bytesData('hello') });
    await h.send(alice.did, declared.message, { data: bytesData('world'), expect: 400 });
  });

  test('a body whose size does not match dataSize is rejected (400)', async () => {
    const { alice } = await createActors('alice');
    const data = bytesData('hello');
    const { dataCid } = await describeData(data);
    const declared = await recordsWrite(alice, { schema: NOTE, dataCid, dataSize: 6, data });
    await h.send(alice.did, declared.message, { data, expect: 400 });
  });

  test('a large body that does not match dataCid is rejected (400) and not stored', async () => {
    const { alice } = await createActors('alice');
    const declared = await recordsWrite(alice, { schema: NOTE, data: await generatedBytes(300_000, 'declared') });
    await h.send(alice.did, declared.message, { data: await generatedBytes(300_000, 'other'), expect: 400 });
    await h.send(alice.did, await recordsRead(alice, { recordId: declared.message.recordId }), { expect: 404 });
  });
});
