# services.lockstep-agent for Home Manager: the agent as a systemd user service (Linux) or a launchd
# agent (macOS), switching with `home-manager switch`; optionally the nightly self-update as a
# user timer / calendar job. No root anywhere: a Home Manager switch only touches the user's profile.
{ config, lib, pkgs, ... }:
let
  cfg = config.services.lockstep-agent;
  lockstep = import ../lib.nix;
  isDarwin = pkgs.stdenv.hostPlatform.isDarwin;
  stateDir = "${config.xdg.stateHome}/lockstep-agent";
  agentConfigFile = "${config.xdg.configHome}/lockstep/agent.json";
  selfUpdateConfigFile = "${config.xdg.configHome}/lockstep/self-update.json";
  # selfCheck: the agent compares itself with the installed one (after a switch it restarts into
  # it); extraConfig may override it.
  agentJson = builtins.toJSON (lockstep.recursiveMerge { selfCheck.path = stableBin; } (lockstep.agentConfig { inherit cfg stateDir; kind = cfg.profile; }));
  selfUpdateJson = builtins.toJSON (lockstep.selfUpdateConfig { inherit cfg stateDir; kind = cfg.profile; userTimer = true; });
  secretFiles = builtins.filter (p: p != null) [ cfg.credentialsFile cfg.sshKeyFile ];
  # The user's profile first: after a switch the stable path is the new agent (see nix-darwin module).
  stableBin = "${config.home.profileDirectory}/bin/lockstep-agent";
  toolPath = lib.makeBinPath [ pkgs.git pkgs.openssh pkgs.nix pkgs.home-manager ];
  offset = lockstep.hostOffsetMinutes cfg.hostName cfg.selfUpdate.spreadMinutes;
  timeMatch = builtins.match "([0-9]{2}):([0-9]{2})" cfg.selfUpdate.time;
  startMinute = lockstep.mod (lockstep.toInt (builtins.head timeMatch) * 60 + lockstep.toInt (builtins.elemAt timeMatch 1) + offset) 1440;
  weekdayNumbers = { sun = 0; mon = 1; tue = 2; wed = 3; thu = 4; fri = 5; sat = 6; };
  calendar = { Hour = startMinute / 60; Minute = lockstep.mod startMinute 60; };
in
{
  options.services.lockstep-agent = import ./agent-options.nix {
    inherit lib pkgs;
    kinds = [ "home-manager" "generic" ];
    defaultHostName = config.home.username;
    defaultCheckoutDir = "${config.xdg.stateHome}/lockstep-agent/checkout";
    # Where Home Manager keeps its generations (the agent's default for the home-manager profile).
    defaultSystemProfile = "${config.home.homeDirectory}/.local/state/nix/profiles/home-manager";
    platform = "Home Manager";
  };

  config = lib.mkMerge [
    (lib.mkIf (cfg.enable || cfg.selfUpdate.enable) {
      assertions = [
        { assertion = lockstep.isValidHostId cfg.hostName; message = "services.lockstep-agent.hostName \"${cfg.hostName}\" is not a valid host id: use 1-63 characters of a-z, 0-9, '-' and '_' (set it explicitly, e.g. \"alice-laptop\")."; }
        { assertion = builtins.all (p: !lockstep.isStorePath p && lockstep.isAbsolutePath p) secretFiles; message = "services.lockstep-agent: credentialsFile and sshKeyFile must be absolute paths outside the Nix store."; }
      ];
      home.packages = [ cfg.package ];
    })

    (lib.mkIf cfg.enable {
      assertions = [{ assertion = cfg.brokerUrl != null; message = "services.lockstep-agent.brokerUrl must be set when enable = true."; }];
      xdg.configFile."lockstep/agent.json".text = agentJson;
    })
    (lib.mkIf (cfg.enable && !isDarwin) {
      systemd.user.services.lockstep-agent = {
        Unit = {
          Description = "Lockstep agent (fleet updates over MQTT)";
          After = [ "network-online.target" ];
          # The agent runs the switch that changes this unit: sd-switch must not restart it then.
          X-RestartIfChanged = false;
        };
        Service = {
          ExecStart = "${stableBin} run --config ${agentConfigFile}";
          Environment = [ "PATH=${toolPath}:/run/current-system/sw/bin:/usr/bin:/bin" ];
          Restart = "on-failure";
          RestartSec = 5;
          KillMode = "process";
          UMask = "0077";
        };
        Install.WantedBy = [ "default.target" ];
      };
    })
    (lib.mkIf (cfg.enable && isDarwin) {
      launchd.agents.lockstep-agent = {
        enable = true;
        config = {
          ProgramArguments = [ stableBin "run" "--config" agentConfigFile ];
          RunAtLoad = true;
          KeepAlive = true;
          ThrottleInterval = 5;
          EnvironmentVariables.PATH = "${toolPath}:/usr/bin:/bin";
          StandardOutPath = "${stateDir}/agent.log";
          StandardErrorPath = "${stateDir}/agent.log";
        };
      };
    })

    (lib.mkIf cfg.selfUpdate.enable {
      xdg.configFile."lockstep/self-update.json".text = selfUpdateJson;
    })
    (lib.mkIf (cfg.selfUpdate.enable && !isDarwin) {
      systemd.user.services.lockstep-self-update = {
        Unit = { Description = "Lockstep nightly self-update (Home Manager)"; X-RestartIfChanged = false; };
        Service = {
          Type = "oneshot";
          ExecStart = "${stableBin} self-update --config ${selfUpdateConfigFile}";
          Environment = [ "PATH=${toolPath}:/run/current-system/sw/bin:/usr/bin:/bin" ];
          SuccessExitStatus = "4";
        };
      };
      systemd.user.timers.lockstep-self-update = {
        Unit.Description = "Nightly Lockstep self-update (Home Manager)";
        Timer = {
          OnCalendar = lockstep.onCalendar { inherit (cfg.selfUpdate) time days spreadMinutes; host = cfg.hostName; };
          Persistent = cfg.selfUpdate.persistent;
        } // lib.optionalAttrs (cfg.selfUpdate.randomizedDelaySec > 0) { RandomizedDelaySec = cfg.selfUpdate.randomizedDelaySec; };
        Install.WantedBy = [ "timers.target" ];
      };
    })
    (lib.mkIf (cfg.selfUpdate.enable && isDarwin) {
      launchd.agents.lockstep-self-update = {
        enable = true;
        config = {
          ProgramArguments = [ stableBin "self-update" "--config" selfUpdateConfigFile ];
          StartCalendarInterval =
            if cfg.selfUpdate.days == [ ] then [ calendar ]
            else map (d: calendar // { Weekday = weekdayNumbers.${d}; }) cfg.selfUpdate.days;
          EnvironmentVariables.PATH = "${toolPath}:/usr/bin:/bin";
          StandardOutPath = "${stateDir}/self-update.log";
          StandardErrorPath = "${stateDir}/self-update.log";
        };
      };
    })
  ];
}
