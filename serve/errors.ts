/**
 * Errors the HTTP layer turns into a status and a JSON body `{ error, detail, requestId }`.
 * Code below the routes throws these for client mistakes; anything else that escapes is a bug
 * and becomes a 500.
 *
 * @module
 */

/** The body of every error response. */
export interface ErrorBody {
  /** A stable, machine-readable code such as `invalid_request` or `unknown_model`. */
  readonly error: string;
  /** A sentence for a person: what was wrong and what is allowed. */
  readonly detail: string;
  /** The request's id, also in the `X-Request-Id` header and the server's log line. */
  readonly requestId: string;
}

/** A client mistake (4xx) or a refusal to take on work (429, 503), with its response body. */
export class HttpError extends Error {
  /**
   * @param status the HTTP status, 4xx or 503
   * @param error the code for `ErrorBody.error`
   * @param detail the sentence for `ErrorBody.detail`
   * @param headers extra response headers (`Retry-After`)
   */
  constructor(
    readonly status: number,
    readonly error: string,
    readonly detail: string,
    readonly headers: Readonly<Record<string, string>> = {},
  ) {
    super(detail);
    this.name = "HttpError";
  }

  /** The JSON body of the response to the request with id `requestId`. */
  body(requestId: string): ErrorBody {
    return { error: this.error, detail: this.detail, requestId };
  }
}

/** One problem a schema found: where, and what (a zod issue has at least these). */
export interface Issue {
  readonly path: readonly PropertyKey[];
  readonly message: string;
  readonly code?: string;
  /** The unknown fields of an `unrecognized_keys` issue. */
  readonly keys?: readonly string[];
}

/** Problems an error body lists; the rest are counted. */
export const MAX_LISTED_ISSUES = 10;
/** Unknown keys one problem lists; the rest are counted. */
export const MAX_LISTED_KEYS = 20;
/** Characters of one problem's message (a path or value may be long). */
const _MAX_ISSUE_CHARS = 200;

/**
 * The `detail` of a schema's refusal: `path: message` per problem, joined by `; `, bounded
 * whatever the body held. At most {@linkcode MAX_LISTED_ISSUES} problems and
 * {@linkcode MAX_LISTED_KEYS} unknown keys are named, and the count of the rest is given, so a
 * body of 700,000 unknown keys gets a short error rather than one larger than itself.
 *
 * @example
 * ```ts
 * import { describeIssues } from "./errors.ts";
 * const issues = [{ path: ["n"], message: "Too big: expected number to be <=64" }];
 * console.assert(describeIssues(issues) === "n: Too big: expected number to be <=64");
 * ```
 */
export function describeIssues(issues: readonly Issue[]): string {
  const listed = issues.slice(0, MAX_LISTED_ISSUES).map((issue) => {
    const where = _clip(issue.path.map(String).join(".")) || "body";
    return `${where}: ${_issueMessage(issue)}`;
  });
  const left = issues.length - listed.length;
  if (left > 0) listed.push(`and ${left} more problem${left === 1 ? "" : "s"}`);
  return listed.join("; ");
}

function _issueMessage(issue: Issue): string {
  if (issue.code === "unrecognized_keys" && issue.keys) {
    const named = issue.keys.slice(0, MAX_LISTED_KEYS).map((key) => JSON.stringify(_clip(key)));
    const left = issue.keys.length - named.length;
    const more = left > 0 ? ` and ${left} more` : "";
    return `Unrecognized key${issue.keys.length === 1 ? "" : "s"}: ${named.join(", ")}${more}`;
  }
  return _clip(issue.message);
}

function _clip(text: string): string {
  return text.length > _MAX_ISSUE_CHARS ? `${text.slice(0, _MAX_ISSUE_CHARS)}...` : text;
}

/** The body of a 500: the id to quote, and nothing of the error itself. */
export function internalErrorBody(requestId: string): ErrorBody {
  return {
    error: "internal",
    detail: "an unexpected error (a bug); it was logged with the request id",
    requestId,
  };
}
