# Lockstep: hub (`lockstep`) and agent (`lockstep-agent`) from one npm build.
#
# npmDepsHash pins the npm dependencies (package-lock.json). After changing package-lock.json:
#   1. set  npmDepsHash = lib.fakeHash;
#   2. run  nix build .#lockstep   -- it fails with "hash mismatch ... got: sha256-..."
#   3. paste the "got:" hash here.
# Or, without a failing build:  nix run nixpkgs#prefetch-npm-deps package-lock.json
{ lib
, buildNpmPackage
, nodejs_20
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
  nodejs = nodejs_20;

  # The repository without build output, dependencies, local state or VCS data.
  src = lib.cleanSourceWith {
    src = ../.;
    filter = path: type:
      !(builtins.elem (baseNameOf path) [ "node_modules" "dist" ".git" ".lockstep-data" "test-results" "result" ]);
  };

  # Not pinned yet: this repository is developed where nixpkgs cannot be fetched, so the hash
  # could not be computed. The first `nix build .#lockstep` prints it (steps above).
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
    makeWrapper ${nodejs_20}/bin/node $out/bin/lockstep \
      --add-flags $out/lib/lockstep/dist/broker/cli.js
    # The agent runs git and nix. --suffix: the host's own nix and git (NixOS: config.nix.package)
    # come first on PATH; these are the fallback that makes the agent work anywhere.
    makeWrapper ${nodejs_20}/bin/node $out/bin/lockstep-agent \
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
