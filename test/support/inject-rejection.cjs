// Preloaded into a hub process by hub-process-guard.test.ts (NODE_OPTIONS=--require): each SIGUSR2
// makes one promise rejection nobody handles, as a library call site we did not wrap would.
process.on("SIGUSR2", () => {
  void Promise.reject(new Error("injected by the test: a rejection nobody handles"));
});
