/**
 * `Deno.serve` with a deadline on request headers. Deno's HTTP server has none (denoland/deno
 * #3515): a client that opens a connection and never finishes its headers holds it open for
 * ever, and a few hundred such clients hold every socket the process may open.
 *
 * {@linkcode serveWithTimeouts} listens where it is told and relays each connection to a
 * `Deno.serve` on a loopback port, watching only the bytes' timing, never parsing them beyond
 * the blank line that ends a header block:
 *
 * 1. A request's headers must arrive within `headerTimeoutMs` of the connection opening, or of
 *    the client starting its next request on a kept-alive connection; otherwise the
 *    connection is closed.
 * 2. Once a response has started, a connection on which nothing moves for `idleTimeoutMs` is
 *    closed (a kept-alive connection the client does not use).
 *
 * The handler sees the client's own address in `info.remoteAddr`, not the relay's.
 *
 * @module
 */

/** Options of {@linkcode serveWithTimeouts}. */
export interface TimeoutServeOptions {
  readonly hostname: string;
  /** 0 picks a free port. */
  readonly port: number;
  /** Milliseconds a request's headers may take to arrive. Default 10,000 (10 s). */
  readonly headerTimeoutMs?: number;
  /** Milliseconds a connection may sit with nothing moving once a response began. Default 120,000. */
  readonly idleTimeoutMs?: number;
  /** Called once the public listener is bound. */
  readonly onListen?: (addr: Deno.NetAddr) => void;
}

/** A running server. */
export interface TimeoutServer {
  /** Where clients connect. */
  readonly addr: Deno.NetAddr;
  /** Resolves when the server has stopped. */
  readonly finished: Promise<void>;
  /** Stops accepting, closes the relays and lets running requests finish. */
  shutdown(): Promise<void>;
}

/** Defaults of {@linkcode TimeoutServeOptions}. */
export const DEFAULT_HEADER_TIMEOUT_MS = 10_000;
export const DEFAULT_IDLE_TIMEOUT_MS = 120_000;

const _BLANK_LINE = [13, 10, 13, 10]; // "\r\n\r\n": the end of a header block (RFC 9112 §2.1)

/**
 * Serves `handler` at `hostname:port` with header and idle deadlines.
 *
 * @example
 * ```ts ignore
 * import { serveWithTimeouts } from "./listener.ts";
 * const server = serveWithTimeouts({ hostname: "127.0.0.1", port: 0 }, () => new Response("ok"));
 * await server.shutdown();
 * ```
 */
export function serveWithTimeouts(
  options: TimeoutServeOptions,
  handler: Deno.ServeHandler<Deno.NetAddr>,
): TimeoutServer {
  const headerTimeoutMs = options.headerTimeoutMs ?? DEFAULT_HEADER_TIMEOUT_MS;
  const idleTimeoutMs = options.idleTimeoutMs ?? DEFAULT_IDLE_TIMEOUT_MS;
  for (
    const [name, value] of [["headerTimeoutMs", headerTimeoutMs], [
      "idleTimeoutMs",
      idleTimeoutMs,
    ]] as const
  ) {
    if (!Number.isInteger(value) || value < 1) {
      throw new RangeError(`${name} must be a positive integer, got ${value}`);
    }
  }
  // The relay's local port -> the client it carries.
  const peers = new Map<number, Deno.NetAddr>();
  const inner = Deno.serve(
    { hostname: "127.0.0.1", port: 0, onListen: () => {} },
    (request, info) => {
      const remoteAddr = peers.get(info.remoteAddr.port) ?? info.remoteAddr;
      return handler(request, { ...info, remoteAddr });
    },
  );
  const listener = Deno.listen({ hostname: options.hostname, port: options.port });
  const addr = listener.addr as Deno.NetAddr;
  options.onListen?.(addr);
  const open = new Set<() => void>();

  async function accept(): Promise<void> {
    try {
      for await (const conn of listener) {
        _relay(conn, inner.addr.port, { headerTimeoutMs, idleTimeoutMs, peers, open });
      }
    } catch (error) {
      if (!(error instanceof Deno.errors.BadResource)) throw error;
    }
  }
  const accepting = accept();
  let stopping: Promise<void> | null = null;
  const finished = (async () => {
    await accepting;
    await inner.finished;
  })();
  return {
    addr,
    finished,
    shutdown() {
      stopping ??= (async () => {
        listener.close();
        for (const close of open) close();
        await inner.shutdown();
        await finished;
      })();
      return stopping;
    },
  };
}

interface _RelayContext {
  readonly headerTimeoutMs: number;
  readonly idleTimeoutMs: number;
  readonly peers: Map<number, Deno.NetAddr>;
  readonly open: Set<() => void>;
}

/** Relays one client connection to the inner server under the two deadlines. */
async function _relay(conn: Deno.Conn, innerPort: number, context: _RelayContext): Promise<void> {
  const { headerTimeoutMs, idleTimeoutMs, peers, open } = context;
  let upstream: Deno.TcpConn | null = null;
  let closed = false;
  let timer: ReturnType<typeof setTimeout> | undefined;
  const close = () => {
    if (closed) return;
    closed = true;
    clearTimeout(timer);
    open.delete(close);
    for (const c of [conn, upstream]) {
      try {
        c?.close();
      } catch {
        // already closed by the other side
      }
    }
    if (upstream) peers.delete((upstream.localAddr as Deno.NetAddr).port);
  };
  const arm = (ms: number) => {
    clearTimeout(timer);
    timer = setTimeout(close, ms);
  };
  open.add(close);
  // 1. The first request's headers are due headerTimeoutMs after the connection opened.
  arm(headerTimeoutMs);
  try {
    upstream = await Deno.connect({ hostname: "127.0.0.1", port: innerPort });
  } catch {
    close();
    return;
  }
  if (closed) {
    close();
    return;
  }
  peers.set((upstream.localAddr as Deno.NetAddr).port, conn.remoteAddr as Deno.NetAddr);
  let inHeaders = true;
  let responding = false;
  let matched = 0; // bytes of the blank line matched so far, across reads
  const toServer = async () => {
    const writer = (upstream as Deno.TcpConn).writable.getWriter();
    for await (const chunk of conn.readable) {
      // 2. Bytes after a response began start the next request: its headers are due.
      if (!inHeaders && responding) {
        inHeaders = true;
        responding = false;
        matched = 0;
        arm(headerTimeoutMs);
      }
      if (inHeaders) {
        for (let i = 0; i < chunk.length && inHeaders; i++) {
          matched = chunk[i] === _BLANK_LINE[matched] ? matched + 1 : chunk[i] === 13 ? 1 : 0;
          if (matched === 4) {
            inHeaders = false;
            clearTimeout(timer);
          }
        }
      }
      await writer.write(chunk);
    }
    await (upstream as Deno.TcpConn).closeWrite();
  };
  const toClient = async () => {
    const writer = conn.writable.getWriter();
    for await (const chunk of (upstream as Deno.TcpConn).readable) {
      // 3. A response is moving: the connection may then idle for idleTimeoutMs.
      if (!inHeaders) {
        responding = true;
        arm(idleTimeoutMs);
      }
      await writer.write(chunk);
    }
  };
  await Promise.allSettled([toServer(), toClient().finally(close)]);
  close();
}
