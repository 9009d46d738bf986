/** Types of tools/dev/reply.mjs (plain JavaScript so the system's Node 20 can run it). */
export declare const MAX_REPLY_CHARS: number;
export declare function summarizeBody(body: string): string;
export declare function formatReply(output: string): string;
