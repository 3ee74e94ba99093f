/**
 * `lockstep-agent self-update` and `lockstep-agent status`.
 * agent/cli.ts passes the arguments after `lockstep-agent`, starting with the subcommand name.
 */
export async function runSelfUpdateCli(argv: string[]): Promise<number> {
  const [command] = argv;
  process.stderr.write(`lockstep-agent ${command ?? ""}: self-update is being built; no action taken\n`);
  return 2;
}
