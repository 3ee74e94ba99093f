# A stand-in for the nixpkgs flake input, for evaluating flake.nix's outputs where nixpkgs cannot be
# fetched (test/unit/nix-flake.test.ts). Only the attributes flake.nix and nix/package.nix touch
# exist; derivations are plain attribute sets with an outPath. The real check is `nix flake check`.
let
  systems = [ "x86_64-linux" "aarch64-linux" "x86_64-darwin" "aarch64-darwin" ];
  fakeStorePath = name: "/nix/store/00000000000000000000000000000000-${name}";
  lib = rec {
    genAttrs = names: f: builtins.listToAttrs (map (n: { name = n; value = f n; }) names);
    setAttrByPath = path: value: if path == [ ] then value else { ${builtins.head path} = setAttrByPath (builtins.tail path) value; };
    mkDefault = content: { _type = "override"; priority = 1000; inherit content; };
    optionalAttrs = c: a: if c then a else { };
    importJSON = path: builtins.fromJSON (builtins.readFile path);
    # lib.fileset: a file set is the list of paths it names (a fileFilter keeps its predicate's
    # description); toSource fails for a path that does not exist, as the real one does.
    fileset = {
      unions = sets: builtins.concatLists (map (s: if builtins.isList s then s else [ s ]) sets);
      fileFilter = predicate: path: { _type = "fileFilter"; inherit path; excludesMarkdown = !(predicate { name = "README.md"; hasExt = ext: ext == "md"; }); };
      toSource = { root, fileset }:
        let
          paths = map (s: if builtins.isAttrs s then s.path else s) (if builtins.isList fileset then fileset else [ fileset ]);
          missing = builtins.filter (p: !builtins.pathExists p) paths;
        in
        if missing != [ ] then throw "lib.fileset.toSource: ${toString (builtins.head missing)} does not exist"
        else { _type = "source"; inherit root; files = map (s: if builtins.isAttrs s then { path = toString s.path; inherit (s) excludesMarkdown; } else { path = toString s; excludesMarkdown = false; }) fileset; outPath = toString root; };
    };
    makeBinPath = ps: builtins.concatStringsSep ":" (map (p: "${p}/bin") ps);
    fakeHash = "sha256-AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=";
    licenses.mit = { spdxId = "MIT"; };
    platforms = { linux = [ "x86_64-linux" "aarch64-linux" ]; darwin = [ "x86_64-darwin" "aarch64-darwin" ]; };
    nixosSystem = args: throw "nixpkgs-stand-in: nixosSystem needs the real nixpkgs";
  };
  pkgsFor = system:
    let
      drv = name: { type = "derivation"; inherit name; outPath = fakeStorePath name; };
      self = {
        inherit lib;
        stdenv.hostPlatform = { inherit system; isLinux = builtins.elem system lib.platforms.linux; isDarwin = builtins.elem system lib.platforms.darwin; };
        nodejs_22 = drv "nodejs-22";
        makeWrapper = drv "make-wrapper";
        git = drv "git";
        nix = drv "nix";
        openssh = drv "openssh";
        buildNpmPackage = attrs: attrs // drv "${attrs.pname}-${attrs.version}";
        callPackage = fn: overrides:
          let f = import fn; in f (builtins.intersectAttrs (builtins.functionArgs f) self // overrides);
        mkShell = attrs: attrs // drv "shell";
        runCommand = name: env: script: drv name // { inherit script; };
      };
    in
    self;
in
{
  inherit lib;
  legacyPackages = lib.genAttrs systems pkgsFor;
}
