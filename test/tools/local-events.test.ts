import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Webhook } from "standardwebhooks";
import { loadLocalSettings, localNotifyPort } from "../../tools/dev/settings.ts";
import { startNotifyReceiver, type NotifyReceiver, type Received } from "../../tools/notify-receiver/server.ts";

/** `npm start` runs the event receiver when NOTIFY_URL points at this machine, and shows what arrives. */
describe("the local event receiver under npm start", () => {
  const withUrl = (NOTIFY_URL: string) => loadLocalSettings({ root: null, env: {}, overrides: { NOTIFY_URL } });

  it.each([
    ["http://127.0.0.1:8791/events", 8791],
    ["http://localhost:9000/hook", 9000],
    ["http://[::1]:8792/", 8792],
  ])("runs it for NOTIFY_URL=%s on port %i", (url, port) => {
    expect(localNotifyPort(withUrl(url))).toBe(port);
  });

  it.each([
    ["events off", ""],
    ["a remote receiver", "https://hooks.example.com/tollgate"],
    ["loopback over https", "https://127.0.0.1:8791/events"],
    ["loopback without an explicit port", "http://127.0.0.1/events"],
    ["not a URL", "127.0.0.1:8791"],
  ])("does not for %s", (_name, url) => {
    expect(localNotifyPort(withUrl(url))).toBeNull();
  });

  it("refuses a NOTIFY_URL on one of the stack's own ports, naming it", () => {
    expect(() => localNotifyPort(withUrl("http://127.0.0.1:8787/events"))).toThrow(/BILLING_PORT/);
  });

  it("has events off by default, with a demo NOTIFY_SECRET ready for when NOTIFY_URL is set", () => {
    const settings = loadLocalSettings({ root: null, env: {} });
    expect(settings.NOTIFY_URL).toBe("");
    expect(settings.NOTIFY_SECRET).toMatch(/^whsec_[A-Za-z0-9+/]+=*$/);
  });

  describe("signature check", () => {
    const secret = loadLocalSettings({ root: null, env: {} }).NOTIFY_SECRET!;
    const seen: Received[] = [];
    let receiver: NotifyReceiver;
    beforeAll(async () => {
      receiver = await startNotifyReceiver({ secret, onEvent: (event) => seen.push(event) });
    });
    afterAll(() => receiver.close());

    async function send(signingSecret: string, id: string) {
      const body = JSON.stringify({ id, type: "org.overdue", org_id: "demo-org", state: "overdue", previous_state: "ok" });
      // One timestamp for the signature and its header (two reads of the clock can straddle a second).
      const at = new Date(Math.floor(Date.now() / 1000) * 1000);
      const signature = new Webhook(signingSecret).sign(id, at, body);
      const headers = { "content-type": "application/json", "webhook-id": id, "webhook-timestamp": String(at.getTime() / 1000), "webhook-signature": signature };
      expect((await fetch(`${receiver.url}/events`, { method: "POST", headers, body })).status).toBe(200);
      return seen.find((event) => event.headers["webhook-id"] === id);
    }

    it("marks an event signed with NOTIFY_SECRET as verified and hands it to onEvent", async () => {
      expect(await send(secret, "evt_good")).toMatchObject({ org_id: "demo-org", verified: true });
    });

    it("marks an event signed with another secret as not verified", async () => {
      expect(await send("whsec_b3RoZXItc2VjcmV0LWZvci10aGUtcmVjZWl2ZXI=", "evt_bad")).toMatchObject({ verified: false });
    });
  });
});
