// aedes-persistence-level ships no type declarations; this is the one call Lockstep makes.
declare module "aedes-persistence-level" {
  interface AedesLevelPersistence {
    setup(broker: unknown): Promise<void>;
    /** Closes the underlying level database. */
    destroy(): Promise<void>;
  }

  /** `db` is a `level` (>= 9) database instance. */
  function aedesPersistenceLevel(db: unknown): AedesLevelPersistence;
  export = aedesPersistenceLevel;
}
