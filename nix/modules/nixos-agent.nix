# services.lockstep-agent for NixOS: the agent daemon and, optionally, the nightly self-update timer.
#
# Privilege model (see docs/nix.md): both run as root. Switching a NixOS system is root's job, and a
# sudo rule for nixos-rebuild would not narrow anything: the flake it builds is code the agent's
# user can change. What is narrowed is what the agent will run (allow-listed operations, validated
# arguments, argv only, never a shell), plus the systemd hardening that cannot break activation.
{ config, lib, pkgs, ... }:
let
  cfg = config.services.lockstep-agent;
  lockstep = import ../lib.nix;
  stateDir = "/var/lib/lockstep-agent";
  agentConfigFile = "/etc/lockstep/agent.json";
  selfUpdateConfigFile = "/etc/lockstep/self-update.json";

  json = pkgs.formats.json { };
  # selfCheck: the agent compares itself with the installed one (after a switch it restarts into
  # it, exit 75); settings may override it.
  agentJson = json.generate "lockstep-agent.json" (lockstep.recursiveMerge { selfCheck.path = "/run/current-system/sw/bin/lockstep-agent"; } (lockstep.agentConfig { inherit cfg stateDir; kind = cfg.profile; }));
  # The boot check counts the agent daemon's start among a healthy boot (settings may override it).
  selfUpdateJson = json.generate "lockstep-self-update.json" (lockstep.recursiveMerge
    { bootCheck.activeUnits = lib.optional cfg.enable "lockstep-agent.service"; }
    (lockstep.selfUpdateConfig { inherit cfg stateDir; kind = cfg.profile; }));

  # git for the checkout, nix for builds, ssh for deploy keys, systemctl/shutdown for health and
  # reboot, nixos-rebuild for the agent's nixos profile.
  toolPath = [ config.nix.package pkgs.git pkgs.openssh config.systemd.package config.system.build.nixos-rebuild ];

  secretFiles = builtins.filter (p: p != null) [ cfg.credentialsFile cfg.sshKeyFile ];

  # Hardening that cannot break a switch. The activation scripts run inside this unit and write
  # /etc, /boot, /var, the bootloader's block device and setuid wrappers, so ProtectSystem,
  # ProtectHome, DeviceAllow/ProtectClock, RestrictSUIDSGID and ProtectKernel* are deliberately off.
  hardening = {
    UMask = "0077";
    PrivateTmp = true;
    LockPersonality = true;
    RestrictRealtime = true;
    RestrictAddressFamilies = [ "AF_UNIX" "AF_INET" "AF_INET6" "AF_NETLINK" ];
    StateDirectory = "lockstep-agent";
    StateDirectoryMode = "0700";
  };
in
{
  options.services.lockstep-agent = import ./agent-options.nix {
    inherit lib pkgs;
    kinds = [ "nixos" "generic" ];
    defaultHostName = config.networking.hostName;
    defaultCheckoutDir = "${stateDir}/checkout";
    defaultSystemProfile = null;
    platform = "NixOS";
  };

  config = lib.mkMerge [
    (lib.mkIf (cfg.enable || cfg.selfUpdate.enable) {
      assertions = [
        { assertion = lockstep.isValidHostId cfg.hostName; message = lockstep.hostIdMessage { inherit (cfg) hostName; }; }
        { assertion = builtins.all (p: !lockstep.isStorePath p) secretFiles; message = "services.lockstep-agent: credentialsFile and sshKeyFile must not be in the Nix store (everyone can read it); use a path like /run/secrets/lockstep-agent (agenix, sops-nix)."; }
        { assertion = builtins.all lockstep.isAbsolutePath secretFiles; message = "services.lockstep-agent: credentialsFile and sshKeyFile must be absolute paths."; }
      ];
      warnings = lockstep.agentWarnings cfg;
      # `lockstep-agent status` and `check-config` for the admin.
      environment.systemPackages = [ cfg.package ];
    })

    (lib.mkIf cfg.enable {
      assertions = [
        { assertion = cfg.brokerUrl != null; message = "services.lockstep-agent.brokerUrl must be set when enable = true (for a host without a hub, enable only selfUpdate)."; }
      ];
      environment.etc."lockstep/agent.json".source = agentJson;

      systemd.services.lockstep-agent = {
        description = "Lockstep agent (fleet updates over MQTT)";
        wantedBy = [ "multi-user.target" ];
        wants = [ "network-online.target" ];
        after = [ "network-online.target" ];
        path = toolPath;
        # The agent runs the switch that changes this unit: restarting it then would kill the
        # switch half-way. It restarts itself once the switch is done (exit 75, Restart=).
        restartIfChanged = false;
        stopIfChanged = false;
        serviceConfig = hardening // {
          ExecStart = "${cfg.package}/bin/lockstep-agent run --config ${agentConfigFile}";
          Restart = "on-failure";
          RestartSec = 5;
          # The switch runs in a detached runner (its own process group) that must outlive an
          # agent restart; only the agent's main process is stopped.
          KillMode = "process";
        };
      };
    })

    (lib.mkIf cfg.selfUpdate.enable {
      environment.etc."lockstep/self-update.json".source = selfUpdateJson;

      systemd.services.lockstep-self-update = {
        description = "Lockstep nightly self-update (health checks, flake update, build, switch, reboot if needed)";
        wants = [ "network-online.target" ];
        after = [ "network-online.target" ];
        path = toolPath;
        # Started by the timer only; a switch it performs must neither start nor stop it.
        restartIfChanged = false;
        stopIfChanged = false;
        unitConfig.X-StopOnRemoval = false;
        serviceConfig = hardening // {
          Type = "oneshot";
          ExecStart = "${cfg.package}/bin/lockstep-agent self-update --config ${selfUpdateConfigFile}";
          # 4: another run held the lock and this one did nothing; not a failure of the unit.
          SuccessExitStatus = "4";
          # A run killed by a signal (OOM, by hand) while its switch awaited the hub's confirmation:
          # started again, it finishes that run (magic rollback). Exit codes never restart it.
          Restart = "on-abnormal";
          RestartSec = 5;
        };
      };

      # Boot rollback: after a reboot the self-update asked for, the new generation must prove healthy
      # within bootConfirmSeconds or the previous one becomes the boot default again (once). Started
      # by a timer after boot, not as part of it: it waits for systemd to report the boot finished.
      systemd.services.lockstep-boot-check = lib.mkIf cfg.selfUpdate.reboot.enable {
        description = "Lockstep boot check (roll back once to the previous generation if the new one is unhealthy)";
        path = toolPath;
        restartIfChanged = false;
        stopIfChanged = false;
        unitConfig.X-StopOnRemoval = false;
        serviceConfig = hardening // {
          Type = "oneshot";
          ExecStart = "${cfg.package}/bin/lockstep-agent boot-check --config ${selfUpdateConfigFile}";
        };
      };
      systemd.timers.lockstep-boot-check = lib.mkIf cfg.selfUpdate.reboot.enable {
        description = "Lockstep boot check, once per boot";
        wantedBy = [ "timers.target" ];
        timerConfig.OnBootSec = "30s";
      };

      systemd.timers.lockstep-self-update = {
        description = "Nightly Lockstep self-update";
        wantedBy = [ "timers.target" ];
        timerConfig = {
          OnCalendar = lockstep.onCalendar { inherit (cfg.selfUpdate) time days spreadMinutes; host = cfg.hostName; };
          Persistent = cfg.selfUpdate.persistent;
        } // lib.optionalAttrs (cfg.selfUpdate.randomizedDelaySec > 0) {
          RandomizedDelaySec = cfg.selfUpdate.randomizedDelaySec;
        };
      };
    })
  ];
}
