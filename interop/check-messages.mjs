#!/usr/bin/env node
// "The other way": feed messages built elsewhere (by DeHR's Rust builders) to an in-process
// dwn-sdk-js 0.5.2 Dwn and print each reply, so a Rust test can assert the reference accepts them.
//
// Usage:  node interop/check-messages.mjs [FILE]      (no FILE or "-" reads stdin)
// Input:  one JSON object per line: {"tenant": DID, "message": DWN message, "dataBase64"?: data}
//         (blank lines are skipped; base64 may be standard or url-safe)
// Output: one JSON line per input line, in order, on stdout:
//         {"index": n, "messageCid": CID computed by dwn-sdk-js, "reply": reply}
//         where a reply's data stream is replaced by `entry.dataBase64`; or
//         {"index": n, "error": "..."} when the line is not valid JSON or the Dwn threw.
// Lines run in sequence against one Dwn, so later lines see earlier writes. DIDs must resolve
// offline (did:jwk, did:key). Exit code: 0, or 1 if any line produced an "error" object.
import { createReadStream } from 'node:fs';
import { Readable } from 'node:stream';
import readline from 'node:readline';

import { Message } from '@tbd54566975/dwn-sdk-js';

import { createOracle } from './lib/oracle.mjs';

async function collect(stream) {
  const chunks = [];
  for await (const chunk of stream) chunks.push(Buffer.from(chunk));
  return Buffer.concat(chunks);
}

async function processLine(dwn, line) {
  const { tenant, message, dataBase64 } = JSON.parse(line);
  const options = dataBase64 !== undefined
    ? { dataStream: Readable.from([Buffer.from(dataBase64, 'base64')]) }
    : {};
  const messageCid = message && typeof message === 'object' ? await Message.getCid(message).catch(() => null) : null;
  const reply = await dwn.processMessage(tenant, message, options);
  if (reply.entry?.data !== undefined) {
    reply.entry.dataBase64 = (await collect(reply.entry.data)).toString('base64');
    delete reply.entry.data;
  }
  if (reply.subscription !== undefined) {
    await reply.subscription.close();
    delete reply.subscription.close;
  }
  return { messageCid, reply };
}

async function main() {
  const file = process.argv[2];
  const input = !file || file === '-' ? process.stdin : createReadStream(file);
  const oracle = await createOracle();
  let failed = false;
  let index = 0;
  try {
    for await (const line of readline.createInterface({ input, crlfDelay: Infinity })) {
      if (line.trim() === '') continue;
      let output;
      try {
        output = { index, ...(await processLine(oracle.dwn, line)) };
      } catch (error) {
        failed = true;
        output = { index, error: String(error?.stack ?? error) };
      }
      process.stdout.write(`${JSON.stringify(output)}\n`);
      index += 1;
    }
  } finally {
    await oracle.close();
  }
  process.exitCode = failed ? 1 : 0;
}

await main();
