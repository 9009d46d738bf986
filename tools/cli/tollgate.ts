import { runCli } from "./program.ts";

/** `npm run tollgate -- <command>`: the executable around runCli (program.ts), with this process's environment, output and terminal. */
process.exitCode = await runCli(process.argv.slice(2), {
  env: process.env,
  out: (text) => process.stdout.write(text),
  err: (text) => process.stderr.write(text),
  columns: { out: process.stdout.isTTY ? process.stdout.columns : undefined, err: process.stderr.isTTY ? process.stderr.columns : undefined },
});
