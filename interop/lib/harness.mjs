// Per-test-file harness: starts the target and the oracle once, and sends each message to both.
import assert from 'node:assert/strict';
import { after, before } from 'node:test';

import { randomUUID } from 'node:crypto';

import { hashStream } from './data.mjs';
import { assertSameReply, summarizeEvents, summarizeReply } from './compare.mjs';
import { createOracle } from './oracle.mjs';
import { processMessageRequest, sendMessage } from './rpc.mjs';
import { startTarget, targetKind } from './target.mjs';
import { openSocket } from './ws.mjs';

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
  let socket; // the target WebSocket for subscriptions, opened on first use
  const subscriptions = []; // open subscriptions, closed in `after`

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
    await Promise.allSettled(subscriptions.map((subscription) => subscription.close()));
    await (await socket)?.close();
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
      return harness.sendPair(tenant, { target: message, oracle: message }, { data, expect, transfer });
    },

    /**
     * Like `send`, but with a different message for each side, for replies that depend on
     * node-private state: a MessagesQuery resuming from a cursor must carry each side's own cursor
     * (its watermark is private to the node), so the two messages differ in that field only.
     */
    async sendPair(tenant, { target: targetMessage, oracle: oracleMessage }, { data, expect, transfer } = {}) {
      await ready();
      const [targetReply, oracleReply] = await Promise.all([
        toTarget(tenant, targetMessage, { data, transfer }),
        toOracle(tenant, oracleMessage, { data, transfer }),
      ]);
      const opaqueCursor = label(oracleMessage) === 'MessagesQuery';
      const summary = await assertSameReply(targetReply, oracleReply, label(oracleMessage), { opaqueCursor });
      if (expect !== undefined) {
        assert.equal(summary.code, expect,
          `${label(oracleMessage)}: both answered ${summary.code} (${oracleReply.status?.detail}), expected ${expect}`);
      }
      return { target: targetReply, oracle: oracleReply, summary };
    },

    /**
     * Sends to both sides without asserting anything: for tables that record each side's answer
     * before comparing. A target that does not answer with a DWN reply gives `targetError`.
     * @returns {Promise<{target?, oracle, targetSummary?, oracleSummary, targetError?: Error}>}
     */
    async exchange(tenant, message, { data, transfer } = {}) {
      await ready();
      const [targetResult, oracleReply] = await Promise.all([
        toTarget(tenant, message, { data, transfer }).then((reply) => ({ reply }), (error) => ({ error })),
        toOracle(tenant, message, { data, transfer }),
      ]);
      return {
        target: targetResult.reply,
        oracle: oracleReply,
        targetSummary: targetResult.reply ? await summarizeReply(targetResult.reply) : undefined,
        oracleSummary: await summarizeReply(oracleReply),
        targetError: targetResult.error,
      };
    },

    /**
     * Opens the subscription `message` (RecordsSubscribe or MessagesSubscribe) for `tenant` on the
     * target (JSON-RPC over its WebSocket) and on the oracle (a subscription handler), and asserts
     * identical replies.
     * @returns {Promise<Subscription>} `code`, both event lists, `expectEvents(n)` and `close()`
     */
    async subscribe(tenant, message, { expect, compare = true } = {}) {
      const opened = await harness.openSubscription(tenant, message);
      if (compare) {
        if (opened.targetError) throw opened.targetError;
        opened.summary = await assertSameReply(opened.targetReply, opened.oracleReply, label(message));
        if (expect !== undefined) {
          assert.equal(opened.summary.code, expect,
            `${label(message)}: both answered ${opened.summary.code} (${opened.oracleReply.status?.detail}), expected ${expect}`);
        }
      }
      return opened;
    },

    /**
     * `subscribe` without assertions: `targetReply` is undefined and `targetError` set when the
     * target answered with a JSON-RPC error (or not at all) instead of a DWN reply.
     */
    async openSubscription(tenant, message) {
      await ready();
      socket ??= openSocket(target.wsUrl);
      const ws = await socket;
      const subscriptionId = randomUUID();
      const request = {
        ...processMessageRequest(tenant, message),
        method: 'rpc.subscribe.dwn.processMessage',
        subscription: { id: subscriptionId },
      };
      const oracleEvents = [];
      const [response, oracleReply] = await Promise.all([
        ws.request(request),
        oracle.dwn.processMessage(tenant, structuredClone(message), {
          subscriptionHandler: (event) => oracleEvents.push(event),
        }),
      ]);
      const targetReply = response.result?.reply;
      const subscription = {
        id: subscriptionId,
        targetReply,
        targetError: targetReply ? undefined : new Error(`${targetKind} sent no subscribe reply: ${JSON.stringify(response)}`),
        oracleReply,
        code: targetReply?.status?.code,
        targetEvents: ws.events(subscriptionId),
        oracleEvents,
        /** Waits until both sides have `count` events (and no more arrive), then compares them. */
        async expectEvents(count, { timeoutMs = 5000, settleMs = 200 } = {}) {
          const deadline = Date.now() + timeoutMs;
          while (Date.now() < deadline && (subscription.targetEvents.length < count || oracleEvents.length < count)) {
            await new Promise((resolve) => setTimeout(resolve, 20));
          }
          await new Promise((resolve) => setTimeout(resolve, settleMs));
          const [targetSummary, oracleSummary] = await Promise.all([
            summarizeEvents(subscription.targetEvents), summarizeEvents(oracleEvents),
          ]);
          assert.deepEqual(targetSummary, oracleSummary, `${label(message)}: target and oracle events differ`);
          assert.equal(oracleSummary.length, count, `${label(message)}: expected ${count} events`);
          return oracleSummary;
        },
        /** Closes both sides (rpc.subscribe.close on the target); safe to call twice. */
        async close() {
          if (subscription.closed) return;
          subscription.closed = true;
          await oracleReply.subscription?.close();
          if (targetReply?.subscription !== undefined) {
            await ws.request({
              jsonrpc: '2.0', id: randomUUID(), method: 'rpc.subscribe.close', params: {}, subscription: { id: subscriptionId },
            });
          }
        },
      };
      subscriptions.push(subscription);
      return subscription;
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
