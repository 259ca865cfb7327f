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
