/** Percentile by nearest rank over an unsorted sample (sorted in place). */
export function percentiles(xs: Float64Array, ps: readonly number[]): number[] {
  if (xs.length === 0) return ps.map(() => NaN);
  xs.sort();
  return ps.map((p) => xs[Math.min(xs.length - 1, Math.max(0, Math.ceil((p / 100) * xs.length) - 1))]!);
}

/** Least-squares slope of y over x. */
export function slope(xs: readonly number[], ys: readonly number[]): number {
  const n = xs.length;
  const mx = xs.reduce((a, b) => a + b, 0) / n;
  const my = ys.reduce((a, b) => a + b, 0) / n;
  let num = 0;
  let den = 0;
  for (let i = 0; i < n; i++) {
    num += (xs[i]! - mx) * (ys[i]! - my);
    den += (xs[i]! - mx) ** 2;
  }
  return den === 0 ? 0 : num / den;
}

export const mean = (xs: readonly number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;

/** One Prometheus histogram out of /metrics text: cumulative count per upper bound. */
export function histogramOf(text: string, name: string): Map<number, number> {
  const out = new Map<number, number>();
  const re = new RegExp(`^${name}_bucket\\{le="([^"]+)"\\} (\\d+)$`, 'gm');
  for (const m of text.matchAll(re)) out.set(m[1] === '+Inf' ? Infinity : Number(m[1]), Number(m[2]));
  return out;
}

/**
 * The q-quantile of the observations between two scrapes of a cumulative histogram, linearly
 * interpolated inside its bucket (as Prometheus' histogram_quantile does).
 */
export function quantileBetween(before: Map<number, number>, after: Map<number, number>, q: number): { value: number; count: number } {
  const bounds = [...after.keys()].sort((a, b) => a - b);
  const counts = bounds.map((b) => (after.get(b) ?? 0) - (before.get(b) ?? 0));
  const total = counts[counts.length - 1] ?? 0;
  if (total === 0) return { value: NaN, count: 0 };
  const rank = q * total;
  let lower = 0;
  let below = 0;
  for (let i = 0; i < bounds.length; i++) {
    if (counts[i]! >= rank) {
      const upper = bounds[i]!;
      if (upper === Infinity) return { value: lower, count: total };
      const inBucket = counts[i]! - below;
      return { value: lower + (upper - lower) * (inBucket === 0 ? 1 : (rank - below) / inBucket), count: total };
    }
    lower = bounds[i]!;
    below = counts[i]!;
  }
  return { value: lower, count: total };
}
