import { BaseSequencer, type TestSpecification } from "vitest/node";

/**
 * Vitest's order (each project's files together, the longest first) with the model's one long file moved
 * to the front, then the tools project's short Node files: the model runs beside them and the first
 * billing files instead of alone at the end of `npm test`. Projects stay together, so a shared runtime
 * (isolate: false) carries one project's files in a row.
 */
export class ModelAndToolsFirst extends BaseSequencer {
  override async sort(files: TestSpecification[]): Promise<TestSpecification[]> {
    const sorted = await super.sort(files);
    const first = ["model", "tools"];
    return [...first.flatMap((name) => sorted.filter((file) => file.project.name === name)), ...sorted.filter((file) => !first.includes(file.project.name))];
  }
}
