// Turns a DWN reply into what must be identical between the target and the oracle:
// status code, entries as message CIDs (recomputed with dwn-sdk-js, never trusting JSON key
// order), encodedData, initialWrite, cursor, and read data as sha256. `detail` strings are
// kept aside: they only appear in failure messages.
import assert from 'node:assert/strict';
import { inspect } from 'node:util';

import { Message } from '@tbd54566975/dwn-sdk-js';

/** CID of a stored message as returned in a reply: without the reply-only fields. */
export async function messageCid(message) {
  const stored = { ...message };
  delete stored.encodedData;
  delete stored.initialWrite;
  return Message.getCid(stored);
}

async function cidOrNull(message) {
  return message ? messageCid(message) : null;
}

async function summarizeEntry(entry) {
  if (typeof entry === 'string') return entry; // MessagesQuery entries are CIDs already
  return {
    cid: await messageCid(entry),
    encodedData: entry.encodedData ?? null,
    initialWrite: await cidOrNull(entry.initialWrite),
  };
}

/** The comparable part of a reply whose `entry.data`, if any, was replaced by {sha256, size}. */
export async function summarizeReply(reply) {
  const summary = { code: reply?.status?.code ?? null };
  if (reply?.entries !== undefined) summary.entries = await Promise.all(reply.entries.map(summarizeEntry));
  summary.cursor = reply?.cursor ?? null;
  if (reply?.entry !== undefined) {
    const { entry } = reply;
    summary.entry = {
      recordsWrite: await cidOrNull(entry.recordsWrite),
      recordsDelete: await cidOrNull(entry.recordsDelete),
      initialWrite: await cidOrNull(entry.initialWrite),
      message: await cidOrNull(entry.message), // MessagesRead
      messageCid: entry.messageCid ?? null,
      data: entry.data ?? null,
    };
  }
  if (reply?.subscription !== undefined) summary.subscription = true;
  return summary;
}

/** Subscription events ({message, initialWrite?}) as CIDs, in arrival order. */
export async function summarizeEvents(events) {
  return Promise.all(events.map(async (event) => ({
    message: await messageCid(event.message),
    initialWrite: await cidOrNull(event.initialWrite),
  })));
}

function describe(reply) {
  return `${reply?.status?.code} ${reply?.status?.detail ?? ''}`.trim();
}

/**
 * MessagesQuery cursors are {messageCid, value: event-log watermark}; the watermark is private
 * to each node (a ULID in dwn-sdk-js's Level store, a sequence number in its SQL store and in
 * dehr), so only its messageCid can be compared.
 */
function maskWatermark(summary) {
  if (summary.cursor && 'value' in summary.cursor) {
    summary.cursor = { ...summary.cursor, value: '<watermark>' };
  }
}

/**
 * Fails with both replies side by side when the target and the oracle disagree.
 * @param {{ opaqueCursor?: boolean }} [options]  compare cursors by messageCid only
 */
export async function assertSameReply(targetReply, oracleReply, label, { opaqueCursor = false } = {}) {
  const [target, oracle] = await Promise.all([summarizeReply(targetReply), summarizeReply(oracleReply)]);
  if (opaqueCursor) {
    maskWatermark(target);
    maskWatermark(oracle);
  }
  const context = `${label}\n  target: ${describe(targetReply)}\n  oracle: ${describe(oracleReply)}`;
  assert.equal(target.code, oracle.code, `status code differs for ${context}`);
  assert.deepEqual(target, oracle, `reply differs for ${context}\n` +
    `  target summary: ${inspect(target, { depth: 5 })}\n  oracle summary: ${inspect(oracle, { depth: 5 })}`);
  return target;
}
