# services.lockstep-agent for nix-darwin: a launchd daemon, plus an optional self-update daemon on
# a calendar schedule.
#
# The macOS problem: darwin-rebuild reloads a launchd daemon only when its plist changes, and a
# reload in the middle of a switch would kill the agent that runs it. So the plist points at the
# stable path /run/current-system/sw/bin/lockstep-agent (the plist does not change between
# versions, nothing is reloaded mid-switch), KeepAlive is on, and the agent exits after a
# successful switch: launchd starts it again through the stable path, which now is the new
# version. The Agent compartment compares the running version with the one on disk
# (`/run/current-system/sw/bin/lockstep-agent version`) and shows "old agent still running" with a
# restart action if they differ.
{ config, lib, pkgs, ... }:
let
  cfg = config.services.lockstep-agent;
  lockstep = import ../lib.nix;
  stateDir = "/var/lib/lockstep-agent";
  logDir = "/var/log/lockstep";
  stableBin = "/run/current-system/sw/bin/lockstep-agent";
  json = pkgs.formats.json { };
  # selfCheck: the agent compares itself with the installed one (after a switch it restarts into
  # it, exit 75); settings may override it.
  agentJson = json.generate "lockstep-agent.json" (lockstep.recursiveMerge { selfCheck.path = stableBin; } (lockstep.agentConfig { inherit cfg stateDir; kind = cfg.profile; }));
  selfUpdateJson = json.generate "lockstep-self-update.json" (lockstep.selfUpdateConfig { inherit cfg stateDir; kind = cfg.profile; scheduler = "launchd"; });
  logFiles = lib.optional cfg.enable "${logDir}/agent.log" ++ lib.optional cfg.selfUpdate.enable "${logDir}/self-update.log";
  # newsyslog(8), which macOS runs periodically from launchd, rotates the launchd logs: at 10 MiB, keeping 5
  # gzipped. N: there is no pid file to signal. launchd opens the file each time it starts the job,
  # so the nightly self-update writes a fresh one at once; the long-running agent keeps writing
  # the renamed file until it next restarts (it does after every switch).
  newsyslogConf = lib.concatMapStrings (f: "${f}\t640\t5\t10240\t*\tNZ\n") logFiles;
  secretFiles = builtins.filter (p: p != null) [ cfg.credentialsFile cfg.sshKeyFile ];
  # launchd gets no login PATH: the system profile first, so darwin-rebuild and the system's nix are found.
  path = lib.concatStringsSep ":" [ "/run/current-system/sw/bin" "/nix/var/nix/profiles/default/bin" "/usr/bin" "/bin" "/usr/sbin" "/sbin" ];
  weekdayNumbers = { sun = 0; mon = 1; tue = 2; wed = 3; thu = 4; fri = 5; sat = 6; };
  offset = lockstep.hostOffsetMinutes cfg.hostName cfg.selfUpdate.spreadMinutes;
  timeMatch = builtins.match "([0-9]{2}):([0-9]{2})" cfg.selfUpdate.time;
  startMinute = lockstep.mod (lockstep.toInt (builtins.head timeMatch) * 60 + lockstep.toInt (builtins.elemAt timeMatch 1) + offset) 1440;
  calendar = { Hour = startMinute / 60; Minute = lockstep.mod startMinute 60; };
in
{
  options.services.lockstep-agent = import ./agent-options.nix {
    inherit lib pkgs;
    kinds = [ "darwin" "generic" ];
    # nix-darwin's networking.hostName may be null: then the host-id assertion asks for hostName.
    defaultHostName = if config.networking.hostName == null then "" else lib.toLower config.networking.hostName;
    defaultCheckoutDir = "${stateDir}/checkout";
    defaultSystemProfile = null;
    platform = "nix-darwin";
  };

  config = lib.mkMerge [
    (lib.mkIf (cfg.enable || cfg.selfUpdate.enable) {
      assertions = [
        { assertion = lockstep.isValidHostId cfg.hostName; message = lockstep.hostIdMessage { inherit (cfg) hostName; suggestion = " Set services.lockstep-agent.hostName (or networking.hostName)."; }; }
        { assertion = builtins.all (p: !lockstep.isStorePath p && lockstep.isAbsolutePath p) secretFiles; message = "services.lockstep-agent: credentialsFile and sshKeyFile must be absolute paths outside the Nix store."; }
      ];
      warnings = lockstep.agentWarnings cfg;
      environment.systemPackages = [ cfg.package ];
      environment.etc."newsyslog.d/lockstep.conf".text = "# logfilename\tmode\tcount\tsize(KiB)\twhen\tflags\n" + newsyslogConf;
      # launchd cannot create directories; the activation does, root-only.
      system.activationScripts.postActivation.text = ''
        mkdir -p ${stateDir} ${logDir}
        chmod 0700 ${stateDir}
      '';
    })

    (lib.mkIf cfg.enable {
      assertions = [{ assertion = cfg.brokerUrl != null; message = "services.lockstep-agent.brokerUrl must be set when enable = true."; }];
      environment.etc."lockstep/agent.json".source = agentJson;
      launchd.daemons.lockstep-agent.serviceConfig = {
        Label = "org.lockstep.agent";
        ProgramArguments = [ stableBin "run" "--config" "/etc/lockstep/agent.json" ];
        RunAtLoad = true;
        # Restart whenever it exits: after a switch the agent exits so the new version starts.
        KeepAlive = true;
        ThrottleInterval = 5;
        EnvironmentVariables.PATH = path;
        StandardOutPath = "${logDir}/agent.log";
        StandardErrorPath = "${logDir}/agent.log";
        Umask = 63; # 0077
      };
    })

    (lib.mkIf cfg.selfUpdate.enable {
      environment.etc."lockstep/self-update.json".source = selfUpdateJson;
      launchd.daemons.lockstep-self-update.serviceConfig = {
        Label = "org.lockstep.self-update";
        ProgramArguments = [ stableBin "self-update" "--config" "/etc/lockstep/self-update.json" ];
        # launchd runs a missed calendar job at wake-up, which is what Persistent= does on systemd.
        StartCalendarInterval =
          if cfg.selfUpdate.days == [ ] then [ calendar ]
          else map (d: calendar // { Weekday = weekdayNumbers.${d}; }) cfg.selfUpdate.days;
        EnvironmentVariables.PATH = path;
        StandardOutPath = "${logDir}/self-update.log";
        StandardErrorPath = "${logDir}/self-update.log";
        Umask = 63;
      };
    })
  ];
}
