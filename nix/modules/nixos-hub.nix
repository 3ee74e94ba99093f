# services.lockstep-hub for NixOS: broker (embedded Aedes or an external one), Node-RED with the
# Lockstep nodes and flows, and the fleet page, in one unprivileged, hardened service.
{ config, lib, pkgs, ... }:
let
  cfg = config.services.lockstep-hub;
  lockstep = import ../lib.nix;
  inherit (lib) mkOption mkEnableOption types literalExpression;
  credentialsDir = "/run/credentials/lockstep-hub.service";
  json = pkgs.formats.json { };
  hubJson = json.generate "lockstep-hub.json" (lockstep.hubConfig { inherit cfg credentialsDir; });

  # Secret files handed to the service by systemd (LoadCredential): they stay root-only on disk
  # and appear read-only under ${credentialsDir} for the hub's user.
  credentials = lib.filterAttrs (_: v: v != null) {
    github-token = cfg.github.tokenFile;
    github-webhook-secret = cfg.github.webhookSecretFile;
    tls-cert = cfg.tls.certFile;
    tls-key = cfg.tls.keyFile;
    tls-ca = cfg.tls.caFile;
    external-broker-password = if cfg.externalBroker == null then null else cfg.externalBroker.passwordFile;
  };
  secretOption = description: mkOption {
    type = types.nullOr types.str;
    default = null;
    description = description + " Absolute path outside the Nix store, readable by root; passed to the hub with systemd LoadCredential.";
  };
  tlsOn = cfg.tls.certFile != null;
  embedded = cfg.externalBroker == null;
  # The listeners the hub runs; a loopback-bound one is on but not reachable from outside.
  listenersOn = [ cfg.listeners.http ]
    ++ lib.optional embedded cfg.listeners.mqtt
    ++ lib.optional (embedded && tlsOn) cfg.listeners.mqttTls;
  isLoopback = host: host == "localhost" || host == "::1" || lib.hasPrefix "127." host;
  ports = map (l: l.port) listenersOn;
  firewallPorts = map (l: l.port) (builtins.filter (l: !isLoopback l.host) listenersOn);
  listener = name: defaultPort: { host ? "0.0.0.0", hostText ? null, hostDescription ? "" }: {
    host = mkOption {
      type = types.str;
      default = host;
      description = "Address the ${name} listener binds to: \"0.0.0.0\" all IPv4 addresses, \"::\" IPv4 and IPv6, \"127.0.0.1\" this host only (not opened by `openFirewall`).${hostDescription}";
    } // lib.optionalAttrs (hostText != null) { defaultText = literalExpression hostText; };
    port = mkOption { type = types.port; default = defaultPort; description = "Port of the ${name} listener."; };
  };
in
{
  options.services.lockstep-hub = {
    enable = mkEnableOption "the Lockstep hub (MQTT broker, Node-RED with the Lockstep flows, fleet page)";
    package = mkOption {
      type = types.package;
      default = pkgs.lockstep;
      defaultText = literalExpression "lockstep.packages.\${system}.lockstep";
      description = "The Lockstep package (provides `lockstep hub`).";
    };
    dataDir = mkOption {
      type = types.str;
      default = "/var/lib/lockstep";
      description = "Broker persistence, credentials, Node-RED user dir. Under /var/lib it is the service's StateDirectory.";
    };
    credentialsFile = mkOption {
      type = types.nullOr types.str;
      default = null;
      description = "The broker's credential store (user names and password hashes, written by `lockstep user add`); null means dataDir/credentials.json. Must not be in the Nix store.";
    };
    topicPrefix = mkOption { type = types.str; default = "lockstep"; description = "MQTT topic prefix, the same on hub and agents."; };
    publicUrl = mkOption { type = types.nullOr types.str; default = null; example = "https://lockstep.example.org"; description = "Base URL of the hub behind a reverse proxy (links in notifications)."; };
    logLevel = mkOption { type = types.enum [ "fatal" "error" "warn" "info" "debug" "trace" ]; default = "info"; description = "Hub log level."; };

    listeners = {
      # The hub itself connects to the plaintext listener, so it always runs; with TLS configured it
      # stays on this host by default and agents use the TLS one.
      mqtt = listener "MQTT (TCP, plaintext)" 1883 {
        host = if tlsOn then "127.0.0.1" else "0.0.0.0";
        hostText = ''if tls.certFile != null then "127.0.0.1" else "0.0.0.0"'';
        hostDescription = " The default keeps it on this host once TLS is configured (the hub connects to it itself).";
      };
      mqttTls = listener "MQTT over TLS" 8883 { };
      http = listener "HTTP (fleet page, Node-RED editor, MQTT over WebSocket at /mqtt, GitHub webhook)" 1880 { };
    };
    tls = {
      certFile = secretOption "TLS certificate (PEM) for the MQTT TLS listener; setting it enables that listener.";
      keyFile = secretOption "TLS private key (PEM).";
      caFile = secretOption "CA (PEM); when set, MQTT clients must also present a certificate signed by it.";
    };
    openFirewall = mkOption { type = types.bool; default = false; description = "Open the ports of the listeners that run and are not bound to loopback: HTTP and, with the embedded broker, MQTT (plaintext unless TLS moved it to 127.0.0.1) and MQTT over TLS when configured."; };

    github = {
      owner = mkOption { type = types.nullOr types.str; default = null; example = "acme"; description = "Owner of the fleet repository on GitHub."; };
      repo = mkOption { type = types.nullOr types.str; default = null; example = "fleet"; description = "Fleet repository name; null disables the GitHub integration."; };
      baseBranch = mkOption { type = types.str; default = "main"; description = "Branch lock-update PRs target."; };
      tokenFile = secretOption "GitHub token (fine-grained: contents and pull requests read/write, checks and statuses read).";
      webhookSecretFile = secretOption "Secret of the GitHub webhook that posts to <http>/api/github/webhook.";
    };

    externalBroker = mkOption {
      type = types.nullOr (types.submodule {
        options = {
          url = mkOption { type = types.strMatching "(mqtts?|wss?)://.+"; example = "mqtts://mosquitto.lan:8883"; description = "Broker URL."; };
          username = mkOption { type = types.str; default = "lockstep-hub"; description = "The hub's user on that broker."; };
          passwordFile = mkOption { type = types.str; description = "File holding the hub's password (outside the Nix store)."; };
        };
      });
      default = null;
      description = "Use this broker (Mosquitto, EMQX, the Home Assistant add-on) instead of the embedded one; the MQTT listeners are then not opened.";
    };
    settings = mkOption {
      type = json.type;
      default = { };
      example = { automatic.mergeDelayMinutes = 120; };
      description = "Freeform hub config (hub/config.ts; the broker's part under `broker`, broker/config.ts), merged deeply over what the typed options generate (they are the documented subset). Definitions from several modules merge key by key.";
    };
    extraConfig = mkOption {
      type = types.attrs;
      default = { };
      visible = false;
      description = "Deprecated: use `settings`, which merges deeply across modules. Still merged over the generated JSON (after `settings`), but only one module's value of each top-level key survives.";
    };
  };

  config = lib.mkIf cfg.enable {
    assertions = [
      {
        assertion = builtins.all (p: !lockstep.isStorePath p && lockstep.isAbsolutePath p) (builtins.attrValues credentials ++ lib.optional (cfg.credentialsFile != null) cfg.credentialsFile);
        message = "services.lockstep-hub: secret files (tokenFile, webhookSecretFile, tls.*, externalBroker.passwordFile, credentialsFile) must be absolute paths outside the Nix store.";
      }
      { assertion = (cfg.tls.certFile == null) == (cfg.tls.keyFile == null); message = "services.lockstep-hub.tls: set certFile and keyFile together."; }
      { assertion = (cfg.github.repo == null) == (cfg.github.owner == null); message = "services.lockstep-hub.github: set owner and repo together."; }
    ];

    environment.etc."lockstep/hub.json".source = hubJson;
    environment.systemPackages = [ cfg.package ];

    # A fixed system user (not DynamicUser) so an admin can manage broker users with
    # `sudo -u lockstep-hub lockstep --config /etc/lockstep/hub.json users add ...` and the files
    # stay readable by the hub.
    users.users.lockstep-hub = { isSystemUser = true; group = "lockstep-hub"; home = cfg.dataDir; description = "Lockstep hub"; };
    users.groups.lockstep-hub = { };
    # A data dir outside /var/lib is not a StateDirectory: create it for the hub's user.
    systemd.tmpfiles.rules = lib.optional (!lib.hasPrefix "/var/lib/" cfg.dataDir) "d ${cfg.dataDir} 0700 lockstep-hub lockstep-hub - -";
    warnings = lib.optional (cfg.extraConfig != { }) "services.lockstep-hub.extraConfig is deprecated: use services.lockstep-hub.settings (it merges deeply across modules).";
    networking.firewall.allowedTCPPorts = lib.mkIf cfg.openFirewall firewallPorts;

    systemd.services.lockstep-hub = {
      description = "Lockstep hub (MQTT broker, Node-RED, fleet page)";
      wantedBy = [ "multi-user.target" ];
      wants = [ "network-online.target" ];
      after = [ "network-online.target" ];
      restartTriggers = [ hubJson ];
      environment.HOME = cfg.dataDir;
      serviceConfig = {
        ExecStart = "${cfg.package}/bin/lockstep hub --config /etc/lockstep/hub.json";
        Restart = "on-failure";
        RestartSec = 5;
        User = "lockstep-hub";
        Group = "lockstep-hub";
        StateDirectory = lib.mkIf (lib.hasPrefix "/var/lib/" cfg.dataDir) (lib.removePrefix "/var/lib/" cfg.dataDir);
        StateDirectoryMode = "0700";
        ReadWritePaths = lib.optional (!lib.hasPrefix "/var/lib/" cfg.dataDir) cfg.dataDir;
        LoadCredential = lib.mapAttrsToList (name: path: "${name}:${path}") credentials;
        # Ports below 1024 need this one capability; nothing else.
        AmbientCapabilities = lib.optional (builtins.any (p: p < 1024) ports) "CAP_NET_BIND_SERVICE";
        CapabilityBoundingSet = lib.optional (builtins.any (p: p < 1024) ports) "CAP_NET_BIND_SERVICE";
        UMask = "0077";
        NoNewPrivileges = true;
        ProtectSystem = "strict";
        ProtectHome = true;
        PrivateTmp = true;
        PrivateDevices = true;
        ProtectKernelTunables = true;
        ProtectKernelModules = true;
        ProtectKernelLogs = true;
        ProtectControlGroups = true;
        ProtectClock = true;
        ProtectHostname = true;
        ProtectProc = "invisible";
        RestrictNamespaces = true;
        RestrictRealtime = true;
        RestrictSUIDSGID = true;
        LockPersonality = true;
        RestrictAddressFamilies = [ "AF_UNIX" "AF_INET" "AF_INET6" ];
        SystemCallArchitectures = "native";
        SystemCallFilter = [ "@system-service" "~@privileged" ];
        # Node's JIT needs writable+executable memory, so MemoryDenyWriteExecute stays off.
      };
    };
  };
}
