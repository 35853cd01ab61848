// The dwn-server HTTP transport, spoken by hand so tests control every byte:
// JSON-RPC request in the `dwn-request` header, record data as the raw body, and a reply either
// as a JSON body or (when it carries data) in the `dwn-response` header with the data as body.
import { randomUUID } from 'node:crypto';
import http from 'node:http';

import { hashStream } from './data.mjs';

/** A JSON-RPC 2.0 request for `dwn.processMessage`. */
export function processMessageRequest(target, message, extra = {}) {
  return { jsonrpc: '2.0', id: randomUUID(), method: 'dwn.processMessage', params: { target, message }, ...extra };
}

/**
 * POST / with raw control over the request.
 * @param {string} url           target base URL
 * @param {object} options
 * @param {string|undefined} options.header   value of `dwn-request` (omit to leave the header out)
 * @param {import('./data.mjs').DataSource} [options.data]  body
 * @param {'length'|'chunked'} [options.transfer]  content-length (default) or chunked body
 * @param {number} [options.timeoutMs]  resolve with {timedOut:true} if nothing comes back in time
 * @returns {Promise<{httpStatus, headers, json, data, text, timedOut?}>}
 *   `json` is the JSON-RPC response (from the body, or from `dwn-response` when data came back);
 *   `data` is {sha256, size} of a data body, else null.
 */
export function postRaw(url, { header, data, transfer = 'length', timeoutMs = 120_000, extraHeaders = {} } = {}) {
  return new Promise((resolve, reject) => {
    const headers = { ...extraHeaders };
    if (header !== undefined) headers['dwn-request'] = header;
    if (data) {
      headers['content-type'] = 'application/octet-stream';
      if (transfer === 'chunked') headers['transfer-encoding'] = 'chunked';
      else headers['content-length'] = String(data.size);
    } else if (transfer !== 'chunked') {
      headers['content-length'] = '0';
    }

    const req = http.request(`${url}/`, { method: 'POST', headers }, async (res) => {
      try {
        const responseHeader = res.headers['dwn-response'];
        if (responseHeader !== undefined) {
          const dataSummary = await hashStream(res);
          resolve({ httpStatus: res.statusCode, headers: res.headers, json: JSON.parse(responseHeader), data: dataSummary });
          return;
        }
        const chunks = [];
        for await (const chunk of res) chunks.push(chunk);
        const text = Buffer.concat(chunks).toString('utf8');
        let json;
        try { json = JSON.parse(text); } catch { json = undefined; }
        resolve({ httpStatus: res.statusCode, headers: res.headers, json, data: null, text });
      } catch (error) {
        reject(error);
      }
    });
    req.setTimeout(timeoutMs, () => {
      req.destroy();
      resolve({ timedOut: true });
    });
    req.on('error', (error) => {
      if (req.destroyed && error.code === 'ECONNRESET') return; // our own timeout
      reject(error);
    });
    if (data) {
      const body = data.open();
      body.on('error', (error) => req.destroy(error));
      body.pipe(req);
    } else {
      req.end();
    }
  });
}

/** Sends one DWN message to the target; resolves with the HTTP-level result. */
export function sendMessage(url, tenant, message, { data, transfer } = {}) {
  return postRaw(url, { header: JSON.stringify(processMessageRequest(tenant, message)), data, transfer });
}
