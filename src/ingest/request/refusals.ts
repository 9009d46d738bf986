/** What a refused client is told, beyond the stable code. */

export const SUSPENDED_MESSAGE =
  "Ingestion is suspended because an invoice is overdue past its grace period and no payment has been received. Pay the overdue invoice (or contact support); ingestion resumes immediately after payment.";
