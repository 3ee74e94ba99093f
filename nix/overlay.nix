# Adds pkgs.lockstep. The modules default their `package` option to it, so a configuration that
# uses the overlay instead of the flake's nixosModules gets the same package.
final: prev: {
  lockstep = final.callPackage ./package.nix { };
}
