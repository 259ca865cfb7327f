import assert from "node:assert/strict";
import { servePermissions } from "../serve/launch.ts";
import { PRESETS } from "../train/network.ts";
import { randomOnnxModel } from "./_models.ts";
import { randomImage, ROOT, stop, waitForServer } from "./serve_helpers.ts";
import { encodePng } from "../lib/png.ts";

const NPM = "/cache/npm";
const CODE = [
  NPM,
  new URL("../serve/", import.meta.url).pathname,
  new URL("../lib/", import.meta.url).pathname,
  new URL("../model/", import.meta.url).pathname,
].join(",");

Deno.test("deno task serve grants read of the weights and its code, and net where it listens", () => {
  assert.deepEqual(servePermissions([], { npmCache: NPM }), [
    "--no-prompt",
    `--allow-read=weights/,${CODE}`,
    "--allow-net=0.0.0.0:8000,127.0.0.1",
    "--allow-env=PORT,DDPM_PROVIDER,DDPM_DEFAULT_MODEL,DDPM_CORS_ORIGINS,DDPM_API_KEYS,DDPM_THREADS,XDG_RUNTIME_DIR",
    `--allow-ffi=${NPM}`,
  ]);
  const flags = ["--weights", "models/a.onnx", "--hostname", "127.0.0.1", "--quiet"];
  const some = servePermissions(flags, { npmCache: NPM, port: "9000" });
  assert.equal(some[1], `--allow-read=models/a.onnx,${CODE}`);
  assert.equal(some[2], "--allow-net=127.0.0.1:9000,127.0.0.1");
  // --port wins over PORT; port 0 is any free port of the host.
  const free = servePermissions(["--port", "0", "--hostname", "::1"], {
    npmCache: NPM,
    port: "9000",
  });
  assert.equal(free[2], "--allow-net=::1,127.0.0.1");
  assert.throws(
    () => servePermissions(["--weights", "a,b"], { npmCache: NPM }),
    /RangeError: --weights must not contain a comma, got a,b/,
  );
});

Deno.test("deno task serve starts the server with only those permissions, and SIGTERM stops both", async () => {
  const dir = await Deno.makeTempDir();
  try {
    await Deno.writeFile(`${dir}/tiny.onnx`, randomOnnxModel(PRESETS.tiny));
    const task = (await import("../deno.json", { with: { type: "json" } })).default.tasks.serve;
    const child = new Deno.Command("deno", {
      args: [
        ...task.split(" ").slice(1),
        "--weights",
        dir,
        "--port",
        "0",
        "--hostname",
        "127.0.0.1",
        "--provider",
        "wasm",
      ],
      cwd: ROOT,
      env: { NO_COLOR: "1" },
      stdout: "piped",
      stderr: "piped",
    }).spawn();
    const started = await waitForServer(
      child,
      "stdout",
      /listening on (http:\/\/127\.0\.0\.1:\d+)\//,
    );
    try {
      const response = await fetch(`${started.base}/v1/samples`, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify({ n: 1, steps: 2, seed: 1 }),
      });
      assert.equal(response.status, 200);
      await response.body?.cancel();
      // A 300x300 upload is decoded in a Worker, which the narrowed permissions let start.
      const body = new FormData();
      const big = encodePng(randomImage(300, 300, 3, 1));
      body.append("image", new File([big as Uint8Array<ArrayBuffer>], "big.png"));
      body.append("count", "2");
      const noise = await fetch(`${started.base}/v1/noise`, { method: "POST", body });
      assert.equal(noise.status, 200, await noise.clone().text());
      assert.match(noise.headers.get("x-image-conversion") ?? "", /^300x300 RGB -> 8x8 grey/);
      await noise.body?.cancel();
    } finally {
      const status = await stop(child, started);
      assert.equal(status.code, 0, "the launcher passes SIGTERM on and exits with the server");
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
