# Lockstep: hub (`lockstep`) and agent (`lockstep-agent`) from one npm build.
#
# npmDepsHash pins the npm dependencies (package-lock.json). The lock must carry each package's
# download address (`resolved`) first, or nixpkgs' fetcher skips the package and the hash pins an
# empty cache: on a machine that reaches the npm registry run
#   node scripts/nix-npm-deps.mjs --write
# which adds the addresses (checked against the lock's integrity) and writes the hash here
# (docs/nix.md, "What is pinned").
{ lib
, buildNpmPackage
, nodejs_22
, makeWrapper
, git
, nix
, openssh
}:
let
  packageJson = lib.importJSON ../package.json;
in
buildNpmPackage {
  pname = "lockstep";
  inherit (packageJson) version;
  # Node 22 (LTS to 2027-04): nixpkgs marked nodejs_20 insecure after Node 20's end of life
  # (2026-04-30) and then dropped it, so the pinned nixpkgs would refuse to build with it.
  nodejs = nodejs_22;

  # Only what `npm run build` and the install read, so editing docs/, nix/ or test/ (or a README
  # next to the code) does not rebuild the package.
  src = lib.fileset.toSource {
    root = ../.;
    fileset = lib.fileset.unions ([
      ../package.json
      ../package-lock.json
      ../tsconfig.json
      ../scripts/build-page.mjs
      ../scripts/copy-assets.mjs
      ../flows
    ] ++ map (dir: lib.fileset.fileFilter (file: !file.hasExt "md") dir) [
      ../protocol
      ../broker
      ../agent
      ../github
      ../rollout
      ../hub
      ../ha
      ../dashboard
      ../node-red-nodes
    ]);
  };

  # Not pinned yet: the committed lock has no download addresses and this repository is developed
  # where nixpkgs cannot be fetched (see the comment at the top).
  npmDepsHash = lib.fakeHash;

  nativeBuildInputs = [ makeWrapper ];
  # `npm run build`: tsc to dist/ and the static assets (fleet page, Node-RED node HTML).
  npmBuildScript = "build";

  # dist/ is git-ignored, so `npm pack` (what the default install uses) would leave it out:
  # install the runtime tree explicitly instead.
  installPhase = ''
    runHook preInstall
    npm prune --omit=dev --no-save --offline --no-audit --no-fund
    mkdir -p $out/lib/lockstep $out/bin
    cp -r package.json dist node_modules $out/lib/lockstep/
    for dir in flows dashboard; do
      if [ -d "$dir" ]; then cp -r "$dir" $out/lib/lockstep/; fi
    done
    makeWrapper ${nodejs_22}/bin/node $out/bin/lockstep \
      --add-flags $out/lib/lockstep/dist/hub/cli.js
    # The agent runs git and nix. --suffix: the host's own nix and git (NixOS: config.nix.package)
    # come first on PATH; these are the fallback that makes the agent work anywhere.
    makeWrapper ${nodejs_22}/bin/node $out/bin/lockstep-agent \
      --add-flags $out/lib/lockstep/dist/agent/cli.js \
      --suffix PATH : ${lib.makeBinPath [ git nix openssh ]}
    runHook postInstall
  '';

  doInstallCheck = true;
  installCheckPhase = ''
    $out/bin/lockstep-agent version | grep -qx '${packageJson.version}'
  '';

  meta = {
    description = packageJson.description;
    license = lib.licenses.mit;
    mainProgram = "lockstep-agent";
    platforms = lib.platforms.linux ++ lib.platforms.darwin;
  };
}
