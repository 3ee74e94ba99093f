// aedes-persistence-redis ships no type declarations; broker/cluster.ts states the calls it makes.
declare module "aedes-persistence-redis" {
  /** `conn`: an ioredis connection the persistence uses (and disconnects on destroy). */
  function aedesPersistenceRedis(options: { conn: unknown }): unknown;
  export = aedesPersistenceRedis;
}
