// Starts @web5/dwn-server 0.6.1 exactly as its own `dwn-server` bin does (config from env vars),
// with one accommodation: dwn-server always opens a SQLite TTL cache for its Web5 Connect
// routes, which needs better-sqlite3's native addon. That addon is built by an install script,
// and npm 11 may skip install scripts. If the addon cannot load, replace the Web5 Connect
// cache with an in-memory map: Web5 Connect is not under test, and the DWN itself runs on
// LevelDB stores (classic-level ships prebuilt binaries) exactly as in production.
import { createRequire } from 'node:module';

const require = createRequire(import.meta.url);
const serverMain = new URL('./main.js', import.meta.resolve('@web5/dwn-server'));

function sqliteWorks() {
  try {
    const Database = require('better-sqlite3');
    new Database(':memory:').close();
    return true;
  } catch {
    return false;
  }
}

if (!sqliteWorks()) {
  // Same module URL as the one http-api.js imports, so patching the class here patches it there.
  const { Web5ConnectServer } = await import(new URL('./web5-connect/web5-connect-server.js', serverMain));
  Web5ConnectServer.create = async ({ baseUrl }) => {
    const server = new Web5ConnectServer({ baseUrl });
    const entries = new Map();
    server.cache = {
      insert: async (key, value) => { entries.set(key, JSON.stringify(value)); },
      get: async (key) => (entries.has(key) ? JSON.parse(entries.get(key)) : undefined),
      delete: async (key) => { entries.delete(key); },
      close: async () => {},
    };
    return server;
  };
  console.error('dwn-server-launcher: better-sqlite3 unavailable, Web5 Connect cache kept in memory');
}

await import(serverMain);
