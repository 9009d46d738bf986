import { BaseSequencer, type TestSpecification } from "vitest/node";

/**
 * Vitest's order (each project's files together, the longest first) with the model's one long file moved
 * to the front: it then runs beside the billing files instead of alone at the end of `npm test`.
 * Projects stay together, so a shared runtime (isolate: false) carries one project's files in a row.
 */
export class ModelFirst extends BaseSequencer {
  override async sort(files: TestSpecification[]): Promise<TestSpecification[]> {
    const sorted = await super.sort(files);
    return [...sorted.filter((file) => file.project.name === "model"), ...sorted.filter((file) => file.project.name !== "model")];
  }
}
