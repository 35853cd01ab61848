// Per-test-file harness: starts the target and the oracle once, and sends each message to both.
import assert from 'node:assert/strict';
import { after, before } from 'node:test';

import { hashStream } from './data.mjs';
import { assertSameReply, summarizeReply } from './compare.mjs';
import { createOracle } from './oracle.mjs';
import { sendMessage } from './rpc.mjs';
import { startTarget, targetKind } from './target.mjs';

/** Replaces a reply's data stream by {sha256, size} so it can be compared. */
async function consumeReplyData(reply) {
  if (reply?.entry?.data !== undefined) {
    reply.entry.data = await hashStream(reply.entry.data);
  }
  return reply;
}

function label(message) {
  const d = message?.descriptor ?? {};
  return `${d.interface}${d.method}`;
}

/**
 * Registers before/after hooks for the current test file and returns the harness.
 * Usage: `const h = useInterop();` at the top of a test file.
 */
export function useInterop() {
  let target;
  let oracle;
  let sides; // [target promise, oracle promise], once started

  // Started on first use as well as in `before`, so a test file's own top-level hooks may send
  // messages whatever order node:test runs root hooks in.
  const ready = async () => {
    sides ??= [
      startTarget().then((t) => { target = t; }),
      createOracle().then((o) => { oracle = o; }),
    ];
    await Promise.all(sides);
  };
  before(ready);
  after(async () => {
    // Wait for both sides to settle, so one that came up is stopped even if the other failed.
    if (sides) await Promise.allSettled(sides);
    await Promise.all([target?.stop(), oracle?.close()]);
  });

  /** Sends to the target over HTTP; returns its DWN reply, with data replaced by its hash. */
  async function toTarget(tenant, message, { data, transfer } = {}) {
    const result = await sendMessage(target.url, tenant, message, { data, transfer });
    assert.equal(result.httpStatus, 200,
      `${targetKind} answered HTTP ${result.httpStatus} to ${label(message)}: ${result.text ?? JSON.stringify(result.json)}`);
    assert.ok(result.json?.result?.reply,
      `${targetKind} sent no JSON-RPC result for ${label(message)}: ${result.text ?? JSON.stringify(result.json)}`);
    const { reply } = result.json.result;
    if (result.data) reply.entry = { ...reply.entry, data: result.data };
    return reply;
  }

  /**
   * Feeds the oracle what dwn-server would feed its Dwn: a body counts as data only when it has
   * a non-zero content-length or a transfer-encoding (src/http-api.ts), so a 0-byte body sent with
   * content-length is no data at all.
   */
  async function toOracle(tenant, message, { data, transfer = 'length' } = {}) {
    const hasBody = data !== undefined && (transfer === 'chunked' || data.size > 0);
    const reply = await oracle.dwn.processMessage(
      tenant, structuredClone(message), hasBody ? { dataStream: data.open() } : {});
    return consumeReplyData(reply);
  }

  const harness = {
    /** Resolves once the target and the oracle are up. */
    ready,
    get target() { return target; },
    get oracle() { return oracle; },

    /**
     * Sends `message` for `tenant` to both and asserts identical replies.
     * @param {object} [options]
     * @param {import('./data.mjs').DataSource} [options.data]  record data (body)
     * @param {number} [options.expect]  the status code both must return
     * @param {'length'|'chunked'} [options.transfer]
     * @returns {Promise<{target, oracle, summary}>} both raw replies and the common summary
     */
    async send(tenant, message, { data, expect, transfer } = {}) {
      await ready();
      const [targetReply, oracleReply] = await Promise.all([
        toTarget(tenant, message, { data, transfer }),
        toOracle(tenant, message, { data, transfer }),
      ]);
      const opaqueCursor = label(message) === 'MessagesQuery';
      const summary = await assertSameReply(targetReply, oracleReply, label(message), { opaqueCursor });
      if (expect !== undefined) {
        assert.equal(summary.code, expect,
          `${label(message)}: both answered ${summary.code} (${oracleReply.status?.detail}), expected ${expect}`);
      }
      return { target: targetReply, oracle: oracleReply, summary };
    },

    /**
     * Sends to one side only and returns its reply summary: for tests where DeHR deliberately
     * differs from the reference (DWN-REFERENCE "Where the reference is wrong").
     */
    async sendTarget(tenant, message, { data, transfer } = {}) {
      await ready();
      return summarizeReply(await toTarget(tenant, message, { data, transfer }));
    },
    async sendOracle(tenant, message, { data, transfer } = {}) {
      await ready();
      return summarizeReply(await toOracle(tenant, message, { data, transfer }));
    },

    /** Shorthand for a RecordsWrite built by messages.recordsWrite / recordsUpdate. */
    async write(tenant, built, expect = 202) {
      return harness.send(tenant, built.message, { data: built.data, expect });
    },
  };
  return harness;
}
