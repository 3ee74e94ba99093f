/**
 * The fleet-level Home Assistant device ("Lockstep fleet"): what belongs to the fleet and the hub
 * rather than to one host. Pure functions, no I/O; the bridge (ha/bridge.ts) publishes it retained
 * on Topics.haFleetDiscovery().
 *
 * Each entity is one entry of FLEET_ENTITIES: its key in `cmps` and how it is built from the topics.
 * Its unique id and the hub's availability are added here, so a new entity (a hub "storage problem"
 * sensor, say) is one more entry and nothing else.
 */
import { HA_FLEET_NODE_ID, type HubAction, type Topics } from "../protocol/index.js";
import type { HaComponent, HaDeviceDiscovery, HaOrigin } from "./discovery.js";

export interface FleetDeviceContext {
  topics: Topics;
  /** The broker user Home Assistant connects as: its buttons publish on Topics.hubActions(haUser). */
  haUser: string;
}

/** An entity of the fleet device, without its unique id (added from the key). */
type FleetEntity = (ctx: FleetDeviceContext) => HaComponent;

const RESUME: HubAction = "resume-automatic";

/** Automatic mode's retained state (protocol AutomaticPauseState) as HA reads it. */
const PAUSED_TEMPLATE = "{{ 'ON' if value_json.paused else 'OFF' }}";
// .get(): keys absent from the state become null instead of failing the template.
const PAUSE_ATTRIBUTES =
  "{{ {'reason': value_json.get('reason'), 'pr': value_json.get('prNumber'), 'rollout': value_json.get('rolloutId'), " +
  "'paused_at': value_json.get('pausedAt'), 'resumed_at': value_json.get('resumedAt'), 'resumed_by': value_json.get('resumedBy')} | tojson }}";

export const FLEET_ENTITIES: Record<string, FleetEntity> = {
  automatic_paused: ({ topics }) => ({
    p: "binary_sensor",
    name: "Automatic updates paused",
    icon: "mdi:pause-circle",
    state_topic: topics.automaticPause(),
    value_template: PAUSED_TEMPLATE,
    payload_on: "ON",
    payload_off: "OFF",
    // Why it paused (the failed rollout, its PR) and who resumed it last.
    json_attributes_topic: topics.automaticPause(),
    json_attributes_template: PAUSE_ATTRIBUTES,
  }),
  resume_automatic: ({ topics, haUser }) => ({
    p: "button",
    name: "Resume automatic updates",
    icon: "mdi:play-circle",
    command_topic: topics.hubActions(haUser),
    payload_press: RESUME,
    qos: 1,
    // Pressable only while automatic mode is paused (and the hub is there to answer).
    availability: [
      { topic: topics.hubAvailability() },
      { topic: topics.automaticPause(), value_template: "{{ 'online' if value_json.paused else 'offline' }}" },
    ],
    availability_mode: "all",
  }),
  // The hub cannot write its data dir (protocol StorageHealthState on hub/storage): rollouts are held and refused.
  storage_problem: ({ topics }) => ({
    p: "binary_sensor",
    name: "Hub storage problem",
    device_class: "problem",
    state_topic: topics.hubStorage(),
    value_template: "{{ 'ON' if value_json.state == 'fault' else 'OFF' }}",
    payload_on: "ON",
    payload_off: "OFF",
    json_attributes_topic: topics.hubStorage(),
    json_attributes_template:
      "{{ {'code': value_json.get('code'), 'path': value_json.get('path'), 'since': value_json.get('since'), 'hint': value_json.get('hint'), 'held_rollouts': value_json.get('heldRollouts')} | tojson }}",
  }),
};

export interface FleetDiscoveryOptions extends FleetDeviceContext {
  origin: HaOrigin;
  /** The fleet page URL, the device's "visit" link. */
  configurationUrl?: string;
}

/** The fleet device's discovery payload. Entities are available while the hub is, unless they say otherwise. */
export function buildFleetDiscovery(opts: FleetDiscoveryOptions, entities: Record<string, FleetEntity> = FLEET_ENTITIES): HaDeviceDiscovery {
  const ctx: FleetDeviceContext = { topics: opts.topics, haUser: opts.haUser };
  const cmps: Record<string, HaComponent> = {};
  for (const [key, build] of Object.entries(entities)) {
    cmps[key] = { availability: [{ topic: opts.topics.hubAvailability() }], ...build(ctx), unique_id: `${HA_FLEET_NODE_ID}_${key}` };
  }
  const dev: HaDeviceDiscovery["dev"] = { ids: [HA_FLEET_NODE_ID], name: "Lockstep fleet", mf: "Lockstep", mdl: "Fleet" };
  if (opts.origin.sw_version) dev.sw = opts.origin.sw_version;
  if (opts.configurationUrl) dev.cu = opts.configurationUrl;
  return { dev, o: { ...opts.origin }, cmps };
}
