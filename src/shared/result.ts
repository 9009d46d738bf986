import { errorResponse } from "./http-error.ts";

/**
 * What a handler decided, before it is an HTTP answer: an answer (`ok: true`, a JSON body) or a
 * refusal (`ok: false`, a stable `error` code and a human `message`, as `errorResponse` writes them).
 * Handlers return these; the Worker's edge turns one into a Response once (`toResponse`), so every
 * status, code and header is decided in the handler and written in one place.
 */
export type Answer = { ok: true; status: number; body: unknown; headers?: Record<string, string> };
export type Refusal = { ok: false; status: number; error: string; message: string; extra?: Record<string, unknown>; headers?: Record<string, string> };
export type Result = Answer | Refusal;

export function answer(body: unknown, status = 200): Answer {
  return { ok: true, status, body };
}

export function refuse(status: number, error: string, message: string, extra: Record<string, unknown> = {}, headers: Record<string, string> = {}): Refusal {
  return { ok: false, status, error, message, extra, headers };
}

/**
 * The one conversion, at the Worker's edge. A Response passes through unchanged: the operator
 * console renders its own HTML pages and redirects.
 */
export function toResponse(result: Result | Response): Response {
  if (result instanceof Response) return result;
  if (result.ok) return Response.json(result.body, { status: result.status, headers: result.headers ?? {} });
  return errorResponse(result.status, result.error, result.message, result.extra ?? {}, result.headers ?? {});
}
