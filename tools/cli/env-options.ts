import { Help, Option, type Command } from "commander";

/**
 * Options whose value may come from an environment variable of the run's own environment (`runCli`'s
 * `io.env`), not process.env: commander's `.env()` reads process.env while parsing, which would let one
 * in-process run (a test) see another's variables, or the test process's own. So the variable is kept
 * here, commander is never told of it while parsing, and `applyEnv` fills the value from `env` before the
 * action, with commander's precedence (the command line wins; the variable beats the default).
 */
export class EnvOption extends Option {
  readonly fromEnv: string;
  constructor(flags: string, description: string, envVar: string) {
    super(flags, description);
    this.fromEnv = envVar;
  }
}

/** Help that names each EnvOption's variable exactly as commander's own `.env()` does: "(default: ..., env: NAME)". */
export const envHelp = {
  optionDescription(this: Help, option: Option): string {
    if (!(option instanceof EnvOption)) return Help.prototype.optionDescription.call(this, option);
    // A copy told of its variable, for the text only: the option commander parses never is.
    const described = Object.assign(Object.create(Object.getPrototypeOf(option) as object) as Option, option, { envVar: option.fromEnv });
    return Help.prototype.optionDescription.call(this, described);
  },
};

/** Sets each EnvOption of `command` that the command line left unset (or at its default) from `env`, when `env` has its variable. */
export function applyEnv(command: Command, env: Record<string, string | undefined>): void {
  for (const option of command.options) {
    if (!(option instanceof EnvOption)) continue;
    const value = env[option.fromEnv];
    const key = option.attributeName();
    const source = command.getOptionValueSource(key);
    // Commander's own rule: a value from the command line (or set by code) stays; a default gives way.
    const replaceable = command.getOptionValue(key) === undefined || (source !== undefined && ["default", "config", "env"].includes(source));
    if (value !== undefined && replaceable) command.setOptionValueWithSource(key, value, "env");
  }
}
