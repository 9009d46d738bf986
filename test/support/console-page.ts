import { exports } from "cloudflare:workers";
import { BILLING } from "./billing.ts";
import { TEST_ADMIN_TOKEN } from "./secrets.ts";

/** A console page's HTML, signed in with the test admin token (a fresh session each call). */
export async function consolePage(path: string): Promise<string> {
  const login = await exports.default.fetch(`${BILLING}/admin/login`, {
    method: "POST",
    redirect: "manual",
    headers: { "content-type": "application/x-www-form-urlencoded", origin: BILLING },
    body: new URLSearchParams({ token: TEST_ADMIN_TOKEN }).toString(),
  });
  const cookie = login.headers.get("set-cookie")!.split(";")[0]!;
  return (await exports.default.fetch(`${BILLING}${path}`, { headers: { cookie } })).text();
}
