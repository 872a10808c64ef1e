/**
 * A server-wide ceiling on bytes held at once (bodies being received; pages of stored requests
 * being sent). Bytes are taken before they are held and given back once they are gone, so the
 * total is known before any allocation, never measured after it.
 */
export interface Budget {
  /** A hold of nothing yet; it grows with `take` and is given back, once, by `release`. */
  hold(): Hold;
  readonly held: number;
  readonly max: number;
}

export interface Hold {
  /**
   * Takes `bytes` more if they fit under the ceiling, or if nothing is held but by this hold: one
   * item larger than the ceiling can still pass, alone, whether it is taken at once or as it
   * streams. False when refused; nothing is taken then.
   */
  take(bytes: number): boolean;
  /** Gives back everything this hold took. Safe to call twice. */
  release(): void;
  readonly bytes: number;
}

/** `onChange` sees every change of the total, for a gauge. */
export function createBudget(max: number, onChange: (delta: number) => void = () => {}): Budget {
  let held = 0;
  return {
    hold(): Hold {
      let mine = 0;
      let released = false;
      return {
        take(bytes) {
          if (released) return false;
          if (bytes <= 0) return true;
          if (held + bytes > max && held > mine) return false;
          held += bytes;
          mine += bytes;
          onChange(bytes);
          return true;
        },
        release() {
          if (released) return;
          released = true;
          held -= mine;
          onChange(-mine);
          mine = 0;
        },
        get bytes() {
          return mine;
        },
      };
    },
    get held() {
      return held;
    },
    max,
  };
}
