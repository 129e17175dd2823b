#!/usr/bin/env node
// A WAN-like TCP link for the benchmarks. It listens on 127.0.0.1 only, forwards every connection
// to one target port on 127.0.0.1, and in each direction adds a one-way delay and a bandwidth cap
// shared by all connections (a single link, as between a server and its Storage Box).
//
// Bounded: at most `maxConns` connections at once, and it closes everything after `lifetimeMs`.
// Run as a program (`node bench/relay.mjs --target-port N`), it prints {"port":N} once listening,
// answers a line "stats" on stdin with its byte counters, and exits at the end of its lifetime,
// on SIGTERM/SIGINT, or when its stdin closes (its parent went away): it never outlives the run.
import { connect, createServer } from 'node:net';
import { resolve } from 'node:path';
import { performance } from 'node:perf_hooks';
import { fileURLToPath } from 'node:url';

/**
 * One direction of the link: a chunk leaves when the line is free (serialisation at `rate`) and
 * arrives `delayMs` later. Chunks of every connection share one queue, so the cap is for the link.
 */
class Lane {
  constructor(bytesPerMs, delayMs) {
    this.bytesPerMs = bytesPerMs;
    this.delayMs = delayMs;
    this.nextFree = 0;
    this.queue = [];
    this.head = 0;
    this.timer = undefined;
    this.bytes = 0;
  }

  /** Queues `chunk` for `conn`'s far side; `chunk === null` is an end-of-stream marker. */
  send(conn, dir, chunk) {
    const now = performance.now();
    const len = chunk ? chunk.length : 0;
    const start = Math.max(now, this.nextFree);
    this.nextFree = start + len / this.bytesPerMs;
    this.queue.push({ conn, dir, chunk, due: this.nextFree + this.delayMs });
    if (chunk) conn.queued[dir] += len;
    this.arm();
  }

  arm() {
    if (this.timer || this.head >= this.queue.length) return;
    const wait = this.queue[this.head].due - performance.now();
    this.timer = setTimeout(() => {
      this.timer = undefined;
      this.deliver();
    }, Math.max(0, wait - 1));
  }

  deliver() {
    const now = performance.now();
    // Timers fire about 1 ms late: they are armed 1 ms early, and a chunk due within 0.75 ms goes now.
    while (this.head < this.queue.length && this.queue[this.head].due <= now + 0.75) {
      const item = this.queue[this.head];
      this.queue[this.head++] = undefined;
      const to = item.dir === 'up' ? item.conn.server : item.conn.client;
      if (item.chunk === null) {
        if (!to.destroyed) to.end();
        continue;
      }
      item.conn.queued[item.dir] -= item.chunk.length;
      this.bytes += item.chunk.length;
      if (!to.destroyed) to.write(item.chunk);
      item.conn.maybeResume(item.dir);
    }
    if (this.head > 4096 && this.head * 2 > this.queue.length) {
      this.queue = this.queue.slice(this.head);
      this.head = 0;
    }
    this.arm();
  }

  clear() {
    clearTimeout(this.timer);
    this.timer = undefined;
    this.queue = [];
    this.head = 0;
  }
}

/**
 * Starts the relay. Resolves once it listens: { port, close(), stats() }.
 * @param {{ targetPort: number, delayMs?: number, rateMbit?: number, lifetimeMs?: number, maxConns?: number, listenPort?: number, onClose?: () => void }} o
 */
export function startRelay(o) {
  const delayMs = o.delayMs ?? 10;
  const rateMbit = o.rateMbit ?? 200;
  const lifetimeMs = o.lifetimeMs ?? 15 * 60_000;
  const maxConns = o.maxConns ?? 16;
  const bytesPerMs = (rateMbit * 1e6) / 8 / 1000;
  // Each connection may have this much in flight per direction before its sender is paused: the
  // bandwidth-delay product several times over, so a single connection can fill the link.
  const highWater = Math.max(1 << 20, Math.ceil(4 * bytesPerMs * delayMs));
  const lanes = { up: new Lane(bytesPerMs, delayMs), down: new Lane(bytesPerMs, delayMs) };
  const conns = new Set();
  let accepted = 0;
  let refused = 0;
  let closed = false;

  const server = createServer({ noDelay: true }, (client) => {
    if (closed || conns.size >= maxConns) {
      refused++;
      client.destroy();
      return;
    }
    accepted++;
    const server_ = connect({ host: '127.0.0.1', port: o.targetPort, noDelay: true });
    const conn = {
      client,
      server: server_,
      queued: { up: 0, down: 0 },
      /** The socket a direction reads from. */
      source(dir) {
        return dir === 'up' ? client : server_;
      },
      sink(dir) {
        return dir === 'up' ? server_ : client;
      },
      maybeResume(dir) {
        const src = this.source(dir);
        if (src.isPaused() && this.queued[dir] + this.sink(dir).writableLength < highWater / 2) src.resume();
      },
      destroy() {
        client.destroy();
        server_.destroy();
        conns.delete(conn);
      },
    };
    conns.add(conn);
    for (const dir of ['up', 'down']) {
      const src = conn.source(dir);
      src.on('data', (chunk) => {
        lanes[dir].send(conn, dir, chunk);
        if (conn.queued[dir] + conn.sink(dir).writableLength >= highWater) src.pause();
      });
      src.on('end', () => lanes[dir].send(conn, dir, null));
      conn.sink(dir).on('drain', () => conn.maybeResume(dir));
      src.on('error', () => conn.destroy());
      src.on('close', () => {
        // Both halves gone: forget the connection once whatever is queued for it has left.
        if (client.destroyed && server_.destroyed) conns.delete(conn);
      });
    }
    // Half-closed sockets stay open until the far side has ended too (SSH closes cleanly).
    client.on('close', () => setTimeout(() => conn.destroy(), delayMs + 50).unref());
    server_.on('close', () => setTimeout(() => conn.destroy(), delayMs + 50).unref());
  });

  const close = () => {
    if (closed) return;
    closed = true;
    clearTimeout(lifetime);
    server.close();
    for (const c of [...conns]) c.destroy();
    lanes.up.clear();
    lanes.down.clear();
    o.onClose?.();
  };
  const lifetime = setTimeout(close, lifetimeMs);

  return new Promise((resolve, reject) => {
    server.once('error', reject);
    // Loopback only: the relay is never reachable from another machine.
    server.listen(o.listenPort ?? 0, '127.0.0.1', () => {
      const addr = server.address();
      resolve({
        port: typeof addr === 'object' && addr ? addr.port : 0,
        close,
        stats: () => ({ accepted, refused, open: conns.size, bytesUp: lanes.up.bytes, bytesDown: lanes.down.bytes }),
      });
    });
  });
}

function parseArgs(argv) {
  const out = {};
  for (let i = 0; i < argv.length; i += 2) {
    const key = argv[i]?.replace(/^--/, '').replace(/-([a-z])/g, (_, c) => c.toUpperCase());
    const value = Number(argv[i + 1]);
    const known = ['targetPort', 'delayMs', 'rateMbit', 'lifetimeS', 'maxConns'];
    if (!key || !known.includes(key) || !Number.isFinite(value) || value < 0) throw new Error(`relay: bad argument ${argv[i]} ${argv[i + 1]}`);
    out[key] = value;
  }
  return out;
}

if (process.argv[1] && fileURLToPath(import.meta.url) === resolve(process.argv[1])) {
  const a = parseArgs(process.argv.slice(2));
  if (!a.targetPort) {
    process.stderr.write('usage: relay.mjs --target-port N [--delay-ms 10] [--rate-mbit 200] [--lifetime-s 900] [--max-conns 16]\n');
    process.exit(2);
  }
  let relay;
  const stop = () => {
    relay?.close();
    process.stdout.write(JSON.stringify({ stopped: true, ...relay?.stats() }) + '\n');
    process.exit(0);
  };
  relay = await startRelay({
    targetPort: a.targetPort,
    delayMs: a.delayMs,
    rateMbit: a.rateMbit,
    lifetimeMs: (a.lifetimeS ?? 900) * 1000,
    maxConns: a.maxConns,
    onClose: () => setImmediate(stop),
  });
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
  // The parent holds our stdin: when it goes away, so do we. A line "stats" asks for the counters.
  process.stdin.on('data', (d) => {
    if (String(d).includes('stats')) process.stdout.write(JSON.stringify(relay.stats()) + '\n');
  });
  process.stdin.on('end', stop);
  process.stdin.on('close', stop);
  process.stdin.resume();
  process.stdout.write(JSON.stringify({ port: relay.port }) + '\n');
}
