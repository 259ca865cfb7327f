import assert from "node:assert/strict";
import { decodePng } from "../lib/png.ts";
import { PRESETS } from "../train/network.ts";
import { randomOnnxModel } from "./_models.ts";
import { ROOT, SERVE_FLAGS, startMainServer, stop, waitForServer } from "./serve_helpers.ts";

Deno.test("deno task serve with no model says how to make one, without a stack trace", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const output = await new Deno.Command(Deno.execPath(), {
      args: ["run", ...SERVE_FLAGS, "serve/main.ts", "--weights", dir],
      cwd: ROOT,
      env: { NO_COLOR: "1" },
    }).output();
    const stderr = new TextDecoder().decode(output.stderr);
    assert.equal(output.code, 1, stderr);
    assert.match(stderr, /^error: no model in .* \(no \.onnx file\)/);
    assert.match(stderr, /deno task export --ckpt runs\/mnist-mnist --out weights\/mnist\.onnx/);
    assert.ok(!/\n\s+at /.test(stderr), `a stack trace:\n${stderr}`);
    const badFlag = await new Deno.Command(Deno.execPath(), {
      args: ["run", ...SERVE_FLAGS, "serve/main.ts", "--provider", "cuda"],
      cwd: ROOT,
      env: { NO_COLOR: "1" },
    }).output();
    assert.equal(badFlag.code, 2);
    assert.match(
      new TextDecoder().decode(badFlag.stderr),
      /--provider must be one of auto, wasm, webgpu/,
    );
    const badCors = await new Deno.Command(Deno.execPath(), {
      args: ["run", ...SERVE_FLAGS, "serve/main.ts", "--cors", "https://a.example/"],
      cwd: ROOT,
      env: { NO_COLOR: "1" },
    }).output();
    assert.equal(badCors.code, 2);
    assert.match(
      new TextDecoder().decode(badCors.stderr),
      /^error: --cors: CORS origins: "https:\/\/a\.example\/" is not an origin/,
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("the real server: --weights, --port 0, then HTTP on a free port", async () => {
  const dir = await Deno.makeTempDir();
  try {
    await Deno.writeFile(`${dir}/tiny.onnx`, randomOnnxModel(PRESETS.tiny));
    const { child, started } = await startMainServer(dir, [
      ...["--cors", "https://a.example"],
      ...["--provider", "auto", "--threads", "2"],
    ]);
    const base = started.base;
    const requestIds: string[] = [];
    try {
      const health = await (await fetch(`${base}/healthz`)).json();
      // auto: WebGPU on a hardware adapter, else onnxruntime-node, which ships its Linux, macOS
      // and Windows libraries inside the npm package, in the network worker.
      assert.deepEqual([health.status, health.models], ["ok", 1]);
      assert.match(
        `${health.provider} ${health.providerReason}`,
        /^(native onnxruntime-node:|webgpu WebGPU on) .*; 2 threads$/,
      );
      const response = await fetch(`${base}/v1/samples`, {
        method: "POST",
        headers: {
          "content-type": "application/json",
          "x-request-id": "main-test-1",
          origin: "https://a.example",
        },
        body: JSON.stringify({ n: 4, steps: 3, seed: 2 }),
      });
      assert.equal(response.status, 200);
      assert.equal(response.headers.get("x-seed"), "2");
      assert.equal(response.headers.get("x-request-id"), "main-test-1");
      assert.equal(response.headers.get("access-control-allow-origin"), "https://a.example");
      const grid = decodePng(new Uint8Array(await response.arrayBuffer()));
      assert.deepEqual([grid.width, grid.height], [22, 22]);
      const page = await fetch(`${base}/`);
      assert.match(await page.text(), /ddpm-toolkit playground/);
      const missing = await fetch(`${base}/v1/nothing`);
      assert.equal(missing.status, 404);
      const missingId: string = (await missing.json()).requestId;
      assert.equal(missingId, missing.headers.get("x-request-id"));
      requestIds.push(missingId);
    } finally {
      const status = await stop(child, started);
      assert.equal(status.code, 0, "SIGTERM shuts the server down cleanly");
      // The access log: one line per request, with the id the client was given.
      for (
        const [id, request, code] of [
          ["main-test-1", "POST /v1/samples", 200],
          [requestIds[0], "GET /v1/nothing", 404],
        ]
      ) {
        const line = new RegExp(`^\\S+Z ${id} ${request} ${code} [\\d.]+ ms$`, "m");
        assert.match(status.output, line);
      }
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("deno serve serve/edge.ts, as Deno Deploy runs it (no writes, no native code), fetches its models by URL", async () => {
  const dir = await Deno.makeTempDir();
  try {
    await Deno.writeFile(`${dir}/edge-tiny.onnx`, randomOnnxModel(PRESETS.tiny));
    // The serve:edge task's command (deno.json), on a free port of 127.0.0.1.
    const task =
      (await import("../deno.json", { with: { type: "json" } })).default.tasks["serve:edge"];
    const flags = task.split(" ").slice(2, -1);
    assert.ok(flags.includes("--deny-write") && flags.includes("--deny-ffi"), task);
    const child = new Deno.Command(Deno.execPath(), {
      args: ["serve", ...flags, "--host", "127.0.0.1", "--port", "0", "serve/edge.ts"],
      cwd: ROOT,
      env: { NO_COLOR: "1", DDPM_MODEL_URLS: `file://${dir}/edge-tiny.onnx` },
      stdout: "piped",
      stderr: "piped",
    }).spawn();
    const started = await waitForServer(child, "stderr", /Listening on (http:\/\/[^/\s]+)\//);
    try {
      const models = await (await fetch(`${started.base}/v1/models`)).json();
      assert.equal(models.provider.name, "wasm");
      assert.deepEqual(models.models.map((m: { name: string }) => m.name), ["edge-tiny"]);
      const response = await fetch(`${started.base}/v1/samples`, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify({ n: 1, steps: 2, seed: 1 }),
      });
      assert.equal(response.status, 200);
      assert.equal(response.headers.get("content-type"), "image/png");
      assert.equal(decodePng(new Uint8Array(await response.arrayBuffer())).channels, 1);
    } finally {
      const status = await stop(child, started);
      // The same abort semantics as deno task serve: no legacy-abort warning.
      assert.doesNotMatch(status.output, /legacy behavior/);
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("--default-model picks the first of its names that is served, else the first by name", async () => {
  const dir = await Deno.makeTempDir();
  try {
    await Deno.writeFile(`${dir}/a.onnx`, randomOnnxModel(PRESETS.tiny, 1));
    await Deno.writeFile(`${dir}/b.onnx`, randomOnnxModel(PRESETS.tiny, 2));
    for (
      const [flags, expected] of [
        [[], ["a", "b"]], // the shipped names (mnist-cond, mnist) are absent: by name
        [["--default-model", "nothing, b,a"], ["b", "a"]],
      ] as const
    ) {
      const { child, started } = await startMainServer(dir, [...flags]);
      try {
        const listed = await (await fetch(`${started.base}/v1/models`)).json();
        const models = listed.models as { name: string; default: boolean }[];
        assert.deepEqual(models.map((m) => m.name), expected);
        assert.deepEqual(models.map((m) => m.default), [true, false]);
      } finally {
        await stop(child, started);
      }
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
