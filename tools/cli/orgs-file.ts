import { readFileSync } from "node:fs";
import { isValidOrgId, ORG_ID_RULE } from "../../src/shared/storage-keys.ts";

export type ListedOrg = { id: string; line: number };

/**
 * The org ids of `tollgate mint-keys --orgs-file`: one a line, blank lines and `#` comments skipped. Every id
 * is checked before anything is minted (an invalid or repeated one is refused with its line), so a mistake
 * late in a long file cannot leave the earlier orgs minted and the rest not.
 */
export function readOrgsFile(path: string, error: (message: string) => Error): ListedOrg[] {
  let text: string;
  try {
    text = readFileSync(path, "utf8");
  } catch (cause) {
    throw error(`cannot read ${path}: ${(cause as Error).message}`);
  }
  const orgs: ListedOrg[] = [];
  const firstLine = new Map<string, number>();
  text.split(/\r?\n/).forEach((raw, index) => {
    const id = raw.trim();
    const line = index + 1;
    if (id === "" || id.startsWith("#")) return;
    if (!isValidOrgId(id)) throw error(`${path} line ${line}: "${id}" is not an org id (${ORG_ID_RULE})`);
    const seen = firstLine.get(id);
    if (seen !== undefined) throw error(`${path} line ${line}: ${id} is named twice (first on line ${seen}); each org gets one key per run`);
    firstLine.set(id, line);
    orgs.push({ id, line });
  });
  if (orgs.length === 0) throw error(`${path} names no org`);
  return orgs;
}
