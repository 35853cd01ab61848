// The portal end to end, in headless Chromium: a newcomer creates a vault and an identity
// (recovery phrase shown once, then confirmed), locks and unlocks, imports a Synthea record
// (progress page), opens a chart and a record, shares with a provider identity, the provider
// reads and adds an observation, the patient revokes, the provider is refused, asks for access
// and is let in again, and the access log shows the provider's reads. One `dehr up` on free 127.0.0.1 ports with a fresh data
// folder; nothing leaves 127.0.0.1. Screenshots of each step go to e2e/screenshots/.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync, mkdirSync, readdirSync, readFileSync, statSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';

const here = path.dirname(fileURLToPath(import.meta.url));
const root = path.resolve(here, '..', '..');
const dehrBin = process.env.DEHR_BIN ?? path.join(root, 'target', 'debug', 'dehr');
const fixtures = process.env.DEHR_FIXTURES ?? path.resolve(root, '..', 'shared', 'fixtures');
const screenshots = process.env.DEHR_SCREENSHOTS ?? path.join(root, 'e2e', 'screenshots');
const chromiumPath = process.env.CHROMIUM ?? '/usr/bin/chromium';
const PASSPHRASE = 'correct horse battery staple';

let dehr;
let dataDir;
let portalUrl;
let browser;
let step = 0;

async function shot(page, name) {
  step += 1;
  const file = path.join(screenshots, `${String(step).padStart(2, '0')}-${name}.png`);
  await page.screenshot({ path: file, fullPage: true });
}

function startDehr() {
  return new Promise((resolve, reject) => {
    dehr = spawn(dehrBin, [
      'up',
      '--listen', '127.0.0.1:0',
      '--node-listen', '127.0.0.1:0',
      '--data-dir', dataDir,
      '--fixtures', fixtures,
      '--idle-lock', '30',
    ], { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, RUST_LOG: 'warn' } });
    let out = '';
    let err = '';
    const timer = setTimeout(() => reject(new Error(`dehr up did not start in time:\n${out}\n${err}`)), 120_000);
    dehr.stdout.on('data', (chunk) => {
      out += chunk;
      const match = out.match(/DeHR portal: (http:\/\/127\.0\.0\.1:\d+\/)/);
      if (match) {
        clearTimeout(timer);
        resolve(match[1]);
      }
    });
    dehr.stderr.on('data', (chunk) => {
      err += chunk;
      if (process.env.DEHR_E2E_VERBOSE) process.stderr.write(chunk);
    });
    dehr.on('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`dehr up exited with ${code}:\n${out}\n${err}`));
    });
  });
}

before(async () => {
  mkdirSync(screenshots, { recursive: true });
  for (const file of readdirSync(screenshots)) {
    if (file.endsWith('.png')) rmSync(path.join(screenshots, file));
  }
  dataDir = mkdtempSync(path.join(tmpdir(), 'dehr-e2e-'));
  portalUrl = await startDehr();
  browser = await chromium.launch({
    executablePath: chromiumPath,
    args: [
      '--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync',
    ],
    // launch() gives the browser a fresh, temporary user-data dir of its own.
  });
});

after(async () => {
  await browser?.close();
  if (dehr && dehr.exitCode === null) {
    dehr.removeAllListeners('exit');
    dehr.kill('SIGTERM');
  }
  if (dataDir) rmSync(dataDir, { recursive: true, force: true });
});

/// A fresh browser context (its own cookies: its own portal session) that refuses every
/// request beyond the portal.
const pages = [];
async function newPage() {
  const context = await browser.newContext({ viewport: { width: 1200, height: 900 }, acceptDownloads: true });
  await context.route('**/*', (route) =>
    route.request().url().startsWith(portalUrl) ? route.continue() : route.abort());
  const page = await context.newPage();
  pages.push(page);
  return page;
}

/// On failure, a screenshot of every open page, to see where it stopped.
async function failureShots() {
  for (const [n, page] of pages.entries()) {
    await page.screenshot({ path: path.join(screenshots, `failure-${n}.png`), fullPage: true }).catch(() => {});
  }
}

/// Follows a link of the main menu.
async function nav(page, name) {
  await page.getByRole('navigation', { name: 'Main' }).getByRole('link', { name, exact: true }).click();
}

async function flash(page) {
  return (await page.locator('.flash').first().textContent())?.trim() ?? '';
}

test('a patient and a provider through the portal', { timeout: 600_000 }, async () => {
  try {
    await journey();
  } catch (e) {
    await failureShots();
    throw e;
  }
});

async function journey() {
  const patient = await newPage();

  // Onboarding: the vault, the first identity, the recovery phrase shown once and confirmed.
  await patient.goto(portalUrl);
  assert.match(patient.url(), /\/welcome$/);
  await patient.getByLabel('Name').fill('Alice');
  await patient.getByLabel('a patient').check();
  await patient.getByLabel('Passphrase', { exact: false }).first().fill(PASSPHRASE);
  await patient.getByLabel('Passphrase again').fill(PASSPHRASE);
  await shot(patient, 'welcome');
  await patient.getByRole('button', { name: 'Create my vault' }).click();
  await patient.waitForURL(/\/welcome\/phrase$/);
  const words = await patient.locator('ol.phrase li').allTextContents();
  assert.equal(words.length, 24);
  await shot(patient, 'recovery-phrase');
  const askFirst = Number((await patient.locator('label[for=first]').textContent()).match(/\d+/)[0]);
  const askSecond = Number((await patient.locator('label[for=second]').textContent()).match(/\d+/)[0]);
  // Shown once: a reload no longer shows the words.
  await patient.reload();
  assert.equal(await patient.locator('ol.phrase li').count(), 0);
  await patient.getByLabel(`Word number ${askFirst}`, { exact: true }).fill('wrong');
  await patient.getByLabel(`Word number ${askSecond}`, { exact: true }).fill(words[askSecond - 1]);
  await patient.getByRole('button', { name: 'I wrote it down' }).click();
  assert.match(await patient.locator('.errors').textContent(), /do not match/);
  await patient.getByLabel(`Word number ${askFirst}`, { exact: true }).fill(words[askFirst - 1]);
  await patient.getByLabel(`Word number ${askSecond}`, { exact: true }).fill(words[askSecond - 1]);
  await patient.getByRole('button', { name: 'I wrote it down' }).click();
  await patient.waitForURL(/\/dashboard$/);
  assert.match(await flash(patient), /Recovery phrase confirmed/);

  // Lock, then unlock (a wrong passphrase first).
  await patient.getByRole('button', { name: 'Lock' }).click();
  await patient.waitForURL(/\/unlock$/);
  await patient.getByLabel('Passphrase').fill('not the passphrase');
  await patient.getByRole('button', { name: 'Unlock' }).click();
  assert.match(await patient.locator('.errors').textContent(), /not this vault's passphrase/);
  await shot(patient, 'unlock-error');
  await patient.getByLabel('Passphrase').fill(PASSPHRASE);
  await patient.getByRole('button', { name: 'Unlock' }).click();
  await patient.waitForURL(/\/dashboard$/);

  // Import a Synthea record: directory bundles and the smallest patient, with progress.
  const synthea = path.join(fixtures, 'synthea');
  const files = readdirSync(synthea).filter((f) => f.endsWith('.json'));
  const directory = files.filter((f) => f.startsWith('0-'));
  const smallest = files
    .filter((f) => !f.startsWith('0-'))
    .sort((a, b) => statSync(path.join(synthea, a)).size - statSync(path.join(synthea, b)).size)[0];
  await nav(patient, 'Import');
  await patient.getByLabel('Files').setInputFiles([...directory, smallest].map((f) => path.join(synthea, f)));
  await shot(patient, 'import-form');
  await patient.getByRole('button', { name: 'Import' }).click();
  await patient.waitForURL(/\/import\/[^/]+$/);
  // The progress page answers while the import holds the agent.
  await patient.getByRole('heading', { name: /Importing|Import finished/ }).waitFor();
  await shot(patient, 'import-progress');
  await patient.getByRole('heading', { name: 'Import finished' }).waitFor({ timeout: 400_000 });
  const summary = await patient.locator('ul.results').textContent();
  assert.match(summary, new RegExp(`${smallest}: \\d+ written`));
  assert.equal(await patient.locator('.errors').count(), 0);
  await shot(patient, 'import-finished');

  // The dashboard and a readable record with its author and verified signature.
  await nav(patient, 'Dashboard');
  await patient.getByRole('heading', { name: 'Latest vital signs' }).waitFor();
  assert.ok(await patient.locator('section.card li').count() > 0);
  await shot(patient, 'dashboard');
  // The same dashboard on a phone's width.
  await patient.setViewportSize({ width: 390, height: 844 });
  await shot(patient, 'dashboard-phone');
  await patient.setViewportSize({ width: 1200, height: 900 });
  await patient.locator('section.card').filter({ hasText: 'Latest vital signs' }).locator('a').first().click();
  await patient.waitForURL(/\/record\/Observation\//);
  assert.match(await patient.locator('.verified').textContent(), /signature verified/);
  assert.match(await patient.locator('.author').textContent(), /Alice/);
  await patient.getByText('Raw FHIR').click();
  assert.match(await patient.locator('.raw pre').textContent(), /"resourceType": "Observation"/);
  await shot(patient, 'record');

  // A chart of a vital sign over time.
  await nav(patient, 'Charts');
  await patient.locator('table a').first().click();
  await patient.locator('svg.chart polyline').waitFor();
  assert.ok(await patient.locator('svg.chart circle').count() >= 2);
  await shot(patient, 'chart');

  // The timeline, and the whole record downloaded as a FHIR Bundle.
  await nav(patient, 'Timeline');
  assert.ok(await patient.locator('table.records tbody tr').count() > 10);
  await shot(patient, 'timeline');
  await nav(patient, 'Export');
  const [download] = await Promise.all([
    patient.waitForEvent('download'),
    patient.getByRole('link', { name: 'FHIR Bundle' }).click(),
  ]);
  const bundle = JSON.parse(readFileSync(await download.path(), 'utf8'));
  assert.equal(bundle.resourceType, 'Bundle');
  assert.ok(bundle.entry.some((e) => e.resource.resourceType === 'Patient'));

  // A second identity in the same vault: the provider.
  await nav(patient, 'Identities');
  await patient.getByLabel('Name').fill('Clinic');
  await patient.getByLabel('Role').selectOption('provider');
  await patient.getByRole('button', { name: 'Create identity' }).click();
  await patient.waitForURL(/\/patients$/);
  const clinicDid = (await flash(patient)).match(/\((did:[^)]+)\)/)[1];
  await patient.getByLabel('Acting as').selectOption({ label: 'Alice (patient)' });
  await patient.getByRole('button', { name: 'Switch' }).click();
  await patient.waitForURL(/\/dashboard$/);
  const aliceDid = (await patient.locator('footer .did').textContent()).trim();

  // Alice shares with the clinic: read and write, a few categories, until a date.
  await nav(patient, 'Sharing');
  await patient.getByLabel('Share with (DID)').fill(clinicDid);
  for (const category of ['Demographics', 'Conditions', 'Medications', 'Allergies', 'Observations']) {
    await patient.getByLabel(category, { exact: true }).check();
  }
  await patient.getByLabel('Read and add records').check();
  await shot(patient, 'share-form');
  await patient.getByRole('button', { name: 'Share', exact: true }).click();
  await patient.waitForURL(/\/sharing$/);
  assert.match(await flash(patient), /Shared demographics, conditions, medications, allergies, observations with Clinic/);
  await shot(patient, 'shared');

  // The provider, in another browser session, reads what was shared and adds an observation.
  const provider = await newPage();
  await provider.goto(portalUrl);
  await provider.waitForURL(/\/unlock$/);
  await provider.getByLabel('Passphrase').fill(PASSPHRASE);
  await provider.getByRole('button', { name: 'Unlock' }).click();
  await provider.getByLabel('Acting as').selectOption({ label: 'Clinic (provider)' });
  await provider.getByRole('button', { name: 'Switch' }).click();
  await provider.waitForURL(/\/patients$/);
  await shot(provider, 'provider-patients');
  await provider.locator(`a[href="/patients/${aliceDid}"]`).click();
  await provider.getByRole('heading', { name: 'Records' }).waitFor();
  assert.ok(await provider.locator('table.records tbody tr').count() > 0);
  await shot(provider, 'provider-reads');
  await provider.locator('table.records tbody a').first().click();
  assert.match(await provider.locator('.verified').textContent(), /signature verified/);
  await provider.goBack();
  await provider.getByLabel('Measurement').selectOption('29463-7');
  await provider.getByLabel('Value').fill('72.5');
  await provider.getByRole('button', { name: 'Add observation' }).click();
  await provider.waitForURL(/\/record\/Observation\//);
  assert.match(await provider.locator('.author').textContent(), /Clinic/);
  assert.match(await provider.locator('.facts').textContent(), /72\.5 kg/);
  await shot(provider, 'provider-wrote');

  // Alice sees the clinic's observation, signed by the clinic.
  // (The portal reads what others wrote at most every few seconds.)
  const clinicRow = patient.locator('table.records tbody tr', { hasText: '72.5 kg' });
  for (let tries = 0; tries < 20; tries += 1) {
    await patient.goto(`${portalUrl}records/observations`);
    if (await clinicRow.count() > 0) break;
    await patient.waitForTimeout(500);
  }
  await clinicRow.first().locator('a').click();
  await patient.waitForURL(/\/record\/Observation\//);
  assert.match(await patient.locator('.author').textContent(), /Clinic/);
  assert.match(await patient.locator('.verified').textContent(), /signature verified/);
  await shot(patient, 'patient-sees-clinic-record');

  // Alice revokes; the clinic's next read is refused by the node.
  await nav(patient, 'Sharing');
  await patient.getByRole('button', { name: 'Revoke Clinic' }).click();
  await patient.waitForURL(/\/sharing$/);
  assert.match(await flash(patient), /Revoked \d+ grants of Clinic/);
  await shot(patient, 'revoked');
  const refused = await provider.goto(`${portalUrl}patients/${aliceDid}`);
  assert.equal(refused.status(), 403);
  assert.match(await provider.locator('main').textContent(), /no access|refused/);
  await shot(provider, 'provider-refused');

  // The clinic asks for access again; Alice approves the request; the clinic reads again.
  await provider.goto(`${portalUrl}patients`);
  await provider.locator('#ask-patient').fill(aliceDid);
  await provider.getByLabel('Demographics', { exact: true }).check();
  await provider.getByLabel('Observations', { exact: true }).check();
  await provider.getByLabel('Note to the patient').fill('Follow-up of your blood pressure');
  await provider.getByRole('button', { name: 'Ask for access' }).click();
  await provider.waitForURL(/\/patients$/);
  assert.match(await flash(provider), /Asked Alice for access to demographics, observations/);
  await nav(patient, 'Sharing');
  assert.match(await patient.locator('table.requests').textContent(), /Follow-up of your blood pressure/);
  await shot(patient, 'access-request');
  await patient.getByRole('button', { name: 'Approve Clinic' }).click();
  await patient.waitForURL(/\/sharing$/);
  assert.match(await flash(patient), /Shared demographics, observations with Clinic/);
  assert.equal(await patient.locator('table.requests').count(), 0);
  const again = await provider.goto(`${portalUrl}patients/${aliceDid}`);
  assert.equal(again.status(), 200);
  assert.ok(await provider.locator('table.records tbody tr').count() > 0);
  await shot(provider, 'provider-reads-again');

  // The access log shows the clinic's reads (and the refusal).
  await nav(patient, 'Access log');
  await patient.locator('table.log').waitFor();
  const log = await patient.locator('table.log').textContent();
  assert.match(log, /Clinic/);
  assert.match(log, /Records Read/);
  assert.match(log, /allowed/);
  // In sum: the clinic's reads were allowed, then refused after the revocation.
  const clinic = patient.locator('table.actors tbody tr', { hasText: 'Clinic' });
  assert.ok(Number(await clinic.locator('td').nth(1).textContent()) > 0, 'allowed reads');
  assert.ok(Number(await clinic.locator('td').nth(2).textContent()) > 0, 'refused reads');
  assert.match(await patient.locator('.ok').textContent(), /checks out/);
  await shot(patient, 'access-log');
}
