// The oracle: an in-process dwn-sdk-js 0.5.2 Dwn, on LevelDB stores in a temp dir (classic-level
// ships prebuilt binaries, so this works even when npm skipped install scripts).
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';

import {
  DataStoreLevel, Dwn, EventEmitterStream, EventLogLevel, MessageStoreLevel, ResumableTaskStoreLevel,
} from '@tbd54566975/dwn-sdk-js';
import { DidJwk, DidKey, UniversalResolver } from '@web5/dids';

export async function createOracle() {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'interop-oracle-'));
  const at = (name) => path.join(dir, name);
  const dwn = await Dwn.create({
    // Only methods that resolve offline; anything else (did:example…) fails to resolve, as on the target.
    didResolver: new UniversalResolver({ didResolvers: [DidJwk, DidKey] }),
    messageStore: new MessageStoreLevel({ blockstoreLocation: at('MESSAGESTORE'), indexLocation: at('INDEX') }),
    dataStore: new DataStoreLevel({ blockstoreLocation: at('DATASTORE') }),
    eventLog: new EventLogLevel({ location: at('EVENTLOG') }),
    resumableTaskStore: new ResumableTaskStoreLevel({ location: at('RESUMABLE-TASK-STORE') }),
    eventStream: new EventEmitterStream(),
  });
  return {
    dwn,
    async close() {
      await dwn.close();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
