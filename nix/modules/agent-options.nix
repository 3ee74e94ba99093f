# The options of services.lockstep-agent, shared by the NixOS, nix-darwin and Home Manager modules.
# Only the defaults differ per platform (host name, state dir, OS kind, profile).
{ lib
, pkgs
, kinds                 # OS kinds this platform may use, first = default
, defaultHostName
, defaultCheckoutDir
, defaultSystemProfile  # null: the agent's own default for the kind
, platform              # "NixOS", "nix-darwin" or "Home Manager", for descriptions
}:
let
  inherit (lib) mkOption mkEnableOption types literalExpression;
  # RFC 42: a freeform `settings` typed by the JSON format, so several modules' definitions merge
  # deeply (types.attrs would keep only one module's `timeouts`).
  json = pkgs.formats.json { };
  settingsOption = { file, example }: mkOption {
    type = json.type;
    default = { };
    inherit example;
    description = "Freeform ${file} contents, merged deeply over what the typed options generate (they are the documented subset; every field is in ${file}). Definitions from several modules merge key by key.";
  };
  deprecatedExtraConfig = settingsName: mkOption {
    type = types.attrs;
    default = { };
    visible = false;
    description = "Deprecated: use `${settingsName}`, which merges deeply across modules. Still merged over the generated JSON (after `${settingsName}`), but only one module's value of each top-level key survives.";
  };
  days = [ "mon" "tue" "wed" "thu" "fri" "sat" "sun" ];
  windowType = types.submodule {
    options = {
      days = mkOption { type = types.listOf (types.enum days); default = days; description = "Weekdays the window opens on."; };
      start = mkOption { type = types.strMatching "([01][0-9]|2[0-3]):[0-5][0-9]"; example = "02:00"; description = "Start time, HH:MM."; };
      end = mkOption { type = types.strMatching "([01][0-9]|2[0-4]):[0-5][0-9]"; example = "05:00"; description = "End time, HH:MM; before `start` means the window crosses midnight."; };
      timeZone = mkOption { type = types.str; default = "UTC"; example = "Europe/Berlin"; description = "IANA time zone of start and end."; };
    };
  };
  secretPath = description: mkOption {
    type = types.nullOr types.str;
    default = null;
    example = "/run/secrets/lockstep-agent";
    description = description + " An absolute path read at run time; it must not be in the Nix store (a string, not a Nix path literal, so it is never copied there).";
  };
in
{
  enable = mkEnableOption "the Lockstep agent, which reports this host's state over MQTT and runs the hub's allow-listed commands (pull, switch, test, rollback)";

  package = mkOption {
    type = types.package;
    default = pkgs.lockstep;
    defaultText = literalExpression "lockstep.packages.\${system}.lockstep";
    description = "The Lockstep package (provides lockstep-agent).";
  };

  brokerUrl = mkOption {
    type = types.nullOr (types.strMatching "(mqtts?|wss?)://.+");
    default = null;
    example = "mqtts://hub.lan:8883";
    description = "MQTT broker of the hub. Required when `enable` is set; optional for `selfUpdate` (then runs are reported to the hub too).";
  };
  brokerUsername = mkOption {
    type = types.nullOr types.str;
    default = null;
    description = "MQTT user name; null means the host name (the broker's per-host ACL expects that).";
  };
  credentialsFile = secretPath "File holding this host's MQTT password.";
  brokerCaFile = mkOption { type = types.nullOr types.str; default = null; description = "CA certificate for an mqtts:// or wss:// broker with a private CA."; };

  hostName = mkOption {
    type = types.str;
    default = defaultHostName;
    defaultText = literalExpression (if platform == "Home Manager" then "\"<user>-<hostname>\"" else "config.networking.hostName");
    description = "Host id used in MQTT topics: 1-63 characters of a-z, 0-9, '-' and '_'.";
  };
  topicPrefix = mkOption { type = types.str; default = "lockstep"; description = "MQTT topic prefix, the same on hub and agents."; };

  repo = {
    url = mkOption { type = types.str; example = "git@github.com:acme/fleet.git"; description = "The fleet flake's git repository."; };
    branch = mkOption { type = types.str; default = "main"; description = "Branch the fleet deploys from."; };
    checkoutDir = mkOption { type = types.str; default = defaultCheckoutDir; description = "Where the agent keeps its checkout of the repository."; };
  };
  sshKeyFile = secretPath "Deploy key for fetching the repository over ssh.";

  profile = mkOption {
    type = types.enum kinds;
    default = builtins.head kinds;
    description = "How this host switches (the agent's OS profile): ${lib.concatStringsSep ", " kinds}.";
  };
  flakeAttr = mkOption {
    type = types.nullOr types.str;
    default = null;
    description = "Flake attribute to switch to; null means the host name (nixosConfigurations.<host> and friends).";
  };
  systemProfile = mkOption {
    type = types.nullOr types.str;
    default = defaultSystemProfile;
    description = "Nix profile whose generations are this host's system; null means the agent's default for the profile.";
  };
  testsDir = mkOption { type = types.str; default = "tests"; description = "Directory in the checkout holding the host's checks (tests/common, tests/<host>)."; };

  tags = mkOption { type = types.listOf types.str; default = [ ]; example = [ "edge" "critical" ]; description = "Free-form tags for selecting hosts in rollouts."; };
  location = mkOption { type = types.nullOr types.str; default = null; example = "rack 2"; description = "Where the host is, shown on the fleet page."; };
  priority = mkOption { type = types.int; default = 100; description = "Rollout order: lower numbers update first."; };
  canary = mkOption { type = types.bool; default = false; description = "Update this host in the canary phase, before everyone else."; };
  hold = mkOption { type = types.bool; default = false; description = "Start held: rollouts skip the host until it is released."; };
  maintenanceWindow = mkOption {
    type = types.nullOr windowType;
    default = null;
    example = literalExpression ''{ days = [ "sat" "sun" ]; start = "02:00"; end = "05:00"; timeZone = "Europe/Berlin"; }'';
    description = "When rollouts may switch this host; null means any time.";
  };
  logLevel = mkOption { type = types.enum [ "fatal" "error" "warn" "info" "debug" "trace" ]; default = "info"; description = "Log level of the agent and the self-update."; };
  settings = settingsOption { file = "agent/config.ts"; example = { timeouts.switchSeconds = 7200; }; };
  extraConfig = deprecatedExtraConfig "settings";

  selfUpdate = {
    enable = mkEnableOption "the standalone nightly self-update (`lockstep-agent self-update`) for hosts without a hub";
    mode = mkOption {
      type = types.enum [ "flake-update" "git-pull" ];
      default = "flake-update";
      description = "`flake-update`: run `nix flake update` in the checkout and commit the lock (no CI needed). `git-pull`: take what CI committed to the branch.";
    };
    inputs = mkOption { type = types.listOf types.str; default = [ ]; description = "Inputs to update in flake-update mode; empty means all."; };
    commitLock = mkOption { type = types.bool; default = true; description = "Commit the updated flake.lock in the checkout."; };
    attribute = mkOption { type = types.nullOr types.str; default = null; description = "Flake attribute to build; null means the profile's default (nixosConfigurations.<host>.config.system.build.toplevel, ...)."; };
    time = mkOption { type = types.strMatching "([01][0-9]|2[0-3]):[0-5][0-9]"; default = "03:00"; description = "Time of day (HH:MM, the host's time zone) before the per-host offset."; };
    days = mkOption { type = types.listOf (types.enum days); default = [ ]; example = [ "sat" ]; description = "Weekdays to run on; empty means every day."; };
    spreadMinutes = mkOption {
      type = types.ints.between 0 1439;
      default = 60;
      description = "Staggering: each host runs at `time` plus a stable offset in [0, spreadMinutes) minutes derived from its host name.";
    };
    randomizedDelaySec = mkOption { type = types.ints.unsigned; default = 0; description = "Extra random delay (systemd RandomizedDelaySec) on top of the stable offset."; };
    persistent = mkOption { type = types.bool; default = true; description = "Run at boot when the host was off at the scheduled time (systemd Persistent=)."; };
    reportToHub = mkOption { type = types.bool; default = true; description = "With `brokerUrl` set, report each run to the hub as a job (op \"self-update\")."; };
    health = {
      maxDiskUsedPercent = mkOption { type = types.nullOr (types.ints.between 1 100); default = 90; description = "Skip the run when the filesystem at `diskPath` is fuller than this; null disables the check."; };
      diskPath = mkOption { type = types.str; default = "/"; description = "Filesystem the disk check measures (the one holding /nix)."; };
      systemStates = mkOption {
        type = types.listOf types.str;
        # "degraded" = some unit failed, usually one unrelated to updating; `requiredUnits` names
        # the ones that do matter, and every run reports the failed units it saw.
        default = if platform == "NixOS" then [ "running" "degraded" ] else [ ];
        example = [ "running" ];
        description = "`systemctl is-system-running` states that count as healthy; empty disables the check (the default off NixOS). The default accepts \"degraded\" (some unit failed): list the units that matter in `requiredUnits`.";
      };
      requiredUnits = mkOption {
        type = types.listOf types.str;
        default = [ ];
        example = [ "nix-daemon.service" "zfs-mount.service" ];
        description = "systemd units that must not be failed for the run to go ahead. Other failed units do not stop it; the run reports them.";
      };
      minUptimeSeconds = mkOption {
        type = types.ints.unsigned;
        # The timer is Persistent: a night the host was off is caught up right after boot, which
        # any minimum uptime would skip.
        default = 0;
        example = 600;
        description = "Skip the run when the host booted less than this long ago (0, the default, disables the check). With `persistent` on, a value above 0 skips the catch-up run at boot.";
      };
    };
    reboot = {
      enable = mkOption { type = types.bool; default = platform == "NixOS"; description = "Reboot when the new system's kernel, initrd or kernel modules differ from the booted ones."; };
      command = mkOption {
        type = types.listOf types.str;
        default = [ "shutdown" "-r" "+1" "lockstep self-update: kernel, initrd or modules changed" ];
        description = "argv (no shell) that reboots; the default leaves a minute to record and report the run.";
      };
      window = mkOption { type = types.nullOr windowType; default = null; description = "Reboot only inside this window; null means whenever the run happens."; };
    };
    settings = settingsOption { file = "agent/self-update/config.ts"; example = { stepTimeoutSeconds = 7200; }; };
    extraConfig = deprecatedExtraConfig "selfUpdate.settings";
  };
}
