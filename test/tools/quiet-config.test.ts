import { describe, expect, it } from "vitest";
import { faultReportFilter } from "../support/quiet-config.ts";

const STACK = "stack: /x/workerd@3afdb7d /x/workerd@3afdcb8";

describe("npm test's view of workerd's output (issue 22)", () => {
  it("drops workerd's reports of faults the tests cause on purpose, with the stack of addresses after them", () => {
    const filter = faultReportFilter();
    expect(filter("uncaught exception; source = Uncaught (in promise); stack = Error: Network connection lost.\n")).toBe("");
    expect(filter(`${STACK}\n`).trim()).toBe("");
    expect(filter("uncaught exception; exception = workerd/jsg/value.h:1535: failed: jsg.Error: request body refused: invalid_gzip\n").trim()).toBe("");
    expect(filter("exception = kj/async-io.c++:763: disconnected: read end of pipe was aborted\nstack: /x/workerd@1 /x/workerd@2\n").trim()).toBe("");
    // An upstream (or Autumn) request aborted by the Worker's own timeout, as the timeout tests make it.
    expect(filter("exception = workerd/api/basics.c++:719: disconnected: jsg.DOMException(TimeoutError): The operation was aborted due to timeout\nstack: /x/workerd@1\n").trim()).toBe("");
  });

  it("keeps every other line, a stack after one included", () => {
    const filter = faultReportFilter();
    const other = "uncaught exception; exception = workerd/jsg/value.h:1535: failed: jsg.Error: something else broke";
    expect(filter(`${other}\n${STACK}\n`)).toBe(`${other}\n${STACK}\n`);
    expect(filter("hello from a test\n")).toBe("hello from a test\n");
  });
});
