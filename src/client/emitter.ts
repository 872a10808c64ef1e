type Listener<T> = (data: T) => void;

/**
 * A typed event emitter small enough to bundle anywhere. A listener that throws does not stop
 * the others, nor the client's own bookkeeping that runs after an emit: its error is rethrown on
 * a fresh microtask, where it surfaces as an uncaught error as it would from any emitter.
 */
export function createEmitter<Events extends object>() {
  const listeners = new Map<keyof Events, Set<Listener<never>>>();
  return {
    on<E extends keyof Events>(event: E, listener: Listener<Events[E]>): () => void {
      let set = listeners.get(event);
      if (!set) listeners.set(event, (set = new Set()));
      set.add(listener as Listener<never>);
      return () => set.delete(listener as Listener<never>);
    },
    off<E extends keyof Events>(event: E, listener: Listener<Events[E]>): void {
      listeners.get(event)?.delete(listener as Listener<never>);
    },
    emit<E extends keyof Events>(event: E, data: Events[E]): void {
      const set = listeners.get(event);
      if (!set) return;
      for (const listener of [...set]) {
        try {
          (listener as Listener<Events[E]>)(data);
        } catch (err) {
          queueMicrotask(() => {
            throw err;
          });
        }
      }
    },
  };
}
