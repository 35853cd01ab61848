// Authorization matrix: every kind of caller against every method, on one protocol (MATRIX) in
// alice's DWN. Each cell is its own test: it sends one message to both sides, records both
// statuses, and requires identical replies and the reference status written in the table. The
// last test prints the matrix (actor × method → status) and checks that the target never allows
// (2xx, or more query entries) what dwn-sdk-js refuses.
//
// What each method does in its cell:
//   RecordsWrite        update the shared post (authored by `author`, sent to `recipient`)
//   RecordsRead         read another such post (unpublished)
//   RecordsQuery        query {protocol: MATRIX, protocolPath: 'post'}
//   RecordsSubscribe    subscribe to the same filter (over WebSocket on the target)
//   RecordsDelete       delete a post `author` writes just before, in DOOMED (MATRIX's twin, so a
//                       delete one side accepts and the other refuses changes no other cell)
//   ProtocolsConfigure  configure MATRIX again (the same definition)
//   ProtocolsQuery      query {protocol: MATRIX} (MATRIX is unpublished)
//   MessagesQuery       [{protocol: MATRIX}]
//   MessagesRead        the read target's RecordsWrite
//   MessagesSubscribe   [{protocol: MATRIX}]
// How each actor signs: see `sign` below. Grantees hold one grant per method (scoped to
// MATRIX, or to OTHER for "out of scope"); the delegate holds one delegated grant per method;
// the role holder invokes the `member` role on Records methods.
// Where DeHR deliberately differs (DEHR_DIFFERS), the cell checks each side against its own
// expected status instead of comparing them, and the matrix shows "target/reference".
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';

import { createActors } from '../lib/actors.mjs';
import { assertSameReply, messageCid } from '../lib/compare.mjs';
import { bytesData } from '../lib/data.mjs';
import { useInterop } from '../lib/harness.mjs';
import {
  messagesQuery, messagesRead, messagesSubscribe, nextTimestamp, protocolsConfigure, protocolsQuery, recordsDelete,
  recordsQuery, recordsRead, recordsSubscribe, recordsUpdate, recordsWrite, signedMessage, unsigned,
} from '../lib/messages.mjs';
import { permissionGrant, permissionRevocation } from '../lib/permissions.mjs';
import { isDehr, targetKind } from '../lib/target.mjs';

const h = useInterop();

const MATRIX = {
  protocol: 'https://example.org/matrix',
  published: false,
  types: { member: {}, post: { dataFormats: ['application/json'] } },
  structure: {
    member: { $role: true },
    post: {
      $actions: [
        { who: 'anyone', can: ['create', 'update', 'delete'] }, // authors update and delete their own posts
        { who: 'recipient', of: 'post', can: ['read', 'co-update'] },
        { role: 'member', can: ['read', 'query', 'subscribe', 'co-delete'] },
      ],
    },
  },
};
// MATRIX under another URI, for the RecordsDelete cells.
const DOOMED = { ...MATRIX, protocol: 'https://example.org/matrix-doomed' };
const OTHER = {
  protocol: 'https://example.org/matrix-other',
  published: false,
  types: { thing: {} },
  structure: { thing: {} },
};

const METHODS = [
  'RecordsWrite', 'RecordsRead', 'RecordsQuery', 'RecordsSubscribe', 'RecordsDelete',
  'ProtocolsConfigure', 'ProtocolsQuery', 'MessagesQuery', 'MessagesRead', 'MessagesSubscribe',
];

// The reference's answers (dwn-sdk-js 0.5.2), one row per actor, in METHODS order.
// Notes: RecordsQuery/Subscribe/Delete have no permissionGrantId path (grantees are plain
// non-owners there); ProtocolsQuery answers published definitions (none here) to callers it does
// not authorize, except when their grant is expired or revoked (401); ProtocolsQuery and the
// Messages interface take no delegated grant (400); anonymous messages are refused by the schema
// (400) wherever a signature is required.
const EXPECTED = {
  //                  RW   RR   RQ   RS   RD   PC   PQ   MQ   MR   MS
  'owner':           [202, 200, 200, 200, 202, 202, 200, 200, 200, 200],
  'grantee':         [202, 200, 200, 200, 401, 202, 200, 200, 200, 200],
  'grantee-expired': [401, 401, 200, 200, 401, 401, 401, 401, 401, 401],
  'grantee-revoked': [401, 401, 200, 200, 401, 401, 401, 401, 401, 401],
  'grantee-out-of-scope': [401, 401, 200, 200, 401, 401, 200, 401, 401, 401],
  'delegate':        [202, 200, 200, 200, 202, 202, 400, 400, 400, 400],
  'role-holder':     [401, 200, 200, 200, 202, 401, 200, 401, 401, 401],
  'author':          [202, 200, 200, 200, 202, 401, 200, 401, 401, 401],
  'recipient':       [202, 200, 200, 200, 401, 401, 200, 401, 401, 401],
  'anonymous':       [400, 401, 200, 200, 400, 400, 200, 400, 400, 400],
  'stranger':        [401, 401, 200, 200, 401, 401, 200, 401, 401, 401],
};
const ACTORS = Object.keys(EXPECTED);

// DeHR's deliberate differences (see grant-access.test.mjs, "[dehr extends the reference]"):
// a grant works for RecordsQuery, RecordsSubscribe and RecordsDelete too, within its scope and
// time, so the grantee sees and deletes what the grant covers and a bad grant is refused.
const DEHR_DIFFERS = {
  'grantee': { RecordsQuery: 200, RecordsDelete: 202 }, // RecordsQuery: every post, not just the grantee's own
  'grantee-expired': { RecordsQuery: 401, RecordsSubscribe: 401 },
  'grantee-revoked': { RecordsQuery: 401, RecordsSubscribe: 401 },
  'grantee-out-of-scope': { RecordsQuery: 401, RecordsSubscribe: 401 },
};
const dehrDiffers = (actor, method) => DEHR_DIFFERS[actor]?.[method] !== undefined;


const GRANTEE_KINDS = ['grantee', 'grantee-expired', 'grantee-revoked', 'grantee-out-of-scope'];

let people; // actor name → did/signer (anonymous: null)
let alice, writeTarget, readTarget;
const grants = {}; // actor name → method → grant
const results = {}; // actor name → method → {target, oracle, targetEntries, oracleEntries}

/** Writes a grant record to alice's DWN (both sides must accept it). */
async function writeGrantRecord(built) {
  await h.write(alice.did, built);
}

const protocolFor = (method) => (method === 'RecordsDelete' ? DOOMED : MATRIX).protocol;
const scopeOf = (method) => ({
  interface: method.match(/^(Records|Protocols|Messages)/)[1],
  method: method.replace(/^(Records|Protocols|Messages)/, ''),
});

before(async () => {
  const created = await createActors('alice', 'grantee', 'granteeExpired', 'granteeRevoked', 'granteeOut', 'delegate',
    'roleHolder', 'author', 'recipient', 'stranger');
  alice = created.alice;
  people = {
    'owner': alice,
    'grantee': created.grantee,
    'grantee-expired': created.granteeExpired,
    'grantee-revoked': created.granteeRevoked,
    'grantee-out-of-scope': created.granteeOut,
    'delegate': created.delegate,
    'role-holder': created.roleHolder,
    'author': created.author,
    'recipient': created.recipient,
    'anonymous': null,
    'stranger': created.stranger,
  };
  await h.send(alice.did, await protocolsConfigure(alice, MATRIX), { expect: 202 });
  await h.send(alice.did, await protocolsConfigure(alice, OTHER), { expect: 202 });
  await h.send(alice.did, await protocolsConfigure(alice, DOOMED), { expect: 202 });
  for (const { protocol } of [MATRIX, DOOMED]) {
    await h.write(alice.did, await recordsWrite(alice, { protocol, protocolPath: 'member', recipient: people['role-holder'].did }));
  }
  const post = () => recordsWrite(people.author, {
    protocol: MATRIX.protocol, protocolPath: 'post', recipient: people.recipient.did,
  });
  writeTarget = await post();
  readTarget = await post();
  await h.write(alice.did, writeTarget);
  await h.write(alice.did, readTarget);

  // Grants: one per method and grantee kind; the expired ones expire a second after being granted.
  for (const kind of GRANTEE_KINDS) {
    grants[kind] = {};
    for (const method of METHODS) {
      const protocol = kind === 'grantee-out-of-scope' ? OTHER.protocol : protocolFor(method);
      const options = kind === 'grantee-expired' ? { dateGranted: nextTimestamp(), dateExpires: nextTimestamp() } : {};
      const built = await permissionGrant(alice, people[kind], { ...scopeOf(method), protocol }, options);
      await writeGrantRecord(built);
      grants[kind][method] = built;
    }
  }
  grants.delegate = {};
  for (const method of METHODS) {
    grants.delegate[method] = await permissionGrant(alice, people.delegate,
      { ...scopeOf(method), protocol: protocolFor(method) }, { delegated: true });
  }
  for (const method of METHODS) {
    await writeGrantRecord(await permissionRevocation(alice, grants['grantee-revoked'][method]));
  }
});

/**
 * The message `actor` sends for `method`: {message, data?}. Builders sign for the owner, author,
 * recipient and stranger; grantees add permissionGrantId; the delegate embeds its delegated
 * grant; the role holder invokes `member` on Records methods; anonymous sends no signature.
 */
async function messageFor(actorName, method) {
  const actor = people[actorName];
  const signer = actor ?? alice; // anonymous messages are alice's, stripped of their signature
  const grantId = GRANTEE_KINDS.includes(actorName) ? grants[actorName][method].id : undefined;
  const delegatedGrant = actorName === 'delegate' ? grants.delegate[method].dataEncodedMessage : undefined;
  const protocolRole = actorName === 'role-holder' && method.startsWith('Records') ? 'member' : undefined;
  const auth = { permissionGrantId: grantId, delegatedGrant, protocolRole };
  const postFilter = { protocol: MATRIX.protocol, protocolPath: 'post' };

  /** Re-signs `message` (built by `signer`) with the actor's grant or role; strips it for anonymous. */
  const finish = async (message) => {
    if (actor === null) return unsigned(message);
    if (Object.values(auth).every((value) => value === undefined)) return message;
    return signedMessage(actor, message.descriptor, auth);
  };

  switch (method) {
    case 'RecordsWrite': {
      const built = await recordsUpdate(signer, writeTarget.message, {
        data: bytesData(`update by ${actorName} at ${nextTimestamp()}`), ...auth,
      });
      const withoutSignature = { ...built.message };
      delete withoutSignature.authorization;
      return { message: actor === null ? withoutSignature : built.message, data: built.data };
    }
    case 'RecordsRead':
      return { message: await recordsRead(actor, { recordId: readTarget.message.recordId }, auth) };
    case 'RecordsQuery':
      return { message: await finish(await recordsQuery(signer, postFilter)) };
    case 'RecordsSubscribe':
      return { message: await finish(await recordsSubscribe(signer, postFilter)) };
    case 'RecordsDelete': {
      const doomed = await recordsWrite(people.author, {
        protocol: DOOMED.protocol, protocolPath: 'post', recipient: people.recipient.did,
      });
      await h.write(alice.did, doomed);
      return { message: await finish(await recordsDelete(signer, doomed.message.recordId)) };
    }
    case 'ProtocolsConfigure':
      return { message: await finish(await protocolsConfigure(signer, MATRIX)) };
    case 'ProtocolsQuery':
      return { message: await finish(await protocolsQuery(signer, { protocol: MATRIX.protocol })) };
    case 'MessagesQuery':
      return { message: await finish(await messagesQuery(signer, [{ protocol: MATRIX.protocol }])) };
    case 'MessagesRead':
      return { message: await finish(await messagesRead(signer, await messageCid(readTarget.message))) };
    case 'MessagesSubscribe':
      return { message: await finish(await messagesSubscribe(signer, [{ protocol: MATRIX.protocol }])) };
    default:
      throw new Error(`no cell for ${method}`);
  }
}

function record(actorName, method, cell) {
  results[actorName] ??= {};
  results[actorName][method] = cell;
}

async function runCell(actorName, method) {
  const expected = EXPECTED[actorName][METHODS.indexOf(method)];
  const { message, data } = await messageFor(actorName, method);
  const label = `${actorName} ${method}`;
  // A deliberate difference: each side is held to its own answer instead of to the other's.
  const compare = !(isDehr && dehrDiffers(actorName, method));
  const targetExpected = compare ? expected : DEHR_DIFFERS[actorName][method];

  if (method.endsWith('Subscribe')) {
    const subscription = await h.openSubscription(alice.did, message);
    record(actorName, method, {
      target: subscription.targetReply?.status?.code ?? 'error', oracle: subscription.oracleReply.status.code,
    });
    try {
      if (subscription.targetError) throw subscription.targetError;
      if (compare) await assertSameReply(subscription.targetReply, subscription.oracleReply, label);
    } finally {
      await subscription.close();
    }
    assert.equal(subscription.oracleReply.status.code, expected, `${label}: reference answered ${subscription.oracleReply.status.code}`);
    assert.equal(subscription.code, targetExpected, `${label}: ${targetKind} answered ${subscription.code}`);
    return;
  }

  const replies = await h.exchange(alice.did, message, { data });
  record(actorName, method, {
    target: replies.targetSummary?.code ?? 'error',
    oracle: replies.oracleSummary.code,
    targetEntries: replies.targetSummary?.entries?.map((entry) => entry.cid ?? entry),
    oracleEntries: replies.oracleSummary.entries?.map((entry) => entry.cid ?? entry),
  });
  if (replies.targetError) throw replies.targetError;
  if (compare) await assertSameReply(replies.target, replies.oracle, label, { opaqueCursor: method === 'MessagesQuery' });
  assert.equal(replies.oracleSummary.code, expected,
    `${label}: reference answered ${replies.oracleSummary.code} (${replies.oracle.status?.detail})`);
  assert.equal(replies.targetSummary.code, targetExpected,
    `${label}: ${targetKind} answered ${replies.targetSummary.code} (${replies.target.status?.detail})`);
}

describe('authorization matrix', () => {
  for (const actorName of ACTORS) {
    for (const method of METHODS) {
      const reference = EXPECTED[actorName][METHODS.indexOf(method)];
      const name = dehrDiffers(actorName, method)
        ? `${actorName} × ${method} → ${reference} [dehr extends the reference: ${DEHR_DIFFERS[actorName][method]}]`
        : `${actorName} × ${method} → ${reference}`;
      test(name, () => runCell(actorName, method));
    }
  }

  /** Cells where the target allows (2xx, or query entries) what the reference refuses. */
  function leaks() {
    const found = [];
    const allowed = (code) => typeof code === 'number' && code >= 200 && code < 300;
    for (const [actorName, row] of Object.entries(results)) {
      for (const [method, cell] of Object.entries(row)) {
        if (isDehr && dehrDiffers(actorName, method)) continue; // deliberate, and checked in its cell
        if (allowed(cell.target) && !allowed(cell.oracle)) found.push(`${actorName} × ${method}: ${cell.target} (reference ${cell.oracle})`);
        const extra = (cell.targetEntries ?? []).filter((entry) => !(cell.oracleEntries ?? []).includes(entry));
        if (allowed(cell.target) && extra.length > 0) found.push(`${actorName} × ${method}: ${extra.length} entries the reference does not return`);
      }
    }
    return found;
  }

  test(`${targetKind} never allows what dwn-sdk-js refuses`, () => {
    const found = leaks();
    assert.deepEqual(found, [], `the target allows more than the reference:\n${found.join('\n')}`);
  });
});

after(() => {
  // The matrix as recorded: "200" when both sides agree, "target/reference" when they do not
  // ("*" marks a deliberate difference), a count of entries for queries, "·" for a cell that did not run.
  const width = 15;
  const header = ['actor'.padEnd(22), ...METHODS.map((m) => m.replace(/^(Records|Protocols|Messages)/, (x) => x[0]).padEnd(width))].join('');
  const lines = [header];
  for (const actorName of ACTORS) {
    const cells = METHODS.map((method) => {
      const cell = results[actorName]?.[method];
      if (!cell) return '·'.padEnd(width);
      let text = cell.target === cell.oracle ? `${cell.oracle}` : `${cell.target}/${cell.oracle}`;
      if (isDehr && dehrDiffers(actorName, method)) text += '*';
      if (cell.oracleEntries) {
        const counts = [cell.targetEntries?.length, cell.oracleEntries.length];
        text += counts[0] === counts[1] ? ` (${counts[1]})` : ` (${counts[0] ?? '-'}/${counts[1]})`;
      }
      return text.padEnd(width);
    });
    lines.push([actorName.padEnd(22), ...cells].join(''));
  }
  console.log(`\nAuthorization matrix, ${targetKind} vs dwn-sdk-js (R=Records, P=Protocols, M=Messages; "target/reference" when they differ):\n${lines.join('\n')}\n`);
});
