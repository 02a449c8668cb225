import { GraphQLError } from 'graphql';

/**
 * An expected failure. It is a GraphQLError so that yoga's masking lets its message through when
 * it surfaces as a GraphQL error; on fields with a result union the errors plugin returns it as data.
 */
export class AppError extends GraphQLError {
  readonly code: string;
  constructor(
    message: string,
    code: string,
    httpStatus?: number,
    extra: { retryAfterSeconds?: number; headers?: Record<string, string> } = {},
  ) {
    super(message, {
      extensions: {
        code,
        ...(extra.retryAfterSeconds === undefined ? {} : { retryAfterSeconds: extra.retryAfterSeconds }),
        ...(httpStatus === undefined ? {} : { http: { status: httpStatus, ...(extra.headers ? { headers: extra.headers } : {}) } }),
      },
    });
    this.name = new.target.name;
    this.code = code;
  }
}

export class UnauthenticatedError extends AppError {
  constructor(message = 'A valid API key is required: send "Authorization: Bearer <api key>".') {
    super(message, 'UNAUTHENTICATED', 401);
  }
}

export class ForbiddenError extends AppError {
  constructor(message = 'This operation needs a scope your API key does not have.') {
    super(message, 'FORBIDDEN');
  }
}

export class NotFoundError extends AppError {
  constructor(message: string) {
    super(message, 'NOT_FOUND');
  }
}

export type InputIssue = { path: string[]; message: string };

export class InvalidInputError extends AppError {
  readonly issues: InputIssue[];
  constructor(message: string, issues: InputIssue[]) {
    super(message, 'BAD_USER_INPUT');
    this.issues = issues;
  }
}

export class QuotaExceededError extends AppError {
  constructor(message: string) {
    super(message, 'QUOTA_EXCEEDED');
  }
}

/**
 * A per-tenant rate was exceeded. As a result-union member (createOmniVideo) it is data; raised
 * anywhere else it makes the response an HTTP 429 with Retry-After.
 */
export class RateLimitedError extends AppError {
  readonly retryAfterSeconds: number;
  constructor(message: string, retryAfterSeconds: number) {
    super(message, 'RATE_LIMITED', 429, { retryAfterSeconds, headers: { 'retry-after': String(retryAfterSeconds) } });
    this.retryAfterSeconds = retryAfterSeconds;
  }
}

/** cancelOmniTask of a task that is not the caller's (or does not exist): the two look the same. */
export class TaskNotFoundError extends AppError {
  constructor(message: string) {
    super(message, 'NOT_FOUND');
  }
}

/** cancelOmniTask of a task already sent upstream (which has no cancel) or already final. */
export class CancelNotPossibleError extends AppError {
  constructor(message: string) {
    super(message, 'CANCEL_NOT_POSSIBLE');
  }
}

/** A cap on live subscriptions (per connection or per tenant) was reached. */
export class SubscriptionLimitError extends AppError {
  constructor(message: string) {
    super(message, 'SUBSCRIPTION_LIMIT');
  }
}

/** The database or another dependency is briefly unavailable: the client may retry. */
export class ServiceUnavailableError extends AppError {
  constructor(message = 'The service is briefly unavailable; retry shortly.') {
    super(message, 'SERVICE_UNAVAILABLE', 503);
  }
}

/** The upstream refused or failed a request; `upstreamCode` is one of the stable UPSTREAM_* codes. */
export class UpstreamError extends AppError {
  readonly upstreamCode: string;
  readonly retryable: boolean;
  constructor(message: string, upstreamCode: string, retryable: boolean) {
    super(message, upstreamCode);
    this.upstreamCode = upstreamCode;
    this.retryable = retryable;
  }
}
