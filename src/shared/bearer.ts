/** The token of an `Authorization: Bearer <token>` header ("Bearer" case-insensitive), or null. */
export function bearerToken(headers: Headers): string | null {
  const match = /^\s*bearer\s+(\S+)\s*$/i.exec(headers.get("authorization") ?? "");
  return match ? match[1]! : null;
}
