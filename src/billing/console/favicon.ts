/**
 * The console's icon, at the address browsers ask for unprompted (/favicon.ico) and linked
 * from every page: a small SVG, so no binary file to build or keep. A day's caching: it
 * seldom changes, and a changed one shows within a day.
 */
const ICON = `<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 32 32"><rect width="32" height="32" rx="7" fill="#1c2430"/><path d="M7 11h18v4h-7v11h-4V15H7z" fill="#fff"/><rect x="7" y="6" width="18" height="3" rx="1.5" fill="#b54708"/></svg>`;

export const FAVICON_PATH = "/favicon.ico";

export function favicon(): Response {
  return new Response(ICON, {
    headers: {
      "content-type": "image/svg+xml",
      "cache-control": "public, max-age=86400",
      "x-content-type-options": "nosniff",
    },
  });
}
