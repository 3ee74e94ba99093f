# Pure helpers shared by the Lockstep modules. Builtins only (no nixpkgs), so the unit tests can
# evaluate them with `nix-instantiate --eval --strict` on a machine without nixpkgs.
rec {
  # Host ids end up in MQTT topics: same rule as protocol/topics.ts HOST_ID_PATTERN.
  isValidHostId = s: builtins.match "[a-z0-9][a-z0-9_-]{0,62}" s != null;

  # Secrets must never be copied into the world-readable store.
  isStorePath = p: p == "/nix/store" || builtins.substring 0 11 p == "/nix/store/";
  isAbsolutePath = p: builtins.substring 0 1 p == "/";

  # Drop attributes whose value is null, so optional fields are absent from the JSON.
  dropNulls = attrs: builtins.removeAttrs attrs (builtins.filter (n: attrs.${n} == null) (builtins.attrNames attrs));

  # Merge `extra` over `base`, descending into attribute sets (like lib.recursiveUpdate).
  recursiveMerge = base: extra:
    base // builtins.mapAttrs
      (name: value:
        if builtins.isAttrs value && builtins.isAttrs (base.${name} or null)
        then recursiveMerge base.${name} value
        else value)
      extra;

  hexDigits = { "0" = 0; "1" = 1; "2" = 2; "3" = 3; "4" = 4; "5" = 5; "6" = 6; "7" = 7; "8" = 8; "9" = 9; a = 10; b = 11; c = 12; d = 13; e = 14; f = 15; };
  chars = s: builtins.genList (i: builtins.substring i 1 s) (builtins.stringLength s);
  mod = a: b: a - (a / b) * b;
  pad2 = n: if n < 10 then "0${toString n}" else toString n;

  # A stable offset in [0, spread) minutes derived from the host name, so a fleet's hosts do not
  # all update (and hit the binary cache and the git server) in the same minute, yet each host
  # runs at the same time every night.
  hostOffsetMinutes = host: spread:
    if spread <= 0 then 0
    else mod (builtins.foldl' (acc: c: acc * 16 + hexDigits.${c}) 0 (chars (builtins.substring 0 7 (builtins.hashString "sha256" host)))) spread;

  # systemd OnCalendar for "HH:MM" on the given weekdays ([] = every day), shifted by the host's
  # offset. The shift wraps at midnight without moving the weekday (a run at 23:50 + 20 min runs
  # at 00:10 of the same listed day).
  onCalendar = { time, days ? [ ], host, spreadMinutes ? 0 }:
    let
      m = builtins.match "([01][0-9]|2[0-3]):([0-5][0-9])" time;
      start = if m == null then throw "lockstep: selfUpdate.time must be HH:MM, got \"${time}\"" else toInt (builtins.head m) * 60 + toInt (builtins.elemAt m 1);
      total = mod (start + hostOffsetMinutes host spreadMinutes) 1440;
      dayNames = { mon = "Mon"; tue = "Tue"; wed = "Wed"; thu = "Thu"; fri = "Fri"; sat = "Sat"; sun = "Sun"; };
      dayPart = if days == [ ] then "" else builtins.concatStringsSep "," (map (d: dayNames.${d}) days) + " ";
    in "${dayPart}*-*-* ${pad2 (total / 60)}:${pad2 (mod total 60)}:00";

  # "08" -> 8 (builtins.fromJSON rejects leading zeros).
  toInt = s: builtins.foldl' (acc: c: acc * 10 + hexDigits.${c}) 0 (chars s);

  # The agent's JSON config (agent/config.ts AgentConfigSchema) from the module options.
  # `cfg` is the evaluated services.lockstep-agent; `kind` the OS kind; `stateDir` where the
  # service keeps its state.
  agentConfig = { cfg, kind, stateDir }:
    recursiveMerge
      (dropNulls {
        host = cfg.hostName;
        broker = dropNulls {
          url = cfg.brokerUrl;
          username = cfg.brokerUsername;
          passwordFile = cfg.credentialsFile;
          caFile = cfg.brokerCaFile;
        };
        topicPrefix = cfg.topicPrefix;
        repo = dropNulls {
          inherit (cfg.repo) url branch checkoutDir;
          sshKeyFile = cfg.sshKeyFile;
        };
        inherit stateDir;
        os = dropNulls {
          inherit kind;
          flakeAttr = cfg.flakeAttr;
          profile = cfg.systemProfile;
        };
        inherit (cfg) testsDir tags priority canary hold logLevel;
        location = cfg.location;
        maintenanceWindow = cfg.maintenanceWindow;
      })
      (withUserSettings cfg);

  # What the user adds to a generated config: `settings` (deep-merged across modules by its JSON
  # type), then the deprecated `extraConfig` over it.
  withUserSettings = opts: recursiveMerge opts.settings opts.extraConfig;

  # Warnings shared by the agent modules.
  agentWarnings = cfg:
    (if cfg.extraConfig != { } then [ "services.lockstep-agent.extraConfig is deprecated: use services.lockstep-agent.settings (it merges deeply across modules)." ] else [ ])
    ++ (if cfg.selfUpdate.extraConfig != { } then [ "services.lockstep-agent.selfUpdate.extraConfig is deprecated: use services.lockstep-agent.selfUpdate.settings." ] else [ ])
    ++ (if cfg.selfUpdate.enable && cfg.selfUpdate.persistent && cfg.selfUpdate.health.minUptimeSeconds > 0 then [ "services.lockstep-agent.selfUpdate: with persistent = true the missed run is caught up right after boot, and health.minUptimeSeconds = ${toString cfg.selfUpdate.health.minUptimeSeconds} skips it; set it to 0 or persistent = false." ] else [ ]);

  # Host-id assertion message, with a hint when the default came from a host name with capitals.
  hostIdMessage = { hostName, suggestion ? "" }:
    let lower = toLower hostName; in
    "services.lockstep-agent.hostName \"${hostName}\" is not a valid host id: use 1-63 characters of a-z, 0-9, '-' and '_'."
    + (if lower != hostName && isValidHostId lower then " Host ids are lowercase: set services.lockstep-agent.hostName = \"${lower}\" (and flakeAttr = \"${hostName}\" if your configuration is named that way)." else suggestion);

  upperChars = chars "ABCDEFGHIJKLMNOPQRSTUVWXYZ";
  lowerChars = chars "abcdefghijklmnopqrstuvwxyz";
  toLower = builtins.replaceStrings upperChars lowerChars;

  # The self-update's JSON config (agent/self-update/config.ts SelfUpdateConfig).
  # `scheduler`: "systemd" (status asks systemctl for the timer's next run), "systemd-user" (the timer
  # is a user unit: `systemctl --user`), or "launchd" (no next-run query, no systemd health checks).
  selfUpdateConfig = { cfg, kind, stateDir, timerUnit ? "lockstep-self-update.timer", scheduler ? "systemd" }:
    let su = cfg.selfUpdate; in
    recursiveMerge
      (dropNulls {
        host = cfg.hostName;
        inherit stateDir;
        checkoutDir = cfg.repo.checkoutDir;
        repoUrl = cfg.repo.url;
        sshKeyFile = cfg.sshKeyFile;
        branch = cfg.repo.branch;
        inherit (su) mode inputs commitLock;
        profile = kind;
        attribute = su.attribute;
        systemProfile = cfg.systemProfile;
        health = {
          disk = { enabled = su.health.maxDiskUsedPercent != null; path = su.health.diskPath; maxUsedPercent = if su.health.maxDiskUsedPercent == null then 100 else su.health.maxDiskUsedPercent; };
          systemState = { enabled = su.health.systemStates != [ ]; accepted = if su.health.systemStates == [ ] then [ "running" ] else su.health.systemStates; };
          # systemd only: which units failed (reported) and whether a required one is among them.
          failedUnits = { enabled = scheduler != "launchd"; required = su.health.requiredUnits; }
            // (if scheduler == "systemd-user" then { argv = [ "systemctl" "--user" "list-units" "--state=failed" "--plain" "--no-legend" "--no-pager" ]; } else { });
          uptime = { enabled = su.health.minUptimeSeconds > 0; minSeconds = su.health.minUptimeSeconds; };
        };
        reboot = dropNulls {
          enabled = su.reboot.enable;
          argv = su.reboot.command;
          window = su.reboot.window;
        };
        broker =
          if su.reportToHub && cfg.brokerUrl != null then
            dropNulls { url = cfg.brokerUrl; username = cfg.brokerUsername; passwordFile = cfg.credentialsFile; caFile = cfg.brokerCaFile; }
          else null;
        topicPrefix = cfg.topicPrefix;
        logLevel = cfg.logLevel;
      }
      // {
        # null: launchd cannot be asked for a calendar job's next run.
        nextRunArgv = if scheduler == "launchd" then null
          else [ "systemctl" ] ++ (if scheduler == "systemd-user" then [ "--user" ] else [ ]) ++ [ "show" timerUnit "-p" "NextElapseUSecRealtime" ];
      })
      (withUserSettings su);

  # The hub's JSON config (hub/config.ts HubSettingsSchema, with broker/config.ts under "broker").
  # Secrets are referenced where systemd's LoadCredential puts them (`credentialsDir`), so the
  # hub's unprivileged user can read them without the files being world-readable.
  hubConfig = { cfg, credentialsDir }:
    let
      tlsOn = cfg.tls.certFile != null;
      github = if cfg.github.repo == null then null else dropNulls {
        inherit (cfg.github) owner repo baseBranch;
        tokenFile = if cfg.github.tokenFile == null then null else "${credentialsDir}/github-token";
        webhookSecretFile = if cfg.github.webhookSecretFile == null then null else "${credentialsDir}/github-webhook-secret";
      };
    in
    recursiveMerge
      (dropNulls {
        inherit (cfg) dataDir logLevel;
        http = { inherit (cfg.listeners.http) host port; };
        publicUrl = cfg.publicUrl;
        inherit github;
        broker = dropNulls {
          inherit (cfg) topicPrefix;
          credentialsFile = cfg.credentialsFile;
          listeners = dropNulls {
            tcp = { inherit (cfg.listeners.mqtt) host port; };
            tls = if tlsOn then dropNulls {
              inherit (cfg.listeners.mqttTls) host port;
              certFile = "${credentialsDir}/tls-cert";
              keyFile = "${credentialsDir}/tls-key";
              caFile = if cfg.tls.caFile == null then null else "${credentialsDir}/tls-ca";
            } else null;
          };
          external = if cfg.externalBroker == null then null else {
            inherit (cfg.externalBroker) url username;
            passwordFile = "${credentialsDir}/external-broker-password";
          };
        };
      })
      (withUserSettings cfg);
}
