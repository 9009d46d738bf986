import type { ItemCounter, ItemSignal } from "./item-counter.ts";

/**
 * Counts the items of an OTLP/JSON Export*ServiceRequest with a byte-level streaming scanner:
 * it checks the JSON grammar as the bytes pass (strings and escapes, numbers, literals, commas,
 * colons, nesting), tracks which open containers lie on the signal's key path, and counts the
 * objects that are elements of the counted array. Nothing is decoded or allocated per byte.
 *
 * - Structural characters are ASCII; bytes ≥ 0x80 only appear inside strings, where they pass
 *   untouched (UTF-8 is not validated; a decoder downstream would).
 * - Keys are matched byte for byte against the lowerCamelCase names OTLP/JSON uses and the
 *   original snake_case proto names (protobuf JSON parsers accept both). A key written with an
 *   escape (`"sp\u0061ns"`) is treated as an unknown key: its items are not counted.
 * - Only objects are counted; other values in the counted array (which no valid request holds)
 *   are not. A key present twice counts twice.
 * - Malformed (finish() gives null): anything that is not one JSON object with optional
 *   whitespace around it, a control character inside a string, nesting deeper than
 *   MAX_DEPTH (10,000, Go protobuf's default recursion limit), or a body ending early.
 */

/** One step of the key path: an object (with the keys leading on) or an array (whose object elements lead on, or are counted). */
type Role = { readonly array: boolean; readonly element: number; readonly keys: readonly { readonly name: Uint8Array; readonly role: number }[] };

const COUNT = -2;
const OFF_PATH = -1;
const ascii = (text: string) => Uint8Array.from(text, (c) => c.charCodeAt(0));
const object = (names: string[], role: number): Role => ({ array: false, element: OFF_PATH, keys: names.map((name) => ({ name: ascii(name), role })) });
const array = (element: number): Role => ({ array: true, element, keys: [] });

function resourceScopeItem(resource: string[], scope: string[], item: string[]): Role[] {
  return [object(resource, 1), array(2), object(scope, 3), array(4), object(item, 5), array(COUNT)];
}

const PATHS: Record<ItemSignal, Role[]> = {
  traces: resourceScopeItem(["resourceSpans", "resource_spans"], ["scopeSpans", "scope_spans"], ["spans"]),
  logs: resourceScopeItem(["resourceLogs", "resource_logs"], ["scopeLogs", "scope_logs"], ["logRecords", "log_records"]),
  metrics: [
    object(["resourceMetrics", "resource_metrics"], 1),
    array(2),
    object(["scopeMetrics", "scope_metrics"], 3),
    array(4),
    object(["metrics"], 5),
    array(6),
    object(["gauge", "sum", "histogram", "exponentialHistogram", "exponential_histogram", "summary"], 7),
    object(["dataPoints", "data_points"], 8),
    array(COUNT),
  ],
};

/** Longer keys cannot be on any path. */
const KEY_MAX = 32;
const MAX_DEPTH = 10_000;

const VALUE = 0; // a value is expected
const VALUE_OR_CLOSE = 1; // right after '['
const KEY = 2; // a key is expected (after ',' in an object)
const KEY_OR_CLOSE = 3; // right after '{'
const COLON = 4;
const AFTER = 5; // after a value inside a container: ',' or its closing bracket
const END = 6; // the top-level object is closed
const STRING = 7;
const ESCAPE = 8;
const UNICODE = 9;
const NUMBER = 10;
const LITERAL = 11;
const BROKEN = 12;

// Number sub-states (JSON's grammar: -? (0 | [1-9][0-9]*) (. [0-9]+)? ([eE] [+-]? [0-9]+)?).
const N_MINUS = 0;
const N_ZERO = 1;
const N_INT = 2;
const N_DOT = 3;
const N_FRAC = 4;
const N_E = 5;
const N_E_SIGN = 6;
const N_EXP = 7;

const TRUE = ascii("true");
const FALSE = ascii("false");
const NULL = ascii("null");

const isSpace = (b: number) => b === 0x20 || b === 0x0a || b === 0x0d || b === 0x09;
const isDigit = (b: number) => b >= 0x30 && b <= 0x39;
const isHex = (b: number) => (b >= 0x30 && b <= 0x39) || ((b | 0x20) >= 0x61 && (b | 0x20) <= 0x66);

class JsonItemCounter implements ItemCounter {
  private readonly roles: readonly Role[];
  /** Per open container: (role + 1) * 2 + (1 for an array). */
  private stack = new Int32Array(64);
  private depth = 0;
  private state = VALUE;
  /** NUMBER: its sub-state; LITERAL: the next byte's index; UNICODE: hex digits left. */
  private sub = 0;
  private literal = TRUE;
  private isKey = false;
  private capture = false;
  private readonly key = new Uint8Array(KEY_MAX);
  private keyLength = 0;
  /** The role of the value after the last key read. */
  private pending = OFF_PATH;
  private count = 0;

  constructor(roles: readonly Role[]) {
    this.roles = roles;
  }

  push(chunk: Uint8Array): void {
    let state = this.state;
    if (state === BROKEN) return;
    const roles = this.roles;
    const key = this.key;
    let stack = this.stack;
    let depth = this.depth;
    let sub = this.sub;
    let literal = this.literal;
    let isKey = this.isKey;
    let capture = this.capture;
    let keyLength = this.keyLength;
    let pending = this.pending;
    let count = this.count;
    const n = chunk.length;
    let i = 0;
    scan: while (i < n) {
      switch (state) {
        case STRING: {
          let j = i;
          if (capture) {
            while (j < n) {
              const c = chunk[j]!;
              if (c === 0x22 || c === 0x5c || c < 0x20) break;
              if (keyLength < KEY_MAX) key[keyLength] = c;
              keyLength++;
              j++;
            }
          } else {
            while (j < n) {
              const c = chunk[j]!;
              if (c === 0x22 || c === 0x5c || c < 0x20) break;
              j++;
            }
          }
          if (j === n) {
            i = n;
            break;
          }
          const c = chunk[j]!;
          i = j + 1;
          if (c === 0x22) {
            if (isKey) {
              pending = OFF_PATH;
              const top = stack[depth - 1]! >> 1;
              if (top > 0 && keyLength <= KEY_MAX) pending = matchKey(roles[top - 1]!, key, keyLength);
              state = COLON;
              // Compact JSON's `"key":"value"`: straight into the value string, saving two dispatches.
              if (i + 1 < n && chunk[i] === 0x3a) {
                if (chunk[i + 1] === 0x22) {
                  i += 2;
                  state = STRING;
                  isKey = false;
                  capture = false;
                } else {
                  i++;
                  state = VALUE;
                }
              }
            } else {
              state = AFTER;
              // Compact JSON's `,"key"` in an object: straight into the next key.
              if (i + 1 < n && chunk[i] === 0x2c && chunk[i + 1] === 0x22) {
                const top = stack[depth - 1]!;
                if ((top & 1) === 0) {
                  i += 2;
                  state = STRING;
                  isKey = true;
                  capture = top >> 1 > 0;
                  keyLength = 0;
                }
              }
            }
          } else if (c === 0x5c) {
            state = ESCAPE;
            if (capture) {
              // An escaped key is an unknown key (documented above).
              capture = false;
              keyLength = KEY_MAX + 1;
            }
          } else {
            state = BROKEN;
            break scan;
          }
          break;
        }
        case ESCAPE: {
          const c = chunk[i++]!;
          if (c === 0x75) {
            state = UNICODE;
            sub = 4;
          } else if (c === 0x22 || c === 0x5c || c === 0x2f || c === 0x62 || c === 0x66 || c === 0x6e || c === 0x72 || c === 0x74) {
            state = STRING;
          } else {
            state = BROKEN;
            break scan;
          }
          break;
        }
        case UNICODE: {
          if (!isHex(chunk[i++]!)) {
            state = BROKEN;
            break scan;
          }
          if (--sub === 0) state = STRING;
          break;
        }
        case NUMBER: {
          // One number in one go (metrics bodies are full of them: bucket counts, bounds).
          for (; i < n; i++) {
            const c = chunk[i]!;
            if (isDigit(c)) {
              if (sub === N_INT || sub === N_FRAC || sub === N_EXP) continue;
              if (sub === N_ZERO) {
                state = BROKEN; // a leading zero
                break scan;
              }
              sub = sub === N_MINUS ? (c === 0x30 ? N_ZERO : N_INT) : sub === N_DOT ? N_FRAC : N_EXP; // N_E, N_E_SIGN → N_EXP
            } else if (c === 0x2e && (sub === N_ZERO || sub === N_INT)) {
              sub = N_DOT;
            } else if ((c === 0x65 || c === 0x45) && (sub === N_ZERO || sub === N_INT || sub === N_FRAC)) {
              sub = N_E;
            } else if ((c === 0x2b || c === 0x2d) && sub === N_E) {
              sub = N_E_SIGN;
            } else if (sub === N_ZERO || sub === N_INT || sub === N_FRAC || sub === N_EXP) {
              state = AFTER; // the number ended; this byte is read again after it
              // Compact JSON's `,"key"` in an object: straight into the next key.
              if (c === 0x2c && i + 1 < n && chunk[i + 1] === 0x22) {
                const top = stack[depth - 1]!;
                if ((top & 1) === 0) {
                  i += 2;
                  state = STRING;
                  isKey = true;
                  capture = top >> 1 > 0;
                  keyLength = 0;
                }
              }
              break;
            } else {
              state = BROKEN;
              break scan;
            }
          }
          break;
        }
        case LITERAL: {
          if (chunk[i++] !== literal[sub]) {
            state = BROKEN;
            break scan;
          }
          if (++sub === literal.length) state = AFTER;
          break;
        }
        case AFTER: {
          const c = chunk[i++]!;
          if (isSpace(c)) break;
          const top = stack[depth - 1]!;
          if (c === 0x2c) {
            state = top & 1 ? VALUE : KEY;
          } else if (c === (top & 1 ? 0x5d : 0x7d)) {
            depth--;
            state = depth === 0 ? END : AFTER;
          } else {
            state = BROKEN;
            break scan;
          }
          break;
        }
        case KEY:
        case KEY_OR_CLOSE: {
          const c = chunk[i++]!;
          if (isSpace(c)) break;
          if (c === 0x22) {
            state = STRING;
            isKey = true;
            capture = stack[depth - 1]! >> 1 > 0;
            keyLength = 0;
          } else if (c === 0x7d && state === KEY_OR_CLOSE) {
            depth--;
            state = depth === 0 ? END : AFTER;
          } else {
            state = BROKEN;
            break scan;
          }
          break;
        }
        case COLON: {
          const c = chunk[i++]!;
          if (isSpace(c)) break;
          if (c !== 0x3a) {
            state = BROKEN;
            break scan;
          }
          state = VALUE;
          break;
        }
        case VALUE:
        case VALUE_OR_CLOSE: {
          const c = chunk[i++]!;
          if (isSpace(c)) break;
          if (c === 0x5d && state === VALUE_OR_CLOSE) {
            depth--;
            state = depth === 0 ? END : AFTER;
            break;
          }
          // Where this value sits on the path.
          let role: number;
          if (depth === 0) {
            if (c !== 0x7b) {
              state = BROKEN; // a request is an object
              break scan;
            }
            role = 0;
          } else {
            const top = stack[depth - 1]!;
            if (top & 1) {
              const arrayRole = (top >> 1) - 1;
              role = arrayRole >= 0 ? roles[arrayRole]!.element : OFF_PATH;
            } else {
              role = pending;
            }
          }
          if (c === 0x7b || c === 0x5b) {
            if (role === COUNT) {
              if (c === 0x7b) count++;
              role = OFF_PATH;
            } else if (role >= 0 && roles[role]!.array !== (c === 0x5b)) {
              role = OFF_PATH;
            }
            if (depth === MAX_DEPTH) {
              state = BROKEN;
              break scan;
            }
            if (depth === stack.length) {
              const grown = new Int32Array(Math.min(stack.length * 2, MAX_DEPTH));
              grown.set(stack);
              stack = grown;
            }
            if (c === 0x7b) {
              stack[depth++] = (role + 1) << 1;
              state = KEY_OR_CLOSE;
              if (i < n && chunk[i] === 0x22) {
                // `{"key"`: straight into the first key.
                i++;
                state = STRING;
                isKey = true;
                capture = role >= 0;
                keyLength = 0;
              }
            } else {
              stack[depth++] = ((role + 1) << 1) | 1;
              state = VALUE_OR_CLOSE;
            }
          } else if (c === 0x22) {
            state = STRING;
            isKey = false;
            capture = false;
          } else if (c === 0x2d || isDigit(c)) {
            state = NUMBER;
            sub = c === 0x2d ? N_MINUS : c === 0x30 ? N_ZERO : N_INT;
          } else if (c === 0x74 || c === 0x66 || c === 0x6e) {
            state = LITERAL;
            literal = c === 0x74 ? TRUE : c === 0x66 ? FALSE : NULL;
            sub = 1;
          } else {
            state = BROKEN;
            break scan;
          }
          break;
        }
        case END: {
          if (!isSpace(chunk[i++]!)) {
            state = BROKEN;
            break scan;
          }
          break;
        }
      }
    }
    this.state = state;
    this.stack = stack;
    this.depth = depth;
    this.sub = sub;
    this.literal = literal;
    this.isKey = isKey;
    this.capture = capture;
    this.keyLength = keyLength;
    this.pending = pending;
    this.count = count;
  }

  finish(): number | null {
    return this.state === END ? this.count : null;
  }
}

function matchKey(role: Role, key: Uint8Array, length: number): number {
  next: for (const candidate of role.keys) {
    const name = candidate.name;
    if (name.length !== length) continue;
    for (let k = 0; k < length; k++) if (name[k] !== key[k]) continue next;
    return candidate.role;
  }
  return OFF_PATH;
}

export function jsonItemCounter(signal: ItemSignal): ItemCounter {
  return new JsonItemCounter(PATHS[signal]);
}
