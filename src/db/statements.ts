import type { Sql } from 'postgres';

/*
 * Drizzle sends every query to postgres.js unprepared. postgres.js then needs the server to describe
 * an unprepared statement's parameters before it can send them: Parse and Describe, a wait, then
 * Bind and Execute, two round trips per query, and nothing else can be pipelined on the connection
 * meanwhile. A prepared statement, once described, is one round trip and pipelines. This wrapper
 * has postgres.js prepare the texts this process sends again and again (each is then prepared once
 * per connection), up to a bound, since neither postgres.js nor the server forgets a prepared
 * statement while the connection lives: a text seen once (a bulk insert, a list of some length)
 * stays unprepared, and so does every new text once `maxTexts` are prepared.
 */

export type StatementPolicy = {
  /** Whether to prepare this text now; counts its use. */
  prepare(text: string): boolean;
  /** How many texts are prepared (metrics, tests). */
  readonly preparedTexts: number;
};

export function createStatementPolicy(options: { maxTexts: number; seenBound?: number }): StatementPolicy {
  const prepared = new Set<string>();
  // Texts seen once; cleared when it reaches its bound, so it cannot grow without end either.
  const seen = new Set<string>();
  const seenBound = options.seenBound ?? 10 * options.maxTexts;
  return {
    prepare(text) {
      if (prepared.has(text)) return true;
      if (!seen.has(text)) {
        if (seen.size >= seenBound) seen.clear();
        seen.add(text);
        return false;
      }
      if (prepared.size >= options.maxTexts) return false;
      seen.delete(text);
      prepared.add(text);
      return true;
    },
    get preparedTexts() {
      return prepared.size;
    },
  };
}

type Unsafe = Sql['unsafe'];
type Callback = (sql: Sql) => unknown;

/**
 * The postgres.js client as drizzle should see it: `unsafe` prepares what `policy` says, in
 * transactions and savepoints too. Everything else is the client itself.
 */
export function preparingClient(client: Sql, policy: StatementPolicy): Sql {
  const unsafe: Unsafe = (query, params, options) =>
    client.unsafe(query, params, { ...options, prepare: options?.prepare === true || policy.prepare(query) });
  // begin(cb), begin(options, cb), savepoint(cb), savepoint(name, cb): the callback gets a wrapped client.
  const scoped =
    (method: 'begin' | 'savepoint') =>
    (...args: unknown[]) => {
      const last = args.length - 1;
      const callback = args[last] as Callback;
      args[last] = (inner: Sql) => callback(preparingClient(inner, policy));
      return (Reflect.get(client, method) as (...a: unknown[]) => unknown)(...args);
    };
  const overrides: Record<string, unknown> = { unsafe, begin: scoped('begin'), savepoint: scoped('savepoint') };
  return new Proxy(client, {
    get(target, property, receiver) {
      if (typeof property === 'string' && property in overrides && property in target) return overrides[property];
      return Reflect.get(target, property, receiver);
    },
  });
}
