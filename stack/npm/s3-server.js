#!/usr/bin/env node
// The stack's local S3 server: s3rver (objects as files under a folder), plus two things S3 has
// and s3rver 3.7.1 lacks, which Tansu's S3 storage relies on. Without them a restarted broker
// loses acknowledged messages (measured: 156 of 600):
//
// - conditional writes: a PUT with `If-None-Match: *` fails with 412 when the object exists, one
//   with `If-Match: <etag>` when the object's ETag differs. Tansu creates its partition
//   watermarks and its metadata with these; when a store accepts the create anyway, a new broker
//   process starts each partition's offsets at 0 again and overwrites the batches stored there.
// - atomic writes: an object goes to a scratch file that is renamed into place, so a kill in the
//   middle of a write leaves the previous version, never a truncated file (s3rver writes in place).
//
// Usage: node s3-server.js --directory DIR --address 127.0.0.1 --port PORT [--bucket NAME ...]
// s3rver and its dependencies come from NODE_PATH (`make setup` installs them into .venv/npm).
'use strict';

const crypto = require('node:crypto');
const fs = require('node:fs');
const path = require('node:path');
const { Transform } = require('node:stream');
const { pipeline } = require('node:stream/promises');
const { parseArgs } = require('node:util');

const S3rver = require('s3rver');

const { values: args } = parseArgs({
  options: {
    directory: { type: 'string' },
    address: { type: 'string', default: '127.0.0.1' },
    port: { type: 'string', default: '4568' },
    bucket: { type: 'string', multiple: true, default: [] },
  },
});
if (!args.directory) {
  console.error('s3-server.js: --directory is required');
  process.exit(2);
}

// One write at a time per object: the precondition check and the write it guards are one step.
const locks = new Map();
async function exclusive(key, work) {
  const previous = locks.get(key) || Promise.resolve();
  let release;
  const current = new Promise(resolve => (release = resolve));
  const chained = previous.then(() => current);
  locks.set(key, chained);
  await previous;
  try {
    return await work();
  } finally {
    release();
    if (locks.get(key) === chained) locks.delete(key);
  }
}

function objectKey(ctx) {
  // path-style requests, as Tansu and boto3 send them here: /<bucket>/<key>
  const [, bucket, ...rest] = ctx.path.split('/');
  return rest.length && rest.join('/') ? [decodeURIComponent(bucket), decodeURIComponent(rest.join('/'))] : null;
}

function preconditionFailed(ctx) {
  ctx.status = 412;
  ctx.type = 'application/xml';
  ctx.body =
    '<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>PreconditionFailed</Code>' +
    '<Message>At least one of the pre-conditions you specified did not hold</Message></Error>';
}

function conditionalWrites(store) {
  return async (ctx, next) => {
    const target = ctx.method === 'PUT' && !ctx.headers['x-amz-copy-source'] ? objectKey(ctx) : null;
    const ifNoneMatch = ctx.headers['if-none-match'];
    const ifMatch = ctx.headers['if-match'];
    if (!target || (!ifNoneMatch && !ifMatch)) return next();
    const [bucket, key] = target;
    return exclusive(`${bucket}/${key}`, async () => {
      const exists = await store.existsObject(bucket, key);
      if (ifNoneMatch === '*' && exists) return preconditionFailed(ctx);
      if (ifMatch) {
        const etag = exists ? (await store.getMetadata(bucket, key)).etag : null;
        if (etag === null || (ifMatch !== '*' && ifMatch !== etag)) return preconditionFailed(ctx);
      }
      return next();
    });
  };
}

function atomicPutObject(store) {
  // s3rver's FilesystemStore.putObject, writing through a scratch file and a rename
  return async function putObject(object) {
    const objectPath = store.getResourcePath(object.bucket, object.key, 'object');
    await fs.promises.mkdir(path.dirname(objectPath), { recursive: true });
    const scratch = `${objectPath}.${process.pid}.${crypto.randomUUID()}.tmp`;
    const md5 = crypto.createHash('md5');
    let size = 0;
    try {
      if (Buffer.isBuffer(object.content)) {
        md5.update(object.content);
        size = object.content.length;
        await fs.promises.writeFile(scratch, object.content);
      } else {
        const hashing = new Transform({
          transform(chunk, encoding, callback) {
            md5.update(chunk);
            size += chunk.length;
            callback(null, chunk);
          },
        });
        await pipeline(object.content, hashing, fs.createWriteStream(scratch));
      }
      await fs.promises.rename(scratch, objectPath);
    } catch (err) {
      await fs.promises.rm(scratch, { force: true });
      throw err;
    }
    const digest = md5.digest('hex');
    await store.putMetadata(object.bucket, object.key, object.metadata, digest);
    return { size, md5: digest };
  };
}

const server = new S3rver({
  directory: args.directory,
  address: args.address,
  port: Number(args.port),
  silent: true,
  allowMismatchedSignatures: true,
  configureBuckets: args.bucket.map(name => ({ name, configs: [] })),
});
server.store.putObject = atomicPutObject(server.store);
server.middleware.unshift(conditionalWrites(server.store));

server.run().then(
  ({ address, port }) => console.log(`S3 server listening on ${address}:${port}, objects in ${args.directory}`),
  err => {
    console.error(err);
    process.exit(1);
  },
);
