import assert from "node:assert/strict";
import type { Denoiser } from "../lib/samplers.ts";
import {
  type AccessLogEntry,
  createApp,
  formatAccessLine,
  MAX_REQUEST_ID_LENGTH,
} from "../serve/app.ts";
import { checkCorsOrigins, EXPOSED_HEADERS, parseCorsOrigins } from "../serve/cors.ts";
import { chooseProvider } from "../serve/provider.ts";
import { servedModel } from "../serve/registry.ts";
import { PRESETS } from "../train/network.ts";
import { card } from "./_models.ts";
import { pngBase64, postJson, randomImage, readEvents } from "./serve_helpers.ts";

const wasm = await chooseProvider("wasm");
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/;

/** A model that predicts zero noise at once, or throws `failure` when one is given. */
function zeroModel(failure?: Error) {
  const denoiser: Denoiser = (x) => {
    if (failure) throw failure;
    return new Float32Array(x.length);
  };
  return servedModel("zero", card(PRESETS.tiny), denoiser);
}

/** One request of each kind the API answers, successes and errors. */
function everyKindOfRequest(): [string, RequestInit][] {
  const json = (body: unknown): RequestInit => ({
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify(body),
  });
  return [
    ["/", {}],
    ["/healthz", {}],
    ["/v1/models", {}],
    ["/v1/samplers", {}],
    ["/v1/schedule", {}],
    ["/openapi.json", {}],
    ["/docs", {}],
    ["/docs/swagger", {}],
    ["/v1/samples", json({ n: 1, steps: 2 })],
    ["/v1/samples", json({ n: 1, steps: 2, format: "json" })],
    ["/v1/samples", json({ n: 1, steps: 2, format: "apng" })],
    ["/v1/samples/stream", json({ n: 1, steps: 2 })],
    ["/v1/noise", json({ image: pngBase64(randomImage(8, 8, 1)), count: 2 })],
    ["/v1/interpolate", json({ a: pngBase64(randomImage(8, 8, 1)), b: "%%", t: 3 })],
    ["/v1/samples", json({ n: 0 })],
    ["/v1/samples", { method: "POST", headers: { "content-type": "text/plain" }, body: "x" }],
    ["/v1/samples", { method: "POST", headers: { "content-type": "application/json" }, body: "{" }],
    ["/v1/nothing", {}],
    ["/healthz", { method: "DELETE" }],
  ];
}

Deno.test("every response has a Content-Type, nosniff and an X-Request-Id; errors repeat the id", async () => {
  const { app } = createApp({ registry: { provider: wasm, models: [zeroModel()] } });
  const ids = new Set<string>();
  for (const [path, init] of everyKindOfRequest()) {
    const response = await app.request(path, init);
    const what = `${init.method ?? "GET"} ${path} (${response.status})`;
    assert.ok(response.headers.get("content-type"), `${what}: no Content-Type`);
    assert.equal(response.headers.get("x-content-type-options"), "nosniff", what);
    const id = response.headers.get("x-request-id") ?? "";
    assert.match(id, UUID, what);
    ids.add(id);
    const text = await response.text();
    if (response.status >= 400) {
      const body = JSON.parse(text);
      assert.deepEqual(Object.keys(body).sort(), ["detail", "error", "requestId"], what);
      assert.equal(body.requestId, id, what);
    }
  }
  assert.equal(ids.size, everyKindOfRequest().length, "each request has its own id");
});

Deno.test("a sane X-Request-Id from the client is kept; anything else is replaced", async () => {
  const { app } = createApp({ registry: { provider: wasm, models: [zeroModel()] } });
  const sent = async (id: string) =>
    (await app.request("/v1/nothing", { headers: { "x-request-id": id } })).headers.get(
      "x-request-id",
    );
  for (const id of ["abc-123", "trace_7=", "x".repeat(MAX_REQUEST_ID_LENGTH)]) {
    assert.equal(await sent(id), id);
  }
  // Spaces and other punctuation could forge fields of a log line; overlong ids bloat it.
  for (const id of ["a b", "a;b", "<script>", "x".repeat(MAX_REQUEST_ID_LENGTH + 1), "é"]) {
    assert.match(await sent(id) ?? "", UUID, JSON.stringify(id));
  }
  const refused = await app.request("/v1/nothing", { headers: { "x-request-id": "mine-1" } });
  assert.equal((await refused.json()).requestId, "mine-1");
});

Deno.test("the access log gets one entry per request with its id; 500s are logged with it too", async () => {
  const entries: AccessLogEntry[] = [];
  const errors: { error: unknown; id: string }[] = [];
  const failure = new Error("the network fell over");
  const { app } = createApp({
    registry: { provider: wasm, models: [zeroModel(failure)] },
    logRequest: (entry) => entries.push(entry),
    logError: (error, _request, id) => errors.push({ error, id }),
  });
  const ok = await app.request("/healthz", { headers: { "x-request-id": "health-1" } });
  const broken = await postJson(app, "/v1/samples", { n: 1, steps: 2 });
  const stream = await postJson(app, "/v1/samples/stream", { n: 1, steps: 2 });
  const events = [];
  for await (const event of readEvents(stream)) events.push(event);
  const odd = await app.request("/v1/a%0Ab");
  await Promise.all([ok.body?.cancel(), odd.body?.cancel()]);
  assert.deepEqual(
    entries.map(({ requestId, method, path, status }) => [requestId, method, path, status]),
    [
      ["health-1", "GET", "/healthz", 200],
      [broken.headers.get("x-request-id"), "POST", "/v1/samples", 500],
      [stream.headers.get("x-request-id"), "POST", "/v1/samples/stream", 200],
      [odd.headers.get("x-request-id"), "GET", "/v1/a%0Ab", 404],
    ],
  );
  assert.ok(entries.every((e) => e.ms >= 0));
  // The bug is logged with the id the client saw; the body names the id, not the error.
  const body = await broken.json();
  assert.deepEqual(errors.map((e) => [e.error, e.id]), [
    [failure, body.requestId],
    [failure, stream.headers.get("x-request-id")],
  ]);
  assert.deepEqual(body, {
    error: "internal",
    detail: "an unexpected error (a bug); it was logged with the request id",
    requestId: broken.headers.get("x-request-id"),
  });
  assert.deepEqual(events.at(-1)?.data, { ...body, requestId: stream.headers.get("x-request-id") });
  // No stack trace and no message of the error reaches the client.
  const text = JSON.stringify(body) + JSON.stringify(events);
  assert.ok(!/fell over|\bat .*\.ts:\d+/.test(text), text);
  // One access line is one record: the encoded path keeps the line break out.
  const line = formatAccessLine(entries[3], new Date(Date.UTC(2026, 0, 2, 3, 4, 5)));
  assert.equal(
    line,
    `2026-01-02T03:04:05.000Z ${entries[3].requestId} GET /v1/a%0Ab 404 ${
      entries[3].ms.toFixed(1)
    } ms`,
  );
});

Deno.test("CORS is off by default: no Access-Control headers, and a preflight gets 404", async () => {
  const { app } = createApp({ registry: { provider: wasm, models: [zeroModel()] } });
  const response = await app.request("/healthz", { headers: { origin: "https://a.example" } });
  assert.equal(response.status, 200);
  assert.equal(response.headers.get("access-control-allow-origin"), null);
  await response.body?.cancel();
  const preflight = await app.request("/v1/samples", {
    method: "OPTIONS",
    headers: { origin: "https://a.example", "access-control-request-method": "POST" },
  });
  assert.equal(preflight.status, 404);
  assert.equal(preflight.headers.get("access-control-allow-origin"), null);
  await preflight.body?.cancel();
});

Deno.test("CORS with listed origins: preflight 204, allowed origins echoed, others not", async () => {
  const { app } = createApp({
    registry: { provider: wasm, models: [zeroModel()] },
    corsOrigins: ["https://a.example", "http://localhost:5173"],
  });
  const preflight = await app.request("/v1/samples", {
    method: "OPTIONS",
    headers: {
      origin: "http://localhost:5173",
      "access-control-request-method": "POST",
      "access-control-request-headers": "content-type",
    },
  });
  assert.equal(preflight.status, 204);
  assert.equal(preflight.headers.get("access-control-allow-origin"), "http://localhost:5173");
  assert.match(preflight.headers.get("access-control-allow-methods") ?? "", /POST/);
  assert.match(preflight.headers.get("access-control-allow-headers") ?? "", /Content-Type/);
  assert.match(preflight.headers.get("vary") ?? "", /Origin/);
  const sample = await postJson(app, "/v1/samples", { n: 1, steps: 2 }, {
    headers: { "content-type": "application/json", origin: "https://a.example" },
  });
  assert.equal(sample.status, 200);
  assert.equal(sample.headers.get("access-control-allow-origin"), "https://a.example");
  assert.deepEqual(
    sample.headers.get("access-control-expose-headers")?.split(","),
    EXPOSED_HEADERS,
  );
  await sample.body?.cancel();
  const stranger = await app.request("/healthz", { headers: { origin: "https://evil.example" } });
  assert.equal(stranger.headers.get("access-control-allow-origin"), null);
  await stranger.body?.cancel();
});

Deno.test("CORS with * allows any origin, on errors too", async () => {
  const { app } = createApp({
    registry: { provider: wasm, models: [zeroModel()] },
    corsOrigins: ["*"],
  });
  const response = await postJson(app, "/v1/samples", { n: 0 }, {
    headers: { "content-type": "application/json", origin: "https://anyone.example" },
  });
  assert.equal(response.status, 400);
  assert.equal(response.headers.get("access-control-allow-origin"), "*");
  await response.body?.cancel();
});

Deno.test("CORS origins are checked: an origin is scheme://host[:port], * stands alone", () => {
  assert.deepEqual(parseCorsOrigins(""), []);
  assert.deepEqual(parseCorsOrigins(" * "), ["*"]);
  assert.deepEqual(parseCorsOrigins("https://a.example, http://localhost:5173,"), [
    "https://a.example",
    "http://localhost:5173",
  ]);
  for (const bad of ["https://a.example/", "a.example", "https://a.example/app", "file:///x"]) {
    assert.throws(() => parseCorsOrigins(bad), /is not an origin/, bad);
  }
  assert.throws(() => checkCorsOrigins(["*", "https://a.example"]), /list it alone/);
  assert.throws(
    () =>
      createApp({
        registry: { provider: wasm, models: [zeroModel()] },
        corsOrigins: ["https://a.example/"],
      }),
    RangeError,
  );
});
