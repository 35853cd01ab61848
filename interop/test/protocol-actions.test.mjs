// Protocol authorization: action rules (who: anyone/author/recipient, of), roles (root and
// context roles, nested role creation), protocolRole invocation, structure, $size and $tags.
// alice owns the DWN; bob, carol, dave and erin act in it.
import assert from 'node:assert/strict';
import { before, describe, test } from 'node:test';

import { createActors } from '../lib/actors.mjs';
import { bytesData, generatedBytes } from '../lib/data.mjs';
import { useInterop } from '../lib/harness.mjs';
import {
  nextTimestamp, protocolsConfigure, recordsDelete, recordsQuery, recordsRead, recordsUpdate, recordsWrite, signedMessage,
} from '../lib/messages.mjs';
import { loadProtocol } from '../lib/protocols.mjs';

const h = useInterop();

/** Fresh actors and alice's DWN configured with the named fixture (or an inline definition). */
async function setup(protocolNameOrDefinition) {
  const actors = await createActors('alice', 'bob', 'carol', 'dave', 'erin');
  const definition = typeof protocolNameOrDefinition === 'string'
    ? loadProtocol(protocolNameOrDefinition) : protocolNameOrDefinition;
  await h.send(actors.alice.did, await protocolsConfigure(actors.alice, definition), { expect: 202 });
  const tenant = actors.alice.did;

  /** Writes a record at `path` by `author` into alice's DWN and expects `expect`. */
  const write = async (author, path, { parent, expect = 202, ...options } = {}) => {
    const built = await recordsWrite(author, {
      protocol: definition.protocol,
      protocolPath: path,
      schema: definition.types[path.split('/').pop()]?.schema,
      dataFormat: definition.types[path.split('/').pop()]?.dataFormats?.[0] ?? 'application/json',
      parentContextId: parent?.contextId,
      ...options,
    });
    await h.write(tenant, built, expect);
    return built.message;
  };
  const update = async (author, previous, { expect = 202, ...options } = {}) => {
    const built = await recordsUpdate(author, previous, { data: bytesData(`update ${nextTimestamp()}`), ...options });
    await h.write(tenant, built, expect);
    return built.message;
  };
  const read = async (reader, record, expect, options) =>
    h.send(tenant, await recordsRead(reader, { recordId: record.recordId }, options), { expect });
  const remove = async (actor, record, expect, options) =>
    h.send(tenant, await recordsDelete(actor, record.recordId, options), { expect });
  const query = async (actor, filter, expect = 200, options) => {
    const { summary } = await h.send(tenant,
      await recordsQuery(actor, { protocol: definition.protocol, ...filter }, options), { expect });
    return summary.entries;
  };
  return { ...actors, definition, protocol: definition.protocol, write, update, read, remove, query };
}

describe('free-for-all: anyone acts, update only on their own', () => {
  let p, bobsPost;
  before(async () => {
    p = await setup('free-for-all');
    bobsPost = await p.write(p.bob, 'post');
  });

  test('carol attaches to bob\'s post (202)', () => p.write(p.carol, 'post/attachment', { parent: bobsPost }));
  test('bob updates his post (202)', () => p.update(p.bob, bobsPost));
  test('carol may not update bob\'s post: update is not co-update (401)',
    () => p.update(p.carol, bobsPost, { expect: 401 }));
  test('carol reads bob\'s post (200)', () => p.read(p.carol, bobsPost, 200));
  test('carol co-deletes bob\'s post (202)', () => p.remove(p.carol, bobsPost, 202));
});

describe('anyone-collaborate: read, co-update, co-delete but no create', () => {
  let p, doc;
  before(async () => {
    p = await setup('anyone-collaborate');
    doc = await p.write(p.alice, 'doc');
  });

  test('bob may not create a doc (401)', () => p.write(p.bob, 'doc', { expect: 401 }));
  test('bob co-updates alice\'s doc (202)', () => p.update(p.bob, doc));
  test('carol reads it (200)', () => p.read(p.carol, doc, 200));
  test('carol co-deletes it (202)', () => p.remove(p.carol, doc, 202));
});

describe('recipient-can: the recipient co-updates and co-deletes', () => {
  let p, post;
  before(async () => {
    p = await setup('recipient-can');
    post = await p.write(p.alice, 'post', { recipient: p.bob.did });
  });

  test('bob (recipient) co-updates the post (202)', () => p.update(p.bob, post));
  test('carol may not (401)', () => p.update(p.carol, post, { expect: 401 }));
  test('bob, recipient of the post, co-deletes a tag on it (202); carol may not (401)', async () => {
    const tag = await p.write(p.alice, 'post/tag', { parent: post });
    await p.remove(p.carol, tag, 401);
    await p.remove(p.bob, tag, 202);
  });
});

describe('author-can: the author of the parent co-updates children', () => {
  test('bob, author of the post, co-updates alice\'s comment; carol may not', async () => {
    const p = await setup('author-can');
    const post = await p.write(p.bob, 'post');
    await p.write(p.carol, 'post/comment', { parent: post, expect: 401 }); // nobody but the owner creates comments
    const comment = await p.write(p.alice, 'post/comment', { parent: post });
    await p.update(p.carol, comment, { expect: 401 });
    await p.update(p.bob, comment);
  });
});

describe('chat: reads allowed to the author and recipient of the thread', () => {
  let p, thread, message;
  before(async () => {
    p = await setup('chat');
    thread = await p.write(p.bob, 'thread', { recipient: p.carol.did });
    message = await p.write(p.carol, 'thread/message', { parent: thread, recipient: p.bob.did });
  });

  test('bob (author) and carol (recipient) read the thread; dave may not', async () => {
    await p.read(p.bob, thread, 200);
    await p.read(p.carol, thread, 200);
    await p.read(p.dave, thread, 401);
    await p.read(null, thread, 401);
  });
  test('the message is read by its author and recipient; dave may not', async () => {
    await p.read(p.carol, message, 200);
    await p.read(p.bob, message, 200);
    await p.read(p.dave, message, 401);
  });
  test('queries list what each authored or received', async () => {
    assert.equal((await p.query(p.alice, {})).length, 2);
    assert.equal((await p.query(p.bob, {})).length, 2);
    assert.equal((await p.query(p.carol, {})).length, 2);
    assert.equal((await p.query(p.dave, {})).length, 0);
  });
  test('a record with a data format the type does not allow is refused (400)', async () => {
    await p.write(p.bob, 'thread', { dataFormat: 'text/plain', expect: 400 });
  });
});

describe('email: nested who-rules (author/recipient of email/email)', () => {
  test('a reply is readable by its own author and recipient only', async () => {
    const p = await setup('email');
    const email = await p.write(p.bob, 'email', { recipient: p.carol.did, data: bytesData('hi carol') });
    const reply = await p.write(p.carol, 'email/email', { parent: email, recipient: p.bob.did, data: bytesData('hi bob') });
    await p.read(p.bob, reply, 200);
    await p.read(p.carol, reply, 200);
    await p.read(p.dave, reply, 401);
  });
});

describe('dex and credential-issuance: who:recipient of the parent creates', () => {
  test('dex: only the ask\'s recipient offers; only the offer\'s recipient fulfils', async () => {
    const p = await setup('dex');
    const ask = await p.write(p.bob, 'ask', { recipient: p.carol.did });
    await p.write(p.dave, 'ask/offer', { parent: ask, expect: 401 });
    const offer = await p.write(p.carol, 'ask/offer', { parent: ask, recipient: p.bob.did });
    await p.write(p.carol, 'ask/offer/fulfillment', { parent: offer, expect: 401 });
    await p.write(p.bob, 'ask/offer/fulfillment', { parent: offer });
  });

  test('credential-issuance: the issuer answers an application sent to it', async () => {
    const p = await setup('credential-issuance');
    const application = await p.write(p.bob, 'credentialApplication', { recipient: p.carol.did });
    await p.write(p.dave, 'credentialApplication/credentialResponse', { parent: application, expect: 401 });
    await p.write(p.carol, 'credentialApplication/credentialResponse', { parent: application, recipient: p.bob.did });
  });
});

describe('social-media: mixed author/recipient/anyone rules', () => {
  let p, image;
  before(async () => {
    p = await setup('social-media');
    image = await p.write(p.bob, 'image', { recipient: p.carol.did, dataFormat: 'image/png' });
  });

  test('the image\'s author writes its caption; dave may not', async () => {
    await p.write(p.dave, 'image/caption', { parent: image, expect: 401 });
    const caption = await p.write(p.bob, 'image/caption', { parent: image });
    await p.read(p.dave, caption, 200); // anyone can read captions
  });

  test('the image\'s recipient replies; the reply is read by the image\'s author only', async () => {
    await p.write(p.dave, 'image/reply', { parent: image, expect: 401 });
    const reply = await p.write(p.carol, 'image/reply', { parent: image });
    await p.read(p.bob, reply, 200);
    await p.read(p.dave, reply, 401);
  });

  test('a schema other than the type\'s is refused (400)', async () => {
    await p.write(p.bob, 'message', { schema: 'replySchema', dataFormat: 'text/plain', expect: 400 });
  });
});

describe('thread-role: context roles', () => {
  let p, thread, bobsChat;
  const ROLE = 'thread/participant';
  before(async () => {
    p = await setup('thread-role');
    thread = await p.write(p.alice, 'thread');
    await p.write(p.alice, 'thread/participant', { parent: thread, recipient: p.bob.did });
  });

  test('a participant creates a chat in the thread by invoking the role (202)', async () => {
    bobsChat = await p.write(p.bob, 'thread/chat', { parent: thread, protocolRole: ROLE });
  });
  test('without the role record, invoking it is refused (401)',
    () => p.write(p.carol, 'thread/chat', { parent: thread, protocolRole: ROLE, expect: 401 }));
  test('without invoking the role, the participant has no access (401)',
    () => p.write(p.bob, 'thread/chat', { parent: thread, expect: 401 }));

  test('the participant reads the thread with the role (200); carol cannot (401)', async () => {
    await p.read(p.bob, thread, 200, { protocolRole: ROLE });
    await p.read(p.carol, thread, 401, { protocolRole: ROLE });
    await p.read(p.carol, thread, 401);
  });

  test('the participant queries the thread\'s chats with the role; carol is refused (401)', async () => {
    const filter = { protocolPath: 'thread/chat', contextId: thread.contextId };
    assert.equal((await p.query(p.bob, filter, 200, { protocolRole: ROLE })).length, 1);
    await p.query(p.carol, filter, 401, { protocolRole: ROLE });
  });

  test('a context-role query without a contextId is refused (401)', async () => {
    await p.query(p.bob, { protocolPath: 'thread/chat' }, 401, { protocolRole: ROLE });
  });

  test('nested roles: a participant makes carol a participant, and carol then chats', async () => {
    await p.write(p.bob, 'thread/participant', { parent: thread, recipient: p.carol.did, protocolRole: ROLE });
    await p.write(p.carol, 'thread/chat', { parent: thread, protocolRole: ROLE });
  });

  test('a second participant record for the same recipient is refused (400)', async () => {
    await p.write(p.alice, 'thread/participant', { parent: thread, recipient: p.bob.did, expect: 400 });
  });

  test('a role record needs a recipient (400)', async () => {
    await p.write(p.alice, 'thread/admin', { parent: thread, expect: 400 });
  });

  test('invoking a path that is not a role is refused', async () => {
    await p.write(p.bob, 'thread/chat', { parent: thread, protocolRole: 'thread/chat', expect: 401 });
  });

  test('an admin co-updates bob\'s chat; a participant may not', async () => {
    await p.write(p.alice, 'thread/admin', { parent: thread, recipient: p.dave.did });
    await p.update(p.carol, bobsChat, { protocolRole: ROLE, expect: 401 });
    bobsChat = await p.update(p.dave, bobsChat, { protocolRole: 'thread/admin' });
  });

  test('a root-level role (globalAdmin) co-deletes a chat inside the thread', async () => {
    await p.write(p.alice, 'globalAdmin', { recipient: p.erin.did });
    await p.remove(p.erin, bobsChat, 202, { protocolRole: 'globalAdmin' });
  });
});

describe('friend-role: root roles', () => {
  let p, bobsChat;
  before(async () => {
    p = await setup('friend-role');
    await p.write(p.alice, 'friend', { recipient: p.bob.did });
    await p.write(p.alice, 'fan', { recipient: p.carol.did });
    await p.write(p.alice, 'admin', { recipient: p.dave.did });
  });

  test('a friend creates and updates a chat', async () => {
    bobsChat = await p.write(p.bob, 'chat', { protocolRole: 'friend' });
    bobsChat = await p.update(p.bob, bobsChat, { protocolRole: 'friend' });
  });
  test('a fan may not create a chat (401)', () => p.write(p.carol, 'chat', { protocolRole: 'fan', expect: 401 }));
  test('a fan reads and queries chats', async () => {
    await p.read(p.carol, bobsChat, 200, { protocolRole: 'fan' });
    assert.equal((await p.query(p.carol, { protocolPath: 'chat' }, 200, { protocolRole: 'fan' })).length, 1);
  });
  test('invoking a role one does not hold is refused (401)',
    () => p.read(p.erin, bobsChat, 401, { protocolRole: 'friend' }));
  test('an admin co-updates the chat, then co-deletes it', async () => {
    await p.update(p.dave, bobsChat, { protocolRole: 'admin' });
    await p.remove(p.dave, bobsChat, 202, { protocolRole: 'admin' });
  });
});

describe('nested: owner-only structure three levels deep', () => {
  let p, foo, bar;
  before(async () => {
    p = await setup('nested');
    foo = await p.write(p.alice, 'foo', { data: bytesData('foo') });
    bar = await p.write(p.alice, 'foo/bar', { parent: foo, data: bytesData('bar') });
    await p.write(p.alice, 'foo/bar/baz', { parent: bar, data: bytesData('baz') });
  });

  test('a stranger may not write (401)', () => p.write(p.bob, 'foo', { expect: 401 }));
  test('a child without its parent is refused (400)', () => p.write(p.alice, 'foo/bar', { expect: 400 }));
  test('a child under the wrong level is refused (400)',
    () => p.write(p.alice, 'foo/bar/baz', { parent: foo, expect: 400 }));
  test('an undeclared path is refused (400)', () => p.write(p.alice, 'foo/qux', { parent: foo, expect: 400 }));
  test('a write to an unconfigured protocol is refused (400)', async () => {
    const built = await recordsWrite(p.alice, { protocol: 'http://not-configured.xyz', protocolPath: 'foo' });
    await h.write(p.alice.did, built, 400);
  });
  test('contextId filters a subtree', async () => {
    assert.equal((await p.query(p.alice, { contextId: foo.contextId })).length, 3);
    assert.equal((await p.query(p.alice, { contextId: bar.contextId })).length, 2);
    assert.equal((await p.query(p.alice, { protocolPath: 'foo/bar/baz' })).length, 1);
  });
  test('parentId filters direct children', async () => {
    assert.equal((await p.query(p.alice, { parentId: foo.recordId })).length, 1);
  });
});

describe('$size and $tags', () => {
  // Inline: none of the fixtures uses $size or $tags.
  const definition = {
    protocol: 'http://limits.xyz',
    published: true,
    types: { doc: { dataFormats: ['application/octet-stream'] } },
    structure: {
      doc: {
        $actions: [{ who: 'anyone', can: ['create'] }],
        $size: { min: 5, max: 100 },
        $tags: {
          $requiredTags: ['status'],
          $allowUndefinedTags: false,
          status: { type: 'string', enum: ['draft', 'final'] },
          priority: { type: 'number', minimum: 1, maximum: 5 },
          labels: { type: 'array', items: { type: 'string', maxLength: 8 }, maxItems: 3 },
        },
      },
    },
  };
  let p;
  before(async () => { p = await setup(definition); });

  const doc = async (size, tags, expect) => p.write(p.bob, 'doc', {
    data: await generatedBytes(size, `size-${size}`), tags, expect,
  });

  test('within limits (202)', () => doc(50, { status: 'draft', priority: 3, labels: ['a', 'b'] }, 202));
  test('at the limits (202)', async () => {
    await doc(5, { status: 'final' }, 202);
    await doc(100, { status: 'final' }, 202);
  });
  test('too small (400)', () => doc(4, { status: 'draft' }, 400));
  test('too large (400)', () => doc(101, { status: 'draft' }, 400));
  test('required tag missing (400)', () => doc(50, { priority: 1 }, 400));
  test('no tags at all (400)', () => doc(50, undefined, 400));
  test('value outside the enum (400)', () => doc(50, { status: 'published' }, 400));
  test('number out of range (400)', () => doc(50, { status: 'draft', priority: 9 }, 400));
  test('wrong type (400)', () => doc(50, { status: 'draft', priority: 'high' }, 400));
  test('undefined tag (400)', () => doc(50, { status: 'draft', color: 'red' }, 400));
  test('too many array items (400)', () => doc(50, { status: 'draft', labels: ['a', 'b', 'c', 'd'] }, 400));
  test('array item too long (400)', () => doc(50, { status: 'draft', labels: ['much-too-long'] }, 400));
});

describe('invalid definitions', () => {
  test('a role rule naming a path that is not a $role is refused (400)', async () => {
    const { alice } = await createActors('alice');
    const definition = loadProtocol('free-for-all');
    definition.structure.post.$actions = [{ role: 'post/attachment', can: ['read'] }];
    // ProtocolsConfigure.create would refuse to build this, so sign the descriptor by hand.
    const message = await signedMessage(alice, {
      interface: 'Protocols', method: 'Configure', messageTimestamp: nextTimestamp(), definition,
    });
    await h.send(alice.did, message, { expect: 400 });
  });

  test('a $size with min > max is refused (400)', async () => {
    const { alice } = await createActors('alice');
    const definition = {
      protocol: 'http://bad-size.xyz', published: true, types: { a: {} }, structure: { a: { $size: { min: 10, max: 1 } } },
    };
    const message = await signedMessage(alice, {
      interface: 'Protocols', method: 'Configure', messageTimestamp: nextTimestamp(), definition,
    });
    await h.send(alice.did, message, { expect: 400 });
  });
});
