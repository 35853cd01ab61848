// Record data as re-openable sources, so large payloads are streamed from a generator to the
// target and to the oracle instead of being held in memory once per consumer.
import { createCipheriv, createHash } from 'node:crypto';
import { Readable } from 'node:stream';

import { Cid } from '@tbd54566975/dwn-sdk-js';

/**
 * A data source: `size` bytes that can be streamed any number of times.
 * @typedef {{ size: number, open: () => Readable, bytes?: Uint8Array }} DataSource
 */

/** Wraps bytes (or a string) already in memory. */
export function bytesData(input) {
  const bytes = typeof input === 'string' ? new TextEncoder().encode(input) : input;
  return { size: bytes.length, bytes, open: () => Readable.from(bytes.length ? [Buffer.from(bytes)] : []) };
}

/** JSON data in memory; most test records are small JSON documents. */
export function jsonData(value) {
  return bytesData(JSON.stringify(value));
}

const CHUNK = 64 * 1024;
const ZEROS = Buffer.alloc(CHUNK);

/**
 * `size` pseudo-random bytes, the same for the same `seed`: AES-128-CTR keystream over zeros,
 * generated chunk by chunk (fast, and never more than 64 KiB in memory).
 */
export function generatedData(size, seed = 'interop') {
  const key = createHash('sha256').update(`key:${seed}`).digest().subarray(0, 16);
  const iv = createHash('sha256').update(`iv:${seed}`).digest().subarray(0, 16);
  function* chunks() {
    const cipher = createCipheriv('aes-128-ctr', key, iv);
    for (let left = size; left > 0; left -= CHUNK) {
      yield cipher.update(left >= CHUNK ? ZEROS : ZEROS.subarray(0, left));
    }
  }
  return { size, open: () => Readable.from(chunks(), { objectMode: false }) };
}

/** Small convenience for in-memory pseudo-random bytes (e.g. 30,001 B records). */
export async function generatedBytes(size, seed) {
  const chunks = [];
  for await (const chunk of generatedData(size, seed).open()) chunks.push(chunk);
  return bytesData(new Uint8Array(Buffer.concat(chunks)));
}

/** sha256 (hex) and length of everything a stream yields. */
export async function hashStream(stream) {
  const hash = createHash('sha256');
  let size = 0;
  for await (const chunk of stream) {
    hash.update(chunk);
    size += chunk.length;
  }
  return { sha256: hash.digest('hex'), size };
}

/**
 * dataCid (dwn-sdk-js's own UnixFS computation), dataSize and sha256 of a source, in one pass.
 * Memoized on the source object because a 50 MB CID takes a moment.
 */
export async function describeData(source) {
  if (source.description) return source.description;
  const hash = createHash('sha256');
  const stream = source.open();
  const tapped = Readable.from((async function* () {
    for await (const chunk of stream) {
      hash.update(chunk);
      yield chunk;
    }
  })());
  const dataCid = source.bytes
    ? await Cid.computeDagPbCidFromBytes(source.bytes)
    : await Cid.computeDagPbCidFromStream(tapped);
  if (source.bytes) hash.update(source.bytes);
  source.description = { dataCid, dataSize: source.size, sha256: hash.digest('hex') };
  return source.description;
}
