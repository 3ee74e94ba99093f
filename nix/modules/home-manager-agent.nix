# services.lockstep-agent for Home Manager: the agent as a systemd user service (Linux) or a launchd
# agent (macOS), switching with `home-manager switch`; optionally the nightly self-update as a
# user timer / calendar job. No root anywhere: a Home Manager switch only touches the user's profile.
{ config, lib, pkgs, ... }@args:
let
  cfg = config.services.lockstep-agent;
  lockstep = import ../lib.nix;
  isDarwin = pkgs.stdenv.hostPlatform.isDarwin;
  # Home Manager as a NixOS / nix-darwin module passes the system's config as `osConfig`;
  # standalone Home Manager cannot know the machine's host name.
  osConfig = args.osConfig or null;
  osHostName = if osConfig == null then null else osConfig.networking.hostName or null;
  # `<user>-<hostname>`: the same user on two machines must not share one MQTT identity.
  defaultHostName = if osHostName == null || osHostName == "" then "" else lib.toLower "${config.home.username}-${osHostName}";
  hostNameHint =
    if osHostName == null || osHostName == "" then " Home Manager cannot see this machine's host name here (standalone, or no networking.hostName): set services.lockstep-agent.hostName, e.g. \"${lib.toLower config.home.username}-laptop\"."
    else " Set services.lockstep-agent.hostName, e.g. \"${lib.toLower config.home.username}-laptop\".";
  json = pkgs.formats.json { };
  # macOS keeps per-user logs in ~/Library/Logs; launchd does not create the directory.
  logDir = if isDarwin then "${config.home.homeDirectory}/Library/Logs/lockstep" else null;
  stateDir = "${config.xdg.stateHome}/lockstep-agent";
  agentConfigFile = "${config.xdg.configHome}/lockstep/agent.json";
  selfUpdateConfigFile = "${config.xdg.configHome}/lockstep/self-update.json";
  # selfCheck: the agent compares itself with the installed one (after a switch it restarts into
  # it); settings may override it.
  agentJson = json.generate "lockstep-agent.json" (lockstep.recursiveMerge { selfCheck.path = stableBin; } (lockstep.agentConfig { inherit cfg stateDir; kind = cfg.profile; }));
  selfUpdateJson = json.generate "lockstep-self-update.json" (lockstep.selfUpdateConfig { inherit cfg stateDir; kind = cfg.profile; scheduler = if isDarwin then "launchd" else "systemd-user"; });
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
    inherit defaultHostName;
    defaultCheckoutDir = "${config.xdg.stateHome}/lockstep-agent/checkout";
    # Where Home Manager keeps its generations (the agent's default for the home-manager profile).
    defaultSystemProfile = "${config.home.homeDirectory}/.local/state/nix/profiles/home-manager";
    platform = "Home Manager";
  };

  config = lib.mkMerge [
    (lib.mkIf (cfg.enable || cfg.selfUpdate.enable) {
      assertions = [
        { assertion = lockstep.isValidHostId cfg.hostName; message = lockstep.hostIdMessage { inherit (cfg) hostName; suggestion = hostNameHint; }; }
        { assertion = builtins.all (p: !lockstep.isStorePath p && lockstep.isAbsolutePath p) secretFiles; message = "services.lockstep-agent: credentialsFile and sshKeyFile must be absolute paths outside the Nix store."; }
      ];
      warnings = lockstep.agentWarnings cfg;
      home.packages = [ cfg.package ];
    })
    (lib.mkIf ((cfg.enable || cfg.selfUpdate.enable) && isDarwin) {
      home.activation.lockstepLogDir = lib.hm.dag.entryAfter [ "writeBoundary" ] ''
        run mkdir -p ${lib.escapeShellArg logDir}
      '';
    })

    (lib.mkIf cfg.enable {
      assertions = [{ assertion = cfg.brokerUrl != null; message = "services.lockstep-agent.brokerUrl must be set when enable = true."; }];
      xdg.configFile."lockstep/agent.json".source = agentJson;
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
          StandardOutPath = "${logDir}/agent.log";
          StandardErrorPath = "${logDir}/agent.log";
        };
      };
    })

    (lib.mkIf cfg.selfUpdate.enable {
      xdg.configFile."lockstep/self-update.json".source = selfUpdateJson;
    })
    (lib.mkIf (cfg.selfUpdate.enable && !isDarwin) {
      systemd.user.services.lockstep-self-update = {
        Unit = { Description = "Lockstep nightly self-update (Home Manager)"; X-RestartIfChanged = false; };
        Service = {
          Type = "oneshot";
          ExecStart = "${stableBin} self-update --config ${selfUpdateConfigFile}";
          Environment = [ "PATH=${toolPath}:/run/current-system/sw/bin:/usr/bin:/bin" ];
          SuccessExitStatus = "4";
          # Killed while its switch awaited the hub's confirmation: started again, it finishes that run.
          Restart = "on-abnormal";
          RestartSec = 5;
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
          StandardOutPath = "${logDir}/self-update.log";
          StandardErrorPath = "${logDir}/self-update.log";
        };
      };
    })
  ];
}
