{
  description = "Lockstep: keep a NixOS fleet current with its flake.lock (hub + agent, NixOS / nix-darwin / Home Manager modules)";

  inputs.nixpkgs.url = "github:NixOS/nixpkgs/nixos-unstable";

  outputs = { self, nixpkgs }:
    let
      inherit (nixpkgs) lib;
      systems = [ "x86_64-linux" "aarch64-linux" "x86_64-darwin" "aarch64-darwin" ];
      forAllSystems = f: lib.genAttrs systems (system: f nixpkgs.legacyPackages.${system});

      # Each module defaults its `package` to this flake's build for the host's platform, so users
      # need neither the overlay nor to set `package`.
      withPackage = modulePath: option: { pkgs, lib, ... }: {
        imports = [ modulePath ];
        config = lib.setAttrByPath option (lib.mkDefault self.packages.${pkgs.stdenv.hostPlatform.system}.lockstep);
      };

      # A NixOS configuration using both modules; its generated configs are checked by the package's
      # own validators in `checks` (the same zod schemas the agent and hub load at start).
      checkSystem = system: nixpkgs.lib.nixosSystem {
        inherit system;
        modules = [
          self.nixosModules.lockstep-agent
          self.nixosModules.lockstep-hub
          {
            networking.hostName = "check-host";
            boot.loader.grub.enable = false;
            fileSystems."/".device = "/dev/null";
            system.stateVersion = "25.05";
            services.lockstep-agent = {
              enable = true;
              brokerUrl = "mqtt://hub.invalid:1883";
              repo.url = "https://git.invalid/fleet.git";
              tags = [ "check" ];
              maintenanceWindow = { days = [ "sat" ]; start = "02:00"; end = "05:00"; };
              selfUpdate.enable = true;
              selfUpdate.reboot.window = { start = "03:00"; end = "05:00"; timeZone = "Europe/Berlin"; };
              selfUpdate.health.requiredUnits = [ "nix-daemon.socket" ];
              settings.timeouts.switchSeconds = 7200;
            };
            services.lockstep-hub = {
              enable = true;
              openFirewall = true;
              settings.broker.haPrefix = "homeassistant";
            };
          }
        ];
      };
    in
    {
      packages = forAllSystems (pkgs: rec {
        lockstep = pkgs.callPackage ./nix/package.nix { };
        default = lockstep;
      });

      overlays.default = import ./nix/overlay.nix;

      nixosModules = {
        lockstep-agent = withPackage ./nix/modules/nixos-agent.nix [ "services" "lockstep-agent" "package" ];
        lockstep-hub = withPackage ./nix/modules/nixos-hub.nix [ "services" "lockstep-hub" "package" ];
        default = self.nixosModules.lockstep-agent;
      };
      darwinModules = {
        lockstep-agent = withPackage ./nix/modules/darwin-agent.nix [ "services" "lockstep-agent" "package" ];
        default = self.darwinModules.lockstep-agent;
      };
      # Home Manager's flake convention; `nix flake check` knows it.
      homeModules = {
        lockstep-agent = withPackage ./nix/modules/home-manager-agent.nix [ "services" "lockstep-agent" "package" ];
        default = self.homeModules.lockstep-agent;
      };
      # The old name, kept for flakes that use it (nix flake check warns about it as an unknown output).
      homeManagerModules = self.homeModules;

      checks = forAllSystems (pkgs:
        let
          system = pkgs.stdenv.hostPlatform.system;
          lockstep = self.packages.${system}.lockstep;
        in
        { inherit lockstep; }
        // lib.optionalAttrs pkgs.stdenv.hostPlatform.isLinux {
          nixos-modules =
            let cfg = (checkSystem system).config; in
            pkgs.runCommand "lockstep-nixos-modules-check" { } ''
              ${lockstep}/bin/lockstep-agent check-config --config ${cfg.environment.etc."lockstep/agent.json".source}
              ${lockstep}/bin/lockstep-agent status --config ${cfg.environment.etc."lockstep/self-update.json".source}
              mkdir -p $out
              cp ${cfg.systemd.units."lockstep-agent.service".unit}/lockstep-agent.service \
                 ${cfg.systemd.units."lockstep-self-update.timer".unit}/lockstep-self-update.timer \
                 ${cfg.systemd.units."lockstep-hub.service".unit}/lockstep-hub.service $out/
              grep -q '^OnCalendar=\*-\*-\* 0[34]:[0-5][0-9]:00$' $out/lockstep-self-update.timer
              grep -q '^User=lockstep-hub$' $out/lockstep-hub.service
            '';
        });

      devShells = forAllSystems (pkgs: {
        default = pkgs.mkShell { packages = [ pkgs.nodejs_22 pkgs.git pkgs.nix ]; };
      });
    };
}
