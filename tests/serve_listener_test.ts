import assert from "node:assert/strict";
import { serveWithTimeouts } from "../serve/listener.ts";

const encoder = new TextEncoder();

/** Reads until the peer closes or `ms` pass; "closed" with the bytes read, or "open". */
async function readUntilClosed(conn: Deno.Conn, ms: number): Promise<"closed" | "open"> {
  const buffer = new Uint8Array(4096);
  const deadline = performance.now() + ms;
  for (;;) {
    const left = deadline - performance.now();
    if (left <= 0) return "open";
    let timer: ReturnType<typeof setTimeout> | undefined;
    const read = await Promise.race([
      conn.read(buffer).catch(() => null),
      new Promise<"timeout">((resolve) => timer = setTimeout(() => resolve("timeout"), left)),
    ]);
    clearTimeout(timer);
    if (read === "timeout") return "open";
    if (read === null) return "closed";
  }
}

Deno.test("connections that never finish their headers are closed after the header timeout", async () => {
  // Deno.serve alone kept all of these open (45 s measured, issue 16).
  const seen: string[] = [];
  const server = serveWithTimeouts(
    { hostname: "127.0.0.1", port: 0, headerTimeoutMs: 1000 },
    (_request, info) => {
      seen.push(info.remoteAddr.hostname);
      return new Response(`hello ${info.remoteAddr.port}`);
    },
  );
  const { port } = server.addr;
  try {
    // 1. 200 connections: half send a partial header, half send nothing at all.
    const slow = await Promise.all(Array.from({ length: 200 }, async (_, i) => {
      const conn = await Deno.connect({ hostname: "127.0.0.1", port });
      if (i % 2 === 0) await conn.write(encoder.encode("GET / HTTP/1.1\r\nHost: x\r\n"));
      return conn;
    }));
    // 2. A well-behaved client meanwhile gets its answers, twice on one kept-alive connection,
    // and the handler sees the client's address and port, not the relay's.
    const client = Deno.createHttpClient({});
    for (let i = 0; i < 2; i++) {
      const response = await fetch(`http://127.0.0.1:${port}/`, { client });
      assert.equal(response.status, 200);
      assert.match(await response.text(), /^hello \d+$/);
    }
    client.close();
    assert.deepEqual(seen, ["127.0.0.1", "127.0.0.1"]);
    // 3. The slow ones are closed after about 1 s: none is open at 3 s (2 s of slack for a
    // loaded machine).
    const t0 = performance.now();
    const states = await Promise.all(slow.map((conn) => readUntilClosed(conn, 3000)));
    const seconds = (performance.now() - t0) / 1000;
    assert.equal(states.filter((s) => s === "open").length, 0);
    assert.ok(seconds < 3, `closing took ${seconds.toFixed(1)} s`);
    for (const conn of slow) conn.close();
  } finally {
    await server.shutdown();
  }
});

Deno.test("a kept-alive connection's next request must finish its headers in time too", async () => {
  const server = serveWithTimeouts(
    { hostname: "127.0.0.1", port: 0, headerTimeoutMs: 500, idleTimeoutMs: 60_000 },
    () => new Response("ok"),
  );
  try {
    const conn = await Deno.connect({ hostname: "127.0.0.1", port: server.addr.port });
    await conn.write(encoder.encode("GET / HTTP/1.1\r\nHost: x\r\n\r\n"));
    const buffer = new Uint8Array(1024);
    const n = await conn.read(buffer);
    assert.match(new TextDecoder().decode(buffer.subarray(0, n ?? 0)), /^HTTP\/1\.1 200/);
    // Slowloris on the second request: one header line, then nothing.
    await conn.write(encoder.encode("GET / HTTP/1.1\r\n"));
    assert.equal(await readUntilClosed(conn, 2500), "closed");
    conn.close();
  } finally {
    await server.shutdown();
  }
});

Deno.test("a header timeout that is not a positive integer is a RangeError naming it", () => {
  assert.throws(
    () =>
      serveWithTimeouts(
        { hostname: "127.0.0.1", port: 0, headerTimeoutMs: 0 },
        () => new Response(),
      ),
    /RangeError: headerTimeoutMs must be a positive integer, got 0/,
  );
});
