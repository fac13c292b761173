// autocannon 8 ships no type declarations; the benchmark types what it uses itself.
declare module 'autocannon' {
  const autocannon: (options: Record<string, unknown>) => Promise<unknown>;
  export default autocannon;
}
