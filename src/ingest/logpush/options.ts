/**
 * What a Logpush job's destination_conf tells Tollgate through query parameters on its URL:
 * what the body alone cannot say. Everything else (framing, delimiters, wrappers, header lines)
 * is inferred from the body.
 *
 *   format=csv           the job's output_type is csv (default: JSON, in any framing)
 *   fields=A,B,C         the job's field_names, in order (CSV without a header line)
 *   time_field=name      the field holding the event time when a record_template renamed it
 *
 * Other parameters are ignored: Cloudflare's own examples add some (`tags=`), and `header_*`
 * ones become request headers.
 */

export type LogpushOptions = {
  format: "json" | "csv";
  /** CSV field names in order, or null to read them from a header line. */
  fields: string[] | null;
  timeField: string | null;
};

export type OptionsResult = { ok: true; options: LogpushOptions } | { ok: false; code: string; message: string };

/** A Logpush field name, or one a record_template made up (`client-ip`, `@timestamp`). */
export const FIELD_NAME = /^[A-Za-z_@$][\w.@$-]{0,127}$/;
const FORMATS: Record<string, LogpushOptions["format"]> = { csv: "csv", ndjson: "json", json: "json" };

export function readLogpushOptions(params: URLSearchParams): OptionsResult {
  const one = (name: string): string | null | false => {
    const values = params.getAll(name);
    return values.length === 0 ? null : values.length === 1 ? values[0]! : false;
  };

  const format = one("format");
  if (format === false || (format !== null && !Object.hasOwn(FORMATS, format.trim().toLowerCase()))) {
    return { ok: false, code: "invalid_format", message: "format= must appear once and be csv, ndjson or json (match the job's output_options.output_type), or be left out for JSON" };
  }
  const options: LogpushOptions = { format: format === null ? "json" : FORMATS[format.trim().toLowerCase()]!, fields: null, timeField: null };

  const fields = one("fields");
  if (fields !== null) {
    if (fields === false) return { ok: false, code: "invalid_fields", message: "fields= must appear once: the job's output_options.field_names, comma-separated, in order" };
    if (options.format !== "csv") return { ok: false, code: "invalid_fields", message: "fields= applies to CSV only: add format=csv, or drop fields= (JSON records name their own fields)" };
    const names = fields.split(",").map((name) => name.trim());
    if (names.some((name) => !FIELD_NAME.test(name))) {
      return { ok: false, code: "invalid_fields", message: "fields= must list the job's output_options.field_names, comma-separated, in order, with no empty or malformed name" };
    }
    if (new Set(names).size !== names.length) return { ok: false, code: "invalid_fields", message: "fields= names a field twice; list output_options.field_names exactly" };
    options.fields = names;
  }

  const timeField = one("time_field");
  if (timeField !== null) {
    if (timeField === false || !FIELD_NAME.test(timeField.trim())) {
      return { ok: false, code: "invalid_time_field", message: "time_field= must appear once and name the field that holds the event time (as renamed by output_options.record_template)" };
    }
    options.timeField = timeField.trim();
  }
  return { ok: true, options };
}
