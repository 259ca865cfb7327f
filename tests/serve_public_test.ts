/**
 * `serve/main.ts` as a public deployment runs it: API keys from the command line, a deadline
 * on request headers, and clean output on a server with no desktop session.
 *
 * @module
 */

import assert from "node:assert/strict";
import { PRESETS } from "../train/network.ts";
import { randomOnnxModel } from "./_models.ts";
import { ROOT, SERVE_FLAGS, startMainServer, stop, waitForServer } from "./serve_helpers.ts";

const KEY = "test-key-0123456789abcdef";

Deno.test("serve --api-key closes /v1 to requests without the key; --header-timeout closes silent connections", async () => {
  const dir = await Deno.makeTempDir();
  try {
    await Deno.writeFile(`${dir}/tiny.onnx`, randomOnnxModel(PRESETS.tiny));
    const { child, started } = await startMainServer(dir, [
      "--api-key",
      KEY,
      "--header-timeout",
      "0.5",
      "--max-jobs-per-client",
      "1",
    ]);
    try {
      const open = await fetch(`${started.base}/v1/models`);
      assert.equal(open.status, 401);
      assert.equal((await open.json()).error, "unauthorized");
      const keyed = await fetch(`${started.base}/v1/models`, {
        headers: { authorization: `Bearer ${KEY}` },
      });
      assert.equal(keyed.status, 200);
      await keyed.body?.cancel();
      // A connection that sends half a header is closed after about 0.5 s.
      const { port } = new URL(started.base);
      const conn = await Deno.connect({ hostname: "127.0.0.1", port: Number(port) });
      await conn.write(new TextEncoder().encode("GET /healthz HTTP/1.1\r\nHost: x\r\n"));
      const t0 = performance.now();
      const read = await conn.read(new Uint8Array(64));
      const seconds = (performance.now() - t0) / 1000;
      assert.equal(read, null, "the server closed the connection");
      assert.ok(seconds < 3, `closed after ${seconds.toFixed(1)} s`);
      conn.close();
    } finally {
      const status = await stop(child, started);
      assert.equal(status.code, 0);
      assert.match(status.output, /GET \/v1\/models 401/);
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("serve refuses a short --api-key and a bad --max-jobs-per-client or --header-timeout", async () => {
  for (
    const [flags, message] of [
      [["--api-key", "short"], /^error: --api-key: API key 1 of 1 must be at least 16 characters/],
      [
        ["--max-jobs-per-client", "0"],
        /^error: --max-jobs-per-client must be a positive integer, got 0/,
      ],
      [
        ["--header-timeout", "never"],
        /^error: --header-timeout must be a number of seconds in 0\.001\.\.3600, got never/,
      ],
    ] as const
  ) {
    const output = await new Deno.Command(Deno.execPath(), {
      args: ["run", ...SERVE_FLAGS, "serve/main.ts", ...flags],
      cwd: ROOT,
      env: { NO_COLOR: "1" },
    }).output();
    assert.equal(output.code, 2);
    assert.match(new TextDecoder().decode(output.stderr), message);
  }
});

Deno.test("serve without XDG_RUNTIME_DIR prints no XDG error while it probes for WebGPU", async () => {
  const dir = await Deno.makeTempDir();
  try {
    await Deno.writeFile(`${dir}/tiny.onnx`, randomOnnxModel(PRESETS.tiny));
    const env = Deno.env.toObject();
    delete env.XDG_RUNTIME_DIR;
    const child = new Deno.Command(Deno.execPath(), {
      args: [
        "run",
        ...SERVE_FLAGS,
        "serve/main.ts",
        "--weights",
        dir,
        "--port",
        "0",
        "--hostname",
        "127.0.0.1",
        "--provider",
        "auto",
      ],
      cwd: ROOT,
      clearEnv: true,
      env: { ...env, NO_COLOR: "1" },
      stdout: "piped",
      stderr: "piped",
    }).spawn();
    const started = await waitForServer(
      child,
      "stdout",
      /listening on (http:\/\/127\.0\.0\.1:\d+)\//,
    );
    child.kill("SIGTERM");
    const stderr = await new Response(started.other).text();
    await started.reader.cancel();
    await child.status;
    assert.doesNotMatch(stderr, /XDG_RUNTIME_DIR/);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
