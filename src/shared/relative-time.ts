const UNITS: [number, string][] = [
  [86_400_000, "d"],
  [3_600_000, "h"],
  [60_000, "m"],
  [1_000, "s"],
];

/** "in 2h 5m" or "3d 4h ago": the two largest units, for people reading deadlines. */
export function relativeTime(iso: string, now: number): string {
  const delta = Date.parse(iso) - now;
  let rest = Math.abs(delta);
  const parts: string[] = [];
  for (const [size, unit] of UNITS) {
    if (rest >= size && parts.length < 2) {
      parts.push(`${Math.floor(rest / size)}${unit}`);
      rest %= size;
    }
  }
  const amount = parts.join(" ") || "0s";
  return delta >= 0 ? `in ${amount}` : `${amount} ago`;
}
