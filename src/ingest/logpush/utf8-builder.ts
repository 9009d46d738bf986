/**
 * A growable buffer of UTF-8 text. A Logpush batch's OTLP JSON is written into one per upstream
 * piece, so no string is built per attribute, record or piece (issue 20: joining a segment's
 * small strings cost as much as converting it, and the strings were most of the garbage), and
 * the piece goes upstream or to parking as the bytes it already is.
 */
const encoder = new TextEncoder();

export class Utf8Builder {
  bytes: Uint8Array;
  /** Bytes written so far: `bytes[0, length)`. Writers may set it back to drop what they wrote after a mark. */
  length = 0;

  constructor(capacity: number) {
    this.bytes = new Uint8Array(capacity);
  }

  /** Room for `n` more bytes after `length`, growing at least twofold so appends stay linear. */
  reserve(n: number): void {
    if (this.length + n <= this.bytes.length) return;
    const grown = new Uint8Array(Math.max(this.bytes.length * 2, this.length + n));
    grown.set(this.bytes.subarray(0, this.length));
    this.bytes = grown;
  }

  /** Any string, as TextEncoder writes it (a lone surrogate as U+FFFD). */
  text(text: string): void {
    let rest = text;
    for (;;) {
      const { read, written } = encoder.encodeInto(rest, this.bytes.subarray(this.length));
      this.length += written;
      if (read === rest.length) return;
      rest = rest.slice(read);
      this.reserve(rest.length + 4);
    }
  }

  /** Bytes as they are (pre-encoded text). */
  raw(bytes: Uint8Array): void {
    this.reserve(bytes.length);
    this.bytes.set(bytes, this.length);
    this.length += bytes.length;
  }

  /** One ASCII character by its code. */
  byte(code: number): void {
    this.reserve(1);
    this.bytes[this.length++] = code;
  }

  /** A string known to be ASCII (a number's digits): copied without TextEncoder's call. */
  ascii(text: string): void {
    this.reserve(text.length);
    const out = this.bytes;
    let at = this.length;
    for (let i = 0; i < text.length; i++) out[at++] = text.charCodeAt(i);
    this.length = at;
  }

  /** What another builder holds from byte `from` on. */
  append(other: Utf8Builder, from = 0): void {
    const n = other.length - from;
    this.reserve(n);
    this.bytes.set(other.bytes.subarray(from, other.length), this.length);
    this.length += n;
  }

  /** The bytes written so far: a view of the buffer, changed by what is written after it is emptied. */
  view(): Uint8Array {
    return this.bytes.subarray(0, this.length);
  }
}
