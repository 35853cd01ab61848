// The node under test ("target"), pluggable through DWN_TARGET:
//   dehr        our Rust binary (DEHR_BIN, default <repo>/target/debug/dehr)
//   dwn-server  @web5/dwn-server 0.6.1 from node_modules, to prove the harness itself
// Each test file starts its own target on a free 127.0.0.1 port with a fresh temp data dir.
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';

import { interopDir, repoDir } from './paths.mjs';

// dehr is the node under test; dwn-server proves the harness itself (every test passes on it).
const DEFAULT_TARGET = 'dehr';

export const targetKind = process.env.DWN_TARGET ?? DEFAULT_TARGET;
if (!['dehr', 'dwn-server'].includes(targetKind)) {
  throw new Error(`DWN_TARGET must be 'dehr' or 'dwn-server', got '${targetKind}'`);
}
export const isDehr = targetKind === 'dehr';

const STARTUP_TIMEOUT_MS = 60_000;

async function freePort() {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.unref();
    server.on('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address();
      server.close(() => resolve(port));
    });
  });
}

/** The child's environment: ours, minus what would change dwn-server's behaviour or /info. */
function childEnv(extra) {
  const env = { ...process.env };
  for (const key of Object.keys(env)) {
    // `npm test` exports npm_package_name/json, which dwn-server would report as its own name.
    if (key.startsWith('npm_') || key.startsWith('DWN_') || key.startsWith('DS_')) delete env[key];
  }
  return { ...env, ...extra };
}

export function dehrBin() {
  const bin = process.env.DEHR_BIN
    ? path.resolve(process.env.DEHR_BIN)
    : path.join(repoDir, 'target', 'debug', 'dehr');
  if (!existsSync(bin)) {
    throw new Error(`dehr binary not found at ${bin}: run \`cargo build\` or set DEHR_BIN`);
  }
  return bin;
}

function dehrCommand(port, dataDir, extraArgs = []) {
  const bin = dehrBin();
  return {
    command: bin,
    args: ['node', '--listen', `127.0.0.1:${port}`, '--data-dir', dataDir, ...extraArgs],
    options: { cwd: dataDir, env: childEnv({ RUST_LOG: process.env.RUST_LOG ?? 'warn' }) },
  };
}

function dwnServerCommand(port, dataDir) {
  // DWN_STORAGE must stay unset (DWN-REFERENCE §4.6): the stores then default to level://data,
  // relative to the working directory, and registration stays off.
  const serverPackageJson = path.join(interopDir, 'node_modules', '@web5', 'dwn-server', 'package.json');
  return {
    command: process.execPath,
    args: [path.join(interopDir, 'lib', 'dwn-server-launcher.mjs')],
    options: {
      cwd: dataDir,
      env: childEnv({
        DS_PORT: String(port),
        DWN_BASE_URL: `http://127.0.0.1:${port}`,
        DWN_SERVER_PACKAGE_JSON: serverPackageJson,
        DWN_SERVER_LOG_LEVEL: 'error',
      }),
    },
  };
}

async function waitForHealth(kind, url, child, output) {
  const deadline = Date.now() + STARTUP_TIMEOUT_MS;
  while (Date.now() < deadline) {
    if (child.exitCode !== null || child.signalCode !== null) {
      throw new Error(`${kind} exited during startup (${child.exitCode ?? child.signalCode}):\n${output()}`);
    }
    try {
      const res = await fetch(`${url}/health`, { signal: AbortSignal.timeout(1000) });
      if (res.ok) return;
    } catch {
      // not listening yet
    }
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  throw new Error(`${kind} did not answer /health within ${STARTUP_TIMEOUT_MS} ms:\n${output()}`);
}

/**
 * Starts the target and resolves once GET /health answers.
 * @returns {{kind, url, wsUrl, port, output: () => string, stop: () => Promise<void>}}
 */
export async function startTarget() {
  return startServer(targetKind);
}

/**
 * Starts a node of either kind, whatever the target (tests of the two side by side), with
 * extra command-line arguments for dehr.
 */
export async function startServer(kind, { dehrArgs = [] } = {}) {
  if (kind === 'dehr') dehrBin(); // fail before creating anything
  const port = await freePort();
  const dataDir = mkdtempSync(path.join(os.tmpdir(), `interop-${kind}-`));
  const { command, args, options } = kind === 'dehr' ? dehrCommand(port, dataDir, dehrArgs) : dwnServerCommand(port, dataDir);

  const child = spawn(command, args, { ...options, stdio: ['ignore', 'pipe', 'pipe'] });
  // Keep the last bit of the child's output for error messages; never let it fill a pipe.
  let log = '';
  const keep = (chunk) => { log = (log + chunk.toString()).slice(-20_000); };
  child.stdout.on('data', keep);
  child.stderr.on('data', keep);
  const output = () => log;

  // If the test process dies, do not leave the server behind.
  const killOnExit = () => child.kill('SIGKILL');
  process.on('exit', killOnExit);

  const url = `http://127.0.0.1:${port}`;
  const stop = async () => {
    process.off('exit', killOnExit);
    if (child.exitCode === null && child.signalCode === null) {
      const exited = new Promise((resolve) => child.once('exit', resolve));
      child.kill('SIGTERM');
      const timer = setTimeout(() => child.kill('SIGKILL'), 5000);
      await exited;
      clearTimeout(timer);
    }
    rmSync(dataDir, { recursive: true, force: true, maxRetries: 3 });
  };

  try {
    await waitForHealth(kind, url, child, output);
  } catch (error) {
    await stop();
    throw error;
  }
  return { kind, url, wsUrl: `ws://127.0.0.1:${port}`, port, output, stop };
}
