# Evaluates a Lockstep module without nixpkgs, for the unit tests (test/unit/nix-modules.test.ts):
# a stand-in for the few lib functions the modules use, option defaults collected from the declared
# options, every value checked against its declared type, and the user's settings merged in.
# It is not the NixOS module system; `nix flake check` evaluates the modules with the real one.
{ module                 # path of the module file
, name                   # "lockstep-agent" or "lockstep-hub"
, settings ? { }         # what a user writes under services.<name>
, moreSettings ? [ ]     # what further user modules write there (merged by option type, as the module system does)
, hostConfig ? { }       # other config the module reads (networking.hostName, ...)
, osConfig ? null        # Home Manager as a NixOS / nix-darwin module passes the system's config
, isDarwin ? false
}:
let
  l = import ../lib.nix;
  isOption = v: builtins.isAttrs v && (v._type or null) == "option";
  mkType = typeName: extra: { _type = "type"; name = typeName; } // extra;
  upper = [ "A" "B" "C" "D" "E" "F" "G" "H" "I" "J" "K" "L" "M" "N" "O" "P" "Q" "R" "S" "T" "U" "V" "W" "X" "Y" "Z" ];
  lower = [ "a" "b" "c" "d" "e" "f" "g" "h" "i" "j" "k" "l" "m" "n" "o" "p" "q" "r" "s" "t" "u" "v" "w" "x" "y" "z" ];

  lib = rec {
    mkOption = attrs: attrs // { _type = "option"; };
    mkEnableOption = what: mkOption { type = types.bool; default = false; description = "Whether to enable ${what}."; };
    literalExpression = text: { _type = "literalExpression"; inherit text; };
    types = {
      bool = mkType "bool" { };
      str = mkType "str" { };
      int = mkType "int" { };
      attrs = mkType "attrs" { };
      json = mkType "json" { };
      package = mkType "package" { };
      port = mkType "port" { };
      enum = values: mkType "enum" { inherit values; };
      listOf = elem: mkType "listOf" { inherit elem; };
      nullOr = elem: mkType "nullOr" { inherit elem; };
      submodule = m: mkType "submodule" { inherit (m) options; };
      strMatching = pattern: mkType "strMatching" { inherit pattern; };
      ints = {
        between = lo: hi: mkType "intBetween" { inherit lo hi; };
        unsigned = mkType "unsigned" { };
      };
    };
    mkIf = cond: content: { _type = "if"; inherit cond content; };
    mkMerge = contents: { _type = "merge"; inherit contents; };
    mkDefault = v: v;
    optional = c: x: if c then [ x ] else [ ];
    optionals = c: xs: if c then xs else [ ];
    # Home Manager's lib.hm: activation entries are ordered by a DAG; the harness keeps the data.
    hm.dag.entryAfter = after: data: { inherit after data; };
    optionalAttrs = c: a: if c then a else { };
    concatStringsSep = builtins.concatStringsSep;
    concatMapStrings = f: xs: builtins.concatStringsSep "" (map f xs);
    filterAttrs = pred: attrs: builtins.listToAttrs (builtins.filter (kv: pred kv.name kv.value) (map (n: { name = n; value = attrs.${n}; }) (builtins.attrNames attrs)));
    mapAttrsToList = f: attrs: map (n: f n attrs.${n}) (builtins.attrNames attrs);
    hasPrefix = p: s: builtins.substring 0 (builtins.stringLength p) s == p;
    removePrefix = p: s: if hasPrefix p s then builtins.substring (builtins.stringLength p) (-1) s else s;
    makeBinPath = ps: builtins.concatStringsSep ":" (map (p: "${p}/bin") ps);
    toLower = builtins.replaceStrings upper lower;
    # Like nixpkgs: safe strings stay unquoted.
    escapeShellArg = s: if builtins.match "[[:alnum:],._+:@%/-]+" s != null then s else "'" + builtins.replaceStrings [ "'" ] [ "'\\''" ] s + "'";
  };

  store = n: "/nix/store/00000000000000000000000000000000-${n}";
  pkgs = {
    lockstep = store "lockstep-0.1.0";
    git = store "git";
    openssh = store "openssh";
    nix = store "nix";
    home-manager = store "home-manager";
    writeText = fileName: text: { _type = "file"; name = fileName; inherit text; };
    # pkgs.formats.json: its type merges definitions deeply (checked below); generate writes JSON.
    formats.json = { }: { type = lib.types.json; generate = fileName: value: pkgs.writeText fileName (builtins.toJSON value); };
    stdenv.hostPlatform.isDarwin = isDarwin;
  };

  # Does `v` fit type `t`? Returns v or throws, so a wrong default or setting fails the evaluation.
  checked = path: t: v:
    let
      ok =
        if t.name == "bool" then builtins.isBool v
        else if t.name == "str" then builtins.isString v
        else if t.name == "int" then builtins.isInt v
        else if t.name == "attrs" then builtins.isAttrs v
        else if t.name == "submodule" then builtins.isAttrs v || (builtins.isList v && builtins.all builtins.isAttrs v)
        else if t.name == "json" then isJson v
        else if t.name == "package" then builtins.isString v || builtins.isAttrs v
        else if t.name == "port" then builtins.isInt v && v >= 0 && v <= 65535
        else if t.name == "unsigned" then builtins.isInt v && v >= 0
        else if t.name == "intBetween" then builtins.isInt v && v >= t.lo && v <= t.hi
        else if t.name == "enum" then builtins.elem v t.values
        else if t.name == "strMatching" then builtins.isString v && builtins.match t.pattern v != null
        else if t.name == "nullOr" then v == null || (checked path t.elem v == v)
        else if t.name == "listOf" then builtins.isList v && builtins.all (e: checked path t.elem e == e) v
        else throw "harness: unknown type ${t.name}";
    in
    if ok then v else throw "option ${path}: value ${builtins.toJSON v} is not a ${t.name}";

  isJson = v: !(builtins.isFunction v) && (if builtins.isAttrs v then builtins.all isJson (builtins.attrValues v) else if builtins.isList v then builtins.all isJson v else true);

  # Option tree + the user modules' definitions -> config values (defaults filled, submodule
  # defaults too, types checked). A setting that names no option is an error, like in the module system.
  resolveOptions = path: opts: sets:
    let unknown = builtins.filter (k: !(opts ? ${k})) (builtins.concatMap builtins.attrNames sets); in
    if unknown != [ ] then throw "harness: ${path} has no option(s) ${builtins.concatStringsSep ", " unknown}"
    else builtins.mapAttrs
      (n: o:
        let
          p = "${path}.${n}";
          defs = map (s: s.${n}) (builtins.filter (s: s ? ${n}) sets);
        in
        if isOption o then
          let v = if defs != [ ] then mergeDefinitions p o.type defs else o.default or (throw "option ${p} has no default and is not set"); in
          withSubmoduleDefaults p o.type (checked p o.type v)
        else resolveOptions p o defs)
      opts;

  # Several modules defining one option, merged the way its type does in nixpkgs' lib/types.nix:
  # lists concatenate, `attrs` merges shallowly (the last wins per top-level key), the JSON format
  # type merges attribute sets deeply, anything else must be defined once or equally.
  mergeDefinitions = path: t: defs:
    if builtins.length defs == 1 then builtins.head defs
    else if t.name == "listOf" then builtins.concatLists defs
    else if t.name == "attrs" then builtins.foldl' (a: b: a // b) { } defs
    else if t.name == "json" then builtins.foldl' (mergeJson path) (builtins.head defs) (builtins.tail defs)
    else if t.name == "submodule" then defs # resolved by withSubmoduleDefaults below, one level at a time
    else if builtins.all (d: d == builtins.head defs) defs then builtins.head defs
    else throw "option ${path} has conflicting definitions: ${builtins.toJSON defs}";
  mergeJson = path: a: b:
    if builtins.isAttrs a && builtins.isAttrs b then
      a // builtins.mapAttrs (n: bv: if a ? ${n} then mergeJson "${path}.${n}" a.${n} bv else bv) b
    else if builtins.isList a && builtins.isList b then a ++ b
    else if a == b then a
    else throw "option ${path} has conflicting definitions: ${builtins.toJSON a} and ${builtins.toJSON b}";
  withSubmoduleDefaults = p: t: v:
    if t.name == "nullOr" && v != null then withSubmoduleDefaults p t.elem v
    else if t.name == "submodule" then resolveOptions p t.options (if builtins.isList v then v else [ v ])
    else v;

  # mkIf / mkMerge -> plain values; lists concatenate and attribute sets merge, as in the module system.
  resolve = v:
    if builtins.isAttrs v && (v._type or null) == "if" then (if v.cond then resolve v.content else { })
    else if builtins.isAttrs v && (v._type or null) == "merge" then builtins.foldl' mergeDeep { } (map resolve v.contents)
    else if builtins.isAttrs v && !(v ? _type) then builtins.mapAttrs (_: resolve) (lib.filterAttrs (_: x: !(isFalseIf x)) v)
    else v;
  # `attr = mkIf false ...;` defines nothing, so the attribute is absent.
  isFalseIf = x: builtins.isAttrs x && (x._type or null) == "if" && !x.cond;
  mergeDeep = a: b: a // builtins.mapAttrs
    (n: bv:
      if !(a ? ${n}) then bv
      else if builtins.isList bv && builtins.isList a.${n} then a.${n} ++ bv
      else if builtins.isAttrs bv && builtins.isAttrs a.${n} then mergeDeep a.${n} bv
      else throw "harness: conflicting definitions of ${n}")
    b;

  baseConfig = l.recursiveMerge
    {
      networking.hostName = "alpha";
      nix.package = store "nix";
      systemd.package = store "systemd";
      system.build.nixos-rebuild = store "nixos-rebuild";
      home = { username = "alice"; homeDirectory = "/home/alice"; profileDirectory = "/home/alice/.nix-profile"; };
      xdg = { configHome = "/home/alice/.config"; stateHome = "/home/alice/.local/state"; };
    }
    hostConfig;

  evaluated = import module ({ inherit lib pkgs config; } // (if osConfig == null then { } else { inherit osConfig; }));
  options = evaluated.options.services.${name};
  cfg = resolveOptions "services.${name}" options ([ settings ] ++ moreSettings);
  config = baseConfig // { services.${name} = cfg; };

  # Option names (dotted) with their type names, for checking the documented interface.
  optionList = path: opts: builtins.concatLists (map
    (n:
      let o = opts.${n}; p = if path == "" then n else "${path}.${n}"; in
      if isOption o then [{ name = p; type = o.type.name; elem = (o.type.elem or { name = null; }).name; hasDescription = (o.description or "") != ""; }]
      else optionList p o)
    (builtins.attrNames opts));
in
{
  options = optionList "" options;
  inherit cfg;
  config = resolve evaluated.config;
}
