/**
 * `GET /`: the playground page, and under `/browser` the files it loads to sample in the
 * browser itself (`browser.ts`).
 *
 * @module
 */

import { Hono } from "hono";
import playgroundHtml from "../playground.html" with { type: "text" };
import type { ModelSource } from "../registry.ts";
import { browserRoutes } from "./browser.ts";

/** The page and its files, mounted at the root; `models` as in {@linkcode browserRoutes}. */
export function playgroundRoutes(models: readonly ModelSource[]): Hono {
  const app = new Hono();
  app.get("/", (c) => c.html(playgroundHtml));
  app.route("/browser", browserRoutes(models));
  return app;
}
