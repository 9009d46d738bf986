import { runCli } from "./program.ts";

/**
 * Writes to stdout or stderr as console.log did before runCli: a reader that went away (`| head -1`, `| grep -q`)
 * makes the write fail with EPIPE, which is ignored instead of crashing the process with an unhandled 'error'
 * event and its stack trace; the run goes on and exits with its own code.
 */
function writer(stream: NodeJS.WriteStream): (text: string) => void {
  stream.on("error", () => {});
  return (text) => {
    stream.write(text);
  };
}

/** `npm run tollgate -- <command>`: the executable around runCli (program.ts), with this process's environment, output and terminal. */
process.exitCode = await runCli(process.argv.slice(2), {
  env: process.env,
  out: writer(process.stdout),
  err: writer(process.stderr),
  columns: { out: process.stdout.isTTY ? process.stdout.columns : undefined, err: process.stderr.isTTY ? process.stderr.columns : undefined },
});
