// Records of the built-in permissions protocol (requests, grants, revocations) built with
// dwn-sdk-js's PermissionsProtocol, on the deterministic clock of messages.mjs. Each builder
// returns what messages.recordsWrite returns ({recordsWrite, message, data}), so `h.write` sends it.
import { PermissionsProtocol } from '@tbd54566975/dwn-sdk-js';

import { bytesData, jsonData } from './data.mjs';
import { nextTimestamp, recordsWrite } from './messages.mjs';

/** An expiry no test reaches. */
export const FAR_FUTURE = '2100-01-01T00:00:00.000000Z';

/**
 * A grant from `grantor` to `grantee` (PermissionsProtocol.createGrant), dated now on our clock.
 * `dataEncodedMessage` (the grant with its data inline) is what delegated grants embed.
 * @param {object} scope  e.g. {interface: 'Records', method: 'Read', protocol}
 * @param {object} [options]  dateGranted, dateExpires, delegated, conditions, description, requestId
 */
export async function permissionGrant(grantor, grantee, scope, { dateExpires = FAR_FUTURE, dateGranted, ...options } = {}) {
  const { recordsWrite: write, permissionGrantBytes, dataEncodedMessage } = await PermissionsProtocol.createGrant({
    signer: grantor.signer,
    grantedTo: grantee.did,
    dateGranted: dateGranted ?? nextTimestamp(),
    dateExpires,
    scope,
    ...options,
  });
  return {
    recordsWrite: write,
    message: write.message,
    data: bytesData(permissionGrantBytes),
    dataEncodedMessage,
    id: write.message.recordId,
  };
}

/**
 * A permission request by `requester` (PermissionsProtocol.createRequest for its data and tags).
 * The SDK helper sets messageTimestamp from `dateRequested` but leaves dateCreated at the wall
 * clock, which makes an invalid initial write; so the record is rebuilt here with the same
 * fields and one timestamp.
 */
export async function permissionRequest(requester, scope, { delegated = false, ...options } = {}) {
  const { recordsWrite: draft, permissionRequestBytes } = await PermissionsProtocol.createRequest({
    signer: requester.signer, delegated, scope, ...options,
  });
  const { protocol, protocolPath, dataFormat, tags } = draft.message.descriptor;
  return recordsWrite(requester, { protocol, protocolPath, dataFormat, tags, data: bytesData(permissionRequestBytes) });
}

/**
 * A revocation of `grant` (a grant as returned by permissionGrant) by `revoker`, written the way
 * PermissionsProtocol.createRevocation writes it, but on our clock: the SDK helper ignores its
 * date option and stamps the wall clock, which is later than every message of this suite.
 * @param {object} [options]
 * @param {string|null} [options.protocol]  the protocol tag; defaults to the grant's, null for none
 */
export async function permissionRevocation(revoker, grant, { protocol, description, ...options } = {}) {
  const tag = protocol === undefined ? grant.message.descriptor.tags?.protocol : protocol;
  return recordsWrite(revoker, {
    protocol: PermissionsProtocol.uri,
    protocolPath: PermissionsProtocol.revocationPath,
    parentContextId: grant.message.recordId,
    tags: tag === null || tag === undefined ? undefined : { protocol: tag },
    data: jsonData(description === undefined ? {} : { description }),
    ...options,
  });
}

/**
 * A hand-made grant record: `grantData` goes in unchecked (createGrant would refuse some of
 * these), for testing what the node accepts. `tags` default to {protocol: scope.protocol}.
 */
export async function rawGrant(grantor, grantee, grantData, { tags, ...options } = {}) {
  const scopedProtocol = grantData?.scope?.protocol;
  return recordsWrite(grantor, {
    protocol: PermissionsProtocol.uri,
    protocolPath: PermissionsProtocol.grantPath,
    recipient: grantee.did,
    tags: tags === undefined ? (scopedProtocol ? { protocol: scopedProtocol } : undefined) : (tags ?? undefined),
    data: typeof grantData === 'string' ? bytesData(grantData) : jsonData(grantData),
    ...options,
  });
}
