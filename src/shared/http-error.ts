/** Every refusal is `{"error": <stable code>, "message": <what to do>}`, plus optional extra fields. */
export function errorResponse(
  status: number,
  error: string,
  message: string,
  extra: Record<string, unknown> = {},
  headers: HeadersInit = {},
): Response {
  return Response.json({ error, message, ...extra }, { status, headers });
}

export function jsonResponse(body: unknown, status = 200): Response {
  return Response.json(body, { status });
}
