import type { EnforcementMode, OrgState } from "../../shared/billing-state.ts";

// The shape of `GET /v1/status`'s answer, on its own (types only, no Workers code): the ingest Worker
// builds it (view.ts) and the CLI (tools/cli) prints it, so a change to one fails the other's type check.

/** Whether refusals are carried out (`enforce`) or only counted while the data goes through (`observe`). */
export type Enforcement = EnforcementMode;

export type StatusLimit = { feature_id: string; signals: string[]; reset_at: string | null; enforced: boolean };

/** What `GET /v1/status` answers (docs/ingest-api.md, "Status"): times are ISO strings, null when none. */
export type OrgStatus = {
  org_id: string;
  state: OrgState;
  /** A sentence for people: why the org is in its state, what happens next and by when. */
  reason: string;
  since: string | null;
  deadline: string | null;
  suspended_at: string | null;
  pay_url: string | null;
  limits: StatusLimit[];
  upgrade_url: string | null;
  parked: { batches: number; bytes: number; updated_at: string | null };
  enforcement: Enforcement;
  checked_at: string;
  /**
   * Where the answer came from, as the gate got it: isolate memory, the KV mirror, the org's object, or
   * `unconfirmed` (a lookup failed: the object could not be asked, and the last mirrored suspension stands; or
   * KV could not be read, and the verdict this isolate last held stands).
   */
  source: "memory" | "mirror" | "object" | "unconfirmed";
};
