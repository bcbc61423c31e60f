// cairn.js: helpers for cairn stages written in JavaScript.
//
// A stage is an ES module exporting `run(invocation)`, built with
// componentize-js by `cairn stage build`. It returns an outcome
// `{ summary, outputs: [[key, value], ...] }` or throws a string to fail.
// The host's logs, progress and annotations, and file access through the
// sandbox's directories (/src, /in/<stage>, /out, /tmp), are below: the
// engine has no `fs` module, so these use wasi:filesystem directly.

import {
  log as hostLog,
  progress as hostProgress,
  annotate as hostAnnotate,
  secret as hostSecret,
} from 'cairn:stage/host@0.1.0';
import { getDirectories } from 'wasi:filesystem/preopens@0.2.12';

export const debug = (message) => hostLog('debug', String(message));
export const info = (message) => hostLog('info', String(message));
export const warn = (message) => hostLog('warn', String(message));
export const error = (message) => hostLog('error', String(message));

/** Reports progress: `done` of `total` units (0 when unknown). */
export function progress(done, total = 0) {
  hostProgress(BigInt(done), BigInt(total));
}

/** Attaches a diagnostic to a line of a file (line 0: the whole file). */
export function annotate({ path, line = 0, column, severity = 'warn', message }) {
  hostAnnotate({ path, line, column, severity, message });
}

/** The value of a granted secret, or undefined. */
export function secret(name) {
  return hostSecret(name);
}

/** The invocation's `with` table as an object. */
export function config(invocation) {
  return Object.fromEntries(invocation.config);
}

/** An outcome: a summary line and named outputs (values become strings). */
export function outcome(summary, outputs = {}) {
  return {
    summary,
    outputs: Object.entries(outputs).map(([key, value]) => [key, String(value)]),
  };
}

// The preopened directory a path lives in, and the path inside it.
function locate(path) {
  let best;
  for (const [descriptor, root] of getDirectories()) {
    if ((path === root || path.startsWith(root.endsWith('/') ? root : `${root}/`)) &&
        (!best || root.length > best.root.length)) {
      best = { descriptor, root };
    }
  }
  if (!best) {
    throw `${path} is outside the stage's directories (/src, /in, /out, /tmp)`;
  }
  const inside = path.slice(best.root.length).replace(/^\/+/, '');
  return { descriptor: best.descriptor, inside: inside === '' ? '.' : inside };
}

function open(path, openFlags, descriptorFlags) {
  const { descriptor, inside } = locate(path);
  try {
    return descriptor.openAt({}, inside, openFlags, descriptorFlags);
  } catch (cause) {
    throw `cannot open ${path}: ${cause?.payload ?? cause}`;
  }
}

/** The bytes of a file. */
export function readBytes(path) {
  const file = open(path, {}, { read: true });
  const chunks = [];
  let offset = 0n;
  for (;;) {
    const [chunk, end] = file.read(1n << 20n, offset);
    chunks.push(chunk);
    offset += BigInt(chunk.length);
    if (end || chunk.length === 0) break;
  }
  const bytes = new Uint8Array(chunks.reduce((total, chunk) => total + chunk.length, 0));
  let at = 0;
  for (const chunk of chunks) {
    bytes.set(chunk, at);
    at += chunk.length;
  }
  return bytes;
}

/** The text of a UTF-8 file. */
export function readText(path) {
  return new TextDecoder().decode(readBytes(path));
}

/** Writes `contents` (a string or bytes) to a file, replacing it; creates missing folders. */
export function writeFile(path, contents) {
  const bytes = typeof contents === 'string' ? new TextEncoder().encode(contents) : contents;
  const parent = path.slice(0, path.lastIndexOf('/'));
  if (parent) makeDirectories(parent);
  const file = open(path, { create: true, truncate: true }, { write: true });
  let offset = 0n;
  while (offset < BigInt(bytes.length)) {
    offset += file.write(bytes.subarray(Number(offset)), offset);
  }
}

/** Creates a folder and its parents, like `mkdir -p`. */
export function makeDirectories(path) {
  const { descriptor, inside } = locate(path);
  if (inside === '.') return;
  let sofar = '';
  for (const part of inside.split('/')) {
    sofar = sofar ? `${sofar}/${part}` : part;
    try {
      descriptor.createDirectoryAt(sofar);
    } catch (cause) {
      if ((cause?.payload ?? cause) !== 'exist') throw `cannot create ${path}: ${cause?.payload ?? cause}`;
    }
  }
}

/** Every regular file under a folder, as sorted paths relative to it. */
export function listFiles(root) {
  const files = [];
  const walk = (relative) => {
    const folder = open(relative ? `${root}/${relative}` : root, { directory: true }, { read: true });
    const entries = folder.readDirectory();
    for (let entry = entries.readDirectoryEntry(); entry; entry = entries.readDirectoryEntry()) {
      const path = relative ? `${relative}/${entry.name}` : entry.name;
      if (entry.type === 'directory') walk(path);
      else if (entry.type === 'regular-file') files.push(path);
    }
  };
  walk('');
  return files.sort();
}
