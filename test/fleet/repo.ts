/**
 * A real flake repository for a test fleet: a bare "origin", local flake inputs that can be
 * bumped (so `nix flake update` makes real lock changes), one tiny configuration per host built
 * with `builtins.derivation` (no nixpkgs needed), and per-host test scripts.
 *
 * Layout of the flake repo:
 *   flake.nix, flake.lock
 *   hosts/<host>.nix        { fail = false; message = ""; }  -> fail = true breaks that host's build;
 *                           packages = [ "hello" ]; kernel = true; -> a NixOS-like versioned system (HostModule)
 *   inputs/<input>/packages.nix   the package set ("hello" 2.12, "linux" 6.6.58, ...) that bumpPackages changes
 *   tests/<host>/*.sh       the host's own checks (exit 0 = pass)
 *   tests/common/*.sh       checks every host runs
 */
import { execFileSync, spawnSync } from "node:child_process";
import { mkdirSync, writeFileSync, rmSync, existsSync, readFileSync, chmodSync } from "node:fs";
import { join } from "node:path";
import { nixEnv, nixSystem } from "./nix-env.js";
import { signingGit, type SigningKey } from "../support/signing.js";

export interface FleetRepoOptions {
  /** Directory that will hold origin.git, seed/ and inputs/. Created if missing. */
  root: string;
  hosts: string[];
  /** Names of bumpable flake inputs. Default: nixpkgs and tools (tools follows nixpkgs). */
  inputs?: string[];
  branch?: string;
  /** Commit date of the initial input revisions (so lock diffs show real date changes). */
  initialDate?: Date;
}

export interface LockUpdate {
  branch: string;
  sha: string;
  /** What `nix flake update` printed: the "Flake lock file updates:" block as Nix writes it. */
  nixOutput: string;
  /** A PR body like update-flake-lock writes. */
  prBody: string;
}

function run(cmd: string, args: string[], cwd: string, env: NodeJS.ProcessEnv = nixEnv()): string {
  return execFileSync(cmd, args, { cwd, env, encoding: "utf8", stdio: ["ignore", "pipe", "pipe"] });
}

function runBoth(cmd: string, args: string[], cwd: string, env: NodeJS.ProcessEnv = nixEnv()): string {
  // nix prints the lock update report on stderr
  const r = spawnSync(cmd, args, { cwd, env, encoding: "utf8" });
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(" ")} failed (${r.status}): ${r.stderr}`);
  return `${r.stdout}${r.stderr}`;
}

const gitDateEnv = (date?: Date): NodeJS.ProcessEnv =>
  date ? nixEnv({ GIT_AUTHOR_DATE: date.toISOString(), GIT_COMMITTER_DATE: date.toISOString() }) : nixEnv();

/**
 * What hosts/<host>.nix says. Without `packages` and `kernel` a host's system is one file naming
 * every input's version (any input bump changes every such host). With them, the system is a
 * directory that links only the named packages from the first input's package set (a bump that
 * leaves them alone changes nothing on this host), plus kernel/initrd/kernel-modules like NixOS.
 */
export interface HostModule {
  fail?: boolean;
  message?: string;
  /** A slower build, in seconds. */
  delay?: number;
  /** Package names from the package set (FleetRepo.setPackages), built as `<name>-<version>`. */
  packages?: string[];
  /** Link `linux` as kernel, its initrd and modules (a change needs a reboot). */
  kernel?: boolean;
  /** Put a `bin/switch-to-configuration` in the system whose dry-activate restarts one unit per package. */
  switchScript?: boolean;
}

export function hostModuleOf(m: HostModule): string {
  const fields = [`fail = ${m.fail ? "true" : "false"};`, `message = ${JSON.stringify(m.message ?? "")};`];
  if (m.delay && m.delay > 0) fields.push(`delay = ${Math.ceil(m.delay)};`);
  if (m.packages) fields.push(`packages = [ ${m.packages.map((p) => JSON.stringify(p)).join(" ")} ];`);
  if (m.kernel) fields.push("kernel = true;");
  if (m.switchScript) fields.push("switchScript = true;");
  return `{ ${fields.join(" ")} }\n`;
}

export function hostModule(fail: boolean, message = "", delaySeconds = 0): string {
  return hostModuleOf({ fail, message, delay: delaySeconds });
}

/** A package of the test package set: its version, extra bytes (for size deltas), and whether its build fails. */
export interface TestPackage {
  version: string;
  size?: number;
  broken?: boolean;
}

function packagesNix(pkgs: Record<string, TestPackage>): string {
  const entries = Object.entries(pkgs).map(
    ([name, p]) => `  ${JSON.stringify(name)} = { version = ${JSON.stringify(p.version)}; size = ${Math.max(0, Math.floor(p.size ?? 0))}; broken = ${p.broken ? "true" : "false"}; };`,
  );
  return `{\n${entries.join("\n")}\n}\n`;
}

function flakeNix(inputs: string[], system: string): string {
  const inputLines = inputs
    .map((i) => `    ${i}.url = "git+file://@INPUTS@/${i}";`)
    .concat(inputs.filter((i) => i !== "nixpkgs" && inputs.includes("nixpkgs")).map((i) => `    ${i}.inputs.nixpkgs.follows = "nixpkgs";`))
    .join("\n");
  const args = ["self", ...inputs].join(", ");
  const versions = inputs.map((i) => `${i}=\${${i}.version}`).join(" ");
  return `{
  description = "Lockstep test fleet";
  inputs = {
${inputLines}
  };
  outputs = { ${args} }:
    let
      system = "${system}";
      hostNames = builtins.map (f: builtins.replaceStrings [ ".nix" ] [ "" ] f)
        (builtins.attrNames (builtins.readDir ./hosts));
      pkgSet = ${inputs[0]}.packages;
      # A package of the set as a derivation named like nixpkgs names them ("hello-2.12"), so
      # \`nix store diff-closures\` reports "hello: 2.12 → 2.13".
      mkPkg = pname:
        let p = pkgSet.\${pname}; in
        builtins.derivation {
          name = "\${pname}-\${p.version}";
          inherit system;
          builder = "/bin/sh";
          args = [ "-c" (if p.broken
            then "echo 'error: \${pname}-\${p.version} does not build: marked broken in this package set' >&2; exit 1"
            else "echo '\${pname} \${p.version}' > $out; printf '%*s' \${toString p.size} '' >> $out") ];
        };
      kernelOf = v: builtins.derivation {
        name = "linux-\${v}";
        inherit system;
        builder = "/bin/sh";
        args = [ "-c" "/bin/mkdir -p $out/lib/modules/\${v}; echo 'kernel \${v}' > $out/bzImage; echo 'initrd \${v}' > $out/initrd" ];
      };
      mkSystem = name:
        let
          cfg = import (./hosts + "/\${name}.nix");
          versioned = (cfg ? packages) || (cfg.kernel or false);
          pkgs = builtins.map mkPkg (cfg.packages or [ ]);
          kernel = kernelOf pkgSet.linux.version;
          links = builtins.concatStringsSep "; " (builtins.map (p: "/bin/ln -s \${p} $out/sw/\${p.name}") pkgs);
          units = builtins.concatStringsSep ", " (builtins.map (p: "\${p.name}.service") pkgs);
          body = if !versioned then "echo '\${name} ${versions} \${cfg.message}' > $out" else
            "/bin/mkdir -p $out/sw $out/bin; echo '\${name} \${cfg.message}' > $out/info; \${links}"
            + (if cfg.kernel or false then "; /bin/ln -s \${kernel}/bzImage $out/kernel; /bin/ln -s \${kernel}/initrd $out/initrd; /bin/ln -s \${kernel}/lib/modules $out/kernel-modules" else "")
            + (if cfg.switchScript or false then "; echo '#!/bin/sh' > $out/bin/switch-to-configuration; echo 'echo \\"would restart the following units: \${units}\\" >&2' >> $out/bin/switch-to-configuration; /bin/chmod +x $out/bin/switch-to-configuration" else "");
        in
        builtins.derivation {
          name = "lockstep-system-\${name}";
          inherit system;
          builder = "/bin/sh";
          # hosts/<host>.nix may set delay = N (seconds): a slow build, to kill an agent mid-switch.
          args = [ "-c" ((if (cfg.delay or 0) > 0 then "/bin/sleep \${toString cfg.delay}; " else "") + (if cfg.fail
            then "echo 'error: configuration of \${name} does not build: \${cfg.message}' >&2; exit 1"
            else body)) ];
        };
      systems = builtins.listToAttrs (builtins.map (n: { name = n; value = mkSystem n; }) hostNames);
    in {
      # What a host "switches" to. Real fleets have nixosConfigurations; the test profile builds these.
      lockstepSystems.\${system} = systems;
      packages.\${system} = systems;
    };
}
`;
}

function inputFlake(name: string, hasNixpkgsInput: boolean): string {
  const outputs = `{ version = builtins.replaceStrings [ "\\n" ] [ "" ] (builtins.readFile ./version); packages = import ./packages.nix; }`;
  return hasNixpkgsInput
    ? `{ inputs.nixpkgs.url = "git+file://@INPUTS@/nixpkgs";\n  outputs = { self, nixpkgs }: ${outputs}; }\n`
    : `{ outputs = { self }: ${outputs}; }\n`;
}

/** The package set every input starts with: what versioned hosts (HostModule.packages) build. */
export const INITIAL_PACKAGES: Record<string, TestPackage> = {
  hello: { version: "2.12", size: 1000 },
  coreutils: { version: "9.4" },
  openssl: { version: "3.0.15" },
  linux: { version: "6.6.58" },
};

export class FleetRepo {
  readonly origin: string;
  readonly seed: string;
  readonly inputsDir: string;
  readonly branch: string;
  readonly hosts: string[];
  readonly inputs: string[];
  /** Commits made by commit(), setHostModule(), mergeIntoBranch() & co. are signed with this key (git commit -S). */
  signingKey: SigningKey | undefined;
  private versions = new Map<string, number>();
  private packages = new Map<string, Record<string, TestPackage>>();

  private constructor(readonly opts: FleetRepoOptions) {
    this.origin = join(opts.root, "origin.git");
    this.seed = join(opts.root, "seed");
    this.inputsDir = join(opts.root, "inputs");
    this.branch = opts.branch ?? "main";
    this.hosts = opts.hosts;
    this.inputs = opts.inputs ?? ["nixpkgs", "tools"];
  }

  /** Create everything: input repos, the flake, its first lock, a bare origin. Takes ~1 s. */
  static create(opts: FleetRepoOptions): FleetRepo {
    const repo = new FleetRepo(opts);
    repo.init();
    return repo;
  }

  /** The origin as a URL agents clone from. */
  get originUrl(): string {
    return `file://${this.origin}`;
  }

  private init(): void {
    const { root } = this.opts;
    mkdirSync(root, { recursive: true });
    const date = this.opts.initialDate ?? new Date(Date.now() - 10 * 86_400_000);
    for (const name of this.inputs) {
      const dir = join(this.inputsDir, name);
      mkdirSync(dir, { recursive: true });
      run("git", ["init", "-q", "-b", "main"], dir);
      writeFileSync(join(dir, "flake.nix"), inputFlake(name, name !== "nixpkgs" && this.inputs.includes("nixpkgs")).replaceAll("@INPUTS@", this.inputsDir));
      writeFileSync(join(dir, "version"), `${name}-1\n`);
      writeFileSync(join(dir, "packages.nix"), packagesNix(INITIAL_PACKAGES));
      this.versions.set(name, 1);
      run("git", ["add", "-A"], dir);
      run("git", ["commit", "-qm", `${name} 1`], dir, gitDateEnv(date));
    }
    mkdirSync(this.seed, { recursive: true });
    run("git", ["init", "-q", "-b", this.branch], this.seed);
    writeFileSync(join(this.seed, "flake.nix"), flakeNix(this.inputs, nixSystem()).replaceAll("@INPUTS@", this.inputsDir));
    mkdirSync(join(this.seed, "hosts"), { recursive: true });
    mkdirSync(join(this.seed, "tests", "common"), { recursive: true });
    for (const h of this.hosts) {
      writeFileSync(join(this.seed, "hosts", `${h}.nix`), hostModule(false));
      mkdirSync(join(this.seed, "tests", h), { recursive: true });
      this.writeScript(join("tests", h, "10-health.sh"), `#!/bin/sh\necho "${h}: healthy"\nexit 0\n`);
    }
    this.writeScript(join("tests", "common", "00-system-link.sh"), `#!/bin/sh\n# LOCKSTEP_SYSTEM is the path of the running system generation\ntest -e "$LOCKSTEP_SYSTEM" && echo "system present"\n`);
    run("git", ["add", "-A"], this.seed);
    runBoth("nix", ["flake", "lock"], this.seed);
    run("git", ["add", "-A"], this.seed);
    run("git", ["commit", "-qm", "Initial fleet"], this.seed);
    run("git", ["init", "-q", "--bare", "-b", this.branch, this.origin], root);
    run("git", ["remote", "add", "origin", this.origin], this.seed);
    run("git", ["push", "-q", "origin", this.branch], this.seed);
  }

  private writeScript(rel: string, body: string): void {
    const p = join(this.seed, rel);
    writeFileSync(p, body);
    chmodSync(p, 0o755);
  }

  /** Current sha of a branch at origin. */
  head(branch = this.branch): string {
    return run("git", ["rev-parse", branch], this.origin).trim();
  }

  /** Read a file at a revision of origin. */
  show(rev: string, path: string): string {
    return run("git", ["show", `${rev}:${path}`], this.origin);
  }

  /** Commit a new revision of an input repo, dated `date` (default: now). Returns its sha. */
  bumpInput(name: string, date = new Date()): string {
    const dir = join(this.inputsDir, name);
    if (!existsSync(dir)) throw new Error(`unknown input ${name}`);
    const v = (this.versions.get(name) ?? 1) + 1;
    this.versions.set(name, v);
    writeFileSync(join(dir, "version"), `${name}-${v}\n`);
    run("git", ["commit", "-qam", `${name} ${v}`], dir, gitDateEnv(date));
    return run("git", ["rev-parse", "HEAD"], dir).trim();
  }

  /**
   * Commit a new revision of an input repo whose package set changes: `changes` are merged over the
   * current set (a package's new version, size or broken flag). Returns the input's new sha.
   */
  bumpPackages(name: string, changes: Record<string, Partial<TestPackage>>, date = new Date()): string {
    const dir = join(this.inputsDir, name);
    if (!existsSync(dir)) throw new Error(`unknown input ${name}`);
    const current = this.packages.get(name) ?? { ...INITIAL_PACKAGES };
    const next: Record<string, TestPackage> = { ...current };
    for (const [pkg, change] of Object.entries(changes)) next[pkg] = { ...(current[pkg] ?? { version: "1.0" }), ...change };
    this.packages.set(name, next);
    writeFileSync(join(dir, "packages.nix"), packagesNix(next));
    // A new revision of the input, like bumpInput: unversioned hosts change too.
    const v = (this.versions.get(name) ?? 1) + 1;
    this.versions.set(name, v);
    writeFileSync(join(dir, "version"), `${name}-${v}\n`);
    run("git", ["commit", "-qam", `${name}: ${Object.keys(changes).join(", ")}`], dir, gitDateEnv(date));
    return run("git", ["rev-parse", "HEAD"], dir).trim();
  }

  /** Write hosts/<host>.nix on a branch (default: the fleet branch) and push. Returns the new sha. */
  setHostModule(host: string, module: HostModule, branch = this.branch): string {
    return this.commit({ [`hosts/${host}.nix`]: hostModuleOf(module) }, `${host}: configuration`, branch);
  }

  private syncSeed(branch = this.branch): void {
    run("git", ["fetch", "-q", "origin"], this.seed);
    // A branch that does not exist at origin yet starts from the fleet branch.
    const exists = spawnSync("git", ["rev-parse", "--verify", "-q", `refs/remotes/origin/${branch}`], { cwd: this.seed }).status === 0;
    run("git", ["checkout", "-q", "-B", branch, `origin/${exists ? branch : this.branch}`], this.seed);
  }

  /**
   * Make the weekly lock-update commit the way the GitHub action does: a branch off the base with
   * `nix flake update` committed, pushed to origin. Inputs default to all.
   */
  lockUpdateBranch(branch = "update_flake_lock_action", inputs?: string[]): LockUpdate {
    this.syncSeed();
    run("git", ["checkout", "-q", "-B", branch], this.seed);
    const args = inputs && inputs.length ? ["flake", "lock", ...inputs.flatMap((i) => ["--update-input", i])] : ["flake", "update"];
    const out = runBoth("nix", args, this.seed);
    const block = out.slice(Math.max(0, out.indexOf("•")));
    const nixOutput = `Flake lock file updates:\n\n${block.trim()}\n`;
    run("git", ["commit", "-qam", "flake.lock: Update", "-m", nixOutput], this.seed);
    run("git", ["push", "-q", "-f", "origin", branch], this.seed);
    const sha = run("git", ["rev-parse", "HEAD"], this.seed).trim();
    run("git", ["checkout", "-q", this.branch], this.seed);
    const prBody = `Automated changes by the update-flake-lock GitHub Action.\n\n\`\`\`\n${nixOutput}\`\`\`\n`;
    return { branch, sha, nixOutput, prBody };
  }

  /** Commit files on a branch (default: the fleet branch) and push. Returns the new sha. */
  commit(files: Record<string, string | null>, message: string, branch = this.branch): string {
    this.syncSeed(branch);
    for (const [rel, content] of Object.entries(files)) {
      const p = join(this.seed, rel);
      if (content === null) rmSync(p, { force: true });
      else {
        mkdirSync(join(p, ".."), { recursive: true });
        writeFileSync(p, content);
        if (rel.endsWith(".sh")) chmodSync(p, 0o755);
      }
    }
    run("git", ["add", "-A"], this.seed);
    this.gitCommitting(["commit", "-qm", message]);
    run("git", ["push", "-q", "origin", branch], this.seed);
    return run("git", ["rev-parse", "HEAD"], this.seed).trim();
  }

  /** Make one host's configuration fail to build (or build again). */
  setBuildFailure(host: string, fail: boolean, branch = this.branch): string {
    return this.commit({ [`hosts/${host}.nix`]: hostModule(fail, fail ? "injected build failure" : "") }, `${host}: ${fail ? "break" : "fix"} build`, branch);
  }

  /** Merge a commit (e.g. a lock-update branch head) into a branch at origin, as a merge commit. Returns the new sha. */
  mergeIntoBranch(sha: string, message: string, branch = this.branch): string {
    this.syncSeed(branch);
    this.gitCommitting(["merge", "-q", "--no-ff", "-m", message, sha]);
    run("git", ["push", "-q", "origin", branch], this.seed);
    return run("git", ["rev-parse", "HEAD"], this.seed).trim();
  }

  /** Make one host's build take `seconds` longer (0: back to normal; also clears a build failure). */
  setBuildDelay(host: string, seconds: number, branch = this.branch): string {
    // The Nix store is shared by every test: a unique message makes a new derivation that really builds.
    const message = seconds > 0 ? `slow build ${Date.now().toString(36)}${Math.random().toString(36).slice(2, 8)}` : "";
    return this.commit({ [`hosts/${host}.nix`]: hostModule(false, message, seconds) }, `${host}: build ${seconds > 0 ? `takes ${seconds} s longer` : "at normal speed"}`, branch);
  }

  /** Make one host's tests fail (or pass again). */
  setTestFailure(host: string, fail: boolean, branch = this.branch): string {
    const body = fail ? `#!/bin/sh\necho "${host}: service did not come up" >&2\nexit 1\n` : `#!/bin/sh\necho "${host}: healthy"\nexit 0\n`;
    return this.commit({ [`tests/${host}/10-health.sh`]: body }, `${host}: ${fail ? "break" : "fix"} tests`, branch);
  }

  /** A git command that makes a commit in the seed: signed with signingKey when one is set. */
  private gitCommitting(args: string[]): void {
    if (!this.signingKey) return void run("git", args, this.seed);
    const s = signingGit(this.signingKey);
    run("git", [...s.args, "-c", `user.email=${this.signingKey.email}`, ...args], this.seed, nixEnv({ ...s.env, GIT_COMMITTER_EMAIL: this.signingKey.email }));
  }

  readSeed(rel: string): string {
    return readFileSync(join(this.seed, rel), "utf8");
  }
}
