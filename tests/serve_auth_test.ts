import assert from "node:assert/strict";
import type { Denoiser } from "../lib/samplers.ts";
import { createApp } from "../serve/app.ts";
import { parseApiKeys } from "../serve/auth.ts";
import { chooseProvider } from "../serve/provider.ts";
import { servedModel } from "../serve/registry.ts";
import { PRESETS } from "../train/network.ts";
import { card } from "./_models.ts";
import { postJson, readEvents } from "./serve_helpers.ts";

const KEYS = ["key-one-0123456789", "key-two-0123456789"];

/** A model whose network waits at a gate until `release()`: a job holds its place. */
async function heldModels() {
  const gate = Promise.withResolvers<void>();
  let calls = 0;
  const denoiser: Denoiser = async (x) => {
    calls++;
    await gate.promise;
    return new Float32Array(x.length);
  };
  return {
    registry: {
      provider: await chooseProvider("wasm"),
      models: [servedModel("held", card(PRESETS.tiny), denoiser)],
    },
    release: () => gate.resolve(),
    calls: () => calls,
  };
}

Deno.test("with API keys, every /v1 route needs one (Bearer or X-API-Key); 401 with JSON otherwise", async () => {
  const { registry } = await heldModels();
  const { app } = createApp({ registry, apiKeys: KEYS });
  const refused: Record<string, string>[] = [
    {},
    { authorization: "Bearer wrong-key-0123456789" },
    { "x-api-key": "x" },
  ];
  for (const headers of refused) {
    const response = await app.request("/v1/models", { headers });
    assert.equal(response.status, 401);
    assert.match(response.headers.get("www-authenticate") ?? "", /^Bearer realm="ddpm"/);
    const body = await response.json();
    assert.equal(body.error, "unauthorized");
    assert.equal(body.requestId, response.headers.get("x-request-id"));
    assert.ok(!body.detail.includes("key-one"), "the detail never repeats a key");
  }
  // A POST without a key is refused before its body is read.
  const post = await postJson(app, "/v1/samples", { n: 1 });
  assert.equal(post.status, 401);
  await post.body?.cancel();
  const accepted: Record<string, string>[] = [
    { authorization: `Bearer ${KEYS[0]}` },
    { "x-api-key": KEYS[1] },
  ];
  for (const headers of accepted) {
    const response = await app.request("/v1/models", {
      headers,
    });
    assert.equal(response.status, 200);
    await response.body?.cancel();
  }
  // The health check, the playground and the documents stay open.
  for (const path of ["/healthz", "/", "/docs", "/openapi.json"]) {
    const response = await app.request(path);
    assert.equal(response.status, 200, path);
    await response.body?.cancel();
  }
});

Deno.test("parseApiKeys() splits a comma-separated list and refuses short keys without naming them", () => {
  assert.deepEqual(parseApiKeys(` ${KEYS[0]},${KEYS[1]} ,`), KEYS);
  assert.deepEqual(parseApiKeys(""), []);
  assert.throws(
    () => parseApiKeys(`${KEYS[0]},short`),
    /RangeError: API key 2 of 2 must be at least 16 characters without spaces, got 5 characters/,
  );
});

Deno.test("one client may hold at most maxJobsPerClient jobs; the next gets 429 while others still get in", async () => {
  const { registry, release, calls } = await heldModels();
  const { app, queue } = createApp({
    registry,
    limits: { concurrency: 1, queueSize: 8, maxJobsPerClient: 2 },
  });
  const body = JSON.stringify({ n: 1, steps: 1, seed: 1 });
  const from = (hostname: string, path = "/v1/samples") =>
    app.request(path, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body,
    }, { remoteAddr: { transport: "tcp", hostname, port: 5000 } });
  // 1. Client A takes two places (one running, one waiting); its third is refused at once.
  const a1 = from("10.0.0.1");
  const a2 = from("10.0.0.1");
  while (calls() < 1) await new Promise((resolve) => setTimeout(resolve, 5));
  const a3 = await from("10.0.0.1");
  assert.equal(a3.status, 429);
  const refusal = await a3.json();
  assert.equal(refusal.error, "too_many_jobs");
  assert.match(refusal.detail, /10\.0\.0\.1\) already has 2 jobs running or waiting/);
  assert.ok(Number(a3.headers.get("retry-after")) >= 1);
  // A stream counts too.
  const a4 = await from("10.0.0.1", "/v1/samples/stream");
  assert.equal(a4.status, 429);
  await a4.body?.cancel();
  // 2. Client B still gets a place in the queue.
  const b1 = from("10.0.0.2");
  while (queue.stats().waiting < 2) await new Promise((resolve) => setTimeout(resolve, 5));
  // 3. When the jobs finish, every place is given back.
  release();
  for (const response of await Promise.all([a1, a2, b1])) {
    assert.equal(response.status, 200);
    await response.body?.cancel();
  }
  const again = await from("10.0.0.1", "/v1/samples/stream");
  assert.equal(again.status, 200);
  const events = [];
  for await (const event of readEvents(again)) events.push(event.event);
  assert.equal(events.at(-1), "done");
});

Deno.test("with API keys, the per-client cap counts by key, whatever the address", async () => {
  const { registry, release, calls } = await heldModels();
  const { app } = createApp({
    registry,
    apiKeys: KEYS,
    limits: { concurrency: 1, queueSize: 8, maxJobsPerClient: 1 },
  });
  const send = (key: string, hostname: string) =>
    app.request("/v1/samples", {
      method: "POST",
      headers: { "content-type": "application/json", authorization: `Bearer ${key}` },
      body: JSON.stringify({ n: 1, steps: 1, seed: 1 }),
    }, { remoteAddr: { transport: "tcp", hostname, port: 5000 } });
  const first = send(KEYS[0], "10.0.0.1");
  while (calls() < 1) await new Promise((resolve) => setTimeout(resolve, 5));
  const sameKey = await send(KEYS[0], "10.0.0.9");
  assert.equal(sameKey.status, 429);
  assert.match((await sameKey.json()).detail, /\(key 1\)/);
  const otherKey = send(KEYS[1], "10.0.0.1");
  release();
  for (const response of await Promise.all([first, otherKey])) {
    assert.equal(response.status, 200);
    await response.body?.cancel();
  }
});

Deno.test("with API keys, the weights the playground downloads for in-browser sampling need one too", async () => {
  const { registry } = await heldModels();
  const modelFiles = [{ name: "held", bytes: await Deno.readFile("weights/mnist.onnx") }];
  const { app } = createApp({ registry, apiKeys: KEYS, modelFiles });
  const refused = await app.request("/browser/models/held.onnx");
  assert.equal(refused.status, 401);
  await refused.body?.cancel();
  const allowed = await app.request("/browser/models/held.onnx", {
    headers: { authorization: `Bearer ${KEYS[0]}` },
  });
  assert.equal(allowed.status, 200);
  assert.equal((await allowed.arrayBuffer()).byteLength, modelFiles[0].bytes.length);
  // The page's code and onnxruntime's files are not secrets.
  const page = await app.request("/browser/local.js");
  assert.equal(page.status, 200);
  await page.body?.cancel();
});
