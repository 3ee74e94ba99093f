/**
 * `lockstep completion bash|zsh|fish`: generated from the one command table (names and each
 * command's options), so a new subcommand or flag completes without touching this file.
 */
import type { Subcommand } from "../../broker/commands.js";
import { UsageError } from "../../broker/commands.js";

const flagsOf = (c: Subcommand) => ["--help", ...Object.keys(c.options).map((o) => `--${o}`)];

export function completionScript(shell: string, commands: readonly Subcommand[]): string {
  const names = commands.map((c) => c.name);
  if (shell === "bash") {
    const cases = commands.map((c) => `    ${c.name}) opts="${flagsOf(c).join(" ")}" ;;`).join("\n");
    return `# lockstep bash completion: eval "$(lockstep completion bash)"
_lockstep() {
  local cur="\${COMP_WORDS[COMP_CWORD]}" cmd="" i
  for ((i = 1; i < COMP_CWORD; i++)); do
    case "\${COMP_WORDS[i]}" in -*) ;; *) cmd="\${COMP_WORDS[i]}"; break ;; esac
  done
  if [[ -z "$cmd" ]]; then COMPREPLY=($(compgen -W "${names.join(" ")} --config --help" -- "$cur")); return; fi
  local opts="--help"
  case "$cmd" in
${cases}
  esac
  COMPREPLY=($(compgen -W "$opts" -- "$cur"))
}
complete -F _lockstep lockstep
`;
  }
  if (shell === "zsh") {
    return `#compdef lockstep
# lockstep zsh completion: eval "$(lockstep completion zsh)"
_lockstep() {
  local -a commands
  commands=(${commands.map((c) => `'${c.name}:${c.summary.replace(/'/g, "")}'`).join(" ")})
  if (( CURRENT == 2 )); then _describe command commands; return; fi
  case "$words[2]" in
${commands.map((c) => `    ${c.name}) compadd -- ${flagsOf(c).join(" ")} ;;`).join("\n")}
  esac
}
compdef _lockstep lockstep
`;
  }
  if (shell === "fish") {
    return [
      "# lockstep fish completion: lockstep completion fish | source",
      `complete -c lockstep -f -n "not __fish_seen_subcommand_from ${names.join(" ")}" -a "${names.join(" ")}"`,
      ...commands.flatMap((c) => Object.keys(c.options).map((o) => `complete -c lockstep -f -n "__fish_seen_subcommand_from ${c.name}" -l ${o}`)),
      "",
    ].join("\n");
  }
  throw new UsageError(`no completion for shell "${shell}" (bash, zsh or fish)`, 'run "lockstep completion --help"');
}

export function completionCommand(commands: () => readonly Subcommand[]): Subcommand {
  return {
    name: "completion",
    summary: "print shell completion for bash, zsh or fish",
    usage: 'lockstep completion bash|zsh|fish\n    bash: eval "$(lockstep completion bash)"; fish: lockstep completion fish | source',
    options: {},
    async run({ args, io }) {
      if (args.length !== 1) throw new UsageError("expected the shell: bash, zsh or fish", 'run "lockstep completion --help"');
      io.stdout(completionScript(args[0]!, commands()));
      return 0;
    },
  };
}
