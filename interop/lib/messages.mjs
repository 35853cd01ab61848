// Message builders over dwn-sdk-js's own classes, with deterministic timestamps: every message
// gets the next second after 2024-01-01T00:00:00Z unless a test says otherwise, so ordering is
// explicit and the same message object is sent to the target and to the oracle.
import {
  Message, MessagesQuery, MessagesRead, MessagesSubscribe, ProtocolsConfigure, ProtocolsQuery, RecordsDelete, RecordsQuery,
  RecordsRead, RecordsSubscribe, RecordsWrite,
} from '@tbd54566975/dwn-sdk-js';

import { describeData, jsonData } from './data.mjs';

const BASE_MS = Date.UTC(2024, 0, 1);
let ticks = 0;

/** A dwn-sdk-js timestamp (exactly 6 fractional digits, 'Z'), from a Date or ms since epoch. */
export function formatTimestamp(date) {
  return new Date(date).toISOString().replace(/\.(\d{3})Z$/, '.$1000Z');
}

/** The next timestamp of this process's clock: strictly increasing, one second apart. */
export function nextTimestamp() {
  ticks += 1;
  return formatTimestamp(BASE_MS + ticks * 1000);
}

let noteCounter = 0;
/** Default record data: a small JSON note, unique per call. */
export function noteData(text) {
  noteCounter += 1;
  return jsonData({ note: text ?? `note ${noteCounter}` });
}

/**
 * A RecordsWrite signed by `author` (or unsigned when author is null).
 * `data` is a DataSource (see data.mjs); dataCid/dataSize are computed from it unless given.
 * @returns {{ recordsWrite, message, data }}
 */
export async function recordsWrite(author, { data = noteData(), dataFormat = 'application/json', ...options } = {}) {
  const timestamp = options.messageTimestamp ?? nextTimestamp();
  const described = options.dataCid === undefined ? await describeData(data) : undefined;
  const write = await RecordsWrite.create({
    dataFormat,
    dataCid: described?.dataCid,
    dataSize: described?.dataSize,
    ...options,
    dateCreated: options.dateCreated ?? timestamp,
    messageTimestamp: timestamp,
    datePublished: options.published ? (options.datePublished ?? timestamp) : options.datePublished,
    signer: author?.signer,
  });
  return { recordsWrite: write, message: write.message, data };
}

/**
 * A newer RecordsWrite for the record `previous` (a RecordsWrite message), signed by `author`.
 * Without `data` the dataCid/dataSize of `previous` are kept (an update without data).
 */
export async function recordsUpdate(author, previous, { data, ...options } = {}) {
  const timestamp = options.messageTimestamp ?? nextTimestamp();
  const described = data ? await describeData(data) : undefined;
  const d = previous.descriptor;
  const published = options.published ?? d.published;
  const write = await RecordsWrite.create({
    recordId: previous.recordId,
    parentContextId: previous.contextId?.split('/').slice(0, -1).join('/') || undefined,
    recipient: d.recipient,
    protocol: d.protocol,
    protocolPath: d.protocolPath,
    schema: d.schema,
    tags: d.tags,
    dateCreated: d.dateCreated,
    dataFormat: d.dataFormat,
    dataCid: described?.dataCid ?? d.dataCid,
    dataSize: described?.dataSize ?? d.dataSize,
    published,
    datePublished: published ? (d.datePublished ?? timestamp) : undefined,
    ...options,
    messageTimestamp: timestamp,
    signer: author.signer,
  });
  return { recordsWrite: write, message: write.message, data };
}

/** A RecordsQuery; `signer` null/undefined means anonymous. */
export async function recordsQuery(actor, filter, options = {}) {
  const query = await RecordsQuery.create({
    filter, messageTimestamp: nextTimestamp(), signer: actor?.signer, ...options,
  });
  return query.message;
}

export async function recordsRead(actor, filter, options = {}) {
  const read = await RecordsRead.create({
    filter, messageTimestamp: nextTimestamp(), signer: actor?.signer, ...options,
  });
  return read.message;
}

export async function recordsDelete(actor, recordId, options = {}) {
  const del = await RecordsDelete.create({
    recordId, messageTimestamp: nextTimestamp(), signer: actor.signer, ...options,
  });
  return del.message;
}

export async function recordsSubscribe(actor, filter, options = {}) {
  const subscribe = await RecordsSubscribe.create({
    filter, messageTimestamp: nextTimestamp(), signer: actor?.signer, ...options,
  });
  return subscribe.message;
}

export async function protocolsConfigure(actor, definition, options = {}) {
  const configure = await ProtocolsConfigure.create({
    definition, messageTimestamp: nextTimestamp(), signer: actor.signer, ...options,
  });
  return configure.message;
}

export async function protocolsQuery(actor, filter, options = {}) {
  const query = await ProtocolsQuery.create({
    filter, messageTimestamp: nextTimestamp(), signer: actor?.signer, ...options,
  });
  return query.message;
}

/** A MessagesQuery; `options` may carry `cursor` and `permissionGrantId`. */
export async function messagesQuery(actor, filters = [], options = {}) {
  const query = await MessagesQuery.create({
    filters, messageTimestamp: nextTimestamp(), signer: actor.signer, ...options,
  });
  return query.message;
}

/** A MessagesRead of the message whose CID is `messageCid`. */
export async function messagesRead(actor, messageCid, options = {}) {
  const read = await MessagesRead.create({
    messageCid, messageTimestamp: nextTimestamp(), signer: actor.signer, ...options,
  });
  return read.message;
}

export async function messagesSubscribe(actor, filters = [], options = {}) {
  const subscribe = await MessagesSubscribe.create({
    filters, messageTimestamp: nextTimestamp(), signer: actor.signer, ...options,
  });
  return subscribe.message;
}

/**
 * A message with an arbitrary (possibly invalid) descriptor, correctly signed by `actor`:
 * for testing what the node refuses for reasons other than the signature, or for signature
 * payloads the SDK builders do not offer (a `permissionGrantId` on a RecordsQuery, a
 * `delegatedGrant` on a MessagesQuery…).
 */
export async function signedMessage(actor, descriptor, { protocolRole, permissionGrantId, delegatedGrant } = {}) {
  const authorization = await Message.createAuthorization({
    descriptor, signer: actor.signer, protocolRole, permissionGrantId, delegatedGrant,
  });
  return { descriptor, authorization };
}

/** The same message without its `authorization`: what an anonymous caller would send. */
export function unsigned(message) {
  return { descriptor: structuredClone(message.descriptor) };
}
