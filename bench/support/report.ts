import type { Sql } from 'postgres';

/** What every scenario gets from bench/index.ts. */
export interface BenchContext {
  databaseUrl: string;
  /** The orchestrator's own connection, for counting rows after a run. */
  sql: Sql;
  /** When set, servers run with --cpu-prof and write their profiles here. */
  profileDir: string | undefined;
  tmpDir: string;
  /** The postmaster of the cluster under test, when it runs on this machine and we could find it. */
  postmasterPid: number | undefined;
}

/** One line of the table: a figure of hooky beside its reference, and the target it must meet. */
export interface Row {
  metric: string;
  hooky: string;
  reference: string;
  target: string;
  /** null: a figure reported for information, with no target of its own. */
  met: boolean | null;
}

export interface ScenarioResult {
  scenario: string;
  /** ISO time the scenario started. */
  at: string;
  seconds: number;
  rows: Row[];
  met: boolean;
  /** Raw figures, for anyone who wants more than the table. */
  details: Record<string, unknown>;
}

export const fmt = {
  int: (n: number) => (Number.isFinite(n) ? Math.round(n).toLocaleString('en-US') : String(n)),
  ms: (n: number) => (Number.isFinite(n) ? `${n < 10 ? n.toFixed(2) : n < 100 ? n.toFixed(1) : Math.round(n)} ms` : String(n)),
  kb: (bytes: number) => `${(bytes / 1024).toFixed(2)} KB`,
  mb: (bytes: number) => `${(bytes / 1024 / 1024).toFixed(1)} MB`,
  ratio: (n: number) => `${n.toFixed(2)}×`,
  s: (n: number) => `${n.toFixed(1)} s`,
};

export function result(scenario: string, started: number, rows: Row[], details: Record<string, unknown>): ScenarioResult {
  return {
    scenario,
    at: new Date(started).toISOString(),
    seconds: Math.round((Date.now() - started) / 100) / 10,
    rows,
    met: rows.every((r) => r.met !== false),
    details,
  };
}
