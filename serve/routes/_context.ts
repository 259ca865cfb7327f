/**
 * What the route modules are built from: the server's models and limits, its request schemas,
 * its jobs, and where bugs are logged. `createApp` makes one and hands it to every module.
 *
 * @module
 */

import type { JobQueue } from "../jobs.ts";
import type { LogError } from "../middleware.ts";
import type { ModelRegistry } from "../registry.ts";
import type { RuleContext } from "../rules.ts";
import type { RequestSchemas } from "../schemas.ts";
import type { Jobs } from "./_jobs.ts";

/** The dependencies of the routes. */
export interface RouteContext extends RuleContext {
  /** The models and their execution provider. */
  readonly registry: ModelRegistry;
  /** The request schemas of this server's limits. */
  readonly schemas: RequestSchemas;
  /** The queue, for its numbers in `GET /healthz`. */
  readonly queue: JobQueue;
  /** Network work: the queue, each client's share of it, the time limit. */
  readonly jobs: Jobs;
  /** Where a stream reports a bug it can only answer with an `error` event. */
  readonly logError: LogError;
}
