/**
 * `GET /`: the playground page, and under `/browser` the files it loads to sample in the
 * browser itself (`browser.ts`).
 *
 * @module
 */

import { Hono } from "hono";
import playgroundHtml from "../playground.html" with { type: "text" };
import type { ModelSource } from "../registry.ts";
import { DEFAULT_GUIDANCE_TEXT } from "../schemas.ts";
import { browserRoutes } from "./browser.ts";

/**
 * The page as served: its guidance tooltip names each sampler's default weight and span from
 * lib's table, as the API's documentation does, so the two cannot drift apart.
 */
const PAGE = playgroundHtml.replace("{{DEFAULT_GUIDANCE}}", DEFAULT_GUIDANCE_TEXT);

/** The page and its files, mounted at the root; `models` as in {@linkcode browserRoutes}. */
export function playgroundRoutes(models: readonly ModelSource[]): Hono {
  const app = new Hono();
  app.get("/", (c) => c.html(PAGE));
  app.route("/browser", browserRoutes(models));
  return app;
}
