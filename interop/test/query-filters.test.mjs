// RecordsQuery filters (tags, dates, published), the four dateSort orders, and pagination:
// every page is compared, so the cursors ({messageCid, value}) must be identical too.
import assert from 'node:assert/strict';
import { before, describe, test } from 'node:test';

import { createActors } from '../lib/actors.mjs';
import { bytesData } from '../lib/data.mjs';
import { useInterop } from '../lib/harness.mjs';
import { formatTimestamp, recordsQuery, recordsUpdate, recordsWrite } from '../lib/messages.mjs';

const h = useInterop();
const SCHEMA = 'https://example.org/entry';
const at = (day) => formatTimestamp(`${day}T08:00:00Z`);

// Two pairs share a timestamp on purpose: ties must be broken the same way.
const SPECS = [
  { created: '2023-05-01', published: '2023-06-03', tags: { status: 'final', priority: 1, kind: 'note-a', flag: true, labels: ['x', 'y'] } },
  { created: '2023-03-01', tags: { status: 'draft', priority: 2, kind: 'note-b', flag: false, labels: ['y'] } },
  { created: '2023-04-01', published: '2023-06-01', tags: { status: 'final', priority: 3, kind: 'memo', flag: true } },
  { created: '2023-04-01', published: '2023-06-01', tags: { status: 'archived', priority: 4, kind: 'note-a' } },
  { created: '2023-01-01', tags: { status: 'draft', priority: 5, kind: 'memo', labels: ['x'] } },
  { created: '2023-02-01', published: '2023-06-02', tags: { status: 'final', priority: 3, kind: 'note-c' } },
  { created: '2023-06-01', tags: { status: 'draft', priority: 2 } },
];

let alice, bob;
before(async () => {
  ({ alice, bob } = await createActors('alice', 'bob'));
  const written = [];
  for (const spec of SPECS) {
    const record = await recordsWrite(alice, {
      schema: SCHEMA,
      tags: spec.tags,
      messageTimestamp: at(spec.created),
      published: spec.published !== undefined,
      datePublished: spec.published && at(spec.published),
    });
    await h.write(alice.did, record);
    written.push(record.message);
  }
  // Two later updates, so dateUpdated differs from dateCreated for them.
  await h.write(alice.did, await recordsUpdate(alice, written[1], { data: bytesData('edited'), messageTimestamp: at('2024-02-01') }));
  await h.write(alice.did, await recordsUpdate(alice, written[4], { data: bytesData('edited'), messageTimestamp: at('2024-03-01') }));
});

async function count(actor, filter, options) {
  const { summary } = await h.send(alice.did, await recordsQuery(actor, { schema: SCHEMA, ...filter }, options), { expect: 200 });
  return summary.entries.length;
}

describe('tag filters', () => {
  const cases = [
    ['string equal', { status: 'final' }, 3],
    ['number equal', { priority: 3 }, 2],
    ['boolean equal', { flag: true }, 2],
    ['boolean false', { flag: false }, 1],
    ['startsWith', { kind: { startsWith: 'note' } }, 4],
    ['number range gte..lt', { priority: { gte: 2, lt: 4 } }, 4],
    ['number range gt', { priority: { gt: 3 } }, 2],
    ['number range lte', { priority: { lte: 1 } }, 1],
    ['string range', { status: { gte: 'archived', lt: 'final' } }, 4],
    ['array contains', { labels: 'x' }, 2],
    ['two tags', { status: 'final', priority: 3 }, 2],
    ['no match', { status: 'deleted' }, 0],
  ];
  for (const [name, tags, expected] of cases) {
    test(name, async () => assert.equal(await count(alice, { tags }), expected));
  }
});

describe('date and published filters', () => {
  const cases = [
    ['dateCreated from', { dateCreated: { from: at('2023-04-01') } }, 4],
    ['dateCreated to', { dateCreated: { to: at('2023-04-01') } }, 3],
    ['datePublished from..to', { datePublished: { from: at('2023-06-01'), to: at('2023-06-03') } }, 3],
    ['datePublished from', { datePublished: { from: at('2023-06-02') } }, 2],
    ['dateUpdated from', { dateUpdated: { from: at('2024-01-01') } }, 2],
    ['dateUpdated to', { dateUpdated: { to: at('2024-03-01') } }, 6],
    ['published true', { published: true }, 4],
    ['published false', { published: false }, 3],
  ];
  for (const [name, filter, expected] of cases) {
    test(name, async () => assert.equal(await count(alice, filter), expected));
  }
});

const SORTS = ['createdAscending', 'createdDescending', 'publishedAscending', 'publishedDescending'];

describe('dateSort', () => {
  for (const dateSort of SORTS) {
    test(dateSort, async () => {
      const { summary } = await h.send(alice.did, await recordsQuery(alice, { schema: SCHEMA }, { dateSort }), { expect: 200 });
      assert.equal(summary.entries.length, dateSort.startsWith('published') ? 4 : SPECS.length);
    });
  }

  test('descending is the reverse of ascending (ties included)', async () => {
    const order = async (dateSort) => (await h.send(alice.did,
      await recordsQuery(alice, { schema: SCHEMA }, { dateSort }), { expect: 200 })).summary.entries.map((e) => e.cid);
    assert.deepEqual(await order('createdDescending'), (await order('createdAscending')).reverse());
  });

  test('no dateSort (default order)', async () => {
    await h.send(alice.did, await recordsQuery(alice, { schema: SCHEMA }), { expect: 200 });
  });
});

/** Walks every page; the harness compares each page, cursor included. */
async function walkPages(actor, filter, { dateSort, limit }) {
  const cids = [];
  let cursor;
  let pages = 0;
  do {
    const pagination = cursor ? { limit, cursor } : { limit };
    const { summary } = await h.send(alice.did, await recordsQuery(actor, filter, { dateSort, pagination }), { expect: 200 });
    cids.push(...summary.entries.map((e) => e.cid));
    cursor = summary.cursor ?? undefined;
    pages += 1;
    assert.ok(pages <= 20, 'pagination does not end');
  } while (cursor);
  return { cids, pages };
}

describe('pagination walks every page with identical cursors', () => {
  for (const dateSort of SORTS) {
    for (const limit of [1, 2, 3]) {
      test(`${dateSort}, limit ${limit}`, async () => {
        const filter = { schema: SCHEMA };
        const all = await h.send(alice.did, await recordsQuery(alice, filter, { dateSort }), { expect: 200 });
        const { cids } = await walkPages(alice, filter, { dateSort, limit });
        assert.deepEqual(cids, all.summary.entries.map((e) => e.cid));
      });
    }
  }

  test('a limit equal to the number of records', async () => {
    await walkPages(alice, { schema: SCHEMA }, { dateSort: 'createdAscending', limit: SPECS.length });
  });

  test('a limit larger than the number of records', async () => {
    const { pages } = await walkPages(alice, { schema: SCHEMA }, { dateSort: 'createdAscending', limit: 100 });
    assert.equal(pages, 1);
  });

  test('anonymous, published only', async () => {
    const { cids } = await walkPages(null, { schema: SCHEMA }, { dateSort: 'publishedDescending', limit: 3 });
    assert.equal(cids.length, 4);
  });

  test('a stranger, with a tag filter', async () => {
    const { cids } = await walkPages(bob, { schema: SCHEMA, tags: { status: 'final' } }, { dateSort: 'createdDescending', limit: 2 });
    assert.equal(cids.length, 3);
  });
});
