/**
 * The "try it" block `npm start` prints, and the README shows (test/tools/try-it.test.ts keeps
 * the README's copy equal to this with the default ports). Every reply is printed as its status
 * and one line by tools/dev/reply.mjs, which the reader's own `node` runs, Node 20 included.
 */
export type TryItParams = {
  ingestUrl: string;
  billingUrl: string;
  autumnUrl: string;
  sinkUrl: string;
  adminToken: string;
  /** The demo org's fresh ingest key. */
  key: string;
  org: string;
  gracePeriod: string;
  parkRetention: string;
  minNotice: string;
  /** The plan-limit step's 25 spans, written to a file so the printed command stays short. */
  spansFile: string;
  /** Metering and ENFORCE_LIMITS on with spans metered: the plan-limit step applies. */
  limitsOn: boolean;
  /** ENFORCEMENT=observe (docs/deploying.md): refusals are only counted and logged, so steps 3 and 6 answer 200. */
  observe?: boolean;
};

/** One OTLP JSON log record as the demo org. */
export const DEMO_LOGS = JSON.stringify({
  resourceLogs: [{ resource: { attributes: [{ key: "service.name", value: { stringValue: "demo" } }] }, scopeLogs: [{ logRecords: [{ body: { stringValue: "hello from the demo" } }] }] }],
});

/** 25 spans in one OTLP JSON request, for the plan-limit step (valid ids: 16 and 8 bytes of hex). */
export const DEMO_SPANS = JSON.stringify({
  resourceSpans: [
    {
      resource: { attributes: [{ key: "service.name", value: { stringValue: "demo" } }] },
      scopeSpans: [
        {
          spans: Array.from({ length: 25 }, (_, i) => ({
            traceId: "5b8efff798038103d269b633813fc60c",
            spanId: (i + 1).toString(16).padStart(16, "0"),
            name: `GET /items/${i}`,
            kind: 2,
            startTimeUnixNano: "1700000000000000000",
            endTimeUnixNano: "1700000000100000000",
          })),
        },
      ],
    },
  ],
});

/** The overdue warning rides on accepted replies at most once per org per isolate per this (src/ingest/customer/warning-limiter.ts). */
export const WARNING_INTERVAL_TEXT = "a minute";

/** The block's lines, as the README shows them (`npm start` indents them two spaces). */
export function tryItBlock(p: TryItParams): string[] {
  const show = "| node tools/dev/reply.mjs";
  const w = `-w '\\n%{http_code}'`;
  const send = `curl -sS ${w} -X POST ${p.ingestUrl}/v1/logs -H "Authorization: Bearer $TOLLGATE_INGEST_KEY" -H 'content-type: application/json' -d '${DEMO_LOGS}' ${show}`;
  const control = (path: string, body?: string) =>
    `curl -sS ${w} -X POST ${body === undefined ? p.autumnUrl + path : `'${p.autumnUrl}${path}' -H 'content-type: application/json' -d ${body}`} ${show}`;
  const waitParked =
    `i=0; until curl -sS -H 'Authorization: Bearer ${p.adminToken}' ${p.billingUrl}/admin/orgs/${p.org} | grep -q '"waiting_batches":0' || [ $i -ge 30 ]; do sleep 1; i=$((i+1)); done`;
  const lines = [
    `export TOLLGATE_INGEST_KEY=${p.key}`,
    `# Each reply prints as its status and one line (tools/dev/reply.mjs).`,
    `# 1. send OTLP JSON as the demo org: 200, and the sink counts it`,
    send,
    `# 2. the demo org misses a payment: Autumn's stand-in sends a signed webhook, the org turns overdue;`,
    `#    within 5 s step 1 answers 200 with a warning naming the deadline and where to pay`,
    `#    (at most once ${WARNING_INTERVAL_TEXT} per org and isolate; the replies between are a plain 200 {})`,
    control(`/_control/customers/${p.org}/past-due`),
    `npm run tollgate -- org ${p.org}`,
    ...(p.observe
      ? [
          `# 3. wait ${p.gracePeriod}: the org is suspended, but ENFORCEMENT=observe: step 1 still answers 200 (with a warning)`,
          `#    and the Workers log ingest_would_refuse billing_suspended instead of refusing; the sink gets every batch`,
        ]
      : [
          `# 3. wait ${p.gracePeriod}: the org is suspended and step 1 answers 402 billing_suspended naming where to pay;`,
          `#    parking is on here, so each refused batch is kept (${p.parkRetention}) and the sink gets nothing yet`,
        ]),
    `# 4. pay: ingestion resumes within a second; wait (up to 30 s) until the batches refused while suspended are delivered, then read the sink`,
    control(`/_control/customers/${p.org}/pay`),
    waitParked,
    `curl -sS ${w} ${p.sinkUrl}/_control/stats ${show}`,
    `# 5. a lost webhook: another org goes past due (an invoice 10 days old) and Autumn never tells Tollgate;`,
    `#    the reconciliation sweep finds it: overdue now, suspended only after MIN_NOTICE (${p.minNotice})`,
    control(`/_control/customers`, `'{"id": "quiet-org"}'`),
    control(`/_control/customers/quiet-org/past-due?deliver=0`, `'{"at": '$(( $(date +%s) * 1000 - 864000000 ))'}'`),
    `npm run tollgate -- reconcile --wait`,
    `npm run tollgate -- org quiet-org`,
  ];
  if (p.limitsOn) {
    lines.push(
      `# 6. plan limits: an allowance of 100 spans that resets in a day; 25 spans a request, every 3 s,`,
      p.observe
        ? `#    past it each request still answers 200 (observe) and the Workers log ingest_would_refuse plan_limit_reached`
        : `#    until a request is refused 429 plan_limit_reached naming the feature, the reset and where to upgrade`,
      `#    (usage reaches Autumn within a few seconds, so a request or two past the allowance may still get in)`,
      control(`/_control/customers/${p.org}/balances/spans`, `'{"granted": 100, "next_reset_at": '$(( ($(date +%s) + 86400) * 1000 ))'}'`),
      `for i in 1 2 3 4 5 6 7 8; do curl -sS ${w} -X POST ${p.ingestUrl}/v1/traces -H "Authorization: Bearer $TOLLGATE_INGEST_KEY" -H 'content-type: application/json' -d @${p.spansFile} ${show}; sleep 3; done`,
      `npm run tollgate -- org ${p.org}`,
      `#    an upgrade (Autumn's billing.updated) lifts it within about 5 s (the edge's verdict cache):`,
      control(`/_control/customers/${p.org}/balances/spans`, `'{"granted": 100000, "webhook": "billing.updated"}'`),
    );
  }
  return lines;
}
