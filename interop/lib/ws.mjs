// A small JSON-RPC client over the target's WebSocket (the `ws` package, as dwn-server uses).
import { once } from 'node:events';

import WebSocket from 'ws';

/**
 * Opens a socket. Replies are matched to requests by JSON-RPC id; subscription events
 * ({id: <subscription id>, result: {event}}) are collected per subscription id.
 */
export async function openSocket(url) {
  const socket = new WebSocket(url);
  await once(socket, 'open');
  const pending = new Map();
  const events = new Map();
  const unmatched = []; // replies whose id we did not send (e.g. errors for unparseable input)
  let onUnmatched;

  socket.on('message', (raw) => {
    const message = JSON.parse(raw.toString());
    if (message.result?.event !== undefined) {
      if (!events.has(message.id)) events.set(message.id, []);
      events.get(message.id).push(message.result.event);
      return;
    }
    const resolve = pending.get(message.id);
    if (resolve) {
      pending.delete(message.id);
      resolve(message);
    } else {
      unmatched.push(message);
      onUnmatched?.();
    }
  });

  return {
    /** Sends a JSON-RPC request; resolves with the response, or {timedOut: true}. */
    request(request, { timeoutMs = 10_000 } = {}) {
      return new Promise((resolve) => {
        const timer = setTimeout(() => { pending.delete(request.id); resolve({ timedOut: true }); }, timeoutMs);
        pending.set(request.id, (response) => { clearTimeout(timer); resolve(response); });
        socket.send(JSON.stringify(request));
      });
    },
    /** Sends raw text; the answer, if any, comes through `nextUnmatched`. */
    sendRaw(text) {
      socket.send(text);
    },
    /** The next reply that matched no request id, or {timedOut: true}. */
    async nextUnmatched({ timeoutMs = 10_000 } = {}) {
      const deadline = Date.now() + timeoutMs;
      while (unmatched.length === 0 && Date.now() < deadline) {
        await new Promise((resolve) => {
          onUnmatched = resolve;
          setTimeout(resolve, Math.max(0, deadline - Date.now()));
        });
      }
      return unmatched.shift() ?? { timedOut: true };
    },
    /** The events received so far for a subscription id (live array). */
    events(subscriptionId) {
      if (!events.has(subscriptionId)) events.set(subscriptionId, []);
      return events.get(subscriptionId);
    },
    async close() {
      if (socket.readyState === WebSocket.OPEN) {
        socket.close();
        await once(socket, 'close');
      }
    },
  };
}
